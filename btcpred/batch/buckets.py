"""The buckets a deployment writes before anything else does: the lake and the Flink state bucket.

    python -m btcpred.batch.buckets        (docker-compose's one-shot ``s3-init`` service; the local stack)

On AWS the CloudFormation template creates them; against an S3 emulator (local, compose) nothing
else would, and a Flink job whose checkpoint bucket is missing fails its first checkpoint.
"""

from __future__ import annotations

import argparse
import logging

import boto3

from btcpred.common import entry_point
from btcpred.common.config import FlinkJobConfig, Settings, aws_client_kwargs, load_settings

log = logging.getLogger(__name__)
S3_SCHEMES = ("s3://", "s3p://", "s3a://")


def state_buckets(flink: FlinkJobConfig) -> set[str]:
    """Buckets of the Flink job's checkpoints and savepoints, when they are on S3."""
    return {
        d.split("://", 1)[1].split("/", 1)[0]
        for d in (flink.checkpoint_dir, flink.savepoint_dir)
        if d and d.startswith(S3_SCHEMES)
    }


def ensure_buckets(settings: Settings) -> list[str]:
    """Create the lake and state buckets that do not exist yet; returns the ones created."""
    client = boto3.client("s3", **aws_client_kwargs(settings.s3))
    existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
    created = sorted({settings.s3.bucket, *state_buckets(settings.flink)} - existing)
    for bucket in created:
        client.create_bucket(Bucket=bucket)
        log.info("created bucket %s", bucket)
    return created


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Create the lake and Flink state buckets if missing")
    entry_point.add_config(parser)
    args = parser.parse_args(argv)
    entry_point.setup_logging()
    print(f"buckets created: {ensure_buckets(load_settings(args.config)) or 'none (all exist)'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
