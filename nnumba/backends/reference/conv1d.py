"""A 1-D convolution (cross-correlation, as torch's Conv1d), channels-last, in NumPy.

Geometry: an input of L_in steps and C_in channels, a kernel of k taps, stride
s >= 1, zero padding p >= 0 on both sides, C_out output channels, and

    L_out = (L_in + 2 p - k) // s + 1        (>= 1; the caller guarantees it)

Layout (every tensor 2-D and row-major, sequences channels-last):

    x        (n, L_in * C_in)        x[r, pos * C_in + c]: sample r, step pos, channel c
    y, dy    (n, L_out * C_out)      the same memory as (n * L_out, C_out)
    w, dw    (k * C_in, C_out)       im2col order: w[tap * C_in + c, o] is torch's
                                     Conv1d weight[o, c, tap]
    b, db    (C_out,)                zero-length: no bias
    patches  (n * L_out, k * C_in)   scratch: the im2col matrix (dpatches: its gradient)

im2col (row r L_out + t of ``patches`` is the receptive field of output step t
of sample r, its taps one after the other, each tap's C_in channels contiguous):

    patches[r L_out + t, tap C_in + c] = x[r, (t s - p + tap) C_in + c]
                                         (0 where t s - p + tap is outside [0, L_in))

Forward:

    y = patches @ w + b                      viewed as (n L_out, C_out)

Backward, given dy = dL/dy (viewed as (n L_out, C_out)):

    dw       = patches^T @ dy                (k C_in, C_out)
    db       = column sums of dy             (C_out,), skipped when db is empty
    dpatches = dy @ w^T                      (n L_out, k C_in)
    dx[r, pos C_in + c] = sum over t = 0, 1, ... (increasing) with tap = pos + p - t s
                          in [0, k) of dpatches[r L_out + t, tap C_in + c]

The last step (col2im) is a gather: each element of dx adds its contributions
in increasing t, a fixed order, so every backend gets the same bits run to
run (and the cpu and cuda gathers the same bits as each other). A dx with no
rows or no elements means no input gradient is wanted (the first layer of a
network): dpatches and dx are then not computed.
"""
import numpy as np


def output_steps(steps_in, k, stride, pad):
    """L_out = (L_in + 2 p - k) // s + 1."""
    return (steps_in + 2 * pad - k) // stride + 1


def im2col(x, patches, steps_in, c_in, k, stride, pad):
    """patches[r L_out + t, tap C_in + c] = x[r, (t s - p + tap) C_in + c], 0 outside [0, L_in).

    x: (n, L_in C_in); patches: (n L_out, k C_in), C-contiguous (written in place).
    """
    n = x.shape[0]
    l_out = output_steps(steps_in, k, stride, pad)
    padded = np.zeros((n, steps_in + 2 * pad, c_in), x.dtype)
    padded[:, pad:pad + steps_in] = x.reshape(n, steps_in, c_in)
    out = patches.reshape(n, l_out, k, c_in)    # a view: writes go into patches
    span = (l_out - 1) * stride + 1
    for tap in range(k):
        # output step t reads padded step t s + tap
        out[:, :, tap, :] = padded[:, tap:tap + span:stride, :]


def col2im(dpatches, dx, steps_in, c_in, k, stride, pad):
    """dx[r, pos C_in + c] = sum over t (increasing), tap = pos + p - t s in [0, k), of
    dpatches[r L_out + t, tap C_in + c]; 0 where no output step reads pos.

    dpatches: (n L_out, k C_in); dx: (n, L_in C_in), C-contiguous (written in place).
    """
    n = dx.shape[0]
    l_out = output_steps(steps_in, k, stride, pad)
    padded = np.zeros((n, steps_in + 2 * pad, c_in), dx.dtype)
    d = dpatches.reshape(n, l_out, k, c_in)
    span = (l_out - 1) * stride + 1
    # for a fixed padded step q = t s + tap, a larger tap means a smaller t: taking the
    # taps from the last to the first adds each element's terms in increasing t
    for tap in range(k - 1, -1, -1):
        padded[:, tap:tap + span:stride, :] += d[:, :, tap, :]
    dx.reshape(n, steps_in, c_in)[...] = padded[:, pad:pad + steps_in]


def conv1d_forward(x, w, b, patches, y, steps_in, c_in, k, stride, pad):
    """patches = im2col(x); y = patches @ w + b (y viewed as (n L_out, C_out))."""
    im2col(x, patches, steps_in, c_in, k, stride, pad)
    y2 = y.reshape(patches.shape[0], w.shape[1])   # same memory as y
    np.matmul(patches, w, out=y2)
    if b.shape[0]:
        y2 += b


def conv1d_backward(patches, w, dy, dw, db, dpatches, dx, steps_in, c_in, k, stride, pad):
    """dw = patches^T dy; db = column sums of dy; dpatches = dy w^T and dx = col2im(dpatches)
    unless dx is empty (dy viewed as (n L_out, C_out))."""
    dy2 = dy.reshape(patches.shape[0], w.shape[1])
    np.matmul(patches.T, dy2, out=dw)
    if db.shape[0]:
        np.sum(dy2, axis=0, out=db)
    if dx.shape[0] == 0 or dx.size == 0:
        return
    np.matmul(dy2, w.T, out=dpatches)
    col2im(dpatches, dx, steps_in, c_in, k, stride, pad)
