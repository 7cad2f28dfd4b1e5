"""nn.testing.gradcheck, and the refusal of custom components that fit cannot run.

gradcheck must pass on correct kernels (MLP, Conv1D with BatchNorm and Dropout,
LSTM, every built-in loss and activation, one cpu model) and must catch a
deliberately wrong derivative, naming the component, the parameter and the
error. Subclasses that would silently train as a built-in are refused at
compile (losses, optimizers) or when the model is built (activations), while a
subclass that only changes defaults trains exactly as the built-in does.
"""
import numpy as np
import pytest

import nnumba as nn
from nnumba.backends import codes
from nnumba.backends.reference import activations as ref_activations
from nnumba.backends.reference import dense as ref_dense
from nnumba.backends.reference import losses as ref_losses
from nnumba.backends.reference import network as ref_network

L = nn.layers
ACTIVATIONS = [nn.Identity(), nn.Sigmoid(), nn.Tanh(), nn.ReLU(), nn.LeakyReLU(0.1)]


def _data(n_in=4, n_out=3, n=6, loss="mse", seed=0, steps=None):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, n_in) if steps is None else (n, steps, n_in))
    if loss == "cross_entropy":
        y = rng.integers(0, n_out, size=n)
    elif loss == "binary_cross_entropy":
        y = rng.integers(0, 2, size=(n, n_out)).astype(float)
    else:
        y = rng.normal(size=(n, n_out))
    return X, y


def _mlp(act=None, backend="numpy", dtype="float32", loss="cross_entropy"):
    model = nn.Sequential([nn.Dense(4, 5), act or nn.Tanh(), nn.Dense(5, 3)], backend=backend,
                          dtype=dtype, seed=1)
    model.compile(loss, "adam")
    return model


# ---- passes on correct kernels ----------------------------------------------------------------
@pytest.mark.parametrize("act", ACTIVATIONS, ids=repr)
@pytest.mark.parametrize("loss", ["mse", "mae", "huber", "binary_cross_entropy", "cross_entropy"])
def test_mlp_passes(act, loss):
    X, y = _data(loss=loss)
    result = nn.testing.gradcheck(_mlp(act, loss=loss), X, y)
    assert result.passed and bool(result)
    assert [c.name for c in result.checks] == ["W0", "b0", "W1", "b1"]
    assert all(c.n_checked == c.n_elements for c in result.checks)
    assert max(result.errors.values()) < 1e-6  # float64 differences: far below rtol


def test_result_reports_and_does_not_touch_the_model():
    model = _mlp(dtype="float32")
    X, y = _data(loss="cross_entropy")
    model.fit(X, y, epochs=1, batch_size=3)
    before, t = model.get_weights(), model.optimizer.t
    result = nn.testing.gradcheck(model, X, y)
    assert result.backend == "numpy" and result.eps == 1e-6
    for w, w0 in zip(model.get_weights(), before):
        assert w.dtype == np.float32 and np.array_equal(w, w0)
    assert model.optimizer.t == t
    text = str(result)
    assert "passed" in text and "W0" in text and "b1" in text and "max rel err" in text
    # the analytic side is model.gradients, in float64
    analytic = model.gradients(X, y)
    w0 = result.checks[0]
    assert w0.analytic == pytest.approx(float(analytic[0][w0.worst_index]), rel=1e-5)


def test_conv1d_batchnorm_dropout_passes_in_training_mode():
    # BatchNorm with batch statistics and Dropout with the mask of the next step: an eval-mode
    # numeric loss (running statistics, no dropout) would not match model.gradients
    model = nn.Sequential([L.Conv1D(2, 3, 3, padding=1), nn.ReLU(), L.BatchNorm(3), L.Dropout(0.4),
                           L.MaxPool1D(2), L.Flatten(), nn.Dense(9, 2)],
                          input_shape=(6, 2), backend="numpy", dtype="float64", seed=3)
    model.compile("mse", "sgd")
    X, y = _data(n_in=2, n_out=2, n=5, steps=6, seed=4)
    result = nn.testing.gradcheck(model, X, y)
    assert [c.name for c in result.checks] == ["W0", "b0", "gamma1", "beta1", "W2", "b2"]
    assert result.passed
    # what was checked is model.gradients itself, dropout mask included (after a step, too)
    model.fit(X, y, epochs=1, batch_size=5)
    result = nn.testing.gradcheck(model, X, y)
    analytic = model.gradients(X, y)
    for c, g in zip(result.checks, analytic):
        assert c.analytic == g[c.worst_index]


