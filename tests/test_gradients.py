"""Whole-model gradients against central finite differences (float64)."""
import numpy as np
import pytest

import nnumba as nn
from conftest import ACTIVATIONS, LOSSES, small_model, toy_data


def numerical_gradients(model, X, y, h=1e-6):
    """(L(w + h e_i) - L(w - h e_i)) / 2h for every parameter."""
    weights = model.get_weights()
    grads = []
    for k, w in enumerate(weights):
        g = np.zeros_like(w)
        for idx in np.ndindex(w.shape):
            values = []
            for sign in (1, -1):
                shifted = [v.copy() for v in weights]
                shifted[k][idx] += sign * h
                model.set_weights(shifted)
                values.append(model.evaluate(X, y)["loss"])
            g[idx] = (values[0] - values[1]) / (2 * h)
        grads.append(g)
    model.set_weights(weights)
    return grads


@pytest.mark.parametrize("act", list(ACTIVATIONS))
@pytest.mark.parametrize("loss", LOSSES)
def test_gradients_match_finite_differences(host_backend, act, loss):
    X, y = toy_data(loss, n=6)
    model = small_model(host_backend, "float64", act, loss=loss)
    if act in ("relu", "leaky_relu"):
        # keep pre-activations away from the kink at 0, where the derivative jumps
        model.set_weights([w + 0.05 * np.sign(w) for w in model.get_weights()])
    analytic = model.gradients(X, y)
    numeric = numerical_gradients(model, X, y)
    for a, n in zip(analytic, numeric):
        np.testing.assert_allclose(a, n, rtol=1e-5, atol=1e-8)


def test_gradients_do_not_update(host_backend):
    X, y = toy_data("mse")
    model = small_model(host_backend, loss="mse")
    before = model.get_weights()
    model.gradients(X, y)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_layers_without_bias_and_stacked_activations(host_backend):
    """Blocks of an activation alone (first layer, or after another activation)."""
    X, y = toy_data("cross_entropy", n=5)
    model = nn.Sequential([nn.Tanh(), nn.Dense(5, 6, bias=False), nn.Sigmoid(), nn.Tanh(),
                           nn.Dense(6, 3)], backend=host_backend, dtype="float64", seed=3)
    model.compile("cross_entropy", "sgd")
    assert [w.shape for w in model.get_weights()] == [(5, 6), (6, 3), (3,)]
    for a, n in zip(model.gradients(X, y), numerical_gradients(model, X, y)):
        np.testing.assert_allclose(a, n, rtol=1e-5, atol=1e-8)


def test_one_neuron_sigmoid_chain_by_hand():
    """dC/db1 of the one-neuron chain y_i = s(w_i y_{i-1} + b_i) equals the product
    dC/dy4 * s'(z4) w4 * s'(z3) w3 * s'(z2) w2 * s'(z1) (docs/topics.md, section 2)."""
    layers = []
    for _ in range(4):
        layers += [nn.Dense(1, 1), nn.Sigmoid()]
    model = nn.Sequential(layers + [nn.Dense(1, 1, init="zeros")], backend="cpu", dtype="float64",
                          seed=1)
    w_out = 1.0
    weights = model.get_weights()
    weights[-2][...] = w_out
    model.set_weights(weights)
    model.compile("mse", "sgd")
    x, target = np.array([[0.7]]), np.array([[0.0]])
    ws = [weights[2 * i][0, 0] for i in range(4)]
    bs = [weights[2 * i + 1][0] for i in range(4)]
    y, zs = 0.7, []
    for w, b in zip(ws, bs):
        zs.append(w * y + b)
        y = 1 / (1 + np.exp(-zs[-1]))
    s_prime = [1 / (1 + np.exp(-z)) * (1 - 1 / (1 + np.exp(-z))) for z in zs]
    dC_dy4 = 2 * (w_out * y - 0.0) * w_out
    by_hand = dC_dy4 * s_prime[3] * ws[3] * s_prime[2] * ws[2] * s_prime[1] * ws[1] * s_prime[0]
    grads = model.gradients(x, target)
    assert grads[1][0] == pytest.approx(by_hand, rel=1e-12)
    assert max(s_prime) <= 0.25
