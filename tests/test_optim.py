"""Optimizers: the first three steps against the formulas computed by hand."""
import numpy as np
import pytest

import nnumba as nn

GRADS = [np.array([0.5, -1.0, 2.0]), np.array([0.1, 0.3, -0.2]), np.array([-1.0, 0.0, 4.0])]
W0 = np.array([1.0, -2.0, 0.5])


def three_steps(optimizer, backend):
    """Three updates, through the model's kernels, of a model whose only parameters are W0.

    With X = I and an MSE target t, the output is w and dL/dw_i = 2 (w_i - t_i) / 3,
    so t = w - 1.5 g makes the gradient exactly g.
    """
    model = nn.Sequential([nn.Dense(3, 1, bias=False)], backend=backend, dtype="float64", seed=0)
    model.set_weights([W0.reshape(3, 1)])
    model.compile("mse", optimizer)
    out = []
    for g in GRADS:
        t = model.get_weights()[0][:, 0] - 1.5 * g
        model.train_step(np.eye(3), t.reshape(3, 1))
        out.append(model.get_weights()[0][:, 0].copy())
    return out


@pytest.fixture(params=["numpy", "cpu"])
def backend(request):
    return request.param


def test_sgd(backend):
    lr, w, expected = 0.1, W0.copy(), []
    for g in GRADS:
        w = w - lr * g
        expected.append(w)
    for a, e in zip(three_steps(nn.optim.SGD(lr=lr), backend), expected):
        np.testing.assert_allclose(a, e, rtol=1e-13)


def test_momentum_ewma(backend):
    lr, beta, w, v, expected = 0.1, 0.9, W0.copy(), np.zeros(3), []
    for g in GRADS:
        v = beta * v + (1 - beta) * g
        w = w - lr * v
        expected.append(w)
    for a, e in zip(three_steps(nn.optim.Momentum(lr=lr, beta=beta), backend), expected):
        np.testing.assert_allclose(a, e, rtol=1e-13)


@pytest.mark.parametrize("inside", [True, False])
def test_rmsprop(backend, inside):
    lr, beta, eps, w, s, expected = 0.01, 0.9, 1e-8, W0.copy(), np.zeros(3), []
    for g in GRADS:
        s = beta * s + (1 - beta) * g ** 2
        w = w - lr * g / (np.sqrt(s + eps) if inside else np.sqrt(s) + eps)
        expected.append(w)
    opt = nn.optim.RMSprop(lr=lr, beta=beta, eps=eps, eps_inside_sqrt=inside)
    for a, e in zip(three_steps(opt, backend), expected):
        np.testing.assert_allclose(a, e, rtol=1e-12)


