"""The compiled plan of a Sequential model: what the kernels see of it.

Every model is compiled into an **op table**: one int64 row per op (columns
``codes.OP_*``), a float64 row of its real-valued settings (``codes.FOP_*``)
and one row per parameter tensor in the **segment table** (``codes.SEG_*``).
An op is one step of the forward pass: a Dense or Conv1D layer together with
the activation that follows it, an activation on its own, a pool, Dropout,
BatchNorm, or the two ends of a Residual block. Flatten is not an op: it only
renames the shape, since every tensor is stored as (batch, per-sample size).

Each op reads an input *region* and writes an output region of the
activation workspace (and the same regions of the gradient workspace in the
backward pass). A region is a per-row column offset: with a workspace of
``rows`` rows it starts at rows * offset and holds n <= rows rows
contiguously. Region -1 is the batch itself, so an unshuffled batch is never
copied. Caches that the backward pass needs (im2col patches, BatchNorm's
xhat, max-pool argmax steps) have regions in a float and an int cache, and
BatchNorm's running statistics live in the model's ``buffers`` vector.

A model of Dense layers and activations only (a multi-layer perceptron) also
gets the **block table** ``blocks`` of the specialised MLP loop (columns
``codes.HAS_DENSE`` ...), which the op table generalises; both describe the
same flat parameter layout: each layer's parameters in order (W row-major,
then b), layer after layer.
"""
import numpy as np

from .backends import codes
from .backends.reference.recurrent import cache_width, scratch_width
from .layers import (GRU, LSTM, RECURRENT, Activation, AvgPool1D, BatchNorm, Bidirectional, Conv1D,
                     CustomActivation, Dense, Dropout, Flatten, GlobalAvgPool1D, Layer, MaxPool1D,
                     Residual, SimpleRNN)

_KINDS = {Dense: codes.OP_DENSE, Conv1D: codes.OP_CONV1D, MaxPool1D: codes.OP_MAXPOOL1D,
          AvgPool1D: codes.OP_AVGPOOL1D, GlobalAvgPool1D: codes.OP_GLOBAL_AVGPOOL1D,
          Dropout: codes.OP_DROPOUT, BatchNorm: codes.OP_BATCHNORM,
          SimpleRNN: codes.OP_SIMPLE_RNN, LSTM: codes.OP_LSTM, GRU: codes.OP_GRU}


