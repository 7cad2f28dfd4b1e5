"""User-defined optimizer rules (``nn.optim.rule``) and activations
(``nn.layers.activation``): against the built-ins bit for bit, against
hand-computed formulas and torch, on every backend (cuda in the simulator), with
schedules, clipping, weight decay, the non-finite checks, the derivative check,
save and resume."""
import math

import numpy as np
import pytest

import nnumba as nn
from nnumba.backends import codes

BACKENDS = ["numpy", "cpu"]


@nn.optim.rule(state=("m", "v"), defaults=dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8))
def adam_copy(w, g, m, v, lr, beta1, beta2, eps, t):
    """Adam in the built-in's efficient form (bias corrections folded into lr and eps)."""
    m = beta1 * m + (1 - beta1) * g
    v = beta2 * v + (1 - beta2) * g * g
    root = math.sqrt(1.0 - beta2 ** t)
    return w - lr * root / (1.0 - beta1 ** t) * m / (np.sqrt(v) + eps * root), m, v


@nn.optim.rule(defaults=dict(lr=0.01))
def sgd_copy(w, g, lr, t):
    return w - lr * g


@nn.optim.rule(state=("v",), defaults=dict(lr=0.01, beta=0.9))
def momentum_copy(w, g, v, lr, beta, t):
    v = beta * v + (1 - beta) * g
    return w - lr * v, v


@nn.optim.rule(state=("m",), defaults=dict(lr=1e-4, beta1=0.9, beta2=0.99))
def lion(w, g, m, lr, beta1, beta2, t):
    """Lion (Chen et al., 2023): the sign of an interpolated momentum."""
    c = beta1 * m + (1 - beta1) * g
    return w - lr * np.sign(c), beta2 * m + (1 - beta2) * g


def problem(n=40, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 6)), rng.integers(0, 3, size=n)


def mlp(backend, dtype, optimizer, seed=0):
    model = nn.Sequential([nn.Dense(6, 8), nn.Tanh(), nn.Dense(8, 3)], backend=backend, dtype=dtype,
                          seed=seed)
    model.compile("cross_entropy", optimizer)
    return model


def conv(backend, dtype, optimizer, seed=0):
    model = nn.Sequential([nn.Conv1D(1, 3, 3), nn.ReLU(), nn.Flatten(), nn.Dense(12, 3)],
                          backend=backend, dtype=dtype, seed=seed, input_shape=(6, 1))
    model.compile("cross_entropy", optimizer)
    return model


def fitted(build, backend, dtype, optimizer, X, y, epochs=3, **kwargs):
    model = build(backend, dtype, optimizer)  # (optimizer None: the builder's own)
    model.fit(X, y, epochs=epochs, batch_size=8, verbose=0, **kwargs)
    return model


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("build", [mlp, conv], ids=["mlp", "conv"])
def test_a_copy_of_adam_gives_the_built_ins_bits(backend, build):
    X, y = problem()
    if build is conv:
        X = X[:, :, None]
    ours = fitted(build, backend, "float64", adam_copy(lr=0.01), X, y)
    theirs = fitted(build, backend, "float64", nn.optim.Adam(lr=0.01), X, y)
    for a, b in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(ours.optimizer.state, theirs.optimizer.state) \
        if backend == "numpy" else None


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_copies_of_sgd_and_momentum_give_the_built_ins_bits(backend, dtype):
    """Their arithmetic is the built-ins' in either dtype (hyperparameters arrive in
    the model's dtype), so even float32 matches bit for bit."""
    X, y = problem(seed=1)
    for copy, builtin in ((sgd_copy(lr=0.1), nn.optim.SGD(lr=0.1)),
                          (momentum_copy(lr=0.1, beta=0.8), nn.optim.Momentum(lr=0.1, beta=0.8))):
        ours = fitted(mlp, backend, dtype, copy, X, y, epochs=2)
        theirs = fitted(mlp, backend, dtype, builtin, X, y, epochs=2)
        if dtype == "float64" or backend == "numpy":
            for a, b in zip(ours.get_weights(), theirs.get_weights()):
                np.testing.assert_array_equal(a, b)
        else:  # float32 on cpu: the rule's literal 1 is a float64 constant in Numba
            for a, b in zip(ours.get_weights(), theirs.get_weights()):
                np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_lion_against_the_formula(backend):
    X, y = problem(seed=2)
    model = mlp(backend, "float64", lion(lr=0.01, beta1=0.8, beta2=0.95))
    w = np.concatenate([a.ravel() for a in model.get_weights()])
    m = np.zeros_like(w)
    for step in range(3):
        batch = slice(8 * step, 8 * step + 8)
        g = np.concatenate([a.ravel() for a in model.gradients(X[batch], y[batch])])
        c = 0.8 * m + 0.2 * g
        w = w - 0.01 * np.sign(c)
        m = 0.95 * m + 0.05 * g
        model.train_step(X[batch], y[batch])
    np.testing.assert_allclose(np.concatenate([a.ravel() for a in model.get_weights()]), w,
                               rtol=0, atol=1e-15)
    state = model.optimizer.state_dict()
    assert sorted(state["state"]) == ["m"] and state["t"] == 3
    np.testing.assert_allclose(state["state"]["m"], m, rtol=1e-14, atol=1e-17)


