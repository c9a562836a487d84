"""Least-privilege Redis ACL users, one per service role: the single source of their rules.

The local stack writes them to an ACL file for its redis-server; the same strings are
ElastiCache RBAC access strings in production. Key patterns name key prefixes; every
key of a symbol carries the ``{symbol}`` hash tag after the prefix (``ob:{BTCUSDT}``).

- hotpath (the Flink job): reads and writes the hot state and its side outputs, with
  MULTI/EXEC and the writer's Lua swap; nothing outside those prefixes.
- inference: reads the hot state; its one write is appending predictions to ``pred:``.
- reanchor: reads the book, consumes ``gaps:`` as a consumer group, holds ``reanchor:``
  (the lock inference checks) and logs to ``reanchors:``.
- trainer (the retraining job): reads what inference published (``pred:``: predictions, the online
  contest's decisions) to archive them in PostgreSQL and S3; nothing else, and no write.
- the REST poller and the archiver have no Redis user at all.

Every user loses ``@dangerous`` (FLUSHALL, KEYS, CONFIG, DEBUG, ...) and pub/sub.
"""

from __future__ import annotations

import hashlib

from btcpred.common.config import REDIS_ROLES, RedisConfig, RedisRole

# commands a client needs to connect and follow a cluster's slot map
_CONNECT = "+ping +cluster|slots +cluster|shards +cluster|nodes +readonly +asking"

ACL_RULES: dict[RedisRole, str] = {
    "hotpath": "resetkeys ~ob:* ~tr:* ~feat:* ~feathist:* ~gaps:* ~late:* ~drift:* ~dlq:* resetchannels "
    f"-@all +@read +@write +@transaction +eval +evalsha -@dangerous {_CONNECT}",
    "inference": "resetkeys %R~ob:* %R~tr:* %R~feat:* %R~feathist:* %R~reanchor:* ~pred:* resetchannels "
    f"-@all +@read +xadd -@dangerous {_CONNECT}",
    "reanchor": "resetkeys %R~ob:* ~gaps:* ~reanchor:* ~reanchors:* resetchannels "
    f"-@all +@read +@write +@stream -@dangerous {_CONNECT}",
    "trainer": f"resetkeys %R~pred:* resetchannels -@all +@read -@dangerous {_CONNECT}",
}


def acl_file_text(cfg: RedisConfig, hashed: bool = False) -> str:
    """An ACL file for redis-server (``aclfile``): the admin as ``default``, then one user per role.

    ``hashed`` writes each password as its SHA-256 (``#<hex>``), so the file can be mounted into
    a container without holding a password itself (docker-compose's Redis).
    """

    def password(secret) -> str:
        value = secret.get_secret_value()
        return f"#{hashlib.sha256(value.encode()).hexdigest()}" if hashed else f">{value}"

    lines = [f"user default on {password(cfg.password)} ~* &* +@all" if cfg.password else "user default on nopass ~* &* +@all"]
    for role in REDIS_ROLES:
        if role in cfg.users:
            lines.append(f"user {role} on {password(cfg.users[role])} {ACL_RULES[role]}")
    return "\n".join(lines) + "\n"
