"""Cheap pickling for the objects that cross Flink operators and live in keyed state.

Two costs dominated the Python worker at high rates (py-spy of a catch-up run,
docs/hot_path.md): the ``__getstate__`` that ``dataclass(frozen=True, slots=True)``
generates calls ``dataclasses.fields()`` on every instance, and PyFlink pickles
with cloudpickle, whose Python-level ``reducer_override`` runs once per custom
object. ``fast_state`` replaces the first with an ``attrgetter``; ``StdlibPickled``
makes a container pickle its contents with the C pickler into one ``bytes``, so
cloudpickle sees a single object.
"""

from __future__ import annotations

import pickle
from operator import attrgetter
from typing import Any, TypeVar

T = TypeVar("T", bound=type)


def fast_state(cls: T) -> T:
    """Give a frozen slotted dataclass a tuple state (same fields, same order)."""
    klass: Any = cls  # the class gains methods below: typed as what it is, returned as what it was
    names = tuple(klass.__slots__)
    get = attrgetter(*names)
    if len(names) == 1:

        def getstate(self):
            return (get(self),)
    else:

        def getstate(self):
            return get(self)

    def setstate(self, state: tuple) -> None:
        for name, value in zip(names, state):
            object.__setattr__(self, name, value)  # frozen: the dataclass's own setstate does the same

    klass.__getstate__ = getstate
    klass.__setstate__ = setstate
    return cls


def _restore(cls: Any, blob: bytes):
    obj = cls.__new__(cls)
    obj._restore_state(pickle.loads(blob))
    return obj


class StdlibPickled:
    """Mixin for a slotted class: pickle as ``(class, bytes)``, the bytes the C pickler's
    dump of the slot values in ``__slots__`` order."""

    __slots__ = ()

    def _pickled_state(self) -> tuple:
        slots: tuple[str, ...] = type(self).__slots__
        return tuple(getattr(self, name) for name in slots)

    def _restore_state(self, state: tuple) -> None:
        slots: tuple[str, ...] = type(self).__slots__
        for name, value in zip(slots, state):
            setattr(self, name, value)

    def __reduce__(self):
        return _restore, (type(self), pickle.dumps(self._pickled_state(), protocol=pickle.HIGHEST_PROTOCOL))
