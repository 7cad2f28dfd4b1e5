"""Recurrent layers (SimpleRNN, LSTM, GRU) and backpropagation through time, in NumPy.

The equations are PyTorch's (torch.nn.RNN, LSTM, GRU), gate for gate, so that
the weights map one-to-one: with sigma the logistic function, x_t the input and
h_{t-1} the state of the previous step (h_{-1} = 0, c_{-1} = 0),

SimpleRNN (G = 1 gate block)::

    h_t = f(x_t W_ih + b_ih + h_{t-1} W_hh + b_hh)             f = tanh or relu

LSTM (G = 4 blocks, in the order i, f, g, o)::

    [a_i, a_f, a_g, a_o] = x_t W_ih + b_ih + h_{t-1} W_hh + b_hh
    i = sigma(a_i), f = sigma(a_f), g = tanh(a_g), o = sigma(a_o)
    c_t = f * c_{t-1} + i * g,      h_t = o * tanh(c_t)

GRU (G = 3 blocks, in the order r, z, n; the reset gate multiplies the hidden
product, bias included, as in torch)::

    [p_r, p_z, p_n] = x_t W_ih + b_ih,      [q_r, q_z, q_n] = h_{t-1} W_hh + b_hh
    r = sigma(p_r + q_r), z = sigma(p_z + q_z), n = tanh(p_n + r * q_n)
    h_t = (1 - z) * n + z * h_{t-1}

Shapes: W_ih (F, G U) is torch's weight_ih_l0 transposed, W_hh (U, G U) its
weight_hh_l0 transposed, b_ih and b_hh (G U) its bias_ih_l0 and bias_hh_l0.

**Layout.** x is (n, T F), channels-last: sample r's step t is x[r, t F:(t+1) F].
The kernels work in *processing order*: step s is time t(s) = s, or T - 1 - s
for a layer that runs backwards (``reverse``, the second half of a
Bidirectional layer). The output row has ``out_channels`` channels per step
(2 U when two directions share it) and the layer's U units start at channel
``out_offset``: with ``sequences`` the output is (n, T out_channels) and h at
time t goes to out[r, t out_channels + out_offset + j]; without, it is
(n, out_channels) and holds the state after the last processed step.

The op's float cache (``cache_width`` per row, time-major so that each step is
one contiguous (n, .) block and the input projections of all steps are ONE
matrix product)::

    xs       (T, n, F)       the input, in processing order
    hidden   (T, n, U)       h_s
    gates    (T, n, G U)     LSTM: i, f, g, o; GRU: r, z, n (activated); SimpleRNN: none
    extra    (T, n, U)       LSTM: c_s; GRU: q_n of step s; SimpleRNN: none
    dhidden  (T, n, U)       written by the backward pass: dL/dh_s, in total
    tmp      (n, max(G, 1) U)  the forward pass's hidden product of one step

Backward (BPTT), from dy: dhidden starts as the output gradient (every step
with ``sequences``, else only the last), and for s = T - 1, ..., 0 the step's
gate gradients (``scratch``: dgates, dL/d of the input projection; GRU also
dgh, dL/d of the hidden product; the LSTM's scratch also ends with room that only
the cpu backend uses, ``partial_width``) are formed from dhidden[s] and the
recurrent path is added to dhidden[s - 1] (+= dgh_s W_hh^T; the GRU also adds
z * dh_s directly; the LSTM carries dL/dc). Then, each as ONE product over all
steps::

    dW_ih = xs^T dgates,          db_ih = sum of dgates
    dW_hh = hidden[:-1]^T D[1:],  db_hh = sum of D          (D = dgh for GRU, else dgates)
    dx    = dgates W_ih^T, scattered back to time order (added with ``accumulate``)

dy is only read (the two directions of a Bidirectional layer read the same
one). A dx with no rows means no input gradient is wanted.
"""
import numpy as np

from ..codes import OP_GRU, OP_LSTM, OP_SIMPLE_RNN
from .activations import activation_backward, activation_forward, sigmoid

GATES = {OP_SIMPLE_RNN: 1, OP_LSTM: 4, OP_GRU: 3}


def cached_gates(cell):
    """G of the gates block of the cache (none for SimpleRNN, whose gate is h itself)."""
    return 0 if cell == OP_SIMPLE_RNN else GATES[cell]


def cache_width(cell, steps, features, units):
    """Per-row size of a recurrent op's float cache (layout in the module docstring)."""
    extra = 0 if cell == OP_SIMPLE_RNN else 1
    return steps * (features + (2 + extra + cached_gates(cell)) * units) + GATES[cell] * units


