"""Gradient diagnostics, remedies and plots."""
import numpy as np
import pytest

import nnumba as nn
from conftest import toy_data


@pytest.fixture(scope="module")
def digits():
    X_train, y_train, _, _ = nn.data.load_digits()
    return X_train[:256], y_train[:256]


def deep(activation, init, depth=10, width=32):
    layers = [nn.Dense(64, width, init=init), activation()]
    for _ in range(depth - 2):
        layers += [nn.Dense(width, width, init=init), activation()]
    return layers + [nn.Dense(width, 10, init=init)]


def model_of(layers, seed=0):
    model = nn.Sequential(layers, backend="cpu", dtype="float32", seed=seed)
    model.compile("cross_entropy", nn.optim.SGD(lr=0.01))
    return model


def test_deep_sigmoid_vanishes_relu_he_is_healthy(digits):
    sigmoid = nn.diagnostics.gradient_report(model_of(deep(nn.Sigmoid, "xavier")), *digits)
    relu = nn.diagnostics.gradient_report(model_of(deep(nn.ReLU, "he")), *digits)
    assert sigmoid.status == "vanishing" and sigmoid.vanishing and sigmoid.ratio < 1e-4
    assert relu.status == "healthy" and 0.1 < relu.ratio < 10
    text = str(sigmoid)
    assert "dense_0" in text and "dense_9" in text and "vanishing" in text


def test_tiny_init_relu_vanishes_by_the_bias_ratio(digits):
    report = nn.diagnostics.gradient_report(model_of(deep(nn.ReLU, "normal")), *digits)
    assert report.status == "vanishing" and report.bias_ratio < 1e-6


def test_exploding_and_clipping_remedy(digits):
    big = lambda fan_in, fan_out, rng: rng.standard_normal((fan_in, fan_out)) * np.sqrt(6.0 / fan_in)
    layers = deep(nn.ReLU, big, depth=12)
    assert nn.diagnostics.gradient_report(model_of(layers), *digits).status == "exploding"
    X, y = digits
    with pytest.raises(nn.NonFiniteError):
        model_of(layers).fit(X, y, epochs=3, batch_size=32)
    h = model_of(layers).fit(X, y, epochs=3, batch_size=32, clip_grad_norm=1.0)
    assert np.all(np.isfinite(h["loss"])) and h["loss"][-1] < h["loss"][0]


def test_non_finite_gradient_is_exploding():
    norms = nn.diagnostics.GradientNorms(["a", "b"], [np.inf, 1.0], [1.0, 1.0])
    assert nn.diagnostics.GradientReport(norms).status == "exploding"


def test_gradient_norms_are_the_gradients_norms():
    X, y = toy_data("mse", n=9)
    model = nn.Sequential([nn.Dense(5, 4), nn.Tanh(), nn.Dense(4, 3, bias=False)], dtype="float64",
                          seed=0)
    model.compile("mse", "sgd")
    grads = model.gradients(X, y)
    norms = nn.diagnostics.gradient_norms(model, X, y)
    np.testing.assert_allclose(norms.weight, [np.linalg.norm(grads[0]), np.linalg.norm(grads[2])])
    assert norms.bias[0] == pytest.approx(np.linalg.norm(grads[1])) and np.isnan(norms.bias[1])
    single = nn.Sequential([nn.Dense(5, 3)], seed=0)
    single.compile("mse", "sgd")
    with pytest.raises(ValueError, match="first and last"):
        nn.diagnostics.gradient_report(single, X, y)


def test_compare_initializers(digits):
    X, y = digits
    results = nn.diagnostics.compare_initializers(deep(nn.Sigmoid, None, depth=6), X, y,
                                                  inits=("normal", "xavier"), epochs=2)
    assert set(results) == {"normal", "xavier"}
    assert results["normal"]["report"].ratio < results["xavier"]["report"].ratio
    assert results["xavier"]["history"].epochs == 2


def test_trajectory_follows_the_optimizer():
    grad = lambda p: np.array([2 * p[0], 20 * p[1]])  # f = x^2 + 10 y^2
    path = nn.optim.trajectory(nn.optim.SGD(lr=0.04), grad, [1.0, 1.0], 50)
    assert path.shape == (51, 2)
    np.testing.assert_allclose(path[1], [1 - 0.08, 1 - 0.8])
    assert np.linalg.norm(path[-1]) < 1e-1


def test_plots(tmp_path):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    from nnumba import plot

    X, y = toy_data("cross_entropy", n=30)
    model = nn.Sequential([nn.Dense(5, 6), nn.ReLU(), nn.Dense(6, 3)], seed=0)
    model.compile("cross_entropy", "adam")
    h = model.fit(X, y, epochs=3, batch_size=10, validation_data=(X, y), record_grad_norms="iteration")
    fig = plot.plot_history(h, metrics=("loss", "accuracy"))
    assert len(fig.axes) == 2 and [len(a.lines) for a in fig.axes] == [2, 2]
    ax = plot.plot_grad_norms(h, per_iteration=True)
    assert len(ax.lines) == 2 and ax.get_yscale() == "log"
    f = lambda a, b: a ** 2 + 10 * b ** 2
    path = nn.optim.trajectory(nn.optim.Adam(lr=0.1), lambda p: np.array([2 * p[0], 20 * p[1]]),
                               [1.0, 1.0], 20)
    ax = plot.plot_paths(f, {"adam": path}, (-1.5, 1.5), (-1.5, 1.5))
    ax.figure.savefig(tmp_path / "paths.png")
    assert (tmp_path / "paths.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="record_grad_norms"):
        plot.plot_grad_norms(model.fit(X, y, epochs=1), per_iteration=True)
