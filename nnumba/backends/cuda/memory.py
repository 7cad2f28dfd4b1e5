"""Where the cuda backend keeps its arrays: numba device arrays in GPU memory.

The same functions as ``backends.reference.memory``, so the model code
allocates, uploads and downloads without knowing where arrays live; every
transfer between host and device happens here or in a kernel module's host
wrapper. Zero-size arrays work (numba gives them a null pointer; no kernel is
ever launched over them).

Besides the public functions, ``flat`` views a contiguous device array as 1-D, and
``scratch`` hands out cached device buffers for the kernels' intermediate
results (partial sums, split-K slices), so no allocation happens per call.
"""
import numpy as np
from numba import cuda


def _is_device(a):
    return hasattr(a, "copy_to_host")


def empty(shape, dtype):
    """A new uninitialised device array."""
    return cuda.device_array(shape, np.dtype(dtype))


def zeros(shape, dtype):
    """A new zero-filled device array."""
    return cuda.to_device(np.zeros(shape, np.dtype(dtype)))


def zeros_many(specs):
    """New zero-filled device arrays of the (shape, dtype) pairs ``specs``."""
    return [zeros(shape, dtype) for shape, dtype in specs]


def to_backend(a):
    """A device copy of the host array a (C-contiguous)."""
    if _is_device(a):
        out = cuda.device_array(a.shape, a.dtype)
        if a.size:
            out.copy_to_device(a)
        return out
    return cuda.to_device(np.ascontiguousarray(a))


def asarray(a):
    """a as a device array: device arrays are returned as they are, host arrays uploaded."""
    if _is_device(a):
        return a
    return cuda.to_device(np.ascontiguousarray(a))


def to_host(a):
    """A host (NumPy) copy of the device array a."""
    if _is_device(a):
        return a.copy_to_host()
    return np.array(a, copy=True)


def copy_from_host(dst, src):
    """dst[...] = src, for a device array dst and a host array src of the same shape."""
    src = np.ascontiguousarray(src, dtype=dst.dtype)
    if src.shape != tuple(dst.shape):
        raise ValueError(f"cannot copy an array of shape {src.shape} into one of shape {dst.shape}")
    if src.size:
        dst.copy_to_device(src)


def copy_into(dst, src):
    """dst[...] = src, for two device arrays of the same shape (a copy on the device)."""
    if dst.size:
        dst.copy_to_device(src)


def flat(a):
    """The contiguous device array a as a 1-D view (no copy)."""
    return a if a.ndim == 1 else a.reshape(a.size)


_scratch = {}


def scratch(name, shape, dtype):
    """A device buffer kept between calls, one per (name, shape, dtype); contents undefined.

    Kernels run in launch order on one stream, so reusing a buffer from one call
    to the next is safe.
    """
    key = (name, tuple(int(s) for s in np.atleast_1d(shape)), np.dtype(dtype))
    buf = _scratch.get(key)
    if buf is None:
        if len(_scratch) > 64:
            _scratch.clear()
        buf = _scratch[key] = cuda.device_array(key[1], key[2])
    return buf
