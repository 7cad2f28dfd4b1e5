"""The compiled plan of a Sequential model: what the kernels see of it.

Layers are grouped into *blocks*: a Dense layer together with the activation
that follows it (the kernels fuse the two), or an activation on its own where
it does not directly follow a Dense layer. The plan is the int64 table
``blocks`` (columns named in ``backends.codes``), the float64 vector
``alphas`` (LeakyReLU slopes), and the layout of the flat parameter buffer:
for each Dense layer, W (row-major) then b.
"""
import numpy as np

from .backends import codes
from .layers import Activation, Dense, Layer


class Plan:
    """The block table and parameter layout of a list of layers.

    Attributes
    ----------
    blocks : (n_blocks, codes.N_COLS) int64 array
    alphas : (n_blocks,) float64 array
    n_params : total number of parameters
    n_in, n_out : input and output widths of the network
    width : sum of the blocks' output widths (a workspace row)
    dense : the Dense layers, in order
    dense_names : "dense_0", "dense_1", ... (names used in reports)
    params : list of (name, offset, shape), in get_weights() order
    default_inits : for each Dense layer, the initialiser chosen when init=None
    """

    def __init__(self, layers):
        if isinstance(layers, Layer) or not isinstance(layers, (list, tuple)):
            raise TypeError("layers must be a list of layers, e.g. "
                            "[nn.Dense(64, 32), nn.ReLU(), nn.Dense(32, 10)]")
        if not layers:
            raise ValueError("layers is empty: a model needs at least one Dense layer")
        for i, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise TypeError(f"layers[{i}] is a {type(layer).__name__}, not a layer "
                                "(nn.Dense, nn.ReLU, ...)")
        if not any(isinstance(layer, Dense) for layer in layers):
            raise ValueError("layers has no Dense layer: a model needs at least one")

        rows, alphas = [], []
        self.dense, self.params, self.default_inits = [], [], []
        offset = col = 0
        width = None  # the current width, unknown until the first Dense layer
        i = 0
        while i < len(layers):
            layer = layers[i]
            if isinstance(layer, Dense):
                if width is not None and layer.in_features != width:
                    raise ValueError(f"Dense({layer.in_features}, {layer.out_features}) expects "
                                     f"{layer.in_features} inputs but the previous layer gives {width}")
                nxt = layers[i + 1] if i + 1 < len(layers) else None
                act = nxt if isinstance(nxt, Activation) else None
                k = len(self.dense)
                w_off = offset
                self.params.append((f"W{k}", offset, (layer.in_features, layer.out_features)))
                offset += layer.in_features * layer.out_features
                b_off = -1
                if layer.bias:
                    b_off = offset
                    self.params.append((f"b{k}", offset, (layer.out_features,)))
                    offset += layer.out_features
                rows.append([1, layer.in_features, layer.out_features,
                             act.code if act else codes.IDENTITY, w_off, b_off, col])
                alphas.append(act.alpha if act else 0.0)
                self.dense.append(layer)
                self.default_inits.append("he" if act is not None and act.he_init else "xavier")
                width = layer.out_features
                i += 2 if act else 1
            else:
                if width is None:
                    first_dense = next(l for l in layers if isinstance(l, Dense))
                    width = first_dense.in_features
                rows.append([0, width, width, layer.code, -1, -1, col])
                alphas.append(layer.alpha)
                i += 1
            col += width
        self.blocks = np.array(rows, dtype=np.int64)
        self.alphas = np.array(alphas, dtype=np.float64)
        self.n_params = offset
        self.n_in = int(self.blocks[0, codes.N_IN])
        self.n_out = int(self.blocks[-1, codes.N_OUT])
        self.width = col
        self.dense_names = [f"dense_{k}" for k in range(len(self.dense))]

    def split(self, flat):
        """The parameters of a flat host buffer as arrays [W0, b0, W1, b1, ...] (views)."""
        return [flat[off:off + int(np.prod(shape))].reshape(shape) for _, off, shape in self.params]