def test_adam(backend):
    lr, b1, b2, eps = 0.01, 0.9, 0.999, 1e-8
    w, m, v, expected = W0.copy(), np.zeros(3), np.zeros(3), []
    for t, g in enumerate(GRADS, start=1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g ** 2
        mhat, vhat = m / (1 - b1 ** t), v / (1 - b2 ** t)
        w = w - lr * mhat / (np.sqrt(vhat) + eps)
        expected.append(w)
    for a, e in zip(three_steps(nn.optim.Adam(lr=lr), backend), expected):
        np.testing.assert_allclose(a, e, rtol=1e-12)


@pytest.mark.parametrize("make", [lambda: nn.optim.Adam(lr=1e-3),
                                  lambda: nn.optim.Momentum(lr=0.01, beta=0.9)],
                         ids=["adam", "momentum"])
def test_a_gradient_that_stops_leaves_no_subnormal_state(backend, make):
    """An input that is 0 after its first samples gives its weights zero gradients from
    then on: their moving averages decay geometrically (0.9 per step: below float32's
    smallest normal number after about 800 steps) and are flushed to 0 there, in every
    backend alike, instead of lingering as subnormals, whose arithmetic is slow."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(1200, 3)).astype(np.float32)
    X[20:, 0] = 0
    y = rng.integers(0, 2, size=1200)
    model = nn.Sequential([nn.Dense(3, 2)], backend=backend, dtype="float32", seed=0)
    model.compile("cross_entropy", make())
    model.fit(X, y, epochs=1, batch_size=1, shuffle=False, verbose=0)
    slots = model.optimizer.state_dict()["state"]
    average = slots["m" if "m" in slots else "v"]
    # W[0, :], the weights of the input that stopped, lead the flat parameters
    np.testing.assert_array_equal(average[:2], 0)  # was O(1e-2) at step 20
    tiny = np.finfo(np.float32).tiny
    for row in slots.values():
        assert not np.any((row != 0) & (np.abs(row) < tiny))
    assert np.all(np.isfinite(model.get_weights()[0]))


def test_adam_first_step_moves_every_weight_by_lr():
    """With bias correction, Adam's first step is lr * sign(g) (up to eps)."""
    opt = nn.optim.Adam(lr=0.01)
    w = W0.copy()
    opt.step(w, GRADS[0])
    np.testing.assert_allclose(W0 - w, 0.01 * np.sign(GRADS[0]), rtol=1e-6)


def test_standalone_step_matches_model_step():
    opt = nn.optim.RMSprop(lr=0.01)
    w = W0.copy()
    for g in GRADS:
        opt.step(w, g)
    np.testing.assert_allclose(w, three_steps(nn.optim.RMSprop(lr=0.01), "cpu")[-1], rtol=1e-12)
    assert opt.t == 3


def test_step_counter_and_state_dict_round_trip():
    opt = nn.optim.Adam(lr=0.02, beta1=0.8)
    w = W0.copy()
    for g in GRADS[:2]:
        opt.step(w, g)
    sd = opt.state_dict()
    assert sd["t"] == 2 and set(sd["state"]) == {"m", "v"}
    assert sd["hyperparameters"]["lr"] == 0.02 and sd["hyperparameters"]["beta1"] == 0.8
    clone = nn.optim.Adam()
    clone.load_state_dict(sd)
    assert clone.lr == 0.02 and clone.beta1 == 0.8 and clone.t == 2
    w2 = w.copy()
    opt.step(w, GRADS[2])
    clone.step(w2, GRADS[2])
    np.testing.assert_array_equal(w, w2)


def test_state_dict_refuses_another_optimizer():
    with pytest.raises(ValueError, match="optimizer 'sgd'"):
        nn.optim.Adam().load_state_dict(nn.optim.SGD().state_dict())


@pytest.mark.parametrize("make, match", [
    (lambda: nn.optim.SGD(lr=0), "lr"),
    (lambda: nn.optim.SGD(lr=-1), "lr"),
    (lambda: nn.optim.Adam(lr=float("nan")), "lr"),
    (lambda: nn.optim.Momentum(beta=1.0), "beta"),
    (lambda: nn.optim.Momentum(beta=-0.1), "beta"),
    (lambda: nn.optim.RMSprop(beta=1.5), "beta"),
    (lambda: nn.optim.Adam(beta1=1.0), "beta1"),
    (lambda: nn.optim.Adam(beta2=-0.5), "beta2"),
    (lambda: nn.optim.Adam(eps=-1e-8), "eps"),
    (lambda: nn.optim.SGD(clip_grad_norm=0), "clip_grad_norm"),
])
def test_bad_hyperparameters(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_wrong_types():
    with pytest.raises(TypeError, match="lr"):
        nn.optim.SGD(lr="0.1")
    with pytest.raises(TypeError, match="eps_inside_sqrt"):
        nn.optim.RMSprop(eps_inside_sqrt=1)


def test_clipping_in_the_optimizer():
    g = np.array([3.0, 4.0])                  # norm 5
    opt = nn.optim.SGD(lr=1.0, clip_grad_norm=1.0)
    w = np.zeros(2)
    opt.step(w, g)
    np.testing.assert_allclose(-w, g / (5 + 1e-6), rtol=1e-12)
    opt = nn.optim.SGD(lr=1.0, clip_grad_value=3.5)
    w = np.zeros(2)
    opt.step(w, g)
    np.testing.assert_array_equal(-w, [3.0, 3.5])
