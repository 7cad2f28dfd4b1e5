"""Conv1D, the pools, Flatten, Dropout, BatchNorm and Residual against PyTorch and
against finite differences, float64.

Every torch model is built from the nnumba model's own weights (``Mirror``):
Conv1D's W (k C_in, C_out) is torch's weight (C_out, C_in, k) with
W[tap C_in + c, o] = weight[o, c, tap]; nnumba's Flatten of channels-last
(steps, channels) is step-major while torch's flatten of (C, L) is
channel-major, so the Dense after a Flatten has its weight columns permuted;
BatchNorm is torch.nn.BatchNorm1d with gamma, beta = weight, bias; Residual
is x + f(x); Dropout is a module that applies nnumba's own keep mask (the
counter hash of ``backends.reference.dropout``, checked against the zeros of
the training forward pass).

Skipped where torch is not installed. The worst relative differences are
printed at the end of the module (``pytest -s``).
"""
import numpy as np
import pytest

import nnumba as nn
from nnumba import layers as L
from nnumba.backends import codes
from nnumba.backends.reference.dropout import dropout_keep
from nnumba.loops import TRAIN

torch = pytest.importorskip("torch")

BACKENDS = ["numpy", "cpu"]
WORST = {}  # the largest relative difference seen per check, printed at the end


def rel(ours, theirs):
    """max_i |ours_i - theirs_i| / max(|theirs_i|, 1e-12 max|theirs|): elementwise, with a
    floor at the tensor's scale for the entries that cancel to (nearly) zero."""
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    assert ours.shape == theirs.shape, (ours.shape, theirs.shape)
    if ours.size == 0:
        return 0.0
    floor = max(1e-12 * float(np.max(np.abs(theirs))), 1e-300)
    return float(np.max(np.abs(ours - theirs) / np.maximum(np.abs(theirs), floor)))


def record(name, ours, theirs):
    diff = rel(ours, theirs)
    WORST[name] = max(WORST.get(name, 0.0), diff)
    return diff


@pytest.fixture(scope="module", autouse=True)
def report():
    yield
    if WORST:
        print("\nworst relative difference:",
              ", ".join(f"{k} {v:.1e}" for k, v in sorted(WORST.items())))


# ---- the torch twin ---------------------------------------------------------------------------
class ChannelsFirst(torch.nn.Module):
    """(n, steps, channels) -> (n, channels, steps)."""

    def forward(self, x):
        return x.permute(0, 2, 1)