# The LSTM's scratch ends with room for one set of weight gradients (W_ih, W_hh, b_ih, b_hh)
# per PARTIAL_ROWS rows: with n >= 2 PARTIAL_ROWS rows, the cpu backend sums each of its
# n // PARTIAL_ROWS blocks of rows' share of them on the thread that ran the block
# (``backends.cpu.recurrent``); this backend and cuda leave it alone.
PARTIAL_ROWS = 16


def partial_width(cell, features, units):
    """Per-row size of that room: (F + U + 2) G U values per PARTIAL_ROWS rows (LSTM only)."""
    if cell != OP_LSTM:
        return 0
    return -(-(features + units + 2) * GATES[cell] * units // PARTIAL_ROWS)


def scratch_width(cell, steps, features, units):
    """Per-row size of the backward pass's scratch: dgates, dgh (GRU), dc (LSTM), tmp, dxs,
    then the LSTM's room for partial weight gradients (``partial_width``)."""
    g = GATES[cell] * units
    return steps * (g + features) + (steps * g if cell == OP_GRU else 0) + \
        (units if cell == OP_LSTM else 0) + units + partial_width(cell, features, units)


def cache_views(cell, cache, n, steps, features, units):
    """(xs, hidden, gates, extra, dhidden, tmp) views of a flat cache of n rows."""
    sizes = (("xs", steps * features), ("hidden", steps * units),
             ("gates", steps * cached_gates(cell) * units),
             ("extra", steps * units * (cell != OP_SIMPLE_RNN)), ("dhidden", steps * units),
             ("tmp", GATES[cell] * units))
    views, start = [], 0
    for name, size in sizes:
        block = cache[start:start + n * size]
        start += n * size
        views.append(block.reshape(n, -1) if name == "tmp" else block.reshape(steps, n, -1))
    return tuple(views)


def scratch_views(cell, scratch, n, steps, features, units):
    """(dgates, dgh, dc, tmp, dxs) views of the flat scratch (dgh is dgates but for the
    GRU; dc is empty but for the LSTM)."""
    g = GATES[cell] * units
    start = 0

    def take(shape):
        nonlocal start
        size = int(np.prod(shape))
        block = scratch[start:start + size].reshape(shape)
        start += size
        return block

    dgates = take((steps, n, g))
    dgh = take((steps, n, g)) if cell == OP_GRU else dgates
    dc = take((n, units if cell == OP_LSTM else 0))
    tmp = take((n, units))
    dxs = take((steps, n, features))
    return dgates, dgh, dc, tmp, dxs


def time_of(s, steps, reverse):
    """The time step that processing step s handles."""
    return steps - 1 - s if reverse else s


def recurrent_forward(cell, act, x, w_ih, w_hh, b_ih, b_hh, cache, out, steps, features, units,
                      reverse, sequences, out_offset, out_channels):
    """Run the layer over the n sequences of x; h of each step goes to out (and the cache)."""
    n = x.shape[0]
    xs, hidden, gates, extra, _, tmp = cache_views(cell, cache, n, steps, features, units)
    for s in range(steps):
        t = time_of(s, steps, reverse)
        xs[s] = x[:, t * features:(t + 1) * features]
    u = units
    flat_x = xs.reshape(steps * n, features)
    if cell == OP_SIMPLE_RNN:
        pre = hidden.reshape(steps * n, u)
        np.matmul(flat_x, w_ih, out=pre)
        pre += b_ih + b_hh
        for s in range(steps):
            if s:
                np.matmul(hidden[s - 1], w_hh, out=tmp)
                hidden[s] += tmp
            activation_forward(act, 0.0, hidden[s], hidden[s])
    elif cell == OP_LSTM:
        pre = gates.reshape(steps * n, 4 * u)
        np.matmul(flat_x, w_ih, out=pre)
        pre += b_ih + b_hh
        for s in range(steps):
            a = gates[s]
            if s:
                np.matmul(hidden[s - 1], w_hh, out=tmp)
                a += tmp
            a[:, :2 * u] = sigmoid(a[:, :2 * u])
            np.tanh(a[:, 2 * u:3 * u], out=a[:, 2 * u:3 * u])
            a[:, 3 * u:] = sigmoid(a[:, 3 * u:])
            i, f, g, o = a[:, :u], a[:, u:2 * u], a[:, 2 * u:3 * u], a[:, 3 * u:]
            extra[s] = i * g + (f * extra[s - 1] if s else 0)
            hidden[s] = o * np.tanh(extra[s])
    elif cell == OP_GRU:
        pre = gates.reshape(steps * n, 3 * u)
        np.matmul(flat_x, w_ih, out=pre)
        pre += b_ih
        for s in range(steps):
            a = gates[s]
            if s:
                np.matmul(hidden[s - 1], w_hh, out=tmp)
                tmp += b_hh
            else:
                tmp[...] = b_hh
            a[:, :2 * u] = sigmoid(a[:, :2 * u] + tmp[:, :2 * u])
            extra[s] = tmp[:, 2 * u:]
            np.tanh(a[:, 2 * u:] + a[:, :u] * extra[s], out=a[:, 2 * u:])
            z, new = a[:, u:2 * u], a[:, 2 * u:]
            hidden[s] = (1 - z) * new + (z * hidden[s - 1] if s else 0)
    else:
        raise ValueError(f"unknown recurrent cell {cell}")
    if sequences:
        for s in range(steps):
            t = time_of(s, steps, reverse)
            col = t * out_channels + out_offset
            out[:, col:col + u] = hidden[s]
    else:
        out[:, out_offset:out_offset + u] = hidden[steps - 1]


def recurrent_backward(cell, act, w_ih, w_hh, cache, dy, dw_ih, dw_hh, db_ih, db_hh, scratch, dx,
                       accumulate, steps, features, units, reverse, sequences, out_offset,
                       out_channels):
    """BPTT: parameter gradients written (not added), dx written or (``accumulate``) added;
    dhidden of the cache holds dL/dh_s on return."""
    n = dy.shape[0]
    xs, hidden, gates, extra, dhidden, _ = cache_views(cell, cache, n, steps, features, units)
    dgates, dgh, dc, tmp, dxs = scratch_views(cell, scratch, n, steps, features, units)
    u = units
    if sequences:
        for s in range(steps):
            col = time_of(s, steps, reverse) * out_channels + out_offset
            dhidden[s] = dy[:, col:col + u]
    else:
        dhidden[...] = 0
        dhidden[steps - 1] = dy[:, out_offset:out_offset + u]
    for s in range(steps - 1, -1, -1):
        dh = dhidden[s]
        if cell == OP_SIMPLE_RNN:
            dgates[s] = dh
            activation_backward(act, 0.0, hidden[s], dgates[s])
        elif cell == OP_LSTM:
            i, f, g, o = (gates[s][:, k * u:(k + 1) * u] for k in range(4))
            tc = np.tanh(extra[s])
            dcs = dh * o * (1 - tc * tc) + (dc if s < steps - 1 else 0)
            c_prev = extra[s - 1] if s else np.zeros_like(dcs)
            d = dgates[s]
            d[:, :u] = dcs * g * i * (1 - i)
            d[:, u:2 * u] = dcs * c_prev * f * (1 - f)
            d[:, 2 * u:3 * u] = dcs * i * (1 - g * g)
            d[:, 3 * u:] = dh * tc * o * (1 - o)
            dc[...] = dcs * f
        else:
            r, z, new = (gates[s][:, k * u:(k + 1) * u] for k in range(3))
            h_prev = hidden[s - 1] if s else np.zeros_like(dh)
            da_n = dh * (1 - z) * (1 - new * new)
            da_r = da_n * extra[s] * r * (1 - r)
            da_z = dh * (h_prev - new) * z * (1 - z)
            dgates[s][:, :u], dgates[s][:, u:2 * u], dgates[s][:, 2 * u:] = da_r, da_z, da_n
            dgh[s][:, :u], dgh[s][:, u:2 * u], dgh[s][:, 2 * u:] = da_r, da_z, da_n * r
            if s:
                dhidden[s - 1] += dh * z
        if s:
            np.matmul(dgh[s], w_hh.T, out=tmp)
            dhidden[s - 1] += tmp
    g_width = dgates.shape[2]
    flat_d = dgates.reshape(steps * n, g_width)
    np.matmul(xs.reshape(steps * n, features).T, flat_d, out=dw_ih)
    np.sum(flat_d, axis=0, out=db_ih)
    if steps > 1:
        np.matmul(hidden[:-1].reshape(-1, u).T, dgh[1:].reshape(-1, g_width), out=dw_hh)
    else:
        dw_hh[...] = 0
    np.sum(dgh.reshape(steps * n, g_width), axis=0, out=db_hh)
    if dx.shape[0]:
        np.matmul(flat_d, w_ih.T, out=dxs.reshape(steps * n, features))
        for s in range(steps):
            t = time_of(s, steps, reverse)
            cols = slice(t * features, (t + 1) * features)
            if accumulate:
                dx[:, cols] += dxs[s]
            else:
                dx[:, cols] = dxs[s]
