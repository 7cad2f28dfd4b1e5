"""SimpleRNN, LSTM, GRU and Bidirectional in models: against PyTorch (float64), against
finite differences, the fused loop against train_step, determinism, resume,
persistence and the refusal of bad input.

The torch twin (``Mirror``) is built from the nnumba model's own weights: W_ih and
W_hh are torch's weight_ih_l0 and weight_hh_l0 transposed, b_ih and b_hh its
biases; a Bidirectional layer is torch's bidirectional module (the backward
direction's weights are its ``_reverse`` set), whose last state is
(output[:, -1, :U], output[:, 0, U:]). The kernels themselves are compared with
torch and with each other in test_recurrent_kernels.py.
"""
import numpy as np
import pytest

import nnumba as nn
from nnumba.backends import codes
from nnumba.loops import TRAIN

torch = pytest.importorskip("torch")

BACKENDS = ["numpy", "cpu"]
CELLS = {"rnn": nn.SimpleRNN, "lstm": nn.LSTM, "gru": nn.GRU}
TORCH = {nn.SimpleRNN: torch.nn.RNN, nn.LSTM: torch.nn.LSTM, nn.GRU: torch.nn.GRU}
WORST = {}


def rel(ours, theirs):
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    assert ours.shape == theirs.shape, (ours.shape, theirs.shape)
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
        print("\nworst relative difference:", ", ".join(f"{k} {v:.1e}" for k, v in sorted(WORST.items())))


# ---- the torch twin ---------------------------------------------------------------------------
class TorchRecurrent(torch.nn.Module):
    """torch's module for a nnumba recurrent (or Bidirectional) layer, returning what the
    nnumba layer returns."""

    def __init__(self, layer, weights):
        super().__init__()
        inner = getattr(layer, "layer", layer)
        self.both = isinstance(layer, nn.Bidirectional)
        kwargs = {"nonlinearity": inner.activation} if isinstance(inner, nn.SimpleRNN) else {}
        self.rnn = TORCH[type(inner)](inner.in_features, inner.units, batch_first=True,
                                      bidirectional=self.both, dtype=torch.float64, **kwargs)
        self.units, self.sequences = inner.units, inner.return_sequences
        with torch.no_grad():
            for suffix, (w_ih, w_hh, b_ih, b_hh) in zip(("", "_reverse"), weights):
                getattr(self.rnn, f"weight_ih_l0{suffix}").copy_(torch.from_numpy(w_ih.T))
                getattr(self.rnn, f"weight_hh_l0{suffix}").copy_(torch.from_numpy(w_hh.T))
                getattr(self.rnn, f"bias_ih_l0{suffix}").copy_(torch.from_numpy(b_ih))
                getattr(self.rnn, f"bias_hh_l0{suffix}").copy_(torch.from_numpy(b_hh))

    def forward(self, x):
        out, _ = self.rnn(x)
        if self.sequences:
            return out
        if self.both:
            return torch.cat([out[:, -1, :self.units], out[:, 0, self.units:]], dim=1)
        return out[:, -1]

    def grads(self):
        suffixes = ("", "_reverse") if self.both else ("",)
        out = []
        for s in suffixes:
            out += [getattr(self.rnn, f"weight_ih_l0{s}").grad.numpy().T,
                    getattr(self.rnn, f"weight_hh_l0{s}").grad.numpy().T,
                    getattr(self.rnn, f"bias_ih_l0{s}").grad.numpy(),
                    getattr(self.rnn, f"bias_hh_l0{s}").grad.numpy()]
        return out

    def weights(self):
        suffixes = ("", "_reverse") if self.both else ("",)
        out = []
        for s in suffixes:
            out += [getattr(self.rnn, f"weight_ih_l0{s}").detach().numpy().T,
                    getattr(self.rnn, f"weight_hh_l0{s}").detach().numpy().T,
                    getattr(self.rnn, f"bias_ih_l0{s}").detach().numpy(),
                    getattr(self.rnn, f"bias_hh_l0{s}").detach().numpy()]
        return out


