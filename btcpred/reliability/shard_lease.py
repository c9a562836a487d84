"""One writer per shard of the SBE archive: a lease in S3, taken and renewed by conditional writes.

Two archivers on one shard would each delete what the other wrote after its checkpoint (the crash
clean-up at a start) and then checkpoint past it: frames lost from bronze for good. The lease
(``bronze/sbe/_leases/{stream}/{shard}.json``: owner and expiry) is taken with If-None-Match (no
lease yet) or If-Match on the ETag read (an expired lease, or our own), and renewed the same way;
S3 refuses the write of whoever comes second, so at most one archiver holds a shard at a time.

A holder renews well before expiry (every third of the TTL) and before every flush; one whose
renewal fails has lost the shard and stops writing at once (``LeaseLost``). Clocks: expiry is
judged on the reader's wall clock, so the TTL must dwarf the clock skew between hosts (minutes
against NTP's milliseconds).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from btcpred.adapters.lake import Lake


class LeaseHeld(RuntimeError):
    """Another archiver holds the shard's lease (a standby waits for it to expire)."""


class LeaseLost(RuntimeError):
    """Our lease was taken over (we were too slow to renew): stop writing the shard."""


class ShardLease:
    def __init__(self, lake: Lake, key: str, owner: str, ttl_s: float = 120.0, clock: Callable[[], float] = time.time) -> None:
        self.lake, self.key, self.owner, self.ttl_s, self.clock = lake, key, owner, ttl_s, clock
        self.etag: str | None = None
        self.renewed_at = float("-inf")

    def _document(self) -> bytes:
        return json.dumps({"owner": self.owner, "expires_at": self.clock() + self.ttl_s}).encode()

    def acquire(self) -> None:
        """Take the lease, or raise ``LeaseHeld`` while another owner's is unexpired."""
        found = self.lake.get_with_etag(self.key)
        if found is not None:
            raw, etag = found
            try:
                doc = json.loads(raw)
                owner, expires_at = doc["owner"], float(doc["expires_at"])
            except (ValueError, KeyError, TypeError):
                owner, expires_at = "?", 0.0  # unreadable: treat as expired, taken by a conditional write
            if owner != self.owner and expires_at > self.clock():
                raise LeaseHeld(f"{self.key} held by {owner} for {expires_at - self.clock():.0f} s more")
        else:
            etag = None
        new_etag = self.lake.put_if(self.key, self._document(), etag)
        if new_etag is None:
            raise LeaseHeld(f"{self.key} taken by another archiver at the same moment")
        self.etag, self.renewed_at = new_etag, self.clock()

    def renew(self, force: bool = False) -> None:
        """Extend our lease (at most every third of the TTL unless ``force``); ``LeaseLost`` if it is not ours."""
        if not force and self.clock() - self.renewed_at < self.ttl_s / 3:
            return
        # past our expiry the write still succeeds if nobody took the lease meanwhile (its ETag is ours)
        new_etag = self.lake.put_if(self.key, self._document(), self.etag)
        if new_etag is None:
            raise LeaseLost(f"{self.key} was taken over: this archiver stops writing the shard")
        self.etag, self.renewed_at = new_etag, self.clock()

    def release(self) -> None:
        """Give the lease up (a clean stop): the next archiver need not wait out the TTL. Best effort:
        if it is not ours any more there is nothing to give up."""
        if self.etag is None:
            return
        self.lake.put_if(self.key, json.dumps({"owner": self.owner, "expires_at": 0.0}).encode(), self.etag)
        self.etag = None