def test_recurrent_passes():
    model = nn.Sequential([nn.LSTM(2, 3), nn.Dense(3, 2)], input_shape=(4, 2), dtype="float64",
                          backend="numpy")
    model.compile("mse", "sgd")
    X, y = _data(n_in=2, n_out=2, n=3, steps=4, seed=5)
    result = nn.testing.gradcheck(model, X, y)
    assert [c.name for c in result.checks] == ["W_ih0", "W_hh0", "b_ih0", "b_hh0", "W1", "b1"]
    assert result.passed


def test_cpu_model_is_checked_on_its_own_backend():
    model = nn.Sequential([nn.Dense(4, 5), nn.Sigmoid(), nn.Dense(5, 2)], backend="cpu",
                          dtype="float32", seed=1)
    model.compile("mse", "adam")
    X, y = _data(n_out=2)
    result = nn.testing.gradcheck(model, X, y)
    assert result.backend == "cpu" and result.passed
    assert max(result.errors.values()) < 1e-6


@pytest.mark.parametrize("loss", list(nn.losses.LOSSES.values()), ids=lambda c: c.__name__)
def test_every_loss_passes(loss):
    result = nn.testing.gradcheck(loss())
    assert result.passed and result.checks[0].name == "dL/d(output)"
    assert result.checks[0].n_checked == 15  # the default random point: 5 x 3 outputs


def test_loss_on_given_outputs_and_targets():
    rng = np.random.default_rng(2)
    out = rng.normal(size=(4, 3))
    assert nn.testing.gradcheck(nn.losses.CrossEntropy(), out, np.array([0, 2, 1, 1]))
    assert nn.testing.gradcheck(nn.losses.BinaryCrossEntropy(), out, rng.uniform(size=(4, 3)))
    with pytest.raises(ValueError, match="labels must be in"):
        nn.testing.gradcheck(nn.losses.CrossEntropy(), out, np.array([0, 3, 1, 1]))
    with pytest.raises(ValueError, match="needs targets"):
        nn.testing.gradcheck(nn.losses.MSE(), out)


@pytest.mark.parametrize("act", ACTIVATIONS, ids=repr)
def test_every_activation_passes(act):
    z = np.random.default_rng(1).normal(scale=2.0, size=(3, 7))
    result = nn.testing.gradcheck(act, z)
    assert result.passed and result.checks[0].shape == (3, 7)


def test_max_elements_checks_a_seeded_subset():
    model = _mlp()
    X, y = _data(loss="cross_entropy")
    a = nn.testing.gradcheck(model, X, y, max_elements=3, seed=7)
    b = nn.testing.gradcheck(model, X, y, max_elements=3, seed=7)
    assert [(c.n_checked, c.n_elements) for c in a.checks] == [(3, 20), (3, 5), (3, 15), (3, 3)]
    assert [c.worst_index for c in a.checks] == [c.worst_index for c in b.checks]
    assert a.errors == b.errors


# ---- catches a wrong derivative ---------------------------------------------------------------
@pytest.fixture
def wrong_tanh(monkeypatch):
    """The reference kernels with tanh' = 1 - y instead of 1 - y^2, wherever they compute it:
    the activation kernel, the Dense kernel (fused activation) and the MLP loop."""
    original = ref_activations.activation_backward

    def backward(act, alpha, y, dy):
        if act == codes.TANH:
            dy *= 1 - y
        else:
            original(act, alpha, y, dy)

    for module in (ref_activations, ref_dense, ref_network):
        monkeypatch.setattr(module, "activation_backward", backward)


def test_catches_a_wrong_activation_derivative(wrong_tanh):
    with pytest.raises(ValueError) as info:
        nn.testing.gradcheck(nn.Tanh(), np.linspace(-2, 2, 9).reshape(3, 3) + 0.05)
    message = str(info.value)
    assert "gradcheck failed for Tanh()" in message and "f'(z)[" in message
    assert "analytic derivative is" in message and "numeric one is" in message
    assert "relative error" in message and "> rtol 0.001" in message
    # the other activations are still right
    assert nn.testing.gradcheck(nn.Sigmoid())


def test_catches_a_wrong_derivative_inside_a_model(wrong_tanh):
    model = _mlp(nn.Tanh(), loss="mse")
    X, y = _data()
    result = nn.testing.gradcheck(model, X, y, raise_exception=False)
    assert not result and not result.passed
    status = {c.name: c.passed for c in result.checks}
    # the gradients behind the tanh are wrong, those of the layer after it are right
    assert status == {"W0": False, "b0": False, "W1": True, "b1": True}
    assert result.errors["W0"] > 1e-2
    with pytest.raises(ValueError, match=r"for Sequential\(\[Dense\(4, 5\), Tanh\(\).*at [Wb]0\["):
        nn.testing.gradcheck(model, X, y)