@pytest.mark.parametrize("backend", BACKENDS)
def test_save_and_resume_with_the_rule_state(backend, tmp_path):
    X, y = problem(seed=3)
    whole = fitted(mlp, backend, "float64", lion(lr=0.01), X, y, epochs=3)
    first = fitted(mlp, backend, "float64", lion(lr=0.01), X, y, epochs=1)
    first.save(tmp_path / "lion.nnumba")
    resumed = nn.load(tmp_path / "lion.nnumba", backend=backend)
    assert type(resumed.optimizer) is lion and resumed.optimizer.beta2 == 0.99
    resumed.fit(X, y, epochs=2, batch_size=8, verbose=0)
    for a, b in zip(whole.get_weights(), resumed.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_schedules_clipping_and_weight_decay_apply_to_rules():
    X, y = problem(seed=4)
    schedule = nn.schedules.StepLR(0.1, step_size=3, gamma=0.5)
    kwargs = dict(clip_grad_norm=0.5, weight_decay=1e-3)
    ours = fitted(mlp, "cpu", "float64", sgd_copy(lr=schedule, **kwargs), X, y)
    theirs = fitted(mlp, "cpu", "float64", nn.optim.SGD(lr=schedule, **kwargs), X, y)
    for a, b in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_rule_that_overflows_is_refused_and_the_model_kept(backend):
    @nn.optim.rule(defaults=dict(lr=1.0, scale=1e300), name="overflow_rule")
    def blow_up(w, g, lr, scale, t):
        return w - lr * scale * scale * g

    X, y = problem(seed=5)
    model = mlp(backend, "float64", blow_up())
    before = model.get_weights()
    with pytest.raises(nn.NonFiniteError) as error:
        model.fit(X, y, epochs=1, batch_size=8, verbose=0)
    assert error.value.kind == "update"
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_a_rule_outside_a_model_and_on_the_mlp_path():
    """Optimizer.step (the reference form) and the model's choice of loop: a rule moves
    an MLP onto the op-table loop."""
    opt = lion(lr=0.1)
    w = np.array([1.0, -2.0])
    opt.step(w, np.array([0.5, -0.5]))
    np.testing.assert_allclose(w, [0.9, -1.9])
    model = mlp("cpu", "float64", lion())
    assert type(model._loop).__name__ == "OpLoop"
    model.compile("cross_entropy", nn.optim.Adam())
    assert type(model._loop).__name__ == "MLPLoop"
    assert nn.optim.get_optimizer("lion").__class__ is lion


def test_bad_rules_are_refused():
    with pytest.raises(TypeError, match=r"must take \(w, g, m, <hyperparameters>, t\)"):
        nn.optim.rule(state=("m",), defaults=dict(lr=1.0))(lambda w, g, lr, m, t: (w, m))
    with pytest.raises(TypeError, match="missing beta"):
        nn.optim.rule(defaults=dict(lr=1.0))(lambda w, g, lr, beta, t: w)
    with pytest.raises(TypeError, match="no lr argument"):
        nn.optim.rule(defaults=dict(step=1.0))(lambda w, g, step, t: w)
    with pytest.raises(ValueError, match="built-in optimizer's"):
        nn.optim.rule(defaults=dict(lr=1.0), name="adam")(lambda w, g, lr, t: w)
    with pytest.raises(TypeError, match="unexpected hyperparameter"):
        lion(lr=0.1, beta3=0.5)


@pytest.fixture
def small_cuda_launches(monkeypatch):
    """The simulator with tiny launch sizes (ragged blocks, and fast)."""
    cuda_setup = pytest.importorskip("cuda_setup")
    for name, value in cuda_setup.SMALL.items():
        monkeypatch.setattr(cuda_setup.cfg, name, value)


@pytest.mark.cuda
def test_rules_on_cuda_match_the_reference(small_cuda_launches):
    X, y = problem(n=12, seed=6)
    for rule, builtin in ((adam_copy(lr=0.01), nn.optim.Adam(lr=0.01)), (lion(lr=0.01), None)):
        gpu = mlp("cuda", "float64", rule)
        gpu.fit(X, y, epochs=1, batch_size=5, verbose=0)
        ref = mlp("numpy", "float64", type(rule)(lr=0.01))
        ref.fit(X, y, epochs=1, batch_size=5, verbose=0)
        for a, b in zip(gpu.get_weights(), ref.get_weights()):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
        if builtin is not None:
            theirs = mlp("cuda", "float64", builtin)
            theirs.fit(X, y, epochs=1, batch_size=5, verbose=0)
            for a, b in zip(gpu.get_weights(), theirs.get_weights()):
                np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)