class Mirror:
    """The torch twin of a model of recurrent layers, Flatten, Dense and activations."""

    def __init__(self, model):
        weights = iter(model.get_weights())
        self.parts = []
        for layer in model.layers:
            if isinstance(layer, (nn.SimpleRNN, nn.LSTM, nn.GRU, nn.Bidirectional)):
                sets = [[next(weights) for _ in range(4)]
                        for _ in range(2 if isinstance(layer, nn.Bidirectional) else 1)]
                self.parts.append(TorchRecurrent(layer, sets))
            elif isinstance(layer, nn.Dense):
                lin = torch.nn.Linear(layer.in_features, layer.out_features, bias=layer.bias,
                                      dtype=torch.float64)
                with torch.no_grad():
                    lin.weight.copy_(torch.from_numpy(next(weights).T))
                    if layer.bias:
                        lin.bias.copy_(torch.from_numpy(next(weights)))
                self.parts.append(lin)
            elif isinstance(layer, nn.Flatten):
                self.parts.append(torch.nn.Flatten())
            elif isinstance(layer, nn.Identity):
                self.parts.append(torch.nn.Identity())
            else:
                self.parts.append({nn.ReLU: torch.nn.ReLU, nn.Tanh: torch.nn.Tanh,
                                   nn.Sigmoid: torch.nn.Sigmoid}[type(layer)]())
        self.net = torch.nn.Sequential(*self.parts)

    def __call__(self, X):
        return self.net(torch.from_numpy(np.asarray(X, np.float64)))

    def _collect(self, what):
        out = []
        for part in self.parts:
            if isinstance(part, TorchRecurrent):
                out += getattr(part, what)()
            elif isinstance(part, torch.nn.Linear):
                get = (lambda p: p.grad.numpy()) if what == "grads" else (lambda p: p.detach().numpy())
                out.append(get(part.weight).T)
                if part.bias is not None:
                    out.append(get(part.bias))
        return out

    def grads(self):
        return self._collect("grads")

    def weights(self):
        return self._collect("weights")


def randomize(model, seed, scale=0.5):
    rng = np.random.default_rng(seed)
    model.set_weights([scale * rng.normal(size=w.shape) for w in model.get_weights()])
    return model


def network(cell, bidirectional, sequences, steps, features=3, units=4, classes=3, stacked=False,
            activation="tanh", backend="numpy", seed=0, first_identity=False):
    kwargs = {"activation": activation} if cell is nn.SimpleRNN else {}
    layer = cell(features, units, return_sequences=sequences or stacked, **kwargs)
    width = 2 * units if bidirectional else units
    layers = [nn.Bidirectional(layer) if bidirectional else layer]
    if stacked:
        second = nn.GRU(width, units, return_sequences=sequences)
        layers.append(nn.Bidirectional(second) if bidirectional else second)
    layers += [nn.Flatten(), nn.Dense(width * (steps if sequences else 1), classes)]
    if first_identity:
        layers.insert(0, nn.Identity())
    model = nn.Sequential(layers, backend=backend, dtype="float64", seed=seed,
                          input_shape=(steps, features))
    model.compile("cross_entropy", nn.optim.Adam(lr=1e-2))
    return randomize(model, seed + 1)


def sequences_and_labels(n, steps, features=3, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, steps, features)), rng.integers(0, classes, size=n)


def loss_and_grads_torch(model, X, y):
    mirror = Mirror(model)
    value = torch.nn.functional.cross_entropy(mirror(X), torch.from_numpy(y))
    value.backward()
    return value.item(), mirror.grads(), mirror


GRID = [(cell, bi, seq, steps, n) for cell in CELLS for bi in (False, True) for seq in (False, True)
        for steps, n in ((1, 5), (2, 5), (17, 5), (17, 1))]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("cell,bidirectional,sequences,steps,n", GRID)
