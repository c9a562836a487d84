"""The demo's running-score text, from the inference service's /accuracy answer."""

from rig.pipeline import score_text


def test_score_is_the_rmse_ratio_and_direction_so_far():
    acc = {"scored": 40, "rmse": 2.032, "directional_accuracy": 0.45, "persistence": {"rmse": 2.0}}
    assert score_text(acc) == "  [n 40, RMSE x1.016 of persistence, direction 45%]"


def test_no_score_before_the_first_target_is_realized_or_when_persistence_is_exact():
    assert score_text({}) == ""
    assert score_text({"scored": 0, "rmse": None, "persistence": {"rmse": None}}) == ""
    assert score_text({"scored": 3, "rmse": 0.5, "persistence": {"rmse": 0.0}}) == ""  # no ratio to a zero error
    assert (
        score_text({"scored": 3, "rmse": 1.0, "directional_accuracy": None, "persistence": {"rmse": 2.0}})
        == "  [n 3, RMSE x0.500 of persistence]"
    )


def test_the_demo_shows_each_challengers_shadow_score_and_the_contests_verdict():
    from rig.pipeline import contest_text

    acc = {
        "scored": 40,
        "rmse": 2.0,
        "directional_accuracy": None,
        "persistence": {"rmse": 2.0},
        "market": "binance.com-spot",
        "model_version": "persistence",
        "challengers": {
            "ridge-1": {
                "scored": 38,
                "rmse": 1.9,
                "persistence_rmse": 2.0,
                "versus_champion": {
                    "n": 38,
                    "blocks": 6,
                    "mean_loss_diff": -1e-9,
                    "ci": [-2e-9, -1e-10],
                    "pvalue": 0.03,
                    "decision": "the challenger would be promoted on this market",
                },
            }
        },
    }
    assert score_text(acc) == "  [n 40, RMSE x1.000 of persistence]  [shadow ridge-1: n 38, RMSE x0.950]"
    assert contest_text(acc) == (
        "Contest on binance.com-spot: challenger ridge-1 against persistence: the challenger would be "
        "promoted on this market (n 38, 6 blocks of 5 min, mean loss difference -1e-09 "
        "(95 % interval [-2e-09, -1e-10]), p 0.03)."
    )
    assert contest_text({"challengers": {}}) == ""
    short = {
        "market": "m",
        "model_version": "persistence",
        "challengers": {
            "x": {
                "versus_champion": {
                    "n": 115,
                    "blocks": 1,
                    "mean_loss_diff": -2e-10,
                    "ci": [None, None],
                    "pvalue": None,
                    "decision": "no verdict: 1 block(s) of 5 minutes, the test needs 6",
                }
            }
        },
    }
    assert contest_text(short) == (
        "Contest on m: challenger x against persistence: no verdict: 1 block(s) of 5 minutes, "
        "the test needs 6 (n 115, 1 blocks of 5 min)."
    )


def test_the_demo_shows_the_always_valid_tests_the_rulings_and_the_interval():
    from rig.pipeline import contest_text

    acc = {
        "market": "binance.com-spot",
        "model_version": "ridge-1",
        "challengers": {},
        "online_contest": {
            "champion": "ridge-1",
            "promotion": {"mlp-2": {"e_value": 3.25, "threshold": 20.0, "alpha": 0.05, "blocks": 7}},
            "demotion": {"e_value": 0.5, "threshold": 20.0, "alpha": 0.05, "blocks": 7},
            "verdicts": {"ridge-0": "demote"},
        },
        "interval": {"coverage": 0.7951, "n": 830, "nominal": 0.8, "recalibrated": True},
    }
    assert contest_text(acc).splitlines() == [
        "Always-valid test (promote mlp-2): e-value 3.25, promotes at 20 (alpha 0.05, over its whole life), 7 block(s) closed.",
        "Always-valid test (demote ridge-1): e-value 0.50, demotes at 20 (alpha 0.05, over its whole life), 7 block(s) closed.",
        "The online contest ruled on binance.com-spot: demote ridge-0.",
        "Interval: 79.5% of 830 realized prices inside the stated 80% interval (recalibrated on this market).",
    ]