def test_the_rule_code_is_its_own():
    assert lion.code == codes.RULE and lion().name == "lion"
    assert "lion" in nn.optim.RULES


# ---- user-defined activations ------------------------------------------------------------------
def swish(z):
    return z / (1.0 + np.exp(-z))


def swish_slope(z):
    s = 1.0 / (1.0 + np.exp(-z))
    return s + z * s * (1.0 - s)


Swish = nn.layers.activation(swish, swish_slope, of="input")
NumericSwish = nn.layers.activation(swish, None, name="numeric_swish")
TanhCopy = nn.layers.activation(lambda z: np.tanh(z), lambda y: 1.0 - y * y, of="output",
                                name="tanh_copy")


def swish_net(backend, activation=Swish, dtype="float64", sequence=False):
    if sequence:
        layers = [nn.Conv1D(1, 3, 3), activation(), nn.Flatten(), nn.Dense(12, 3)]
        shape = (6, 1)
    else:
        layers = [nn.Dense(6, 8), activation(), nn.Dense(8, 3)]
        shape = None
    model = nn.Sequential(layers, backend=backend, dtype=dtype, seed=0, input_shape=shape)
    model.compile("cross_entropy", nn.optim.Adam(lr=0.01))
    return model


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("sequence", [False, True], ids=["dense", "conv1d"])
def test_a_custom_activation_against_torch(backend, sequence):
    torch = pytest.importorskip("torch")
    X, y = problem(n=10, seed=7)
    if sequence:
        X = X[:, :, None]
    model = swish_net(backend, sequence=sequence)
    w = [torch.tensor(a, requires_grad=True) for a in model.get_weights()]
    x = torch.tensor(X)
    if sequence:
        kernel = w[0].T.reshape(3, 3, 1).permute(0, 2, 1)  # (C_out, C_in, k)
        h = torch.nn.functional.conv1d(x.permute(0, 2, 1), kernel, w[1]).permute(0, 2, 1)
        h = torch.nn.functional.silu(h).reshape(10, -1)
    else:
        h = torch.nn.functional.silu(x @ w[0] + w[1])
    torch.nn.functional.cross_entropy(h @ w[2] + w[3], torch.from_numpy(y)).backward()
    for ours, theirs in zip(model.gradients(X, y), w):
        np.testing.assert_allclose(ours, theirs.grad.numpy(), rtol=1e-10, atol=1e-13)
    numeric = swish_net(backend, NumericSwish, sequence=sequence)
    for a, b in zip(numeric.gradients(X, y), model.gradients(X, y)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_custom_tanh_trains_as_the_built_in(backend):
    X, y = problem(seed=8)
    ours = fitted(lambda b, d, o: swish_net(b, TanhCopy, d), backend, "float64", None, X, y)
    builtin = nn.Sequential([nn.Dense(6, 8), nn.Tanh(), nn.Dense(8, 3)], backend=backend,
                            dtype="float64", seed=0)
    builtin.compile("cross_entropy", nn.optim.Adam(lr=0.01))
    builtin.fit(X, y, epochs=3, batch_size=8, verbose=0)
    for a, b in zip(ours.get_weights(), builtin.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


def test_a_wrong_derivative_is_refused_when_the_model_is_built():
    Wrong = nn.layers.activation(swish, lambda z: 1.0 / (1.0 + np.exp(-z)), of="input",
                                 name="wrong_swish")
    with pytest.raises(ValueError, match=r"(?s)derivative of the custom activation wrong_swish "
                                         r"does not match.*f'\(z\)"):
        nn.Sequential([nn.Dense(4, 8), Wrong(), nn.Dense(8, 3)])
    Unchecked = nn.layers.activation(swish, lambda z: 1.0, of="input", name="unchecked",
                                     check=False)
    nn.Sequential([nn.Dense(4, 8), Unchecked(), nn.Dense(8, 3)])  # built: the check is off
    result = nn.testing.gradcheck(Unchecked(), raise_exception=False)
    assert not result.passed


def test_custom_activations_are_saved_by_name(tmp_path):
    X, y = problem(seed=9)
    model = fitted(lambda b, d, o: swish_net(b, Swish, d), "cpu", "float64", None, X, y, epochs=1)
    model.save(tmp_path / "swish.nnumba")
    loaded = nn.load(tmp_path / "swish.nnumba")
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    Ghost = nn.layers.activation(swish, swish_slope, of="input", name="ghost")
    ghost = swish_net("numpy", Ghost)
    ghost.save(tmp_path / "ghost.nnumba")
    del nn.layers.CUSTOM_ACTIVATIONS["ghost"]
    with pytest.raises(ValueError, match="'ghost' is not defined in this process"):
        nn.load(tmp_path / "ghost.nnumba")


def test_bad_activation_definitions_are_refused():
    with pytest.raises(ValueError, match="of must be 'input' or 'output'"):
        nn.layers.activation(swish, swish_slope, of="z")
    with pytest.raises(TypeError, match="Python function of one number"):
        nn.layers.activation(np.tanh)
    with pytest.raises(ValueError, match="built-in layer's"):
        nn.layers.activation(swish, name="ReLU")


@pytest.mark.cuda
def test_custom_activation_on_cuda_matches_the_reference(small_cuda_launches):
    X, y = problem(n=9, seed=10)
    for activation in (Swish, NumericSwish, TanhCopy):
        # the numeric derivative's difference quotient rounds differently on each backend
        tol = 1e-7 if activation is NumericSwish else 1e-10
        gpu, ref = swish_net("cuda", activation), swish_net("numpy", activation)
        for a, b in zip(gpu.gradients(X, y), ref.gradients(X, y)):
            np.testing.assert_allclose(a, b, rtol=tol, atol=1e-13)
        gpu.fit(X, y, epochs=1, batch_size=4, verbose=0)
        ref.fit(X, y, epochs=1, batch_size=4, verbose=0)
        for a, b in zip(gpu.get_weights(), ref.get_weights()):
            np.testing.assert_allclose(a, b, rtol=tol, atol=1e-13)


# ---- user-defined losses -----------------------------------------------------------------------
def log_cosh(o, t):
    return np.log(np.cosh(o - t))


def log_cosh_grad(o, t):
    return np.tanh(o - t)


LogCosh = nn.losses.loss(log_cosh, log_cosh_grad)
SquaredError = nn.losses.loss(lambda o, t: (o - t) * (o - t), lambda o, t: 2.0 * (o - t),
                              name="squared_error")
Poisson = nn.losses.loss(lambda o, t: np.exp(o) - t * o, lambda o, t: np.exp(o) - t,
                         output=lambda o: np.exp(o), name="poisson")


def regression(n=24, seed=11):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 6)), rng.normal(size=(n, 2))


