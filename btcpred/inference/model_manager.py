"""Hot reload of the production model, entirely off the prediction cycle.

Every ``model_poll_s`` the registry is asked which version is in production.
A new version is fetched from its artifact location, checksum-verified, loaded
into ONNX Runtime, checked against the features the hot path publishes, and
warmed up, all in a worker thread; only then is it swapped in with a single
reference assignment, which the event loop makes atomic with respect to cycles.
A refused or broken model is logged once and the previous one keeps serving.

Refused for good: an artifact that is wrong in itself (checksum, horizon, a feature this system
never computes). Retried at every poll: one whose features the hot path computes but whose
latest ``feat:`` lacks one for now (a perpetual reconnecting, a job restarting, a quote stream
not yet seen): before, that moment refused a promoted model until the process restarted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
from prometheus_client import Counter, Gauge

from btcpred.common.model_artifact import METADATA_FILE, ArtifactError, ModelMetadata, OnnxModel, read_local
from btcpred.inference.models import OnnxPredictor
from btcpred.udfs.features import FEATURE_NAMES, HORIZON_US

log = logging.getLogger("inference.models")

MODEL_LOADS = Counter("inference_model_loads_total", "Model load attempts", ["outcome"])
for _outcome in ("loaded", "refused", "fetch_error", "registry_error", "features_missing"):  # at 0 from the start
    MODEL_LOADS.labels(_outcome)
WAITING = Gauge(
    "inference_model_waiting_for_features",
    "1 while the production model waits for features the latest feat: lacks (retried every poll)",
)
MODEL_INFO = Gauge("inference_model_loaded_timestamp_seconds", "When the serving model was swapped in", ["model_version"])


class FeaturesNotYetProvided(Exception):
    """The hot path computes the features, but its latest vector lacks some: worth another poll."""


class ModelSource(Protocol):
    """Where production models come from (the Postgres registry + S3 in every real deployment)."""

    def production(self) -> tuple[str, str, str] | None:
        """(model version, artifact URI, registry checksum) of the production model, if any."""

    def fetch(self, artifact_uri: str, checksum: str) -> tuple[bytes, ModelMetadata]: ...

    def challengers(self) -> list[tuple[str, str, str]]:
        """(version, URI, checksum) of the models to run in shadow beside production (may be empty)."""

    def close(self) -> None: ...


class RegistrySource:
    def __init__(self, settings) -> None:
        from btcpred.adapters.db.schema import engine_for
        from btcpred.adapters.lake import Lake

        self.engine = engine_for(settings.postgres, "reporting")  # serving reads the registry, never writes it
        self.lake = Lake(settings.s3)

    def production(self) -> tuple[str, str, str] | None:
        from btcpred.adapters import registry

        model = registry.production(self.engine)
        return (model.model_version, model.artifact_uri, model.checksum_sha256) if model else None

    def challengers(self) -> list[tuple[str, str, str]]:
        from btcpred.adapters import registry

        return [(m.model_version, m.artifact_uri, m.checksum_sha256) for m in registry.challengers(self.engine)]

    def fetch(self, artifact_uri: str, checksum: str) -> tuple[bytes, ModelMetadata]:
        from btcpred.adapters.artifact_store import fetch

        return fetch(self.lake, artifact_uri, checksum)

    def close(self) -> None:
        self.engine.dispose()


def source_for(settings) -> ModelSource:
    cfg = settings.inference
    if cfg.model_source == "file":
        if not cfg.model_path:
            raise ValueError("inference.model_source 'file' needs inference.model_path")
        return FileSource(cfg.model_path)
    return RegistrySource(settings)


class FileSource:
    """A local artifact directory (e.g. baked into an image); a new checksum there is a new model."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)

    def production(self) -> tuple[str, str, str] | None:
        meta_file = self.path / METADATA_FILE
        if not meta_file.is_file():
            return None
        meta = json.loads(meta_file.read_text())
        return meta["model_version"], str(self.path), meta["sha256"]

    def fetch(self, artifact_uri: str, checksum: str) -> tuple[bytes, ModelMetadata]:
        onnx_bytes, meta = read_local(Path(artifact_uri))
        if meta.sha256 != checksum:
            raise ArtifactError(f"{artifact_uri} changed while loading")
        return onnx_bytes, meta

    def challengers(self) -> list[tuple[str, str, str]]:
        return []  # one baked-in artifact: nothing to run beside it

    def close(self) -> None:
        pass


