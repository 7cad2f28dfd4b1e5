"""The op-table layers through the model: the interpreter against the MLP loop, the
backends against each other, exact resume, weight decay against torch, bad input.

(Each kernel is tested against torch, finite differences and its twins in the
test_<kind>_kernels modules; whole models against torch in test_layers_torch.)
"""
import os

import numpy as np
import pytest

import nnumba as nn
from nnumba.loops import OpLoop

L = nn.layers


def signals(n=24, steps=12, channels=2, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, steps, channels)), rng.integers(0, classes, n)


def cnn(backend, seed=0, dtype="float64", optimizer=None):
    model = nn.Sequential(
        [L.Conv1D(2, 4, 3, stride=1, padding=1), nn.ReLU(), L.BatchNorm(4), L.MaxPool1D(2),
         L.Conv1D(4, 5, 3, stride=2, padding="valid"), nn.Tanh(), L.Dropout(0.25),
         L.Residual([L.Conv1D(5, 5, 3, padding="same"), nn.ReLU()]), L.AvgPool1D(2, stride=1),
         L.Flatten(), nn.Dense(5, 3)],
        backend=backend, dtype=dtype, seed=seed, input_shape=(12, 2))
    model.compile("cross_entropy", optimizer or nn.optim.Adam(lr=0.01))
    return model


def weights_equal(a, b):
    return all(np.array_equal(x, y) for x, y in zip(a.get_weights(), b.get_weights()))


def test_plan_of_the_mnist1d_cnn():
    plan = nn.Sequential([L.Conv1D(1, 25, 5, 2, 1), nn.ReLU(), L.Conv1D(25, 25, 3, 2, 1), nn.ReLU(),
                          L.Conv1D(25, 25, 3, 2, 1), nn.ReLU(), L.Flatten(), nn.Dense(125, 10)],
                         input_shape=(40, 1), backend="numpy").plan
    assert plan.output_shape == (10,) and not plan.is_mlp
    assert [tuple(r) for r in plan.ops[:, [6, 7, 8, 9]]] == [(40, 1, 19, 25), (19, 25, 10, 25),
                                                            (10, 25, 5, 25), (1, 125, 1, 10)]
    assert plan.layer_names == ["conv1d_0", "conv1d_1", "conv1d_2", "dense_0"]
    assert plan.n_params == 25 * 5 + 25 + 3 * 25 * 25 * 2 + 2 * 25 + 1250 + 10
    assert "conv1d" in plan.describe()


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
def test_interpreter_runs_an_mlp_as_the_mlp_loop_does(backend):
    """The same MLP through both loops: the same bits after 3 epochs."""
    X = np.random.default_rng(1).normal(size=(37, 6))
    y = np.arange(37) % 4

    def build():
        m = nn.Sequential([nn.Dense(6, 9), nn.Tanh(), nn.Dense(9, 7), nn.ReLU(), nn.Dense(7, 4)],
                          backend=backend, dtype="float64", seed=5)
        m.compile("cross_entropy", nn.optim.Adam(lr=0.01, weight_decay=1e-2))
        return m

    mlp, ops = build(), build()
    ops._loop = OpLoop(ops._backend, ops.plan)
    h1 = mlp.fit(X, y, epochs=3, batch_size=8)
    h2 = ops.fit(X, y, epochs=3, batch_size=8)
    assert h1.history["loss"] == h2.history["loss"]
    np.testing.assert_array_equal(h1.grad_norms, h2.grad_norms)
    for a, b in zip(mlp.get_weights(), ops.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)


