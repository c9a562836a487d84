"""The online contest: the always-valid test on shadow rows, its decisions, and who answers after them."""

import math

import pytest

from btcpred.common.contest_decision import Decision
from btcpred.inference.contest import OnlineContest
from btcpred.inference.cycle import make_prediction
from btcpred.inference.lineup import lineup
from btcpred.inference.scoring import ScoredPrediction
from tests.unit.inference.test_cycle import NOW_US, ProvenModel, state

pytestmark = pytest.mark.unit


def rows(n, predicted_share):
    """Rows every 2 s of data time; the price moves by +-5 bp, the prediction by ``predicted_share`` of it."""
    for i in range(n):
        r = 5e-4 * (1 if i % 3 else -1)
        yield ScoredPrediction(i * 2000, 100.0, 100.0 * math.exp(predicted_share * r), 100.0 * math.exp(r))


def test_a_challenger_better_on_every_row_is_promoted_when_its_tenth_block_closes():
    """Every block sum positive: x = 1 each time; the first block sets the scale, the second bets 0, then
    each bets the cap 1/2, so the wealth is 1.5^k after k bets and first passes 20 at k = 8 (25.6)."""
    contest = OnlineContest("binance.com-spot")
    contest.new_champion("persistence")
    decisions = []
    for champion_row, challenger_row in zip(rows(2000, 0.0), rows(2000, 0.5)):
        assert contest.champion_row(champion_row) is None  # persistence is never demoted
        decision = contest.challenger_row("ridge-x", challenger_row)
        if decision:
            decisions.append(decision)
    [d] = decisions  # decided once, never again
    assert (d.action, d.model_version, d.versus, d.market) == ("promote", "ridge-x", "persistence", "binance.com-spot")
    assert d.data_time_ms == 10 * 300_000  # the first row of the 11th block closed the 10th
    assert d.figures["e_value"] == pytest.approx(1.5**8) and d.figures["blocks"] == 10
    assert d.figures["mean_diff"] == pytest.approx(0.75 * (5e-4) ** 2)  # r^2 - (r / 2)^2 on every row


def test_a_model_champion_worse_than_persistence_is_demoted():
    contest = OnlineContest("m")
    contest.new_champion("ridge-x")
    decisions = [d for d in map(contest.champion_row, rows(2000, -1.0)) if d]  # always the wrong way: 4 r^2 vs r^2
    assert [(d.action, d.model_version, d.versus) for d in decisions] == [("demote", "ridge-x", "persistence")]


def test_an_equal_challenger_is_not_promoted_and_a_new_champion_starts_every_test_afresh():
    contest = OnlineContest("m")
    contest.new_champion("persistence")
    for a, b in zip(rows(3000, 0.0), rows(3000, 0.0)):
        contest.champion_row(a)
        assert contest.challenger_row("same", b) is None
    assert contest.promotions["same"].test.wealth == 1.0  # x = 0 every block: nothing staked, nothing won
    contest.new_champion("ridge-x")
    assert contest.promotions == {} and contest.demotion is not None and contest.demotion.rows == 0
    contest.new_champion("persistence-20261207T000822-519da8cf")  # the registry's persistence artifact
    assert contest.demotion is None  # persistence is the bar: never demoted to itself
    # a challenger row whose champion row was never scored (another feature time) says nothing
    assert contest.challenger_row("other", next(rows(1, 0.5))) is None and "other" not in contest.promotions


def test_a_decision_survives_the_stream_and_garbage_is_no_decision():
    d = Decision("promote", "ridge-x", "persistence", "m", 3_000_000, {"e_value": 25.6, "blocks": 10})
    assert Decision.from_fields(d.fields()) == d
    for bad in (
        {},
        {**d.fields(), "action": "delete_everything"},
        {**d.fields(), "figures": "{"},
        {**d.fields(), "data_time_ms": "soon"},
    ):
        with pytest.raises(ValueError):
            Decision.from_fields(bad)


def test_after_a_promotion_the_challenger_answers_and_after_a_demotion_persistence_does():
    production, challenger = ProvenModel("binance.us"), ProvenModel("elsewhere")
    challenger.version = "mlp-y"
    market = "binance.com-spot"
    # nothing ruled: production unproven here, persistence answers, both models in shadow
    champion, shadows = lineup(production, (challenger,), {}, market)
    p = make_prediction("BTCUSDT", state(), 2000, NOW_US, champion, 5000, None, market, shadows)
    assert p.model_version == "persistence" and [c.model_version for c in p.challengers] == ["ridge-x", "mlp-y"]
    # the contest promoted the challenger here: it answers, production runs in shadow
    champion, shadows = lineup(production, (challenger,), {"mlp-y": "promote"}, market)
    p = make_prediction("BTCUSDT", state(), 2000, NOW_US, champion, 5000, None, market, shadows)
    assert p.model_version == "mlp-y" and [c.model_version for c in p.challengers] == ["ridge-x"]
    assert champion.proven_on(market) and not champion.proven_on("binance.us")  # the ruling is for this market only
    # then demoted: persistence answers, and it is back in shadow
    champion, shadows = lineup(production, (challenger,), {"mlp-y": "demote"}, market)
    p = make_prediction("BTCUSDT", state(), 2000, NOW_US, champion, 5000, None, market, shadows)
    assert p.model_version == "persistence" and {c.model_version for c in p.challengers} == {"ridge-x", "mlp-y"}
    # a production model proven here by the gate but demoted online does not serve here
    home = ProvenModel(market)
    champion, _ = lineup(home, (), {"ridge-x": "demote"}, market)
    assert make_prediction("BTCUSDT", state(), 2000, NOW_US, champion, 5000, None, market).model_version == "persistence"
    # a promoted model that is no longer loaded rules nothing
    assert lineup(production, (), {"gone": "promote"}, market)[0] is production