class TorchResidual(torch.nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return x + self.inner(x)


class TorchDropout(torch.nn.Module):
    """Inverted dropout with a given keep mask in nnumba's layout, (n, steps * channels)
    step-major for a sequence, (n, features) for flat data; the identity in eval()."""

    def __init__(self, rate, shape):
        super().__init__()
        self.rate, self.shape, self.mask = rate, shape, None

    def forward(self, x):
        if not self.training:
            return x
        mask = self.mask.astype(np.float64)
        if len(self.shape) == 2:  # nnumba's (n, L*C), step-major, to torch's (n, C, L)
            mask = mask.reshape(-1, *self.shape).transpose(0, 2, 1)
        scale = 1.0 / (1.0 - self.rate)
        return x * torch.from_numpy(np.ascontiguousarray(mask) * scale)


def _conv_to_torch(k, c_in, c_out):
    return (lambda w: w.reshape(k, c_in, c_out).transpose(2, 1, 0),
            lambda g: g.transpose(2, 1, 0).reshape(k * c_in, c_out))


def _dense_to_torch(flattened):
    if flattened is None:
        return lambda w: w.T, lambda g: g.T
    steps, channels = flattened

    def there(w):  # W[s C + c, o] -> weight[o, c L + s]
        return w.reshape(steps, channels, -1).transpose(2, 1, 0).reshape(-1, steps * channels)

    def back(g):
        return g.reshape(-1, channels, steps).transpose(2, 1, 0).reshape(steps * channels, -1)
    return there, back


def _same(a):
    return a


_ACTIVATIONS = {L.ReLU: torch.nn.ReLU, L.Sigmoid: torch.nn.Sigmoid, L.Tanh: torch.nn.Tanh,
                L.Identity: torch.nn.Identity}


def _convert(layers, shape, links, dropouts):
    modules, flattened = [], None
    f64 = torch.float64
    for layer in layers:
        out_shape = layer.output_shape(shape)
        if isinstance(layer, L.Conv1D):
            m = torch.nn.Conv1d(layer.in_channels, layer.out_channels, layer.kernel_size,
                                layer.stride, layer.padding, bias=layer.bias, dtype=f64)
            there, back = _conv_to_torch(layer.kernel_size, layer.in_channels, layer.out_channels)
            links.append((m.weight, there, back))
            if layer.bias:
                links.append((m.bias, _same, _same))
        elif isinstance(layer, L.Dense):
            m = torch.nn.Linear(layer.in_features, layer.out_features, bias=layer.bias, dtype=f64)
            there, back = _dense_to_torch(flattened)
            links.append((m.weight, there, back))
            if layer.bias:
                links.append((m.bias, _same, _same))
        elif isinstance(layer, L.LeakyReLU):
            m = torch.nn.LeakyReLU(layer.alpha)
        elif type(layer) in _ACTIVATIONS:
            m = _ACTIVATIONS[type(layer)]()
        elif isinstance(layer, L.MaxPool1D):
            m = torch.nn.MaxPool1d(layer.pool_size, layer.stride)
        elif isinstance(layer, L.AvgPool1D):
            m = torch.nn.AvgPool1d(layer.pool_size, layer.stride)
        elif isinstance(layer, L.GlobalAvgPool1D):
            m = torch.nn.Sequential(torch.nn.AdaptiveAvgPool1d(1), torch.nn.Flatten())
        elif isinstance(layer, L.Flatten):
            m = torch.nn.Flatten() if len(shape) == 2 else torch.nn.Identity()
        elif isinstance(layer, L.Dropout):
            m = TorchDropout(layer.rate, shape)
            dropouts.append(m)
        elif isinstance(layer, L.BatchNorm):
            m = torch.nn.BatchNorm1d(layer.num_features, eps=layer.eps, momentum=layer.momentum,
                                     dtype=f64)
            links += [(m.weight, _same, _same), (m.bias, _same, _same)]
        elif isinstance(layer, L.Residual):
            inner = _convert(layer.layers, shape, links, dropouts)
            m = TorchResidual(torch.nn.Sequential(*inner))
        else:
            raise TypeError(f"no torch twin for {layer!r}")
        flattened = shape if isinstance(layer, L.Flatten) and len(shape) == 2 else None
        modules.append(m)
        shape = out_shape
    return modules


class Mirror:
    """The nnumba model as a torch.nn.Sequential with the same weights; ``links`` pairs
    each torch parameter with nnumba's in get_weights() order (and the maps both ways)."""

    def __init__(self, model):
        self.model = model
        shape = model.plan.input_shape
        self.links, self.dropouts = [], []
        modules = _convert(model.layers, shape, self.links, self.dropouts)
        if len(shape) == 2:
            modules.insert(0, ChannelsFirst())
        self.net = torch.nn.Sequential(*modules)
        weights = model.get_weights()
        assert len(weights) == len(self.links)
        with torch.no_grad():
            for (p, there, _), w in zip(self.links, weights):
                p.copy_(torch.from_numpy(np.ascontiguousarray(there(w))))
        self.batchnorms = [m for m in self.net.modules() if isinstance(m, torch.nn.BatchNorm1d)]

    def __call__(self, X):
        return self.net(torch.from_numpy(np.asarray(X, np.float64)))

    def grads(self):
        return [back(p.grad.numpy()) for p, _, back in self.links]

    def weights(self):
        return [back(p.detach().numpy()) for p, _, back in self.links]

    def set_masks(self, masks):
        for m, mask in zip(self.dropouts, masks):
            m.mask = mask


def torch_loss(name, out, y):
    if name == "mse":
        return torch.nn.functional.mse_loss(out, torch.from_numpy(y))
    if name == "binary_cross_entropy":
        return torch.nn.functional.binary_cross_entropy_with_logits(out, torch.from_numpy(y))
    return torch.nn.functional.cross_entropy(out, torch.from_numpy(y))


def torch_probabilities(name, out):
    return {"mse": lambda o: o, "cross_entropy": lambda o: torch.softmax(o, 1),
            "binary_cross_entropy": torch.sigmoid}[name](out).detach().numpy()


def targets(loss, n, n_out, rng):
    if loss == "cross_entropy":
        return rng.integers(0, n_out, size=n)
    if loss == "binary_cross_entropy":
        return rng.integers(0, 2, size=(n, n_out)).astype(np.float64)
    return rng.normal(size=(n, n_out))


def randomize(model, seed):
    """Non-trivial biases, gamma and beta (they start at 0 and 1), weights kept."""
    rng = np.random.default_rng(seed)
    weights = []
    for (name, _, shape), w in zip(model.plan.params, model.get_weights()):
        if name.startswith("gamma"):
            w = 1.0 + 0.3 * rng.normal(size=shape)
        elif name.startswith(("b", "beta")):
            w = 0.2 * rng.normal(size=shape)
        weights.append(w)
    model.set_weights(weights)
    return model


def running_statistics(model):
    """[(running mean, running var)] per BatchNorm, in op order, as host copies."""
    buffers = model._backend.memory.to_host(model._buffers)
    return [(buffers[off:off + ch].copy(), buffers[off + ch:off + 2 * ch].copy())
            for off, ch in model.plan.batchnorm_buffers()]


def dropout_ops(model):
    ops = model.plan.ops
    return [i for i in range(ops.shape[0]) if ops[i, codes.OP_KIND] == codes.OP_DROPOUT]


def dropout_masks(model, n):
    """The keep masks the next training step (and ``gradients``) uses, per Dropout op,
    (n, size) in nnumba's layout: the documented hash of (seed, t, op, row, element)."""
    t = model.optimizer.t + 1
    masks = []
    for i in dropout_ops(model):
        size = int(model.plan.ops[i, codes.OP_IN_SIZE])
        masks.append(dropout_keep(model._dropout_seed, t, i, np.arange(n, dtype=np.uint64)[:, None],
                                  np.arange(size, dtype=np.uint64)[None, :],
                                  float(model.plan.fops[i, codes.FOP_RATE])))
    return masks


def _train_forward(model, X):
    """(internal: there is no public training-mode forward) op i's output of the training
    forward pass that ``gradients`` runs, as a callable of i."""
    memory = model._backend.memory
    x = memory.asarray(model._inputs(X, "X"))
    n = x.shape[0]
    with model._workspace(n) as ws:
        model._loop.forward(model, x, ws, TRAIN)
        acts, rows = np.array(memory.to_host(ws.bundle.acts)), ws.rows

    def output(i):
        row = model.plan.ops[i]
        start = rows * int(row[codes.OP_OUT])
        return acts[start:start + n * int(row[codes.OP_OUT_SIZE])].reshape(n, -1)
    return output


def compare_loss_and_gradients(model, loss, X, y, tag, tol=1e-10):
    """gradients (torch in train mode), evaluate and predict (eval mode) against the torch
    twin, for a model without Dropout."""
    mirror = Mirror(model)
    mirror.net.train()
    value = torch_loss(loss, mirror(X), y)
    value.backward()
    ours = model.gradients(X, y)
    worst = 0.0
    for g, t in zip(ours, mirror.grads()):
        worst = max(worst, record(f"{tag} gradient", g, t))
    assert worst <= tol, worst
    eval_mirror = Mirror(model)
    eval_mirror.net.eval()
    out = eval_mirror(X)
    assert record(f"{tag} loss", model.evaluate(X, y)["loss"],
                  torch_loss(loss, out, y).item()) <= tol
    assert record(f"{tag} predict", model.predict(X), torch_probabilities(loss, out)) <= tol
    return value.item()


def train_both(model, loss, X, y, lr, steps, batch, tag, tol=1e-10):
    """``steps`` Adam steps on fixed batches, nnumba's train_step against torch.optim.Adam;
    returns the mirror after them."""
    mirror = Mirror(model)
    mirror.net.train()
    opt = torch.optim.Adam(mirror.net.parameters(), lr=lr, betas=(0.9, 0.999), eps=1e-8)
    n = X.shape[0]
    for step in range(steps):
        a = (step * batch) % n
        idx = np.arange(a, min(a + batch, n))
        if len(idx) < 2:
            idx = np.arange(0, batch)
        mirror.set_masks(dropout_masks(model, len(idx)))
        ours = model.train_step(X[idx], y[idx])
        opt.zero_grad()
        value = torch_loss(loss, mirror(X[idx]), y[idx])
        value.backward()
        opt.step()
        assert record(f"{tag} train loss", ours, value.item()) <= tol
    worst = max(record(f"{tag} weights after {steps} Adam steps", w, t)
                for w, t in zip(model.get_weights(), mirror.weights()))
    assert worst <= tol, worst
    return mirror


# ---- the networks ------------------------------------------------------------------------------
def mnist1d_cnn(backend, seed=0):
    return nn.Sequential([L.Conv1D(1, 25, 5, stride=2, padding=1), L.ReLU(),
                          L.Conv1D(25, 25, 3, 2, 1), L.ReLU(),
                          L.Conv1D(25, 25, 3, 2, 1), L.ReLU(),
                          L.Flatten(), L.Dense(125, 10)],
                         backend=backend, dtype="float64", seed=seed, input_shape=(40, 1))


def mnist1d_resmlp(backend, seed=0):
    return nn.Sequential([L.Dense(40, 100), L.ReLU(),
                          L.Residual([L.Dense(100, 100), L.ReLU()]),
                          L.Residual([L.Dense(100, 100), L.ReLU()]),
                          L.Dense(100, 10)], backend=backend, dtype="float64", seed=seed)


def bn_flat(backend, seed=0, n_in=6, hidden=8, bias=True):
    return nn.Sequential([L.Dense(n_in, hidden, bias=bias), L.BatchNorm(hidden), L.Sigmoid(),
                          L.Dense(hidden, 3)], backend=backend, dtype="float64", seed=seed)


def bn_sequence(backend, seed=0, steps=10, channels=2, filters=5, bias=True):
    return nn.Sequential([L.Conv1D(channels, filters, 3, padding=1, bias=bias), L.BatchNorm(filters),
                          L.ReLU(),
                          L.GlobalAvgPool1D(), L.Dense(filters, 3)],
                         backend=backend, dtype="float64", seed=seed,
                         input_shape=(steps, channels))


def pool_net(backend, kind, pool, stride, seed=0, steps=13, channels=2):
    return nn.Sequential([L.Conv1D(channels, 4, 3, padding=1), L.Tanh(), kind(pool, stride),
                          L.Conv1D(4, 3, 3), L.ReLU(), L.Flatten(),
                          L.Dense(3 * (((steps - pool) // stride + 1) - 2), 3)],
                         backend=backend, dtype="float64", seed=seed,
                         input_shape=(steps, channels))


def signals(n, steps, channels, seed):
    return np.random.default_rng(seed).normal(size=(n, steps, channels))


# ---- 1. the MNIST-1D CNN -----------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_cnn_loss_and_gradients(backend):
    rng = np.random.default_rng(1)
    X, y = signals(7, 40, 1, 0), rng.integers(0, 10, size=7)
    model = randomize(mnist1d_cnn(backend), 2)
    model.compile("cross_entropy", nn.optim.Adam(lr=1e-3))
    compare_loss_and_gradients(model, "cross_entropy", X, y, "cnn")


@pytest.mark.parametrize("backend", BACKENDS)
def test_cnn_input_gradient(backend):
    """There is no public input gradient: read it (internals) from the gradient region of
    an Identity placed first, which makes the first Conv1D write dL/dx."""
    rng = np.random.default_rng(1)
    X, y = signals(7, 40, 1, 0), rng.integers(0, 10, size=7)
    base = randomize(mnist1d_cnn(backend), 2)
    model = nn.Sequential([L.Identity()] + base.layers, backend=backend, dtype="float64", seed=0,
                          input_shape=(40, 1))
    model.set_weights(base.get_weights())
    model.compile("cross_entropy", nn.optim.Adam(lr=1e-3))
    memory = model._backend.memory
    x, t, lab = model._upload(*model._prepare(X, y))
    grads = memory.zeros(model.plan.n_params, model.dtype)
    with model._workspace(7) as ws:
        model._loop.loss_and_gradients(model, grads, x, t, lab, ws, TRAIN)
        row = model.plan.ops[0]
        assert row[codes.OP_KIND] == codes.OP_ACTIVATION
        deltas = memory.to_host(ws.bundle.deltas)
        start = ws.rows * int(row[codes.OP_OUT])
        ours = deltas[start:start + 7 * 40].reshape(7, 40, 1)
    xt = torch.from_numpy(X).requires_grad_(True)
    torch_loss("cross_entropy", Mirror(model).net(xt), y).backward()
    assert record("cnn input gradient", ours, xt.grad.numpy()) <= 1e-10


@pytest.mark.parametrize("backend", BACKENDS)
def test_cnn_adam_25_steps(backend):
    rng = np.random.default_rng(3)
    X, y = signals(20, 40, 1, 4), rng.integers(0, 10, size=20)
    model = randomize(mnist1d_cnn(backend, seed=5), 6)
    model.compile("cross_entropy", nn.optim.Adam(lr=0.01))
    train_both(model, "cross_entropy", X, y, 0.01, 25, 7, "cnn")


# ---- 2. the residual MLP -----------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_resmlp_loss_and_gradients(backend):
    rng = np.random.default_rng(7)
    X, y = rng.normal(size=(7, 40)), rng.integers(0, 10, size=7)
    model = randomize(mnist1d_resmlp(backend), 8)
    model.compile("cross_entropy", nn.optim.Adam(lr=1e-3))
    # 1e-9 element by element: a 100 x 100 gradient holds entries that cancel to 1e-6 of
    # its largest, which BLAS's order of summation moves by 1.4e-10 of themselves on a
    # Zen 5 CPU while the whole tensor agrees with torch's to 1e-15 of its largest
    compare_loss_and_gradients(model, "cross_entropy", X, y, "resmlp", tol=1e-9)


@pytest.mark.parametrize("backend", BACKENDS)
def test_resmlp_adam_25_steps(backend):
    rng = np.random.default_rng(9)
    X, y = rng.normal(size=(20, 40)), rng.integers(0, 10, size=20)
    model = randomize(mnist1d_resmlp(backend, seed=1), 10)
    model.compile("cross_entropy", nn.optim.Adam(lr=0.01))
    train_both(model, "resmlp", X, y, 0.01, 25, 7, "resmlp")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("net", ["flat", "sequence"])
def test_residual_as_first_layer(backend, net):
    """A Residual that reads the batch itself (its skip is the input X)."""
    rng = np.random.default_rng(35)
    if net == "flat":
        layers, shape = [L.Residual([L.Dense(4, 4), L.Tanh()]), L.Dense(4, 3)], (4,)
    else:
        layers, shape = [L.Residual([L.Conv1D(2, 2, 3, padding=1), L.Tanh()]), L.Flatten(),
                         L.Dense(14, 3)], (7, 2)
    model = randomize(nn.Sequential(layers, backend=backend, dtype="float64", seed=0,
                                    input_shape=shape), 36)
    model.compile("mse", nn.optim.SGD(lr=0.01))
    X, y = rng.normal(size=(6,) + shape), rng.normal(size=(6, 3))
    compare_loss_and_gradients(model, "mse", X, y, "residual first")


# ---- 3. BatchNorm ------------------------------------------------------------------------------
BN_NETS = {
    "flat": (bn_flat, lambda n, seed: np.random.default_rng(seed).normal(1.0, 2.0, size=(n, 6))),
    "sequence": (bn_sequence, lambda n, seed: signals(n, 10, 2, seed) * 1.5 + 0.5),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("net", sorted(BN_NETS))
def test_batchnorm_training_gradients(backend, net):
    build, data = BN_NETS[net]
    X, y = data(8, 11), np.random.default_rng(12).integers(0, 3, size=8)
    model = randomize(build(backend), 13)
    model.compile("cross_entropy", nn.optim.Adam(lr=0.01))
    before = running_statistics(model)
    mirror = Mirror(model)
    mirror.net.train()
    value = torch_loss("cross_entropy", mirror(X), y)
    value.backward()
    ours, theirs = model.gradients(X, y), mirror.grads()
    scale = max(float(np.max(np.abs(t))) for t in theirs)
    # the bias of the layer before BatchNorm does not change the output (the batch mean
    # takes it away): its gradient is 0 up to rounding, in both
    dead = [name == "b0" for name, _, _ in model.plan.params]
    assert dead[1] and model.plan.params[2][0].startswith("gamma")
    for g, t, is_dead in zip(ours, theirs, dead):
        if is_dead:
            assert np.max(np.abs(g)) <= 1e-14 * scale and np.max(np.abs(t)) <= 1e-14 * scale
            WORST[f"batchnorm {net} dead bias gradient / scale"] = max(
                WORST.get(f"batchnorm {net} dead bias gradient / scale", 0.0),
                float(np.max(np.abs(g))) / scale)
        else:
            assert record(f"batchnorm {net} train gradient", g, t) <= 1e-10
    # gradients() uses batch statistics and leaves the running statistics alone
    for (m0, v0), (m1, v1) in zip(before, running_statistics(model)):
        assert np.array_equal(m0, m1) and np.array_equal(v0, v1)
    assert all(np.all(m == 0) and np.all(v == 1) for m, v in before)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("net", sorted(BN_NETS))
def test_batchnorm_running_statistics_and_eval(backend, net):
    build, data = BN_NETS[net]
    X, y = data(24, 14), np.random.default_rng(15).integers(0, 3, size=24)
    # bias=False before BatchNorm, as usual: Adam would turn that bias's rounding-level
    # gradient (see above) into steps of lr * 1e-17 / eps, different in each library
    model = randomize(build(backend, bias=False), 16)
    model.compile("cross_entropy", nn.optim.Adam(lr=0.01))
    mirror = train_both(model, "cross_entropy", X, y, 0.01, 25, 6, f"batchnorm {net}")
    for (mean, var), bn in zip(running_statistics(model), mirror.batchnorms):
        assert record(f"batchnorm {net} running mean", mean, bn.running_mean.numpy()) <= 1e-10
        assert record(f"batchnorm {net} running var", var, bn.running_var.numpy()) <= 1e-10
    assert not np.allclose(running_statistics(model)[0][1], 1.0)  # they did move
    mirror.net.eval()
    Xt, yt = data(9, 17), np.random.default_rng(18).integers(0, 3, size=9)
    with torch.no_grad():
        out = mirror(Xt)
    assert record(f"batchnorm {net} eval loss", model.evaluate(Xt, yt)["loss"],
                  torch_loss("cross_entropy", out, yt).item()) <= 1e-10
    assert record(f"batchnorm {net} predict", model.predict(Xt),
                  torch.softmax(out, 1).numpy()) <= 1e-10
    # evaluation uses the running statistics: a single sample is fine and row-independent
    assert record(f"batchnorm {net} predict one row", model.predict(Xt[:1]),
                  torch.softmax(out[:1], 1).numpy()) <= 1e-10


# ---- 4. the pools ------------------------------------------------------------------------------
POOLS = [(L.MaxPool1D, 2, 2), (L.MaxPool1D, 3, 1), (L.AvgPool1D, 2, 2), (L.AvgPool1D, 3, 1)]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind, pool, stride", POOLS,
                         ids=[f"{k.__name__}-{p}-{s}" for k, p, s in POOLS])
def test_pool_loss_and_gradients(backend, kind, pool, stride):
    rng = np.random.default_rng(19)
    X, y = signals(6, 13, 2, 20), rng.normal(size=(6, 3))
    model = randomize(pool_net(backend, kind, pool, stride), 21)
    model.compile("mse", nn.optim.SGD(lr=0.01))
    compare_loss_and_gradients(model, "mse", X, y, f"{kind.__name__}({pool}, {stride})")


# ---- 5. Dropout --------------------------------------------------------------------------------
def _dropout_pair(backend, rate, op_loop=True):
    layers = [L.Dense(6, 8), L.Tanh(), L.Dropout(rate), L.Dense(8, 3)]
    with_dropout = randomize(nn.Sequential(layers, backend=backend, dtype="float64", seed=0), 22)
    without = nn.Sequential([layers[0], layers[1], layers[3]], backend=backend, dtype="float64",
                            seed=0, input_shape=(6,) if op_loop else None)
    without.set_weights(with_dropout.get_weights())
    for m in (with_dropout, without):
        m.compile("binary_cross_entropy", nn.optim.Adam(lr=0.01))
    return with_dropout, without


def _same_bits(a, b):
    return all(np.array_equal(x, y) for x, y in zip(a, b)) and len(a) == len(b)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("op_loop", [True, False], ids=["interpreter", "mlp-loop"])
def test_dropout_rate_0_is_the_identity(backend, op_loop):
    """Rate 0 gives the bits of the same model without the layer (run by the op-table
    interpreter: input_shape given; or, as built plainly, by the MLP loop)."""
    rng = np.random.default_rng(23)
    X, y = rng.normal(size=(11, 6)), rng.integers(0, 2, size=(11, 3)).astype(float)
    a, b = _dropout_pair(backend, 0.0, op_loop)
    assert a.evaluate(X, y) == b.evaluate(X, y)
    assert np.array_equal(a.predict(X), b.predict(X))
    assert _same_bits(a.gradients(X, y), b.gradients(X, y))
    for step in range(3):
        assert a.train_step(X[step:step + 5], y[step:step + 5]) == \
            b.train_step(X[step:step + 5], y[step:step + 5])
    ha = a.fit(X, y, epochs=2, batch_size=4, shuffle=True)
    hb = b.fit(X, y, epochs=2, batch_size=4, shuffle=True)
    assert np.array_equal(ha.loss_per_iteration, hb.loss_per_iteration)
    assert _same_bits(a.get_weights(), b.get_weights())


@pytest.mark.parametrize("backend", BACKENDS)
def test_dropout_inactive_in_predict_and_evaluate(backend):
    rng = np.random.default_rng(24)
    X, y = rng.normal(size=(11, 6)), rng.integers(0, 2, size=(11, 3)).astype(float)
    a, b = _dropout_pair(backend, 0.5)
    assert np.array_equal(a.predict(X), b.predict(X))
    assert a.evaluate(X, y) == b.evaluate(X, y)
    a.train_step(X, y)  # the step counter moves: predict still has no mask
    b.set_weights(a.get_weights())
    assert np.array_equal(a.predict(X), b.predict(X))
    # ... while training does use one: the gradients differ from the model without it
    assert not _same_bits(a.gradients(X, y), b.gradients(X, y))


DROPOUT_NETS = {
    "dense": (lambda backend: nn.Sequential([L.Dense(6, 10), L.Dropout(0.5), L.Dense(10, 3)],
                                            backend=backend, dtype="float64", seed=3),
              lambda n, seed: np.random.default_rng(seed).normal(size=(n, 6))),
    "sequence": (lambda backend: nn.Sequential([L.Conv1D(2, 3, 3), L.Dropout(0.4), L.ReLU(),
                                                L.Flatten(), L.Dense(18, 3)],
                                               backend=backend, dtype="float64", seed=3,
                                               input_shape=(8, 2)),
                 lambda n, seed: signals(n, 8, 2, seed)),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("net", sorted(DROPOUT_NETS))
def test_dropout_gradient_with_recovered_mask(backend, net):
    build, data = DROPOUT_NETS[net]
    X = data(9, 25)
    y = np.random.default_rng(26).integers(0, 2, size=(9, 3)).astype(float)
    model = randomize(build(backend), 27)
    model.compile("binary_cross_entropy", nn.optim.SGD(lr=0.1))
    for _ in range(2):  # at t = 1 and, after one step, at t = 2: new masks
        masks = dropout_masks(model, 9)
        # the documented hash is the mask the training forward pass applies (its input is
        # nonzero almost surely, so the zeros of its output are the dropped elements)
        output = _train_forward(model, X)
        for i, mask in zip(dropout_ops(model), masks):
            assert np.array_equal(output(i) != 0, mask)
            assert 0.3 < mask.mean() < 0.8
        mirror = Mirror(model)
        mirror.set_masks(masks)
        torch_loss("binary_cross_entropy", mirror(X), y).backward()
        worst = max(record(f"dropout {net} gradient", g, t)
                    for g, t in zip(model.gradients(X, y), mirror.grads()))
        assert worst <= 1e-10, worst
        model.train_step(X, y)
    assert not np.array_equal(masks[0], dropout_masks(model, 9)[0])


@pytest.mark.parametrize("backend", BACKENDS)
def test_dropout_adam_steps_with_masks(backend):
    build, data = DROPOUT_NETS["dense"]
    X = data(20, 28)
    y = np.random.default_rng(29).integers(0, 2, size=(20, 3)).astype(float)
    model = randomize(build(backend), 30)
    model.compile("binary_cross_entropy", nn.optim.Adam(lr=0.01))
    train_both(model, "binary_cross_entropy", X, y, 0.01, 25, 7, "dropout")


# ---- 6. central finite differences (numpy backend) --------------------------------------------
def _fd_loss(model, flat, X, y, t0):
    """The mean training loss at the parameters ``flat`` (batch statistics, the dropout
    masks of step t0 + 1): the loss train_step reports before its update."""
    model.set_weights(model.plan.split(flat))
    model.optimizer.t = t0
    return model.train_step(X, y)


def check_finite_differences(model, X, y, tag, h=1e-5, tol=1e-6):
    assert isinstance(model.optimizer, nn.optim.SGD)
    t0 = model.optimizer.t
    weights = model.get_weights()
    flat0 = np.concatenate([w.ravel() for w in weights])
    analytic = np.concatenate([g.ravel() for g in model.gradients(X, y)])
    fd = np.empty_like(flat0)
    for j in range(flat0.size):
        plus, minus = flat0.copy(), flat0.copy()
        plus[j] += h
        minus[j] -= h
        fd[j] = (_fd_loss(model, plus, X, y, t0) - _fd_loss(model, minus, X, y, t0)) / (2 * h)
    model.set_weights(weights)
    model.optimizer.t = t0
    # elementwise, with a floor of 1e-3 of the largest gradient for the entries near zero,
    # where the absolute error of the difference quotient (~1e-11) is all there is
    scale = max(float(np.max(np.abs(analytic))), 1e-12)
    err = np.abs(analytic - fd) / np.maximum(np.abs(analytic), 1e-3 * scale)
    WORST[f"finite differences {tag}"] = max(WORST.get(f"finite differences {tag}", 0.0),
                                             float(err.max()))
    assert err.max() <= tol, (tag, float(err.max()), int(err.argmax()))
    assert np.count_nonzero(analytic) > 0.5 * analytic.size


def _fd_cnn():
    return nn.Sequential([L.Conv1D(1, 3, 5, stride=2, padding=1), L.ReLU(),
                          L.Conv1D(3, 3, 3, 2, 1), L.ReLU(), L.Flatten(), L.Dense(9, 4)],
                         backend="numpy", dtype="float64", seed=0, input_shape=(11, 1))


def _fd_resmlp():
    return nn.Sequential([L.Dense(6, 5), L.ReLU(), L.Residual([L.Dense(5, 5), L.ReLU()]),
                          L.Residual([L.Dense(5, 5), L.ReLU()]), L.Dense(5, 4)],
                         backend="numpy", dtype="float64", seed=0)


FD_NETS = {
    "cnn": (_fd_cnn, (5, 11, 1), "cross_entropy"),
    "resmlp": (_fd_resmlp, (5, 6), "cross_entropy"),
    "batchnorm flat": (lambda: bn_flat("numpy", n_in=4, hidden=5), (6, 4), "cross_entropy"),
    "batchnorm sequence": (lambda: bn_sequence("numpy", steps=5, channels=2, filters=3), (4, 5, 2),
                           "cross_entropy"),
    "maxpool 2 2": (lambda: pool_net("numpy", L.MaxPool1D, 2, 2, steps=9), (4, 9, 2), "mse"),
    "maxpool 3 1": (lambda: pool_net("numpy", L.MaxPool1D, 3, 1, steps=7), (4, 7, 2), "mse"),
    "avgpool 2 2": (lambda: pool_net("numpy", L.AvgPool1D, 2, 2, steps=9), (4, 9, 2), "mse"),
    "avgpool 3 1": (lambda: pool_net("numpy", L.AvgPool1D, 3, 1, steps=7), (4, 7, 2), "mse"),
    "dropout dense": (lambda: nn.Sequential([L.Dense(5, 6), L.Dropout(0.5), L.Dense(6, 3)],
                                            backend="numpy", dtype="float64", seed=0),
                      (5, 5), "binary_cross_entropy"),
    "dropout sequence": (lambda: nn.Sequential([L.Conv1D(2, 3, 3), L.Dropout(0.4), L.Tanh(),
                                                L.Flatten(), L.Dense(12, 3)],
                                               backend="numpy", dtype="float64", seed=0,
                                               input_shape=(6, 2)),
                         (5, 6, 2), "binary_cross_entropy"),
    "everything": (lambda: _fused_net("numpy", steps=5, seed=0), (5, 5, 2), "cross_entropy"),
}


@pytest.mark.parametrize("net", list(FD_NETS))
def test_finite_differences(net):
    build, shape, loss = FD_NETS[net]
    rng = np.random.default_rng(31)
    X = rng.normal(size=shape)
    model = randomize(build(), 32)
    y = targets(loss, shape[0], model.plan.n_out, rng)
    model.compile(loss, nn.optim.SGD(lr=0.1))
    check_finite_differences(model, X, y, net)


# ---- 7. the fused epoch, seeds and backends ---------------------------------------------------
def _fused_net(backend, steps=9, seed=0):
    # no bias before BatchNorm: it would be dead weight whose rounding-level gradient Adam
    # turns into steps of lr * 1e-17 / eps, different on each backend (see the BatchNorm tests)
    return nn.Sequential([L.Conv1D(2, 4, 3, padding=1, bias=False), L.BatchNorm(4), L.ReLU(), L.Dropout(0.25),
                          L.Residual([L.Conv1D(4, 4, 3, padding=1), L.Tanh()]), L.Flatten(),
                          L.Dense(4 * steps, 3)],
                         backend=backend, dtype="float64", seed=seed, input_shape=(steps, 2))


def _fused_data():
    rng = np.random.default_rng(33)
    return signals(23, 9, 2, 34), rng.integers(0, 3, size=23)


def _state(model):
    memory = model._backend.memory
    return (model.get_weights(), [memory.to_host(model._buffers).copy()],
            [memory.to_host(model.optimizer.state).copy()], model.optimizer.t)


def _compiled(model):
    model.compile("cross_entropy", nn.optim.Adam(lr=0.01))
    return model


@pytest.mark.parametrize("backend", BACKENDS)
def test_fit_equals_train_steps(backend):
    X, y = _fused_data()
    fitted = _compiled(_fused_net(backend))
    history = fitted.fit(X, y, epochs=2, batch_size=5, shuffle=False)
    stepped = _compiled(_fused_net(backend))
    losses = [stepped.train_step(X[a:a + 5], y[a:a + 5]) for _ in range(2) for a in range(0, 23, 5)]
    w1, b1, s1, t1 = _state(fitted)
    w2, b2, s2, t2 = _state(stepped)
    assert t1 == t2 == 10
    assert _same_bits(w1, w2)
    assert _same_bits(b1, b2)
    assert _same_bits(s1, s2)
    assert np.array_equal(history.loss_per_iteration, np.array(losses))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shuffle", [False, True])
def test_same_seed_same_bits(backend, shuffle):
    X, y = _fused_data()
    runs = []
    for _ in range(2):
        model = _compiled(_fused_net(backend, seed=7))
        history = model.fit(X, y, epochs=2, batch_size=5, shuffle=shuffle)
        runs.append((_state(model), history.loss_per_iteration, model.predict(X)))
    (wa, ba, sa, _), la, pa = runs[0]
    (wb, bb, sb, _), lb, pb = runs[1]
    assert _same_bits(wa, wb) and _same_bits(ba, bb) and _same_bits(sa, sb)
    assert np.array_equal(la, lb) and np.array_equal(pa, pb)
    other = _compiled(_fused_net(backend, seed=8))
    other.fit(X, y, epochs=2, batch_size=5, shuffle=shuffle)
    assert not _same_bits(wa, other.get_weights())


def test_cpu_matches_numpy_after_fit():
    X, y = _fused_data()
    results = {}
    for backend in BACKENDS:
        model = _compiled(_fused_net(backend, seed=9))
        history = model.fit(X, y, epochs=2, batch_size=5, shuffle=True)
        results[backend] = (_state(model), history.loss_per_iteration, model.predict(X))
    (wn, bn, sn, tn), ln, pn = results["numpy"]
    (wc, bc, sc, tc), lc, pc = results["cpu"]
    assert tn == tc == 10
    worst = max([record("cpu vs numpy weights after fit", c, n) for c, n in zip(wc, wn)]
                + [record("cpu vs numpy running statistics", bc[0], bn[0]),
                   record("cpu vs numpy losses", lc, ln), record("cpu vs numpy predict", pc, pn)])
    assert worst <= 1e-10, worst
