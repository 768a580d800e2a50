"""Zero-copy hand-over of polars columns to LuaJIT through the Arrow C data interface.

``Series.__arrow_c_stream__`` is the public PyCapsule export; ctypes reads the buffer
addresses and LuaJIT's FFI reads the rows in place. This is what keeps marshalling off the
per-event path: no Python object is created per row.
"""

from __future__ import annotations

import ctypes
from typing import Any

import polars as pl


class _Schema(ctypes.Structure):
    pass


_Schema._fields_ = [
    ("format", ctypes.c_char_p),
    ("name", ctypes.c_char_p),
    ("metadata", ctypes.c_char_p),
    ("flags", ctypes.c_int64),
    ("n_children", ctypes.c_int64),
    ("children", ctypes.c_void_p),
    ("dictionary", ctypes.c_void_p),
    ("release", ctypes.CFUNCTYPE(None, ctypes.POINTER(_Schema))),
    ("private_data", ctypes.c_void_p),
]


class _Array(ctypes.Structure):
    pass


_Array._fields_ = [
    ("length", ctypes.c_int64),
    ("null_count", ctypes.c_int64),
    ("offset", ctypes.c_int64),
    ("n_buffers", ctypes.c_int64),
    ("n_children", ctypes.c_int64),
    ("buffers", ctypes.POINTER(ctypes.c_void_p)),
    ("children", ctypes.c_void_p),
    ("dictionary", ctypes.c_void_p),
    ("release", ctypes.CFUNCTYPE(None, ctypes.POINTER(_Array))),
    ("private_data", ctypes.c_void_p),
]


class _Stream(ctypes.Structure):
    pass


_Stream._fields_ = [
    (
        "get_schema",
        ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(_Stream), ctypes.POINTER(_Schema)),
    ),
    ("get_next", ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(_Stream), ctypes.POINTER(_Array))),
    ("get_last_error", ctypes.c_void_p),
    ("release", ctypes.CFUNCTYPE(None, ctypes.POINTER(_Stream))),
    ("private_data", ctypes.c_void_p),
]

_get_pointer = ctypes.pythonapi.PyCapsule_GetPointer
_get_pointer.restype = ctypes.c_void_p
_get_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]


class Exported:
    """One exported column; keep it alive while Lua reads it, then ``close()``."""

    def __init__(self, series: pl.Series) -> None:
        series = series.rechunk()
        self._capsule = series.__arrow_c_stream__()
        stream = ctypes.cast(
            _get_pointer(self._capsule, b"arrow_array_stream"), ctypes.POINTER(_Stream)
        )
        self._schema = _Schema()
        self._array = _Array()
        if stream.contents.get_schema(stream, ctypes.byref(self._schema)) != 0:
            raise RuntimeError("arrow export: get_schema failed")
        if stream.contents.get_next(stream, ctypes.byref(self._array)) != 0:
            raise RuntimeError("arrow export: get_next failed")
        if not self._array.release and len(series):
            raise RuntimeError("arrow export: empty stream")
        self.format = self._schema.format.decode()
        self.length = self._array.length if self._array.release else 0
        self.offset = self._array.offset if self._array.release else 0
        self.null_count = self._array.null_count if self._array.release else 0
        n = self._array.n_buffers if self._array.release else 0
        self.buffers: list[int] = [self._array.buffers[i] or 0 for i in range(n)]

    def describe(self) -> dict[str, Any]:
        """What driver.lua needs: ``views``/``bufs`` for strings, ``data`` for int32."""
        if self.null_count:
            raise ValueError("arrow export: nulls are not expected here")
        if self.format == "vu":
            return {
                "views": self.buffers[1] if self.length else 0,
                "bufs": self.buffers[2:-1],
                "offset": self.offset,
            }
        if self.format == "i":
            return {"data": self.buffers[1] if self.length else 0, "offset": self.offset}
        raise ValueError(f"arrow export: unexpected format {self.format!r}")

    def close(self) -> None:
        if self._array.release:
            self._array.release(ctypes.byref(self._array))
        if self._schema.release:
            self._schema.release(ctypes.byref(self._schema))
        self._capsule = None


# The way back: int32 or float64 values in memory the caller keeps mapped (the worker's shared
# output, see worker.SharedOutput) as a polars Series, imported through the Arrow C data
# interface (``__arrow_c_array__``) instead of a Python sequence (~50 ms for 1.7M values that
# way, ~2 ms this way) and without a copy: the Series borrows the memory. (Arithmetic such as
# ``s * 1.0`` or ``s.clone()`` does not copy either: polars shares the buffer.) So the memory
# must stay mapped until every Series computed from it without a copy is gone; to_frames only
# keeps what gathers, casts to decimals and when/then computed into buffers of their own.
_new_capsule = ctypes.pythonapi.PyCapsule_New
_new_capsule.restype = ctypes.py_object
_new_capsule.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]
_SchemaRelease = ctypes.CFUNCTYPE(None, ctypes.POINTER(_Schema))
_ArrayRelease = ctypes.CFUNCTYPE(None, ctypes.POINTER(_Array))


@_SchemaRelease
def _release_schema(schema: Any) -> None:
    schema.contents.release = _SchemaRelease()


@_ArrayRelease
def _release_array(array: Any) -> None:
    array.contents.release = _ArrayRelease()


class _Borrowed:
    """One primitive Arrow array over memory at ``address``; valid while that memory lives."""

    def __init__(self, address: int, fmt: bytes, length: int) -> None:
        self._schema = _Schema(format=fmt, name=b"", flags=2, release=_release_schema)
        self._buffers = (ctypes.c_void_p * 2)(None, address)
        self._array = _Array(length=length, n_buffers=2, buffers=self._buffers)
        self._array.release = _release_array

    def __arrow_c_array__(self, requested_schema: Any = None) -> tuple[Any, Any]:
        return (
            _new_capsule(ctypes.addressof(self._schema), b"arrow_schema", None),
            _new_capsule(ctypes.addressof(self._array), b"arrow_array", None),
        )


_FORMATS = {pl.Int32: (b"i", 4), pl.Float64: (b"g", 8)}


def borrowed_series(address: int, nbytes: int, dtype: type[pl.DataType]) -> pl.Series:
    """Packed native Int32 or Float64 values at ``address`` as a Series over that memory (no
    copy; valid only while the memory stays mapped, see above)."""
    fmt, size = _FORMATS[dtype]
    if nbytes < size:
        return pl.Series([], dtype=dtype)
    return pl.Series(_Borrowed(address, fmt, nbytes // size))