def test_loss_and_gradients_match_torch(backend, cell, bidirectional, sequences, steps, n):
    model = network(CELLS[cell], bidirectional, sequences, steps, backend=backend)
    X, y = sequences_and_labels(n, steps)
    value, theirs, mirror = loss_and_grads_torch(model, X, y)
    ours = model.gradients(X, y)
    tag = f"{cell}{' bidirectional' if bidirectional else ''}"
    assert max(record(f"{tag} gradient", g, t) for g, t in zip(ours, theirs)) <= 1e-10
    assert record(f"{tag} loss", model.evaluate(X, y)["loss"], value) <= 1e-10
    probabilities = torch.softmax(mirror(X), 1).detach().numpy()
    assert record(f"{tag} predict", model.predict(X), probabilities) <= 1e-10


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("cell", sorted(CELLS))
@pytest.mark.parametrize("bidirectional", [False, True])
def test_stacked_layers_and_input_gradient_match_torch(backend, cell, bidirectional):
    """Two recurrent layers (the second one's dL/dx is the first one's output gradient;
    a Bidirectional pair writes and then adds it) and dL/dX itself, read from the
    gradient region of an Identity placed first."""
    steps, n = 6, 4
    model = network(CELLS[cell], bidirectional, True, steps, stacked=True, backend=backend,
                    first_identity=True)
    X, y = sequences_and_labels(n, steps, seed=3)
    xt = torch.from_numpy(X).requires_grad_(True)
    mirror = Mirror(model)
    torch.nn.functional.cross_entropy(mirror.net(xt), torch.from_numpy(y)).backward()
    ours = model.gradients(X, y)
    assert max(record("stacked gradient", g, t) for g, t in zip(ours, mirror.grads())) <= 1e-10
    memory = model._backend.memory
    x, t, lab = model._upload(*model._prepare(X, y))
    grads = memory.zeros(model.plan.n_params, model.dtype)
    with model._workspace(n) as ws:
        model._loop.loss_and_gradients(model, grads, x, t, lab, ws, TRAIN)
        start = ws.rows * int(model.plan.ops[0, codes.OP_OUT])
        dx = memory.to_host(ws.bundle.deltas)[start:start + X.size].reshape(X.shape)
    assert record("input gradient", dx, xt.grad.numpy()) <= 1e-10


@pytest.mark.parametrize("backend", BACKENDS)
def test_relu_rnn_matches_torch(backend):
    model = network(nn.SimpleRNN, False, True, 5, activation="relu", backend=backend)
    X, y = sequences_and_labels(5, 5, seed=4)
    value, theirs, _ = loss_and_grads_torch(model, X, y)
    assert max(record("relu rnn gradient", g, t) for g, t in zip(model.gradients(X, y), theirs)) \
        <= 1e-10


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("cell,bidirectional,sequences", [("rnn", False, True), ("lstm", False, False),
                                                          ("gru", True, True), ("lstm", True, False)])
def test_adam_25_steps_match_torch(backend, cell, bidirectional, sequences):
    steps, n, batch = 7, 10, 4
    model = network(CELLS[cell], bidirectional, sequences, steps, backend=backend)
    X, y = sequences_and_labels(n, steps, seed=5)
    mirror = Mirror(model)
    opt = torch.optim.Adam(mirror.net.parameters(), lr=1e-2, betas=(0.9, 0.999), eps=1e-8)
    for step in range(25):
        a = (step * batch) % (n - batch + 1)
        idx = np.arange(a, a + batch)
        ours = model.train_step(X[idx], y[idx])
        opt.zero_grad()
        value = torch.nn.functional.cross_entropy(mirror(X[idx]), torch.from_numpy(y[idx]))
        value.backward()
        opt.step()
        assert record("train loss", ours, value.item()) <= 1e-10
    worst = max(record("weights after 25 Adam steps", w, t)
                for w, t in zip(model.get_weights(), mirror.weights()))
    assert worst <= 1e-10


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_finite_differences_on_every_recurrent_parameter(cell):
    """Central differences of the mean loss, float64, every element of W_ih, W_hh, b_ih
    and b_hh of both directions of a stacked Bidirectional network."""
    steps, n = 4, 3
    model = network(CELLS[cell], True, False, steps, units=3, stacked=True)
    X, y = sequences_and_labels(n, steps, seed=6)
    analytic = model.gradients(X, y)
    weights = model.get_weights()
    h = 1e-6
    worst = 0.0
    for k, (name, _, _) in enumerate(model.plan.params):
        if not name.startswith(("W_", "b_")):
            continue
        flat = weights[k].reshape(-1)
        numeric = np.empty(flat.size)
        for e in range(flat.size):
            old = flat[e]
            flat[e] = old + h
            model.set_weights(weights)
            up = model.evaluate(X, y)["loss"]
            flat[e] = old - h
            model.set_weights(weights)
            down = model.evaluate(X, y)["loss"]
            flat[e] = old
            numeric[e] = (up - down) / (2 * h)
        model.set_weights(weights)
        scale = max(np.abs(numeric).max(), 1e-3)
        worst = max(worst, float(np.abs(numeric - analytic[k].reshape(-1)).max() / scale))
    WORST["finite differences"] = max(WORST.get("finite differences", 0.0), worst)
    assert worst <= 1e-6