def test_catches_a_wrong_derivative_in_the_op_table(wrong_tanh):
    # a Conv1D model runs on the op-table interpreter
    model = nn.Sequential([L.Conv1D(1, 2, 2), nn.Tanh(), L.Flatten(), nn.Dense(6, 3), nn.Tanh(),
                           nn.Dense(3, 1)],
                          input_shape=(4, 1), backend="numpy", dtype="float64", seed=0)
    model.compile("mse", "sgd")
    X, y = _data(n_in=1, n_out=1, n=4, steps=4)
    result = nn.testing.gradcheck(model, X, y, raise_exception=False)
    assert [c.name for c in result.checks if not c.passed] == ["W0", "b0", "W1", "b1"]
    assert result.checks[-1].passed


def _scaled_loss(original, factor=1.01):
    def loss_forward_backward(loss, out, target, labels, dout, result):
        original(loss, out, target, labels, dout, result)
        dout *= factor
    return loss_forward_backward


def test_catches_a_loss_gradient_one_percent_off(monkeypatch):
    monkeypatch.setattr(ref_losses, "loss_forward_backward",
                        _scaled_loss(ref_losses.loss_forward_backward))
    with pytest.raises(ValueError) as info:
        nn.testing.gradcheck(nn.losses.MSE())
    message = str(info.value)
    assert "gradcheck failed for MSE()" in message and "dL/d(output)[" in message
    result = nn.testing.gradcheck(nn.losses.Huber(), raise_exception=False)
    # analytic = 1.01 numeric: relative error 0.01 / 1.01 wherever |gradient| > atol / rtol
    assert result.errors["dL/d(output)"] == pytest.approx(0.01 / 1.01, rel=1e-6)
    assert f"relative error {0.01 / 1.01:.3g}" in message


def test_catches_a_scaled_loss_gradient_in_a_model(monkeypatch):
    monkeypatch.setattr(ref_network, "loss_forward_backward",
                        _scaled_loss(ref_network.loss_forward_backward))
    X, y = _data(loss="cross_entropy")
    result = nn.testing.gradcheck(_mlp(), X, y, raise_exception=False)
    assert not any(c.passed for c in result.checks)
    assert max(result.errors.values()) == pytest.approx(0.01 / 1.01, rel=1e-5)


# ---- arguments ------------------------------------------------------------------------------
def test_arguments_are_checked():
    model = nn.Sequential([nn.Dense(2, 1)], backend="numpy")
    with pytest.raises(RuntimeError, match="call model.compile"):
        nn.testing.gradcheck(model, np.ones((2, 2)), np.ones(2))
    model.compile("mse", "sgd")
    with pytest.raises(ValueError, match="needs inputs X and targets y"):
        nn.testing.gradcheck(model, np.ones((2, 2)))
    with pytest.raises(TypeError, match=r"not the class Tanh: write Tanh\(\)"):
        nn.testing.gradcheck(nn.Tanh)
    with pytest.raises(TypeError, match="gradcheck checks a compiled nn.Sequential"):
        nn.testing.gradcheck(nn.Dense(2, 1))
    with pytest.raises(ValueError, match="an activation has no targets"):
        nn.testing.gradcheck(nn.ReLU(), np.ones(3), np.ones(3))
    with pytest.raises(ValueError, match="eps must be in"):
        nn.testing.gradcheck(nn.ReLU(), eps=0)
    with pytest.raises(ValueError, match="max_elements must be >= 1"):
        nn.testing.gradcheck(nn.ReLU(), max_elements=0)


# ---- refusals (item 5) --------------------------------------------------------------------------
class MyMSE(nn.losses.MSE):
    def value(self, output, target):
        return float(np.mean(np.abs(output - target)))

    def gradient(self, output, target):
        return np.sign(output - target) / output.size


class MyAdam(nn.optim.Adam):
    def step(self, w, g):
        w -= self.lr * np.sign(g)


class Swish(nn.layers.Activation):
    def forward(self, z):
        return z / (1 + np.exp(-z))


class FastAdam(nn.optim.Adam):
    """Only different defaults: must train exactly as Adam(lr=0.05, beta1=0.8)."""

    def __init__(self, lr=0.05, beta1=0.8, **kwargs):
        super().__init__(lr=lr, beta1=beta1, **kwargs)


def _model(layers=None):
    return nn.Sequential(layers or [nn.Dense(4, 3), nn.Tanh(), nn.Dense(3, 3)], backend="numpy",
                         dtype="float64", seed=0)


def test_loss_with_its_own_value_and_gradient_is_refused_at_compile():
    model = _model()
    with pytest.raises(TypeError) as info:
        model.compile(MyMSE(), "sgd")
    message = str(info.value)
    assert message.startswith("MyMSE defines value, gradient, which fit never calls")
    assert "silently train as plain MSE" in message
    assert "Supported: the built-in losses by name ('mse', 'mae'" in message
    assert model.loss is None and model.optimizer is None
    with pytest.raises(TypeError, match="MyMSE defines value, gradient"):
        nn.testing.gradcheck(MyMSE())


