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


def empty(shape, dtype):
    """A new uninitialised array whose first element is ALIGNMENT-byte aligned.

    (Plain Python arithmetic and the array interface's address: np.prod and .ctypes cost
    about 15 us a call, and a model's first fit makes a dozen arrays.)"""
    dtype = np.dtype(dtype)
    shape = (int(shape),) if isinstance(shape, (int, np.integer)) else tuple(map(int, shape))
    nbytes = math.prod(shape) * dtype.itemsize
    raw = np.empty(nbytes + ALIGNMENT, np.uint8)
    start = -raw.__array_interface__["data"][0] % ALIGNMENT
    return raw[start:start + nbytes].view(dtype).reshape(shape)


def zeros(shape, dtype):
    """A new zero-filled array whose first element is ALIGNMENT-byte aligned."""
    out = empty(shape, dtype)
    out[...] = 0
    return out


def zeros_many(specs):
    """New zero-filled arrays of the (shape, dtype) pairs ``specs``, each ALIGNMENT-byte
    aligned, carved out of one allocation: a workspace's dozen arrays cost one
    allocation and one zeroing pass instead of a dozen of each (about 4 us each, a
    tenth of a tiny model's fit)."""
    layout, nbytes = [], 0
    for shape, dtype in specs:
        dtype = np.dtype(dtype)
        shape = (int(shape),) if isinstance(shape, (int, np.integer)) else tuple(map(int, shape))
        size = math.prod(shape) * dtype.itemsize
        layout.append((nbytes, size, shape, dtype))
        nbytes += -(-size // ALIGNMENT) * ALIGNMENT
    raw = np.zeros(nbytes + ALIGNMENT, np.uint8)
    start = -raw.__array_interface__["data"][0] % ALIGNMENT
    return [raw[start + at:start + at + size].view(dtype).reshape(shape)
            for at, size, shape, dtype in layout]