class Plan:
    """The op table, the segment table and the parameter layout of a list of layers.

    Attributes
    ----------
    ops : (n_ops, codes.OP_N_COLS) int64;  fops : (n_ops, codes.FOP_N_COLS) float64
    segs : (n_segments, codes.SEG_N_COLS) int64
    input_shape, output_shape : per-sample shapes, (features,) or (steps, channels)
    n_in, n_out : their sizes (the widths of X and of the output rows)
    n_params, n_buffers : sizes of the parameter and running-statistics vectors
    width, cache_width, icache_width, scratch_width : per-row sizes of the workspaces
    params : list of (name, offset, shape), in get_weights() order ("W0", "b0", ...)
    layer_names : "dense_0", "conv1d_0", "batchnorm_0", ...: the parameterised
        layers, which are the columns of the gradient-norm statistics
    weight_layers : for each of them, (layer, weight segment, default initialiser)
    is_mlp : Dense layers and activations only: the specialised MLP loop runs it
    blocks, alphas, mlp_width : that loop's block table and workspace row (None unless is_mlp)
    """

    def __init__(self, layers, input_shape=None):
        if isinstance(layers, Layer) or not isinstance(layers, (list, tuple)):
            raise TypeError("layers must be a list of layers, e.g. "
                            "[nn.Dense(64, 32), nn.ReLU(), nn.Dense(32, 10)]")
        if not layers:
            raise ValueError("layers is empty: a model needs at least one Dense layer")
        for i, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise TypeError(f"layers[{i}] is a {type(layer).__name__}, not a layer "
                                "(nn.Dense, nn.ReLU, ...)")
        _check_activations(layers)
        self.input_shape = _input_shape(layers, input_shape)
        self._ops, self._fops, self._segs = [], [], []
        self.params, self.weight_layers, self.layer_names = [], [], []
        self.param_specs = []  # per segment: (layer, its Param, the default initialiser)
        self._counts = {}
        self.n_params = self.n_buffers = 0
        self.width = self.cache_width = self.icache_width = self.scratch_width = 0
        self.custom_activations = []  # the CustomActivation classes, by their OP_K index
        region, shape = self._add_layers(list(layers), -1, self.input_shape)
        if not self._ops:
            raise ValueError("layers has nothing to compute: a model needs at least one Dense, "
                             "Conv1D or other computing layer")
        if region == -1:  # the output must have a region of its own (the losses write into it)
            region = self._op(codes.OP_ACTIVATION, region, shape, shape, act=codes.IDENTITY)
        self.output_shape = shape
        self.ops = np.array(self._ops, dtype=np.int64)
        self.fops = np.array(self._fops, dtype=np.float64)
        self.segs = np.array(self._segs, dtype=np.int64).reshape(-1, codes.SEG_N_COLS)
        self.n_in = int(np.prod(self.input_shape))
        self.n_out = int(np.prod(self.output_shape))
        self.is_mlp = len(self.input_shape) == 1 and not self.custom_activations and \
            all(type(layer) is Dense or isinstance(layer, Activation) for layer in layers) \
            and any(type(layer) is Dense for layer in layers)
        self.blocks = self.alphas = self.mlp_width = None
        if self.is_mlp:
            self._mlp_blocks(layers)
        # the names the MLP code has always used
        self.dense = [layer for layer, _, _ in self.weight_layers]
        self.default_inits = [init for _, _, init in self.weight_layers]
        self.dense_names = self.layer_names

    # ---- building --------------------------------------------------------------------------
    def _region(self, size):
        off = self.width
        self.width += size
        return off

    def _op(self, kind, region, in_shape, out_shape, act=codes.IDENTITY, alpha=0.0, out=None,
            k=0, stride=0, pad=0, cache=0, icache=0, scratch=0, buffers=0, rate=0.0,
            momentum=0.0, eps=0.0):
        """Append an op reading ``region``; returns its output region (a new one unless
        ``out`` is given)."""
        steps_in, ch_in = _geometry(in_shape)
        steps_out, ch_out = _geometry(out_shape)
        out_size = int(np.prod(out_shape))
        out = self._region(out_size) if out is None else out
        row = [0] * codes.OP_N_COLS
        row[codes.OP_KIND], row[codes.OP_ACT] = kind, act
        row[codes.OP_IN], row[codes.OP_OUT] = region, out
        row[codes.OP_IN_SIZE], row[codes.OP_OUT_SIZE] = int(np.prod(in_shape)), out_size
        row[codes.OP_STEPS_IN], row[codes.OP_CH_IN] = steps_in, ch_in
        row[codes.OP_STEPS_OUT], row[codes.OP_CH_OUT] = steps_out, ch_out
        row[codes.OP_K], row[codes.OP_STRIDE], row[codes.OP_PAD] = k, stride, pad
        row[codes.OP_W_SEG] = row[codes.OP_B_SEG] = row[codes.OP_SKIP] = -1
        row[codes.OP_CACHE] = row[codes.OP_ICACHE] = row[codes.OP_BUF] = -1
        if cache:
            row[codes.OP_CACHE] = self.cache_width
            self.cache_width += cache
        if icache:
            row[codes.OP_ICACHE] = self.icache_width
            self.icache_width += icache
        if buffers:
            row[codes.OP_BUF] = self.n_buffers
            self.n_buffers += buffers
        self.scratch_width = max(self.scratch_width, scratch)
        fop = [0.0] * codes.FOP_N_COLS
        fop[codes.FOP_ALPHA], fop[codes.FOP_RATE] = alpha, rate
        fop[codes.FOP_MOMENTUM], fop[codes.FOP_EPS] = momentum, eps
        self._ops.append(row)
        self._fops.append(fop)
        return out

    def _parameters(self, layer, shape, default_init, name=None):
        """Lay out the layer's parameters and give them segments of the last op (the
        first segment in OP_W_SEG, the last in OP_B_SEG; a recurrent op's four are
        consecutive). ``name``: the layer's name in the statistics, if not counted."""
        op = len(self._ops) - 1
        specs = layer.parameters(shape)
        if not specs:
            return
        if name is None:
            kind = getattr(layer, "kind_name", type(layer).__name__.lower())
            index = self._counts.get(kind, 0)
            self._counts[kind] = index + 1
            name = f"{kind}_{index}"
        norm_col = len(self.layer_names)
        self.layer_names.append(name)
        k = len(self.weight_layers)
        reported = getattr(layer, "reported_parameter", 0)  # whose norm the statistics show
        for j, spec in enumerate(specs):
            seg = len(self._segs)
            length = int(np.prod(spec.shape))
            self._segs.append([self.n_params, length, op, int(spec.decay),
                               norm_col if j == reported else -1])
            self.params.append((f"{spec.name}{k}", self.n_params, spec.shape))
            self.param_specs.append((layer, spec, default_init))
            self.n_params += length
            self._ops[op][codes.OP_W_SEG if j == 0 else codes.OP_B_SEG] = seg
        self.weight_layers.append((layer, len(self._segs) - len(specs), default_init))

    def _add_layers(self, layers, region, shape):
        i = 0
        while i < len(layers):
            layer = layers[i]
            out_shape = layer.output_shape(shape)
            if isinstance(layer, Dense):  # Dense or Conv1D, with the activation after it
                nxt = layers[i + 1] if i + 1 < len(layers) else None
                # a custom activation is an op of its own (the Dense kernels know the built-ins)
                act = nxt if isinstance(nxt, Activation) and \
                    not isinstance(nxt, CustomActivation) else None
                if isinstance(layer, Conv1D):
                    steps_out = out_shape[0]
                    width = layer.kernel_size * layer.in_channels
                    region = self._op(codes.OP_CONV1D, region, shape, out_shape,
                                      act=act.code if act else codes.IDENTITY,
                                      alpha=act.alpha if act else 0.0, k=layer.kernel_size,
                                      stride=layer.stride, pad=layer.padding,
                                      cache=steps_out * width, scratch=steps_out * width)
                else:
                    region = self._op(codes.OP_DENSE, region, shape, out_shape,
                                      act=act.code if act else codes.IDENTITY,
                                      alpha=act.alpha if act else 0.0)
                he = nxt is not None and isinstance(nxt, Activation) and nxt.he_init
                self._parameters(layer, shape, "he" if he else "xavier")
                i += 2 if act else 1
            elif isinstance(layer, CustomActivation):
                if type(layer) not in self.custom_activations:
                    self.custom_activations.append(type(layer))
                region = self._op(codes.OP_CUSTOM_ACTIVATION, region, shape, out_shape,
                                  k=self.custom_activations.index(type(layer)))
                i += 1
            elif isinstance(layer, Activation):
                region = self._op(codes.OP_ACTIVATION, region, shape, out_shape, act=layer.code,
                                  alpha=layer.alpha)
                i += 1
            elif isinstance(layer, (MaxPool1D, AvgPool1D)):
                kind = _KINDS[type(layer)]
                region = self._op(kind, region, shape, out_shape, k=layer.pool_size,
                                  stride=layer.stride,
                                  icache=int(np.prod(out_shape)) if kind == codes.OP_MAXPOOL1D else 0)
                i += 1
            elif isinstance(layer, GlobalAvgPool1D):
                region = self._op(codes.OP_GLOBAL_AVGPOOL1D, region, shape, out_shape)
                i += 1
            elif isinstance(layer, Dropout):
                region = self._op(codes.OP_DROPOUT, region, shape, out_shape, rate=layer.rate)
                i += 1
            elif isinstance(layer, BatchNorm):
                size, channels = int(np.prod(shape)), shape[-1]
                # the cache holds xhat (size per row) and, after all rows, 1 / std (channels)
                region = self._op(codes.OP_BATCHNORM, region, shape, out_shape,
                                  cache=size + channels, buffers=2 * channels,
                                  momentum=layer.momentum, eps=layer.eps)
                self._parameters(layer, shape, None)
                i += 1
            elif isinstance(layer, Residual):
                begin = len(self._ops)
                self._op(codes.OP_RESIDUAL_BEGIN, region, shape, shape, out=region)
                inner, _ = self._add_layers(layer.layers, region, shape)
                if inner == region:
                    raise ValueError(f"{layer!r} computes nothing (only Flatten): x + f(x) needs f")
                out = self._op(codes.OP_RESIDUAL_ADD, inner, shape, shape)
                self._ops[-1][codes.OP_SKIP] = region
                self._ops[begin][codes.OP_SKIP] = out
                region = out
                i += 1
            elif isinstance(layer, (*RECURRENT, Bidirectional)):
                region = self._recurrent(layer, region, shape, out_shape)
                i += 1
            elif isinstance(layer, Flatten):
                i += 1
            else:
                raise TypeError(f"{layer!r} is not a layer kind that nnumba can compile")
            shape = out_shape
        return region, shape

    def _recurrent(self, layer, region, shape, out_shape):
        """One op per direction (two for a Bidirectional layer, which share the output
        row: the forward units at channel 0, the backward ones at channel U; the second
        op's backward pass writes dL/dx, the first adds to it)."""
        directions = [layer] if isinstance(layer, RECURRENT) else [layer.layer, layer.backward_layer]
        steps, features = shape
        out, name = None, None
        if len(directions) == 2:
            index = self._counts.get("bidirectional", 0)
            self._counts["bidirectional"] = index + 1
            name = f"bidirectional_{index}"
        for d, cell in enumerate(directions):
            kind, units = _KINDS[type(cell)], cell.units
            out = self._op(kind, region, shape, out_shape, out=out,
                           act=cell.code if kind == codes.OP_SIMPLE_RNN else codes.IDENTITY,
                           cache=cache_width(kind, steps, features, units),
                           scratch=scratch_width(kind, steps, features, units))
            row = self._ops[-1]
            row[codes.OP_UNITS], row[codes.OP_REVERSE] = units, d
            row[codes.OP_SEQUENCES] = int(cell.return_sequences)
            row[codes.OP_OUT_OFFSET] = d * units
            row[codes.OP_DX_ADD] = int(d == 0 and len(directions) == 2)
            self._parameters(cell, shape, None,
                             None if name is None else f"{name}_{('forward', 'backward')[d]}")
        return out

    def _mlp_blocks(self, layers):
        """The block table of the specialised MLP loop (see ``codes``: HAS_DENSE ...)."""
        rows, alphas = [], []
        col, width, i = 0, self.n_in, 0
        segs = iter(self._segs)
        while i < len(layers):
            layer = layers[i]
            if isinstance(layer, Dense):
                nxt = layers[i + 1] if i + 1 < len(layers) else None
                act = nxt if isinstance(nxt, Activation) else None
                w_off = next(segs)[codes.SEG_OFF]
                b_off = next(segs)[codes.SEG_OFF] if layer.bias else -1
                rows.append([1, layer.in_features, layer.out_features,
                             act.code if act else codes.IDENTITY, w_off, b_off, col])
                alphas.append(act.alpha if act else 0.0)
                width = layer.out_features
                i += 2 if act else 1
            else:
                rows.append([0, width, width, layer.code, -1, -1, col])
                alphas.append(layer.alpha)
                i += 1
            col += width
        self.blocks = np.array(rows, dtype=np.int64)
        self.alphas = np.array(alphas, dtype=np.float64)
        self.mlp_width = col  # the MLP loop's workspace row: the blocks' outputs

    # ---- use --------------------------------------------------------------------------------
    def layer_name_of_op(self, i):
        """The statistics' name of op i's parameterised layer ("lstm_0", ...)."""
        segs = self.segs
        reporting = segs[(segs[:, codes.SEG_OP] == i) & (segs[:, codes.SEG_NORM] >= 0)]
        return self.layer_names[int(reporting[0, codes.SEG_NORM])]

    def custom_specs(self):
        """(f, derivative, of) of each custom activation, in OP_K order (what the backends'
        ``rules.compile_activations`` compiles)."""
        return [(cls.function, cls.derivative, cls.derivative_of) for cls in self.custom_activations]

    def batchnorm_buffers(self):
        """(offset, channels) of each BatchNorm's running statistics in the buffers vector
        (mean at offset, variance at offset + channels)."""
        bn = self.ops[self.ops[:, codes.OP_KIND] == codes.OP_BATCHNORM] if len(self.ops) else []
        return [(int(row[codes.OP_BUF]), int(row[codes.OP_CH_OUT])) for row in bn]

    def split(self, flat):
        """The parameters of a flat host buffer as arrays [W0, b0, W1, b1, ...] (views)."""
        return [flat[off:off + int(np.prod(shape))].reshape(shape) for _, off, shape in self.params]

    def describe(self):
        """The op table as text, one line per op (what ARCHITECTURE.md shows)."""
        lines = [f"{'#':>2} {'op':<17}{'act':>4}{'in':>6}{'out':>6}{'in shape':>16}{'out shape':>16}"
                 f"{'W seg':>6}{'b seg':>6}{'cache':>6}"]
        for i, row in enumerate(self.ops):
            def shape(steps, ch):
                return f"({row[steps]}, {row[ch]})"
            lines.append(f"{i:>2} {codes.OP_NAMES[int(row[codes.OP_KIND])]:<17}{row[codes.OP_ACT]:>4}"
                         f"{row[codes.OP_IN]:>6}{row[codes.OP_OUT]:>6}"
                         f"{shape(codes.OP_STEPS_IN, codes.OP_CH_IN):>16}"
                         f"{shape(codes.OP_STEPS_OUT, codes.OP_CH_OUT):>16}"
                         f"{row[codes.OP_W_SEG]:>6}{row[codes.OP_B_SEG]:>6}{row[codes.OP_CACHE]:>6}")
        return "\n".join(lines)