def test_loss_with_a_hyperparameter_or_of_its_own_is_refused():
    class ScaledMSE(nn.losses.MSE):
        def __init__(self, scale=2.0):
            self.scale = scale

    class MyLoss(nn.losses.Loss):
        def prepare_targets(self, y, n_samples, n_out, dtype, name="y"):
            return y, None

    with pytest.raises(TypeError, match="ScaledMSE sets scale, which fit never calls or reads"):
        _model().compile(ScaledMSE(), "sgd")
    with pytest.raises(TypeError, match="MyLoss is not one of nnumba's losses: .* no kernel"):
        _model().compile(MyLoss(), "sgd")


def test_optimizer_overriding_step_is_refused_at_compile():
    model = _model()
    with pytest.raises(TypeError) as info:
        model.compile("mse", MyAdam(lr=0.01))
    message = str(info.value)
    assert message.startswith("MyAdam defines step, which fit never calls")
    assert "runs the update rule of nn.optim.Adam as a compiled kernel" in message
    assert "silently train as plain Adam" in message
    assert "(Adam: lr, beta1, beta2, eps, clip_grad_norm, clip_grad_value, weight_decay)" in message
    assert "subclasses that only change their defaults in __init__" in message
    assert model.optimizer is None
    # outside a model, step() is what runs: the subclass still works there
    w = np.ones(2)
    MyAdam(lr=0.5).step(w, np.array([1.0, -1.0]))
    assert np.array_equal(w, [0.5, 1.5])


def test_optimizer_with_a_new_hyperparameter_or_kernel_is_refused():
    class Nesterov(nn.optim.Momentum):
        def __init__(self, lr=0.01, beta=0.9, nesterov=True):
            super().__init__(lr, beta)
            self.nesterov = nesterov

    class Sneaky(nn.optim.SGD):
        code = codes.ADAM

    class Mine(nn.optim.Optimizer):
        def __init__(self):
            super().__init__(lr=0.1)

    with pytest.raises(TypeError, match="Nesterov sets nesterov, which fit never calls or reads"):
        _model().compile("mse", Nesterov())
    with pytest.raises(TypeError, match="Sneaky defines code, which"):
        _model().compile("mse", Sneaky())
    with pytest.raises(TypeError, match="Mine is not one of nnumba's optimizers: .* no kernel"):
        _model().compile("mse", Mine())


def test_new_activation_is_refused_when_the_model_is_built():
    with pytest.raises(TypeError) as info:
        _model([nn.Dense(4, 3), Swish(), nn.Dense(3, 3)])
    message = str(info.value)
    assert "int() argument" not in message
    assert message.startswith("Swish is not one of nnumba's activations")
    assert "run only the kernels of the built-in activations, so Swish cannot be compiled" in message
    assert "Supported: the built-in activations (nn.Identity, nn.Sigmoid, nn.Tanh, nn.ReLU, " \
           "nn.LeakyReLU)" in message
    with pytest.raises(TypeError, match="Swish is not one of nnumba's activations"):
        nn.testing.gradcheck(Swish())


def test_activation_subclass_with_its_own_function_is_refused_in_a_residual_block_too():
    class MyTanh(nn.Tanh):
        def derivative(self, y):
            return 1 - y

    with pytest.raises(TypeError, match="MyTanh defines derivative, which the compiled passes "
                                        "never call or read: .* silently train as a plain Tanh"):
        nn.Sequential([nn.Dense(3, 3), L.Residual([nn.Dense(3, 3), MyTanh()])], backend="numpy")


def test_subclasses_that_only_change_defaults_train_as_the_builtin():
    class SteepLeakyReLU(nn.LeakyReLU):
        def __init__(self, alpha=0.3):
            super().__init__(alpha)

    class QuietMSE(nn.losses.MSE):
        """Only a docstring and a repr of its own."""

        def __repr__(self):
            return "QuietMSE()"

    X, y = _data(n_out=3, n=8)
    trained = []
    for act, loss, opt in [(SteepLeakyReLU(), QuietMSE(), FastAdam()),
                           (nn.LeakyReLU(0.3), nn.losses.MSE(), nn.optim.Adam(lr=0.05, beta1=0.8))]:
        model = _model([nn.Dense(4, 3), act, nn.Dense(3, 3)])
        model.compile(loss, opt)
        model.fit(X, y, epochs=2, batch_size=4)
        trained.append(model.get_weights())
    for a, b in zip(*trained):
        assert np.array_equal(a, b)
    assert nn.testing.gradcheck(SteepLeakyReLU())