def gru_baseline(backend, dtype="float64", seed=0, steps=12):
    model = nn.Sequential([nn.Bidirectional(nn.GRU(1, 6, return_sequences=True)), nn.Flatten(),
                           nn.Dense(steps * 12, 10)], backend=backend, dtype=dtype, seed=seed,
                          input_shape=(steps, 1))
    model.compile("cross_entropy", nn.optim.Adam(lr=1e-2))
    return model


def baseline_data(n=30, steps=12, seed=7):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, steps, 1)), rng.integers(0, 10, size=n)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fused_fit_equals_train_step_and_is_deterministic(backend, dtype):
    X, y = baseline_data()
    fused = gru_baseline(backend, dtype)
    fused.fit(X, y, epochs=2, batch_size=8, shuffle=False, verbose=0)
    again = gru_baseline(backend, dtype)
    again.fit(X, y, epochs=2, batch_size=8, shuffle=False, verbose=0)
    stepped = gru_baseline(backend, dtype)
    for _ in range(2):
        for a in range(0, 30, 8):
            stepped.train_step(X[a:a + 8], y[a:a + 8])
    for w_fused, w_again, w_stepped in zip(fused.get_weights(), again.get_weights(),
                                           stepped.get_weights()):
        np.testing.assert_array_equal(w_fused, w_again)
        np.testing.assert_array_equal(w_fused, w_stepped)


def test_cpu_matches_reference():
    X, y = baseline_data()
    models = {b: gru_baseline(b, "float64") for b in BACKENDS}
    for m in models.values():
        m.fit(X, y, epochs=2, batch_size=8, verbose=0)
    for a, b in zip(*(m.get_weights() for m in models.values())):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_resume_is_exact(backend, tmp_path):
    X, y = baseline_data()
    whole = gru_baseline(backend)
    whole.fit(X, y, epochs=3, batch_size=8, verbose=0)
    first = gru_baseline(backend)
    first.fit(X, y, epochs=1, batch_size=8, verbose=0)
    first.save(tmp_path / "gru.nnumba")
    resumed = nn.load(tmp_path / "gru.nnumba", backend=backend)
    assert repr(resumed.layers[0]) == "Bidirectional(GRU(1, 6, return_sequences=True))"
    resumed.fit(X, y, epochs=2, batch_size=8, verbose=0)
    for a, b in zip(whole.get_weights(), resumed.get_weights()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(whole.predict(X), resumed.predict(X))


def test_clipping_applies_to_recurrent_parameters():
    """clip_grad_norm bounds the global norm over every segment, recurrent ones included:
    one SGD step moves the weights by lr * g * max_norm / (||g|| + 1e-6), torch's rule."""
    X, y = sequences_and_labels(6, 9, seed=8)
    model = network(nn.SimpleRNN, False, False, 9, backend="numpy")
    model.compile("cross_entropy", nn.optim.SGD(lr=1.0))
    before = model.get_weights()
    g = model.gradients(X, y)
    norm = np.sqrt(sum(float(np.sum(a * a)) for a in g))
    limit = norm / 10
    model.fit(X, y, epochs=1, batch_size=6, clip_grad_norm=limit, verbose=0)
    for w0, w1, gk in zip(before, model.get_weights(), g):
        np.testing.assert_allclose(w0 - w1, gk * (limit / (norm + 1e-6)), rtol=1e-9, atol=1e-15)


def test_default_initialisation_is_torch_uniform():
    model = nn.Sequential([nn.LSTM(3, 16), nn.Dense(16, 2)], seed=0, input_shape=(5, 3))
    bound = 1 / np.sqrt(16)
    for (name, _, shape), w in list(zip(model.plan.params, model.get_weights()))[:4]:
        assert np.abs(w).max() <= bound and np.abs(w).max() > 0.8 * bound, name
        assert abs(float(w.mean())) < 0.05, name
    assert [name for name, _, _ in model.plan.params[:4]] == ["W_ih0", "W_hh0", "b_ih0", "b_hh0"]
    assert model.get_weights()[0].shape == (3, 64)
    custom = nn.Sequential([nn.GRU(3, 4, init="zeros"), nn.Dense(4, 2)], seed=0, input_shape=(5, 3))
    assert not any(np.any(w) for w in custom.get_weights()[:4])


# ---- bad input ---------------------------------------------------------------------------------
def test_bad_input_is_refused_with_the_numbers_and_the_model_unchanged():
    model = nn.Sequential([nn.LSTM(3, 16), nn.Dense(16, 2)], seed=0, input_shape=(10, 3))
    model.compile("cross_entropy", nn.optim.Adam())
    before = model.get_weights()
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, size=4)
    with pytest.raises(ValueError, match=r"3-D array \(samples, steps, channels\)"):
        model.fit(rng.normal(size=(4, 30)), y, verbose=0)
    with pytest.raises(ValueError, match=r"LSTM\(3, 16\) expects 3 features per step but X has 5"):
        model.fit(rng.normal(size=(4, 10, 5)), y, verbose=0)
    with pytest.raises(ValueError, match=r"sequences of length 0"):
        model.fit(np.zeros((4, 0, 3)), y, verbose=0)
    with pytest.raises(ValueError, match=r"expects 10 steps"):
        model.predict(rng.normal(size=(4, 9, 3)))
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match=r"units must be .*>= 1.*0"):
        nn.GRU(3, 0)
    with pytest.raises(TypeError, match=r"Bidirectional wraps a recurrent layer.*Dense\(3, 4\)"):
        nn.Bidirectional(nn.Dense(3, 4))
    with pytest.raises(ValueError, match=r"merge must be 'concat'"):
        nn.Bidirectional(nn.GRU(3, 4), merge="sum")
    with pytest.raises(ValueError, match=r"activation must be 'tanh' or 'relu'"):
        nn.SimpleRNN(3, 4, activation="sigmoid")
    with pytest.raises(ValueError, match=r"input_shape=\(steps, 3\)"):
        nn.Sequential([nn.LSTM(3, 4), nn.Dense(4, 2)])
    with pytest.raises(ValueError, match=r"GRU\(4, 5\) expects 4 features per step but the input has 6"):
        nn.Sequential([nn.LSTM(3, 6, return_sequences=True), nn.GRU(4, 5)], input_shape=(5, 3))
    with pytest.raises(ValueError, match=r"needs \(steps, features\) input"):
        nn.Sequential([nn.LSTM(3, 6), nn.GRU(6, 5)], input_shape=(5, 3))