@dataclass
class ModelManager:
    source: ModelSource
    warmup_runs: int = 50
    max_feature_z: float = 10.0
    available_features: Callable[[], set[str] | None] = lambda: None  # keys of the latest feat: hash
    current: OnnxPredictor | None = None
    loaded_at: float | None = None
    refused: dict[str, str] = field(default_factory=dict)  # version -> why; not retried until it changes
    last_error: str | None = None
    shadows: dict[str, OnnxPredictor] = field(default_factory=dict)  # challengers run beside production

    def _check_features(self, meta: ModelMetadata) -> None:
        if meta.horizon_s * 1_000_000 != HORIZON_US:
            raise ArtifactError(f"predicts {meta.horizon_s} s ahead; this system predicts {HORIZON_US // 1_000_000} s")
        computed = {*FEATURE_NAMES, "mid"}
        never = [name for name in meta.feature_names if name not in computed]
        if never:
            raise ArtifactError(f"needs features the hot path does not compute: {never}")
        provided = self.available_features() or computed  # no feat: yet: what every vector carries
        missing = [name for name in meta.feature_names if name not in provided]
        if missing:
            raise FeaturesNotYetProvided(f"the latest feature vector lacks {missing}")

    def _load(self, uri: str, checksum: str) -> OnnxPredictor:
        onnx_bytes, meta = self.source.fetch(uri, checksum)
        self._check_features(meta)
        predictor = OnnxPredictor(OnnxModel(onnx_bytes, meta), self.max_feature_z)
        probe = np.zeros((1, len(meta.feature_names)))
        for _ in range(self.warmup_runs):  # first runs allocate; keep that off the cycle
            predictor.model.predict(probe)
        return predictor

    async def poll_once(self) -> str:
        """One registry check; returns what happened (for logs, metrics and tests)."""
        try:
            found = await asyncio.to_thread(self.source.production)
        except Exception as exc:  # noqa: BLE001 - registry unreachable (any driver's error): keep serving what we have
            self._failed("registry unreachable", exc)
            log.warning("registry unreachable, keeping what serves: %s", exc)
            MODEL_LOADS.labels("registry_error").inc()
            return "registry_error"
        if found is None:
            return "none"
        version, uri, checksum = found
        if self.current is not None and self.current.version == version:
            return "unchanged"
        if version in self.refused:
            return "refused"
        keeping = self.current.version if self.current else "no model"
        try:
            predictor = await asyncio.to_thread(self._load, uri, checksum)
        except FeaturesNotYetProvided as exc:  # a moment without a stream: the next poll tries again
            self.last_error = f"{version}: {exc}"  # our own text: the feature names it waits for
            MODEL_LOADS.labels("features_missing").inc()
            WAITING.set(1)
            log.warning("model %s waits for features (will retry), keeping %s: %s", version, keeping, exc)
            return "features_missing"
        except ArtifactError as exc:  # the artifact itself is wrong: refuse this version for good
            WAITING.set(0)
            self.refused[version] = str(exc)
            MODEL_LOADS.labels("refused").inc()
            log.error("model %s refused, keeping %s: %s", version, keeping, exc)
            return "refused"
        except Exception as exc:  # noqa: BLE001 - storage unreachable etc.: retried at the next poll
            self._failed(f"{version}: artifact not fetched", exc)
            MODEL_LOADS.labels("fetch_error").inc()
            log.warning("model %s could not be fetched (will retry), keeping %s: %s", version, keeping, exc)
            return "fetch_error"
        WAITING.set(0)
        previous = self.current
        self.current = predictor  # the swap: the next cycle uses it, the running one finishes with the old
        self.loaded_at = time.time()
        self.last_error = None
        MODEL_LOADS.labels("loaded").inc()
        if previous is not None:
            with contextlib.suppress(KeyError):
                MODEL_INFO.remove(previous.version)
        MODEL_INFO.labels(version).set(self.loaded_at)
        log.info("model %s loaded (replaces %s)", version, previous.version if previous else "no model")
        return "loaded"

    async def poll_challengers(self) -> str:
        """Load the registry's challengers not loaded yet, drop those no longer listed. A challenger that
        cannot be loaded is skipped (and refused for good if the artifact itself is wrong): it never
        holds up production."""
        try:
            listed = await asyncio.to_thread(self.source.challengers)
        except Exception as exc:  # noqa: BLE001 - registry unreachable: keep the shadows we have
            self._failed("registry unreachable (challengers)", exc)
            log.warning("registry unreachable, keeping the challengers loaded: %s", exc)
            return "registry_error"
        wanted = {
            version: (uri, checksum)
            for version, uri, checksum in listed
            if version not in self.refused and (self.current is None or version != self.current.version)
        }
        for version in [v for v in self.shadows if v not in wanted]:
            del self.shadows[version]
        for version, (uri, checksum) in wanted.items():
            if version in self.shadows:
                continue
            try:
                self.shadows[version] = await asyncio.to_thread(self._load, uri, checksum)
            except ArtifactError as exc:
                self.refused[version] = str(exc)
                MODEL_LOADS.labels("refused").inc()
                log.error("challenger %s refused: %s", version, exc)
            except Exception as exc:  # noqa: BLE001 - features not there yet, storage down: next poll
                MODEL_LOADS.labels("fetch_error").inc()
                log.warning("challenger %s not loaded yet (will retry): %s", version, exc)
        return "ok"

    def _failed(self, what: str, exc: BaseException) -> None:
        """What ``/model`` shows of a storage or registry error: what failed and the exception's type.
        A driver's message can name hosts, users, buckets and paths, so it goes to the log only."""
        self.last_error = f"{what} ({type(exc).__name__})"

    async def run(self, poll_s: float) -> None:
        while True:
            await self.poll_once()
            await self.poll_challengers()
            await asyncio.sleep(poll_s)

    def info(self) -> dict:
        cur = self.current
        meta = cur.model.meta if cur else None
        return {
            "model_version": cur.version if cur else None,
            "model_kind": meta.model_kind if meta else None,
            "feature_names": list(meta.feature_names) if meta else None,
            "sha256": meta.sha256 if meta else None,
            "horizon_s": meta.horizon_s if meta else None,
            "trained_on": {"venue": meta.venue, "data_ranges": meta.data_ranges} if meta else None,
            "validation_metrics": meta.validation_metrics if meta else None,
            "loaded_at": self.loaded_at,
            "refused": self.refused,
            "last_error": self.last_error,
            "challengers": sorted(self.shadows),
        }