def test_cpu_matches_the_reference_through_fit():
    X, y = signals()
    ref, cpu = cnn("numpy"), cnn("cpu")
    h_ref = ref.fit(X, y, epochs=3, batch_size=5)
    h_cpu = cpu.fit(X, y, epochs=3, batch_size=5)
    np.testing.assert_allclose(h_cpu.history["loss"], h_ref.history["loss"], rtol=1e-12)
    for a, b in zip(cpu.get_weights(), ref.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(cpu._buffers, ref._buffers, rtol=1e-10)
    np.testing.assert_allclose(cpu.predict(X), ref.predict(X), rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
def test_fused_fit_equals_train_steps_and_the_same_seed_the_same_bits(backend):
    X, y = signals(n=20)
    fused, stepped, again = cnn(backend), cnn(backend), cnn(backend)
    fused.fit(X, y, epochs=2, batch_size=6, shuffle=False)
    again.fit(X, y, epochs=2, batch_size=6, shuffle=False)
    for _ in range(2):
        for a in range(0, 20, 6):
            stepped.train_step(X[a:a + 6], y[a:a + 6])
    assert weights_equal(fused, stepped) and weights_equal(fused, again)
    np.testing.assert_array_equal(fused._buffers, stepped._buffers)


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
def test_resume_is_exact_with_dropout_and_batchnorm(backend, tmp_path):
    X, y = signals()
    whole, half = cnn(backend, optimizer=nn.optim.AdamW(lr=0.01)), \
        cnn(backend, optimizer=nn.optim.AdamW(lr=0.01))
    whole.fit(X, y, epochs=4, batch_size=5)
    half.fit(X, y, epochs=2, batch_size=5)
    half.save(tmp_path / "half.npz")
    resumed = nn.load(tmp_path / "half.npz")
    assert resumed.input_shape == (12, 2) and resumed.epochs_trained == 2
    resumed.fit(X, y, epochs=2, batch_size=5)
    assert weights_equal(whole, resumed)
    np.testing.assert_array_equal(whole._buffers, resumed._buffers)
    assert whole.optimizer.t == resumed.optimizer.t


def test_dropout_and_batchnorm_act_in_fit_only():
    X, y = signals(n=10)
    model = cnn("numpy")
    before = model.predict(X)
    np.testing.assert_array_equal(model.predict(X), before)  # no dropout, running stats
    buffers = model._buffers.copy()
    model.gradients(X, y)  # training mode, but the running statistics stay
    np.testing.assert_array_equal(model._buffers, buffers)
    model.fit(X, y, epochs=1, batch_size=5)
    assert not np.array_equal(model._buffers, buffers)


def test_predict_returns_the_natural_shape():
    model = nn.Sequential([L.Conv1D(2, 3, 3, padding="same"), nn.ReLU()], input_shape=(7, 2),
                          backend="numpy", dtype="float64", seed=0)
    X = np.random.default_rng(0).normal(size=(4, 7, 2))
    assert model.predict(X).shape == (4, 7, 3)


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
def test_gradient_norms_name_every_parameterised_layer(backend):
    X, y = signals()
    model = cnn(backend)
    history = model.fit(X, y, epochs=1, batch_size=8, record_grad_norms="iteration")
    assert history.layer_names == ["conv1d_0", "batchnorm_0", "conv1d_1", "conv1d_2", "dense_0"]
    assert history.grad_norms.shape == (1, 5) and np.all(history.grad_norms > 0)
    report = nn.diagnostics.gradient_report(model, X, y)
    assert "conv1d_0" in str(report)


# ---- weight decay ----------------------------------------------------------------------------

@pytest.mark.parametrize("backend", ["numpy", "cpu"])
@pytest.mark.parametrize("name", ["sgd", "momentum", "rmsprop", "adam", "adamw"])
def test_weight_decay_matches_torch(backend, name):
    """25 steps against torch with a parameter group that decays only the weights."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(40, 5)), rng.integers(0, 3, 40)
    make = {
        "sgd": (lambda: nn.optim.SGD(lr=0.1, weight_decay=0.05),
                lambda p: torch.optim.SGD(p, lr=0.1)),
        "momentum": (lambda: nn.optim.Momentum(lr=0.1, beta=0.9, weight_decay=0.05),
                     lambda p: torch.optim.SGD(p, lr=0.1 * (1 - 0.9), momentum=0.9)),
        "rmsprop": (lambda: nn.optim.RMSprop(lr=0.01, beta=0.9, eps=1e-8, eps_inside_sqrt=False,
                                             weight_decay=0.05),
                    lambda p: torch.optim.RMSprop(p, lr=0.01, alpha=0.9, eps=1e-8)),
        "adam": (lambda: nn.optim.Adam(lr=0.01, weight_decay=0.05),
                 lambda p: torch.optim.Adam(p, lr=0.01)),
        "adamw": (lambda: nn.optim.AdamW(lr=0.01, weight_decay=0.05),
                  lambda p: torch.optim.AdamW(p, lr=0.01)),
    }[name]
    model = nn.Sequential([nn.Dense(5, 8), nn.Tanh(), nn.Dense(8, 3)], backend=backend,
                          dtype="float64", seed=0)
    model.compile("cross_entropy", make[0]())
    w = model.get_weights()
    lin1, lin2 = torch.nn.Linear(5, 8, dtype=torch.float64), torch.nn.Linear(8, 3, dtype=torch.float64)
    with torch.no_grad():
        for lin, W, b in ((lin1, w[0], w[1]), (lin2, w[2], w[3])):
            lin.weight.copy_(torch.from_numpy(W.T.copy()))
            lin.bias.copy_(torch.from_numpy(b))
    net = torch.nn.Sequential(lin1, torch.nn.Tanh(), lin2)
    opt = make[1]([{"params": [lin1.weight, lin2.weight], "weight_decay": 0.05},
                   {"params": [lin1.bias, lin2.bias], "weight_decay": 0.0}])
    for step in range(25):
        a = (step * 8) % 40
        model.train_step(X[a:a + 8], y[a:a + 8])
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(torch.from_numpy(X[a:a + 8])),
                                          torch.from_numpy(y[a:a + 8])).backward()
        opt.step()
    ours = model.get_weights()
    theirs = [lin1.weight.detach().numpy().T, lin1.bias.detach().numpy(),
              lin2.weight.detach().numpy().T, lin2.bias.detach().numpy()]
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-13)


def test_weight_decay_skips_biases_and_batchnorm():
    """With zero gradients (lr > 0, a loss that ignores the network), only W moves."""
    model = nn.Sequential([nn.Dense(3, 4), L.BatchNorm(4), nn.Dense(4, 2)], backend="numpy",
                          dtype="float64", seed=0)
    model.compile("mse", nn.optim.AdamW(lr=0.1, weight_decay=0.5))
    before = model.get_weights()
    X = np.zeros((4, 3))
    model.train_step(X, model.predict(X))  # targets = outputs: zero gradient everywhere
    after = model.get_weights()
    np.testing.assert_allclose(after[0], before[0] * (1 - 0.1 * 0.5))   # W0 decayed
    np.testing.assert_array_equal(after[1], before[1])                  # b0
    np.testing.assert_array_equal(after[2], before[2])                  # gamma
    np.testing.assert_array_equal(after[3], before[3])                  # beta
    np.testing.assert_allclose(after[4], before[4] * (1 - 0.1 * 0.5))   # W1


# ---- bad input ---------------------------------------------------------------------------------

@pytest.mark.parametrize("make, message", [
    (lambda: nn.Sequential([L.Conv1D(1, 4, 9)], input_shape=(5, 1)),
     r"kernel_size 9 is larger than the padded input \(5 steps \+ 2 x padding 0 = 5\)"),
    (lambda: nn.Sequential([L.Conv1D(1, 25, 5)], input_shape=(40, 3)),
     r"Conv1D\(1, 25, 5\) expects 1 channel but the input has 3"),
    (lambda: nn.Sequential([L.MaxPool1D(8), L.Flatten(), nn.Dense(1, 2)], input_shape=(5, 1)),
     r"pool_size 8 is larger than the sequence \(5 steps\)"),
    (lambda: nn.Sequential([nn.Dense(4, 5), L.Residual([nn.Dense(5, 3)])]),
     r"changes the shape from 5 to 3"),
    (lambda: nn.Sequential([L.Conv1D(1, 2, 3), nn.Dense(2, 2)], input_shape=(6, 1)),
     r"add nn.Flatten\(\) before it"),
    (lambda: nn.Sequential([L.Conv1D(1, 2, 3), L.Flatten(), nn.Dense(8, 2)]),
     r"does not fix the input's shape: give input_shape"),
    (lambda: L.Dropout(1.0), r"rate must be in \[0, 1\), got 1"),
    (lambda: L.Dropout(-0.1), r"rate must be in \[0, 1\)"),
    (lambda: nn.optim.Adam(weight_decay=-1e-3), r"weight_decay must be in \[0, inf\]"),
    (lambda: L.Conv1D(1, 2, 4, padding="same"), r"padding='same' needs an odd kernel_size"),
    (lambda: L.BatchNorm(0), r"num_features must be >= 1"),
])
def test_bad_layers_are_refused_with_the_numbers(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_bad_inputs_leave_the_model_unchanged():
    model = cnn("numpy")
    before = model.get_weights()
    X, y = signals()
    with pytest.raises(ValueError, match=r"must be a 3-D array \(samples, steps, channels\)"):
        model.fit(X.reshape(len(X), -1), y)
    with pytest.raises(ValueError, match=r"has 12 steps of 3 channels, but Conv1D\(2, 4, 3"):
        model.fit(np.zeros((4, 12, 3)), y[:4])
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    assert model.epochs_trained == 0 and model.optimizer.t == 0
    bn = nn.Sequential([nn.Dense(2, 3), L.BatchNorm(3), nn.Dense(3, 2)], backend="numpy")
    bn.compile("mse")
    with pytest.raises(ValueError, match=r"BatchNorm needs at least 2 values per channel"):
        bn.fit(np.zeros((3, 2)), np.zeros((3, 2)), batch_size=1)


# ---- cuda (simulator) ------------------------------------------------------------------------

@pytest.mark.cuda
def test_cuda_interpreter_matches_the_reference():
    import cuda_setup  # noqa: F401 (sets up numba.cuda, skips without it)

    X, y = signals(n=9, steps=12)
    ref, gpu = cnn("numpy"), cnn("cuda")
    ref.fit(X, y, epochs=1, batch_size=4, shuffle=False)
    gpu.fit(X, y, epochs=1, batch_size=4, shuffle=False)
    for a, b in zip(gpu.get_weights(), ref.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(gpu.predict(X), ref.predict(X), rtol=1e-9, atol=1e-12)


def test_no_reference_to_files_outside_the_repository():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for folder, _, files in os.walk(os.path.join(root, "nnumba")):
        for name in files:
            if name.endswith(".py"):
                text = open(os.path.join(folder, name), encoding="utf-8").read()
                assert ".." + "/shared" not in text, name  # (spelt so, not to match itself)


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
def test_running_statistics_that_overflow_are_not_kept(backend):
    """A batch whose variance overflows float32 leaves the loss finite (BatchNorm
    normalises it away) but would make the running variance inf: refused, and the
    model keeps what it had before that iteration, running statistics included."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(12, 3))
    X[8:] *= 1e21  # the third batch of 4
    y = rng.integers(0, 2, 12)

    def build():
        m = nn.Sequential([nn.Dense(3, 4), L.BatchNorm(4), nn.ReLU(), nn.Dense(4, 2)],
                          backend=backend, dtype="float32", seed=0)
        m.compile("cross_entropy", nn.optim.SGD(lr=1e-3))
        return m

    model, steps = build(), build()
    with pytest.raises(nn.NonFiniteError) as err:
        model.fit(X, y, epochs=1, batch_size=4, shuffle=False)
    assert err.value.kind in ("running statistics", "loss", "gradient"), err.value.kind
    assert err.value.iteration == 3
    for a in (0, 4):
        steps.train_step(X[a:a + 4], y[a:a + 4])
    assert weights_equal(model, steps)
    np.testing.assert_array_equal(model._buffers, steps._buffers)
    assert np.isfinite(model._buffers).all() and model.optimizer.t == 2
