"""1-D pooling over the steps of a channels-last sequence, as CUDA kernels.

Same names and semantics as ``backends.reference.pool1d`` (formulas and the
layout there): x (n, L_in C) holds sample r's step p, channel c at column
p C + c; windows of k = ``pool`` steps every s = ``stride`` steps, no padding,
L_out = (L_in - k) // s + 1.

Each kernel is a grid-stride loop over flat views of its arrays, one element
per iteration: an output element in the forward passes (its window read in
increasing j), an input element in the backward passes, which gather the
windows t that contain that step in increasing t. So no two threads write one
element (no atomics, no scatter race) and every sum has the reference's order:
the results are the reference's bits. Consecutive threads take consecutive
channels, so a warp's reads and writes coalesce. Sums are in the data's dtype
(``one`` / ``kf`` typed from the output array); the host wrappers take device
arrays and launch nothing over empty ones.
"""
from numba import cuda

from . import _config as cfg
from .memory import flat


@cuda.jit(**cfg.DEVICE)
def _window_range(p, l_out, pool, stride):
    """(t_lo, t_hi + 1): the windows t that contain input step p."""
    t_lo = 0
    if p >= pool - 1:
        t_lo = (p - pool + stride) // stride   # ceil((p - k + 1) / s), p - k + 1 >= 0
    t_hi = min(l_out - 1, p // stride)
    return t_lo, t_hi + 1


@cuda.jit(**cfg.kernel())
def maxpool1d_forward_kernel(x, y, argmax, steps_in, c, pool, stride, l_out):
    """y[e], argmax[e] for output element e = (r, t, ch) of flat (n L_out C) arrays."""
    per_row = l_out * c
    for e in range(cuda.grid(1), y.shape[0], cuda.gridsize(1)):
        r = e // per_row
        rest = e - r * per_row
        t = rest // c
        ch = rest - t * c
        p0 = t * stride
        base = r * steps_in * c + ch
        best = x[base + p0 * c]
        arg = p0
        for j in range(1, pool):
            v = x[base + (p0 + j) * c]
            if v > best or (v != v and best == best):
                best = v
                arg = p0 + j
        y[e] = best
        argmax[e] = arg


@cuda.jit(**cfg.kernel())
def maxpool1d_backward_kernel(dy, argmax, dx, steps_in, c, pool, stride, l_out):
    """dx[e] for input element e = (r, p, ch): dy of the windows (increasing t) whose argmax is p."""
    per_row = steps_in * c
    zero = dx.dtype.type(0)
    for e in range(cuda.grid(1), dx.shape[0], cuda.gridsize(1)):
        r = e // per_row
        rest = e - r * per_row
        p = rest // c
        ch = rest - p * c
        t_lo, t_end = _window_range(p, l_out, pool, stride)
        base = r * l_out * c + ch
        acc = zero
        for t in range(t_lo, t_end):
            i = base + t * c
            if argmax[i] == p:   # skipping adds no +0: acc starts at +0, so is never -0
                acc += dy[i]
        dx[e] = acc


@cuda.jit(**cfg.kernel())
def avgpool1d_forward_kernel(x, y, steps_in, c, pool, stride, l_out):
    """y[e] = (sum over its window, increasing j) / k, for output element e = (r, t, ch)."""
    per_row = l_out * c
    kf = y.dtype.type(pool)
    for e in range(cuda.grid(1), y.shape[0], cuda.gridsize(1)):
        r = e // per_row
        rest = e - r * per_row
        t = rest // c
        ch = rest - t * c
        i = r * steps_in * c + t * stride * c + ch
        acc = x[i]
        for j in range(1, pool):
            acc += x[i + j * c]
        y[e] = acc / kf


@cuda.jit(**cfg.kernel())
def avgpool1d_backward_kernel(dy, dx, steps_in, c, pool, stride, l_out):
    """dx[e] = sum over the windows t containing step p (increasing t) of dy / k, e = (r, p, ch)."""
    per_row = steps_in * c
    kf = dx.dtype.type(pool)
    zero = dx.dtype.type(0)
    for e in range(cuda.grid(1), dx.shape[0], cuda.gridsize(1)):
        r = e // per_row
        rest = e - r * per_row
        p = rest // c
        ch = rest - p * c
        t_lo, t_end = _window_range(p, l_out, pool, stride)
        base = r * l_out * c + ch
        acc = zero
        for t in range(t_lo, t_end):
            acc += dy[base + t * c] / kf
        dx[e] = acc


@cuda.jit(**cfg.kernel())
def global_avgpool1d_forward_kernel(x, y, steps, c):
    """y[e] = (sum over steps, increasing) / L for output element e = (r, ch) of flat (n C) y."""
    lf = y.dtype.type(steps)
    for e in range(cuda.grid(1), y.shape[0], cuda.gridsize(1)):
        r = e // c
        ch = e - r * c
        i = r * steps * c + ch
        acc = x[i]
        for p in range(1, steps):
            acc += x[i + p * c]
        y[e] = acc / lf


@cuda.jit(**cfg.kernel())
def global_avgpool1d_backward_kernel(dy, dx, steps, c):
    """dx[e] = dy[r, ch] / L for input element e = (r, p, ch) of flat (n L C) dx."""
    per_row = steps * c
    lf = dx.dtype.type(steps)
    for e in range(cuda.grid(1), dx.shape[0], cuda.gridsize(1)):
        r = e // per_row
        ch = e - r * per_row
        ch = ch - (ch // c) * c
        dx[e] = dy[r * c + ch] / lf


def _out_steps(steps_in, pool, stride):
    return (steps_in - pool) // stride + 1


def maxpool1d_forward(x, y, argmax, steps_in, c, pool, stride):
    """y = max over each window, argmax = its input step (first on ties; NaN wins, first NaN).

    x: (n, L_in C); y, argmax (int64): (n, L_out C) device arrays.
    """
    if y.size == 0:
        return
    steps_in, c, pool, stride = int(steps_in), int(c), int(pool), int(stride)
    maxpool1d_forward_kernel[cfg.grid(y.size), cfg.TPB](
        flat(x), flat(y), flat(argmax), steps_in, c, pool, stride,
        _out_steps(steps_in, pool, stride))


def maxpool1d_backward(dy, argmax, dx, steps_in, c, pool, stride):
    """dx[r, p C + c] = sum of dy[r, t C + c] over the windows t (increasing) whose argmax is p.

    dy, argmax: (n, L_out C); dx: (n, L_in C) device arrays.
    """
    if dx.size == 0:
        return
    steps_in, c, pool, stride = int(steps_in), int(c), int(pool), int(stride)
    maxpool1d_backward_kernel[cfg.grid(dx.size), cfg.TPB](
        flat(dy), flat(argmax), flat(dx), steps_in, c, pool, stride,
        _out_steps(steps_in, pool, stride))


def avgpool1d_forward(x, y, steps_in, c, pool, stride):
    """y[r, t C + c] = (sum_{j < k}, in increasing j, of x[r, (t s + j) C + c]) / k.

    x: (n, L_in C); y: (n, L_out C) device arrays.
    """
    if y.size == 0:
        return
    steps_in, c, pool, stride = int(steps_in), int(c), int(pool), int(stride)
    avgpool1d_forward_kernel[cfg.grid(y.size), cfg.TPB](
        flat(x), flat(y), steps_in, c, pool, stride, _out_steps(steps_in, pool, stride))


def avgpool1d_backward(dy, dx, steps_in, c, pool, stride):
    """dx[r, p C + c] = sum over the windows t containing p (increasing t) of dy[r, t C + c] / k.

    dy: (n, L_out C); dx: (n, L_in C) device arrays.
    """
    if dx.size == 0:
        return
    steps_in, c, pool, stride = int(steps_in), int(c), int(pool), int(stride)
    avgpool1d_backward_kernel[cfg.grid(dx.size), cfg.TPB](
        flat(dy), flat(dx), steps_in, c, pool, stride, _out_steps(steps_in, pool, stride))


def global_avgpool1d_forward(x, y, steps, c):
    """y[r, c] = (sum over steps p = 0, 1, ..., L - 1 of x[r, p C + c]) / L.

    x: (n, L C); y: (n, C) device arrays.
    """
    if y.size == 0:
        return
    global_avgpool1d_forward_kernel[cfg.grid(y.size), cfg.TPB](flat(x), flat(y), int(steps), int(c))


def global_avgpool1d_backward(dy, dx, steps, c):
    """dx[r, p C + c] = dy[r, c] / L for every step p.

    dy: (n, C); dx: (n, L C) device arrays.
    """
    if dx.size == 0:
        return
    global_avgpool1d_backward_kernel[cfg.grid(dx.size), cfg.TPB](flat(dy), flat(dx), int(steps),
                                                                 int(c))
