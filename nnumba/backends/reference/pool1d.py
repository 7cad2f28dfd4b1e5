"""1-D pooling over the steps of a channels-last sequence, in NumPy.

Layout: a batch of n sequences of L_in steps and C channels is the 2-D array
x (n, L_in * C), row-major, sample r's element (step p, channel c) at column
p * C + c (so it is the same memory as (n, L_in, C)). Windows of ``pool`` = k
steps start every ``stride`` = s steps, no padding:

    L_out = (L_in - k) // s + 1          (>= 1, checked by the caller)
    window t covers steps t s, ..., t s + k - 1;  y (n, L_out * C)

Max pooling (torch.nn.functional.max_pool1d with return_indices):

    y[r, t C + c]      = max_{j < k} x[r, (t s + j) C + c]
    argmax[r, t C + c] = the input STEP t s + j of that maximum (int64): the first
                         one on ties; if the window holds a NaN, y is NaN and
                         argmax is the step of its first NaN (as np.argmax)
    dx[r, p C + c]     = sum over the windows t containing p with
                         argmax[r, t C + c] == p of dy[r, t C + c]

Average pooling (torch avg_pool1d, no padding), and its global form over all steps:

    y[r, t C + c]  = (sum_{j < k} x[r, (t s + j) C + c]) / k
    dx[r, p C + c] = sum over the windows t containing p of dy[r, t C + c] / k
    global:  y[r, c] = (sum_{p < L} x[r, p C + c]) / L,   dx[r, p C + c] = dy[r, c] / L

Fixed orders, which the cpu and cuda twins follow to the same bits: window sums
add j = 0, 1, ..., k - 1 (global: steps 0, 1, ..., L - 1) in the data's dtype
and then divide once; backward passes gather, for each input element, the
windows that contain it in increasing t, starting from 0 (dx of a step that no
window covers is 0). The windows containing step p are t_lo <= t <= t_hi with
t_lo = max(0, ceil((p - k + 1) / s)) and t_hi = min(L_out - 1, floor(p / s)).
"""
import numpy as np


def out_steps(steps_in, pool, stride):
    """L_out = (L_in - k) // s + 1: the number of windows."""
    return (steps_in - pool) // stride + 1


def _windows(x, steps_in, c, pool, stride):
    """A read-only view (n, L_out, C, k) of x: [r, t, ch, j] = x[r, (t s + j) C + ch]."""
    x3 = x.reshape(x.shape[0], steps_in, c)
    windows = np.lib.stride_tricks.sliding_window_view(x3, pool, axis=1)  # (n, L_in - k + 1, C, k)
    return windows[:, ::stride][:, :out_steps(steps_in, pool, stride)]


def maxpool1d_forward(x, y, argmax, steps_in, c, pool, stride):
    """y = max over each window, argmax = the input step of that max (first on ties, first NaN).

    x: (n, L_in C); y: (n, L_out C); argmax: (n, L_out C) int64.
    """
    windows = _windows(x, steps_in, c, pool, stride)
    j = np.argmax(windows, axis=-1)   # first maximum, or the first NaN: NaN counts as largest
    y.reshape(windows.shape[:3])[...] = np.take_along_axis(windows, j[..., None], axis=-1)[..., 0]
    starts = np.arange(windows.shape[1], dtype=np.int64)[None, :, None] * stride
    argmax.reshape(j.shape)[...] = starts + j


def _gather_windows(dx3, grad, pool, stride):
    """dx3[:, t s + j, :] += grad[:, t, :, j] for every window t and offset j, adding the
    windows that contain each step in increasing t (j from k - 1 down to 0)."""
    l_out = grad.shape[1]
    for j in range(pool - 1, -1, -1):
        dx3[:, j:j + (l_out - 1) * stride + 1:stride, :] += grad[:, :, :, j]


def maxpool1d_backward(dy, argmax, dx, steps_in, c, pool, stride):
    """dx[r, p C + c] = sum of dy[r, t C + c] over the windows t (increasing) whose argmax is p.

    dy, argmax: (n, L_out C); dx: (n, L_in C).
    """
    n = dx.shape[0]
    l_out = out_steps(steps_in, pool, stride)
    dy3 = dy.reshape(n, l_out, c)
    am3 = argmax.reshape(n, l_out, c)
    starts = np.arange(l_out, dtype=np.int64)[None, :, None] * stride
    # grad[r, t, ch, j]: the share of window t's gradient that goes to its step t s + j
    hit = (am3 - starts)[..., None] == np.arange(pool)
    grad = np.where(hit, dy3[..., None], np.zeros((), dy.dtype))
    dx3 = np.zeros((n, steps_in, c), dx.dtype)
    _gather_windows(dx3, grad, pool, stride)
    dx.reshape(n, steps_in, c)[...] = dx3


def avgpool1d_forward(x, y, steps_in, c, pool, stride):
    """y[r, t C + c] = (sum_{j < k}, in increasing j, of x[r, (t s + j) C + c]) / k.

    x: (n, L_in C); y: (n, L_out C).
    """
    windows = _windows(x, steps_in, c, pool, stride)
    acc = windows[..., 0].copy()
    for j in range(1, pool):
        acc += windows[..., j]
    y.reshape(acc.shape)[...] = acc / y.dtype.type(pool)


def avgpool1d_backward(dy, dx, steps_in, c, pool, stride):
    """dx[r, p C + c] = sum over the windows t containing p (increasing t) of dy[r, t C + c] / k.

    dy: (n, L_out C); dx: (n, L_in C).
    """
    n = dx.shape[0]
    l_out = out_steps(steps_in, pool, stride)
    share = dy.reshape(n, l_out, c) / dy.dtype.type(pool)
    grad = np.broadcast_to(share[..., None], (n, l_out, c, pool))
    dx3 = np.zeros((n, steps_in, c), dx.dtype)
    _gather_windows(dx3, grad, pool, stride)
    dx.reshape(n, steps_in, c)[...] = dx3


def global_avgpool1d_forward(x, y, steps, c):
    """y[r, c] = (sum over steps p = 0, 1, ..., L - 1 of x[r, p C + c]) / L.

    x: (n, L C); y: (n, C).
    """
    x3 = x.reshape(x.shape[0], steps, c)
    acc = x3[:, 0, :].copy()
    for p in range(1, steps):
        acc += x3[:, p, :]
    y[...] = acc / y.dtype.type(steps)


def global_avgpool1d_backward(dy, dx, steps, c):
    """dx[r, p C + c] = dy[r, c] / L for every step p.

    dy: (n, C); dx: (n, L C).
    """
    n = dx.shape[0]
    dx.reshape(n, steps, c)[...] = (dy / dy.dtype.type(steps))[:, None, :]