def regressor(backend, loss, dtype="float64", optimizer=None):
    model = nn.Sequential([nn.Dense(6, 8), nn.Tanh(), nn.Dense(8, 2)], backend=backend, dtype=dtype,
                          seed=0)
    model.compile(loss, optimizer or nn.optim.Adam(lr=0.01))
    return model


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_custom_squared_error_trains_as_mse(backend):
    X, y = regression()
    weights = np.linspace(0.5, 2.0, len(X))
    ours, theirs = regressor(backend, SquaredError()), regressor(backend, "mse")
    h_ours = ours.fit(X, y, epochs=3, batch_size=5, sample_weight=weights, verbose=0)
    h_theirs = theirs.fit(X, y, epochs=3, batch_size=5, sample_weight=weights, verbose=0)
    np.testing.assert_allclose(h_ours["loss"], h_theirs["loss"], rtol=1e-12)
    for a, b in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(ours.evaluate(X, y)["loss"], theirs.evaluate(X, y)["loss"],
                               rtol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_custom_loss_against_torch_and_its_output_transform(backend):
    torch = pytest.importorskip("torch")
    X, y = regression(seed=12)
    for loss, theirs in ((LogCosh(), lambda o, t: torch.log(torch.cosh(o - t)).mean()),
                         (Poisson(), lambda o, t: (torch.exp(o) - t * o).mean())):
        model = regressor(backend, loss)
        w = [torch.tensor(a, requires_grad=True) for a in model.get_weights()]
        out = torch.tanh(torch.tensor(X) @ w[0] + w[1]) @ w[2] + w[3]
        value = theirs(out, torch.tensor(y))
        value.backward()
        for a, b in zip(model.gradients(X, y), w):
            np.testing.assert_allclose(a, b.grad.numpy(), rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(model.evaluate(X, y)["loss"], value.item(), rtol=1e-12)
    np.testing.assert_allclose(model.predict(X), np.exp(out.detach().numpy()), rtol=1e-12)


def test_a_wrong_loss_gradient_is_refused_at_compile():
    Wrong = nn.losses.loss(log_cosh, lambda o, t: 1.01 * np.tanh(o - t), name="wrong_log_cosh")
    model = nn.Sequential([nn.Dense(3, 2)], backend="numpy")
    with pytest.raises(ValueError, match=r"(?s)gradient of the custom loss wrong_log_cosh does not "
                                         r"match.*dL/d\(output\)"):
        model.compile(Wrong(), "sgd")
    assert model.loss is None


def test_custom_losses_are_saved_by_name(tmp_path):
    X, y = regression(seed=13)
    model = regressor("numpy", LogCosh())
    model.fit(X, y, epochs=1, batch_size=6, verbose=0)
    model.save(tmp_path / "logcosh.nnumba")
    loaded = nn.load(tmp_path / "logcosh.nnumba")
    assert type(loaded.loss) is LogCosh
    loaded.fit(X, y, epochs=1, batch_size=6, verbose=0)
    model.fit(X, y, epochs=1, batch_size=6, verbose=0)
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.cuda
def test_custom_loss_on_cuda_matches_the_reference(small_cuda_launches):
    X, y = regression(n=7, seed=14)
    gpu, ref = regressor("cuda", LogCosh()), regressor("numpy", LogCosh())
    for a, b in zip(gpu.gradients(X, y), ref.gradients(X, y)):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-13)
    gpu.fit(X, y, epochs=1, batch_size=3, verbose=0)
    ref.fit(X, y, epochs=1, batch_size=3, verbose=0)
    for a, b in zip(gpu.get_weights(), ref.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(gpu.evaluate(X, y)["loss"], ref.evaluate(X, y)["loss"], rtol=1e-12)


def test_a_divergence_with_a_scheduled_learning_rate_is_reported():
    X, y = regression(seed=15)
    schedule = nn.schedules.ExponentialLR(1e37, gamma=0.5)
    model = regressor("numpy", "mse", dtype="float32", optimizer=nn.optim.SGD(lr=schedule))
    with pytest.raises(nn.NonFiniteError, match=r"lr=1e\+37 at this step"):
        model.fit(X, 1e3 * y, epochs=1, batch_size=8, verbose=0)
