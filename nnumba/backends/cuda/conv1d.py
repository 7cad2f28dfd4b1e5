"""A 1-D convolution, channels-last, as CUDA kernels with host wrappers.

Same names, arguments and semantics as ``backends.reference.conv1d`` (the
geometry, layout and formulas are in its docstring):

    forward:   patches = im2col(x);  y = patches @ w + b
    backward:  dw = patches^T dy;  db = column sums of dy;
               dpatches = dy w^T;  dx = col2im(dpatches)   (unless dx is empty)

im2col and col2im are grid-stride kernels with one thread per output element:
an im2col thread copies one element of ``patches`` (consecutive threads write
consecutive columns, and inside a tap read consecutive channels of x), a col2im
thread gathers one element of dx, adding its terms in increasing output step t
(a fixed order: no atomics, the same bits every run, and the same bits as the
cpu backend's col2im). The products are ``dense.gemm`` (the tiled kernel, with
the bias added in its epilogue), and db is ``dense.column_sums``. y and dy are
viewed as (n L_out, C_out) with a reshape (the same device memory).

All arguments are device arrays (b, db 1-D, the others 2-D, C-contiguous);
empty arrays are handled here and never reach a kernel.
"""
import numpy as np
from numba import cuda

from . import _config as cfg
from .dense import column_sums, gemm
from .memory import scratch


def output_steps(steps_in, k, stride, pad):
    """L_out = (L_in + 2 p - k) // s + 1."""
    return (steps_in + 2 * pad - k) // stride + 1


@cuda.jit(**cfg.kernel())
def im2col_kernel(x, patches, steps_in, c_in, stride, pad, l_out):
    """patches[r L_out + t, tap C_in + c] = x[r, (t s - p + tap) C_in + c], 0 outside [0, L_in)."""
    rows, width = patches.shape
    zero = patches.dtype.type(0)
    for e in range(cuda.grid(1), rows * width, cuda.gridsize(1)):
        row = e // width
        col = e - row * width
        r = row // l_out
        t = row - r * l_out
        tap = col // c_in
        pos = t * stride - pad + tap
        if pos >= 0 and pos < steps_in:
            patches[row, col] = x[r, pos * c_in + col - tap * c_in]
        else:
            patches[row, col] = zero


@cuda.jit(**cfg.kernel())
def col2im_kernel(dpatches, dx, steps_in, c_in, k, stride, pad, l_out):
    """dx[r, pos C_in + c] = sum over t (increasing), tap = pos + p - t s in [0, k), of
    dpatches[r L_out + t, tap C_in + c]."""
    n, width = dx.shape
    zero = dx.dtype.type(0)
    for e in range(cuda.grid(1), n * width, cuda.gridsize(1)):
        r = e // width
        j = e - r * width
        pos = j // c_in
        c = j - pos * c_in
        q = pos + pad                      # the step in the padded input
        t_hi = min(l_out - 1, q // stride)  # t s <= q and t s > q - k, 0 <= t < L_out
        t_lo = 0
        if q - k + 1 > 0:
            t_lo = (q - k + stride) // stride
        acc = zero
        for t in range(t_lo, t_hi + 1):
            acc += dpatches[r * l_out + t, (q - t * stride) * c_in + c]
        dx[r, j] = acc


def _fill(a, value=0.0):
    """a[...] = value, for a device array (nothing for an empty one)."""
    if a.size:
        a.copy_to_device(np.full(a.shape, value, a.dtype))


def im2col(x, patches, steps_in, c_in, k, stride, pad):
    """patches[r L_out + t, tap C_in + c] = x[r, (t s - p + tap) C_in + c], 0 outside [0, L_in).

    x: (n, L_in C_in); patches: (n L_out, k C_in).
    """
    if patches.size == 0:
        return
    if x.size == 0:   # L_in = 0: every tap is padding (the kernel never reads x)
        x = scratch("no_input", (1, 1), patches.dtype)
    l_out = output_steps(steps_in, k, stride, pad)
    im2col_kernel[cfg.grid(patches.size), cfg.TPB](x, patches, int(steps_in), int(c_in),
                                                     int(stride), int(pad), int(l_out))


def col2im(dpatches, dx, steps_in, c_in, k, stride, pad):
    """dx[r, pos C_in + c] = sum over t (increasing), tap = pos + p - t s in [0, k), of
    dpatches[r L_out + t, tap C_in + c]; 0 where no output step reads pos.

    dpatches: (n L_out, k C_in); dx: (n, L_in C_in).
    """
    if dx.size == 0:
        return
    l_out = output_steps(steps_in, k, stride, pad)
    col2im_kernel[cfg.grid(dx.size), cfg.TPB](dpatches, dx, int(steps_in), int(c_in), int(k),
                                               int(stride), int(pad), int(l_out))


def conv1d_forward(x, w, b, patches, y, steps_in, c_in, k, stride, pad):
    """patches = im2col(x); y = patches @ w + b (y viewed as (n L_out, C_out)).

    x: (n, L_in C_in), w: (k C_in, C_out), b: (C_out,) or empty, patches: (n L_out, k C_in),
    y: (n, L_out C_out).
    """
    im2col(x, patches, steps_in, c_in, k, stride, pad)
    if y.size == 0:
        return
    y2 = y.reshape(patches.shape[0], w.shape[1])
    if patches.size == 0:   # k C_in = 0: an empty sum, y = b
        bias = b.copy_to_host() if b.shape[0] else np.zeros(w.shape[1], y.dtype)
        y2.copy_to_device(np.ascontiguousarray(np.broadcast_to(bias, y2.shape), y.dtype))
        return
    gemm(patches, w, y2, bias=b)


def conv1d_backward(patches, w, dy, dw, db, dpatches, dx, steps_in, c_in, k, stride, pad):
    """dw = patches^T dy; db = column sums of dy; dpatches = dy w^T and dx = col2im(dpatches)
    unless dx is empty (dy viewed as (n L_out, C_out)).

    patches: (n L_out, k C_in), w: (k C_in, C_out), dy: (n, L_out C_out), dw like w, db like b,
    dpatches like patches, dx: (n, L_in C_in) or empty.
    """
    want_dx = dx.shape[0] != 0 and dx.size != 0
    if dy.size == 0 or patches.size == 0:
        # no rows, no output channels or no input columns: every sum is empty
        _fill(dw)
        _fill(db)
        if want_dx:
            _fill(dpatches)
            _fill(dx)
        return
    dy2 = dy.reshape(patches.shape[0], w.shape[1])
    gemm(patches, dy2, dw, a_trans=True)
    column_sums(dy2, db)   # does nothing for an empty db
    if not want_dx:
        return
    gemm(dy2, w, dpatches, b_trans=True)
    col2im(dpatches, dx, steps_in, c_in, k, stride, pad)
