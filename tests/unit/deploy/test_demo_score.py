"""The demo's running-score text, from the inference service's /accuracy answer."""
from rig.pipeline import score_text


def test_score_is_the_rmse_ratio_and_direction_so_far():
    acc = {"scored": 40, "rmse": 2.032, "directional_accuracy": 0.45, "persistence": {"rmse": 2.0}}
    assert score_text(acc) == "  [n 40, RMSE x1.016 of persistence, direction 45%]"


def test_no_score_before_the_first_target_is_realized_or_when_persistence_is_exact():
    assert score_text({}) == ""
    assert score_text({"scored": 0, "rmse": None, "persistence": {"rmse": None}}) == ""
    assert score_text({"scored": 3, "rmse": 0.5, "persistence": {"rmse": 0.0}}) == ""  # no ratio to a zero error
    assert score_text({"scored": 3, "rmse": 1.0, "directional_accuracy": None, "persistence": {"rmse": 2.0}}) == \
        "  [n 3, RMSE x0.500 of persistence]"
