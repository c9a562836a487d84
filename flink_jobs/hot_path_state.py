"""Where ``SymbolState`` and its companions lived until they moved to the pure core (``udfs/symbol_state.py``).

Keyed state and savepoints name pickled classes by module path: state written before the move
says ``flink_jobs.hot_path_state.SymbolState``. This module keeps that path resolving to the
classes' new home. Remove it only when no savepoint or checkpoint in use, and no blob under
``tests/data/state/``, was written before the move (``tests/unit/flink_jobs/test_state_blob.py``).
"""
from udfs.symbol_state import *  # noqa: F401,F403
from udfs.symbol_state import DecodedBatch, RedisWrite, SymbolState  # noqa: F401 - the names state and bundles carry
