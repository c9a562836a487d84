"""The API's guards: a cap on stream subscribers (503 past it) and an optional bearer token."""

import asyncio

import pytest
from fastapi.testclient import TestClient

from btcpred.common.config import load_settings
from btcpred.inference.models import PersistencePredictor
from btcpred.inference.service import PredictionService, create_app


def client(**inference) -> tuple[TestClient, PredictionService]:
    settings = load_settings("local", environ={})
    settings = settings.model_copy(update={"inference": settings.inference.model_copy(update=inference)})
    svc = PredictionService(settings, predictor=PersistencePredictor())
    return TestClient(create_app(settings, svc)), svc  # no lifespan: no cycles, no Redis


def test_the_stream_refuses_the_subscriber_past_the_cap_with_503():
    api, svc = client(max_stream_subscribers=3)
    for _ in range(3):
        svc.subscribers.add(asyncio.Queue())
    refused = api.get("/predictions/stream")
    assert refused.status_code == 503 and refused.headers["retry-after"] == "10"
    assert "3 stream subscribers already" in refused.json()["detail"]


@pytest.mark.parametrize("route", ["/predictions/latest", "/predictions", "/accuracy", "/", "/predictions/stream"])
def test_with_a_token_configured_every_route_but_the_probes_needs_it(route):
    from pydantic import SecretStr

    api, _ = client(api_token=SecretStr("s3cret"))
    assert api.get(route).status_code == 401
    assert api.get(route, headers={"Authorization": "Bearer wrong"}).status_code == 401
    if route != "/predictions/stream":  # the stream would never end: its refusal is what is checked
        assert api.get(route, headers={"Authorization": "Bearer s3cret"}).status_code in (200, 404)  # 404: no cycle yet
        assert api.get(route, params={"access_token": "s3cret"}).status_code in (200, 404)
    for probe in ("/health", "/ready"):
        assert api.get(probe).status_code in (200, 503)  # open: 503 is "not ready", not "who are you"
    assert api.get("/metrics", headers={"Authorization": "Bearer s3cret"}).status_code == 404  # internal port only


def test_without_a_token_configured_nothing_asks_for_one():
    api, _ = client()
    assert api.get("/predictions/latest").status_code == 404  # no prediction yet, but no 401
