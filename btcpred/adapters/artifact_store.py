"""Model artifacts in the lake (``gold/model_artifacts/{version}/``) or a local directory."""

from __future__ import annotations

from pathlib import Path

from btcpred.adapters.lake import Lake
from btcpred.common.model_artifact import METADATA_FILE, ONNX_FILE, ArtifactError, ModelMetadata, read_local, verify
from btcpred.udfs.lake_layout import artifact_prefix


def upload(lake: Lake, onnx_bytes: bytes, meta: ModelMetadata) -> str:
    """Store both files; returns the artifact URI the registry records."""
    prefix = artifact_prefix(meta.model_version)
    lake.put_bytes(f"{prefix}/{ONNX_FILE}", onnx_bytes)
    lake.put_bytes(f"{prefix}/{METADATA_FILE}", meta.model_dump_json(indent=2).encode())
    return lake.uri(prefix)


def fetch(lake: Lake, artifact_uri: str, expected_sha256: str | None = None) -> tuple[bytes, ModelMetadata]:
    """Both files from ``artifact_uri``, checksum-verified (also against the registry's copy when given)."""
    prefix = lake.key_of(artifact_uri)
    onnx_bytes = lake.get_bytes(f"{prefix}/{ONNX_FILE}")
    meta = verify(onnx_bytes, lake.get_bytes(f"{prefix}/{METADATA_FILE}"))
    if expected_sha256 is not None and meta.sha256 != expected_sha256:
        raise ArtifactError(f"{meta.model_version}: registry checksum {expected_sha256[:12]} != artifact {meta.sha256[:12]}")
    return onnx_bytes, meta


def load_any(reference: str, lake: Lake | None = None, engine=None) -> tuple[bytes, ModelMetadata]:
    """A local artifact directory, an ``s3://`` URI, or a registered model version."""
    path = Path(reference)
    if path.is_dir():
        return read_local(path)
    if lake is None:
        raise ArtifactError(f"{reference!r} is not a local artifact directory and no lake is configured")
    if reference.startswith("s3://"):
        return fetch(lake, reference)
    from btcpred.adapters import registry

    model = registry.get(engine, reference)
    return fetch(lake, model.artifact_uri, model.checksum_sha256)