# ---- diagnostics through time ------------------------------------------------------------------
def test_gradients_through_time_is_the_norm_of_dl_dh_t():
    """Against torch, unrolled by hand so that every h_t is a tensor of its own: the total
    gradient dL/dh_t (through the later steps and, for return_sequences, directly),
    for a SimpleRNN and both directions of a Bidirectional one."""
    steps, n, units = 8, 5, 4
    for bidirectional, sequences in ((False, False), (True, False), (False, True)):
        model = network(nn.SimpleRNN, bidirectional, sequences, steps, units=units)
        X, y = sequences_and_labels(n, steps, seed=9)
        result = nn.diagnostics.gradients_through_time(model, X, y)
        weights = [torch.from_numpy(w).requires_grad_(True) for w in model.get_weights()]
        x = torch.from_numpy(X)
        directions = 2 if bidirectional else 1
        states, outputs = [], []
        for d in range(directions):
            w_ih, w_hh, b_ih, b_hh = weights[4 * d:4 * d + 4]
            h = torch.zeros(n, units, dtype=torch.float64)
            hs = [None] * steps
            for t in (range(steps - 1, -1, -1) if d else range(steps)):
                h = torch.tanh(x[:, t] @ w_ih + b_ih + h @ w_hh + b_hh)
                h.retain_grad()
                hs[t] = h
            states.append(hs)
            outputs.append(torch.stack(hs, 1) if sequences else h)
        out = torch.cat(outputs, -1).reshape(n, -1) @ weights[-2] + weights[-1]
        torch.nn.functional.cross_entropy(out, torch.from_numpy(y)).backward()
        for name, hs in zip(result.layers, states):
            expected = np.array([np.linalg.norm(h.grad.numpy()) for h in hs])
            assert record("gradients through time", result[name], expected) <= 1e-10
        assert result.reverse[result.layers[-1]] == bidirectional