def _check_activations(layers):
    """Refuse, before anything is built, an activation the kernels cannot run as written
    (``layers.check_activation``: a new Activation without a code, or a subclass with its
    own function), in Residual blocks too."""
    from .layers import check_activation

    for layer in layers:
        if isinstance(layer, Activation):
            check_activation(layer)
        elif isinstance(layer, Residual):
            _check_activations(layer.layers)


def _geometry(shape):
    """(steps, channels) of a per-sample shape; flat data is one step of all features."""
    return (1, int(shape[0])) if len(shape) == 1 else (int(shape[0]), int(shape[1]))


def _input_shape(layers, input_shape):
    """The per-sample input shape: given, or read off the first layer that fixes it."""
    if input_shape is not None:
        if isinstance(input_shape, (int, np.integer)):
            input_shape = (input_shape,)
        if not isinstance(input_shape, (tuple, list)) or not 1 <= len(input_shape) <= 2 or \
                not all(isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d >= 1
                        for d in input_shape):
            raise ValueError(f"input_shape must be (features,) or (steps, channels) with sizes >= 1, "
                             f"got {input_shape!r}")
        return tuple(int(d) for d in input_shape)
    for layer in layers:
        if type(layer) is Dense:
            return (layer.in_features,)
        if isinstance(layer, (*RECURRENT, Bidirectional)):
            inner = layer if isinstance(layer, RECURRENT) else layer.layer
            raise ValueError(f"the first layer, {layer!r}, fixes the features per step but not the "
                             f"number of steps: give input_shape=(steps, {inner.in_features}), e.g. "
                             f"Sequential(layers, input_shape=(40, {inner.in_features}))")
        if isinstance(layer, (Conv1D, MaxPool1D, AvgPool1D, GlobalAvgPool1D, Flatten, Residual)):
            break
    if not any(isinstance(layer, Dense) for layer in layers):
        raise ValueError("layers has no Dense layer: a model needs at least one, or an "
                         "input_shape")
    raise ValueError(f"the first layer, {layers[0]!r}, does not fix the input's shape: give "
                     f"input_shape=(features,) or (steps, channels), e.g. Sequential(layers, "
                     f"input_shape=(40, 1))")
