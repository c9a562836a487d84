"""The data lake on S3 (or the local S3 emulator): bucket and parquet I/O. Every key it is
given comes from ``btcpred/udfs/lake_layout.py``, the layout's one owner."""

from __future__ import annotations

import io
import struct

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
from botocore.exceptions import ClientError

from btcpred.common.config import S3Config, aws_client_kwargs

NOT_FOUND_CODES = frozenset({"404", "NoSuchKey", "NotFound", "NoSuchBucket"})


def is_not_found(exc: ClientError) -> bool:
    """True only for a definite "not there" (404, NoSuchKey). A 403 (a policy, a KMS key or
    credentials that rotated), a 503 or a throttle says nothing about whether the object exists:
    callers that took any error for "absent" deleted an archive on a permissions slip (issue 28)."""
    error = exc.response.get("Error", {})
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return str(error.get("Code")) in NOT_FOUND_CODES or status == 404


class Lake:
    """One bucket; every key this project writes goes through here."""

    def __init__(self, cfg: S3Config) -> None:
        self.bucket = cfg.bucket
        self.client = boto3.client("s3", **aws_client_kwargs(cfg))

    def ensure_bucket(self) -> None:
        """Create the bucket if S3 says it does not exist; any other error is raised, not "created"."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            if not is_not_found(exc):
                raise
            self.client.create_bucket(Bucket=self.bucket)

    def put_bytes(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=key, Body=data)

    def get_bytes(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()

    def get_bytes_if_present(self, key: str) -> bytes | None:
        """The object's bytes, or None when S3 says it does not exist; every other error raises."""
        found = self.get_with_etag(key)
        return found[0] if found is not None else None

    def exists(self, key: str) -> bool:
        """False only for a definite 404; a storage error raises (never read as "not there")."""
        try:
            self.client.head_object(Bucket=self.bucket, Key=key)
            return True
        except ClientError as exc:
            if is_not_found(exc):
                return False
            raise

    def get_with_etag(self, key: str) -> tuple[bytes, str] | None:
        """The object's bytes and ETag, None when S3 says it does not exist; every other error raises."""
        try:
            answer = self.client.get_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if is_not_found(exc):
                return None
            raise
        return answer["Body"].read(), answer["ETag"]

    def put_if(self, key: str, data: bytes, etag: str | None) -> str | None:
        """Write only if the object is still at ``etag`` (None: only if it does not exist), S3's conditional
        write (If-Match / If-None-Match); the new ETag, or None when another writer got there first."""
        condition = {"IfMatch": etag} if etag is not None else {"IfNoneMatch": "*"}
        try:
            return self.client.put_object(Bucket=self.bucket, Key=key, Body=data, **condition)["ETag"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in (
                "PreconditionFailed",
                "ConditionalRequestConflict",
            ) or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") in (409, 412):
                return None
            raise

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=key)

    def keys(self, prefix: str) -> list[str]:
        found: list[str] = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            found.extend(obj["Key"] for obj in page.get("Contents", []))
        return sorted(found)

    def put_table(self, key: str, table: pa.Table) -> None:
        sink = io.BytesIO()
        pq.write_table(table, sink, compression="zstd")
        self.put_bytes(key, sink.getvalue())

    def get_table(self, key: str) -> pa.Table:
        return pq.read_table(io.BytesIO(self.get_bytes(key)))

    def column_names(self, key: str) -> list[str]:
        """A parquet object's column names, from its footer alone: two ranged GETs, never the data.

        A parquet file ends with its metadata, the metadata's length (4 bytes) and ``PAR1``; the
        schema reader needs only that tail.
        """
        end = self._range(key, "bytes=-8")
        if len(end) < 8 or end[4:] != b"PAR1":
            raise ValueError(f"{key} is not a parquet file")
        (length,) = struct.unpack("<I", end[:4])
        return pq.read_schema(io.BytesIO(self._range(key, f"bytes=-{length + 8}"))).names

    def _range(self, key: str, byte_range: str) -> bytes:
        return self.client.get_object(Bucket=self.bucket, Key=key, Range=byte_range)["Body"].read()

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def key_of(self, uri: str) -> str:
        prefix = f"s3://{self.bucket}/"
        if not uri.startswith(prefix):
            raise ValueError(f"{uri} is not in bucket {self.bucket}")
        return uri[len(prefix) :]
