"""The cpu backend keeps its arrays in host memory, as the reference backend does, with
every new array starting on a 64-byte boundary.

NumPy's large allocations start 16 bytes past a page (malloc's header), so every
512-bit load of a row crosses two cache lines. The register-tiled products
(``_tiles``) load whole 64-byte vectors: measured, an LSTM(32, 128) epoch at batch 32
took 330-415 ms on its own buffers and 400-616 ms on fresh NumPy ones, whose offset
within a line moves from allocation to allocation.
"""
import math

import numpy as np

from ..reference.memory import asarray, copy_from_host, copy_into, to_backend, to_host

__all__ = ["empty", "zeros", "zeros_many", "to_backend", "asarray", "to_host", "copy_from_host",
           "copy_into"]

ALIGNMENT = 64


def _shape(shape):
    """shape as a tuple of ints (plain Python: np.prod and .ctypes cost about 15 us a
    call, and a model's first fit makes a dozen arrays)."""
    return (int(shape),) if isinstance(shape, (int, np.integer)) else tuple(map(int, shape))


def _aligned_bytes(nbytes, zeroed):
    """A new uint8 array of nbytes whose first byte is ALIGNMENT-byte aligned."""
    raw = (np.zeros if zeroed else np.empty)(nbytes + ALIGNMENT, np.uint8)
    start = -raw.__array_interface__["data"][0] % ALIGNMENT
    return raw[start:start + nbytes]


def empty(shape, dtype):
    """A new uninitialised array whose first element is ALIGNMENT-byte aligned."""
    dtype, shape = np.dtype(dtype), _shape(shape)
    return _aligned_bytes(math.prod(shape) * dtype.itemsize, False).view(dtype).reshape(shape)


def zeros(shape, dtype):
    """A new zero-filled array whose first element is ALIGNMENT-byte aligned."""
    return zeros_many(((shape, dtype),))[0]


def zeros_many(specs):
    """New zero-filled arrays of the (shape, dtype) pairs ``specs``, each ALIGNMENT-byte
    aligned, carved out of one allocation: a workspace's dozen arrays cost one
    allocation and one zeroing pass instead of a dozen of each (about 4 us each, a
    tenth of a tiny model's fit)."""
    layout, nbytes = [], 0
    for shape, dtype in specs:
        dtype, shape = np.dtype(dtype), _shape(shape)
        size = math.prod(shape) * dtype.itemsize
        layout.append((nbytes, size, shape, dtype))
        nbytes += -(-size // ALIGNMENT) * ALIGNMENT
    raw = _aligned_bytes(nbytes, True)
    return [raw[at:at + size].view(dtype).reshape(shape) for at, size, shape, dtype in layout]