def test_gradient_report_flags_vanishing_through_time():
    """A tanh SimpleRNN with small recurrent weights over 30 steps: the gradient reaching
    step 0 from a loss at the end is orders of magnitude below the last step's; the
    report says so, and an LSTM with forget gates biased open keeps it."""
    steps = 30
    X, y = sequences_and_labels(16, steps, features=2, seed=10)
    rnn = nn.Sequential([nn.SimpleRNN(2, 8), nn.Dense(8, 3)], backend="numpy", dtype="float64",
                        seed=0, input_shape=(steps, 2))
    rnn.compile("cross_entropy", nn.optim.SGD(lr=0.1))
    weights = rnn.get_weights()
    weights[1] *= 0.3  # W_hh: a contraction per step
    rnn.set_weights(weights)
    report = nn.diagnostics.gradient_report(rnn, X, y)
    assert report.status == "vanishing"
    assert report.time_ratios["simple_rnn_0"] < 1e-6
    assert "simple_rnn_0: ||dL/dh|| at its first step" in str(report)
    lstm = nn.Sequential([nn.LSTM(2, 8), nn.Dense(8, 3)], backend="numpy", dtype="float64", seed=0,
                         input_shape=(steps, 2))
    lstm.compile("cross_entropy", nn.optim.SGD(lr=0.1))
    weights = lstm.get_weights()
    weights[2][8:16] = 5.0  # b_ih of the forget gate: f near 1, the cell path stays open
    lstm.set_weights(weights)
    assert nn.diagnostics.gradients_through_time(lstm, X, y).ratio("lstm_0") > 1e3 * \
        report.time_ratios["simple_rnn_0"]


def test_plot_gradients_through_time():
    pytest.importorskip("matplotlib")
    import matplotlib
    matplotlib.use("Agg")
    model = network(nn.GRU, True, False, 6)
    X, y = sequences_and_labels(4, 6)
    ax = nn.plot.plot_gradients_through_time(nn.diagnostics.gradients_through_time(model, X, y))
    assert len(ax.lines) == 2 and len(ax.lines[0].get_xdata()) == 6
    assert ax.get_yscale() == "log"
    with pytest.raises(TypeError, match="gradients_through_time"):
        nn.plot.plot_gradients_through_time([1, 2])


def test_the_reported_norms_of_a_recurrent_layer_are_w_hh_and_b_hh():
    model = network(nn.LSTM, True, False, 5)
    X, y = sequences_and_labels(4, 5)
    grads = model.gradients(X, y)
    norms = nn.diagnostics.gradient_norms(model, X, y)
    assert norms.layers == ["bidirectional_0_forward", "bidirectional_0_backward", "dense_0"]
    for k in range(2):  # each direction: W_ih, W_hh, b_ih, b_hh
        assert norms.weight[k] == np.linalg.norm(grads[4 * k + 1])
        assert norms.bias[k] == np.linalg.norm(grads[4 * k + 3])
    assert norms.weight[2] == np.linalg.norm(grads[8]) and norms.bias[2] == np.linalg.norm(grads[9])
    history = model.fit(X, y, epochs=1, batch_size=4, verbose=0)
    assert np.isclose(history.grad_norms[0][1], np.linalg.norm(grads[5]), rtol=1e-12)


def test_the_compile_announcement_says_an_lstm_takes_longer(capsys):
    """fit(verbose=1) says once that the first run compiles and about how long: an LSTM's
    parallel regions make its op-table loop compile for over a minute on cpu."""
    from nnumba import loops

    lstm = network(nn.LSTM, False, False, 2, backend="cpu")
    gru = network(nn.GRU, False, False, 2, backend="cpu")
    saved = set(loops._announced)
    loops._announced.clear()
    try:
        loops.announce_compile(lstm._loop, lstm.dtype, 1)
        loops.announce_compile(gru._loop, gru.dtype, 1)
        loops.announce_compile(lstm._loop, lstm.dtype, 1)  # once per kind of loop
    finally:
        loops._announced.clear()
        loops._announced.update(saved)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert "about 1-1.5 min" in lines[0] and "about 10-15 s" in lines[1]
