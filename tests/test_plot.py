"""nn.plot: what each plot draws (lines, axes, legends, smoothing), its argument
checks, and the ImportError without matplotlib. Real short fits on the numpy backend."""
import builtins
import importlib
import sys

import numpy as np
import pytest

import nnumba as nn

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.collections import PolyCollection  # noqa: E402
from matplotlib.colors import to_rgba  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from nnumba import plot  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def fit(optimizer="adam", epochs=3, depth=2, validation=True, record="iteration", loss="cross_entropy"):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 5))
    y = rng.integers(0, 3, 30) if loss == "cross_entropy" else rng.normal(size=(30, 3))
    layers = [nn.Dense(5, 6)]
    for _ in range(depth - 2):
        layers += [nn.Tanh(), nn.Dense(6, 6)]
    layers += [nn.ReLU(), nn.Dense(6, 3)]
    model = nn.Sequential(layers, backend="numpy", dtype="float64", seed=0)
    model.compile(loss, optimizer)
    return model.fit(X, y, epochs=epochs, batch_size=10, validation_data=(X, y) if validation else None,
                     record_grad_norms=record)


@pytest.fixture(scope="module")
def adam():
    return fit("adam")


@pytest.fixture(scope="module")
def sgd():
    return fit(nn.optim.SGD(lr=0.1))


def legend_texts(ax):
    return [t.get_text() for t in ax.get_legend().get_texts()]


class FakeHistory:
    """The attributes plot_grad_norms reads, with chosen numbers."""

    def __init__(self, norms, iterations_per_epoch=4, names=None):
        self.grad_norms_per_iteration = np.asarray(norms, dtype=np.float64)
        n, k = self.grad_norms_per_iteration.shape
        self.iterations_per_epoch = iterations_per_epoch
        self.layer_names = names or [f"dense_{i}" for i in range(k)]
        self.grad_norms = self.grad_norms_per_iteration.reshape(-1, iterations_per_epoch, k).mean(axis=1)
        self.history = {}


# ---- plot_history ---------------------------------------------------------------------

def test_history_loss_and_accuracy_on_separate_axes(adam):
    fig = plot.plot_history(adam)
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    loss_ax, acc_ax = fig.axes
    assert loss_ax.get_ylabel() == "loss" and acc_ax.get_ylabel() == "accuracy"
    assert [line.get_label() for line in loss_ax.lines] == ["loss", "val_loss"]
    assert [line.get_label() for line in acc_ax.lines] == ["accuracy", "val_accuracy"]
    assert loss_ax.get_shared_y_axes().get_siblings(loss_ax) == [loss_ax]
    np.testing.assert_array_equal(loss_ax.lines[0].get_xdata(), [1, 2, 3])
    np.testing.assert_allclose(loss_ax.lines[0].get_ydata(), adam["loss"])
    np.testing.assert_allclose(acc_ax.lines[1].get_ydata(), adam["val_accuracy"])


def test_history_train_solid_val_dashed_same_colour(adam):
    fig = plot.plot_history(adam, metrics=("loss",))
    assert len(fig.axes) == 1
    train, val = fig.axes[0].lines
    assert train.get_linestyle() == "-" and val.get_linestyle() == "--"
    assert to_rgba(train.get_color()) == to_rgba(val.get_color())


def test_history_label_prefixes_and_overlay(adam, sgd):
    fig = plot.plot_history(adam, label="adam")
    same = plot.plot_history(sgd, label="sgd", ax=fig)
    assert same is fig and len(fig.axes) == 2
    texts = legend_texts(fig.axes[0])
    assert texts == ["adam: loss", "adam: val_loss", "sgd: loss", "sgd: val_loss"]
    assert legend_texts(fig.axes[1]) == ["adam: accuracy", "adam: val_accuracy",
                                         "sgd: accuracy", "sgd: val_accuracy"]
    # one colour per run, the same in every panel
    for ax in fig.axes:
        colours = [to_rgba(line.get_color()) for line in ax.lines]
        assert colours[0] == colours[1] != colours[2] == colours[3]
    assert to_rgba(fig.axes[0].lines[2].get_color()) == to_rgba(fig.axes[1].lines[2].get_color())


def test_history_on_given_axes(adam):
    _, axes = plt.subplots(1, 2)
    assert plot.plot_history(adam, ax=axes) is axes
    assert len(axes[0].lines) == 2 and len(axes[1].lines) == 2
    _, ax = plt.subplots()
    assert plot.plot_history(adam, metrics=("accuracy",), ax=ax) is ax
    assert [line.get_label() for line in ax.lines] == ["accuracy", "val_accuracy"]
    with pytest.raises(ValueError, match="2 panels"):
        plot.plot_history(adam, ax=ax)   # loss and accuracy may not share one Axes


def test_history_per_iteration(adam):
    fig = plot.plot_history(adam, label="adam", per_iteration=True)
    loss_ax, acc_ax = fig.axes
    assert len(loss_ax.lines) == 3 and len(acc_ax.lines) == 2
    line = loss_ax.lines[2]
    assert line.get_label() == "adam: loss per iteration"
    assert "adam: loss per iteration" in legend_texts(loss_ax)
    ipe = adam.iterations_per_epoch
    assert ipe == 3
    np.testing.assert_allclose(line.get_xdata(), np.arange(1, 10) / 3)   # fractional epochs
    np.testing.assert_allclose(line.get_ydata(), adam.loss_per_iteration)
    assert to_rgba(line.get_color())[:3] == to_rgba(loss_ax.lines[0].get_color())[:3]
    assert line.get_alpha() < 1
    # the epoch's training loss is the mean of its iterations' losses (equal batches)
    np.testing.assert_allclose(adam.loss_per_iteration.reshape(3, 3).mean(axis=1), adam["loss"])


def test_history_regression_and_val_only(adam):
    h = fit("adam", loss="mse", validation=False)
    fig = plot.plot_history(h, log=True)
    assert len(fig.axes) == 1 and [l.get_label() for l in fig.axes[0].lines] == ["loss"]
    assert fig.axes[0].get_yscale() == "log"
    fig = plot.plot_history(adam, metrics=("val_accuracy",))
    assert [l.get_label() for l in fig.axes[0].lines] == ["val_accuracy"]
    assert fig.axes[0].lines[0].get_linestyle() == "--"
    fig = plot.plot_history(adam.history)          # a Keras-style dict works too
    assert len(fig.axes) == 2


def test_history_checks(adam):
    with pytest.raises(ValueError, match="'f1'.*'val_f1'"):
        plot.plot_history(adam, metrics=("loss", "f1"))
    with pytest.raises(ValueError, match="no 'loss'"):
        plot.plot_history(adam, metrics=("accuracy",), per_iteration=True)
    with pytest.raises(ValueError, match="loss_per_iteration"):
        plot.plot_history(adam.history, per_iteration=True)
    with pytest.raises(TypeError, match="history must be a History"):
        plot.plot_history([1, 2, 3])
    with pytest.raises(TypeError, match="label"):
        plot.plot_history(adam, label=3)
    with pytest.raises(ValueError, match="twice"):
        plot.plot_history(adam, metrics=("loss", "loss"))
    _, axes = plt.subplots(1, 3)
    with pytest.raises(ValueError, match="3 axes, but 2 panels"):
        plot.plot_history(adam, ax=axes)


# ---- compare_runs ---------------------------------------------------------------------

def test_compare_runs_panels_colours_legend(adam, sgd):
    fig = plot.compare_runs({"adam": adam, "sgd": sgd}, metrics=("loss", "accuracy"), log=True)
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    loss_ax, acc_ax = fig.axes
    assert loss_ax.get_yscale() == "log" and acc_ax.get_yscale() == "linear"
    for ax in fig.axes:
        assert len(ax.lines) == 4          # 2 runs x (train, val)
        assert legend_texts(ax) == ["adam", "sgd", "training", "validation"]
        styles = [line.get_linestyle() for line in ax.lines]
        assert styles == ["-", "--", "-", "--"]
        colours = [to_rgba(line.get_color()) for line in ax.lines]
        assert colours[0] == colours[1] != colours[2] == colours[3]
    np.testing.assert_allclose(acc_ax.lines[3].get_ydata(), sgd["val_accuracy"])


def test_compare_runs_default_and_checks(adam, sgd):
    no_val = fit("adam", validation=False)
    fig = plot.compare_runs({"a": adam, "b": no_val})
    assert len(fig.axes) == 1 and len(fig.axes[0].lines) == 3
    assert legend_texts(fig.axes[0]) == ["a", "b", "training", "validation"]
    fig = plot.compare_runs({"b": no_val})
    assert legend_texts(fig.axes[0]) == ["b"]   # no dashed curves: no style entries
    with pytest.raises(ValueError, match="histories\\['b'\\] has no 'val_loss'"):
        plot.compare_runs({"a": adam, "b": no_val}, metrics=("val_loss",))
    with pytest.raises(ValueError, match="histories is empty"):
        plot.compare_runs({})
    with pytest.raises(TypeError, match="histories must be a dict"):
        plot.compare_runs([adam, sgd])
    _, ax = plt.subplots()
    with pytest.raises(ValueError, match="2 panels"):
        plot.compare_runs({"a": adam}, metrics=("loss", "accuracy"), ax=ax)


# ---- plot_grad_norms ------------------------------------------------------------------

def test_grad_norms_existing_callers(adam):
    ax = plot.plot_grad_norms(adam, per_iteration=True)
    assert isinstance(ax, Axes) and len(ax.lines) == 2 and ax.get_yscale() == "log"
    assert ax.get_xlabel() == "iteration"
    np.testing.assert_allclose(ax.lines[1].get_ydata(), adam.grad_norms_per_iteration[:, 1])
    assert legend_texts(ax) == adam.layer_names
    with pytest.raises(ValueError, match="record_grad_norms"):
        plot.plot_grad_norms(fit(epochs=1, record="epoch"), per_iteration=True)


def test_grad_norms_per_epoch_fallback():
    h = fit(epochs=2, record="epoch")
    assert h.grad_norms_per_iteration is None
    ax = plot.plot_grad_norms(h, log=False)
    assert ax.get_xlabel() == "epoch" and ax.get_yscale() == "linear"
    np.testing.assert_array_equal(ax.lines[0].get_xdata(), [1, 2])
    np.testing.assert_allclose(ax.lines[0].get_ydata(), h.grad_norms[:, 0])


def test_grad_norms_smoothing():
    v = np.array([1.0, 2.0, 3.0, 4.0, 100.0, 6.0, 7.0, 8.0])
    h = FakeHistory(np.column_stack([v, 10 * v]), iterations_per_epoch=4)
    ax = plot.plot_grad_norms(h, smooth=3)
    line = ax.lines[0]
    np.testing.assert_array_equal(line.get_xdata(), np.arange(3, 9))    # n - w + 1 points, from step w
    np.testing.assert_allclose(line.get_ydata(), [2, 3, 107 / 3, 110 / 3, 113 / 3, 7])
    np.testing.assert_allclose(ax.lines[1].get_ydata(), 10 * np.array([2, 3, 107 / 3, 110 / 3, 113 / 3, 7]))
    raw = plot.plot_grad_norms(h).lines[0]
    assert len(raw.get_ydata()) == 8
    np.testing.assert_array_equal(raw.get_ydata(), v)
    np.testing.assert_array_equal(plot.plot_grad_norms(h, smooth=1).lines[0].get_ydata(), v)
    # the same as pandas' rolling(3).mean() without the leading NaNs
    np.testing.assert_allclose(plot.moving_average(v, 3),
                               [np.mean(v[i - 2:i + 1]) for i in range(2, 8)])


def test_grad_norms_auto_window():
    rng = np.random.default_rng(1)
    norms = rng.uniform(0.5, 1.5, size=(200, 3))
    ax = plot.plot_grad_norms(FakeHistory(norms, iterations_per_epoch=8), smooth="auto")
    assert len(ax.lines[0].get_ydata()) == 200 - 8 + 1    # one epoch's worth
    np.testing.assert_allclose(ax.lines[2].get_ydata(), plot.moving_average(norms[:, 2], 8))
    assert np.std(ax.lines[0].get_ydata()) < 0.5 * np.std(norms[:, 0])
    ax = plot.plot_grad_norms(FakeHistory(norms, iterations_per_epoch=100), smooth="auto")
    assert len(ax.lines[0].get_ydata()) == 200 - 20 + 1   # capped at a tenth of the run


def test_grad_norms_median_view():
    # 5 layers with norms 10^-k: the median is layer 2's, the band spans the 10th..90th percentiles
    steps = 6
    norms = np.tile(10.0 ** -np.arange(5), (steps, 1)) * np.linspace(1, 2, steps)[:, None]
    h = FakeHistory(norms, iterations_per_epoch=2)
    ax = plot.plot_grad_norms(h, view="median")
    assert len(ax.lines) == 3 and ax.get_yscale() == "log"
    bands = [c for c in ax.collections if isinstance(c, PolyCollection)]
    assert len(bands) == 1
    median, first, last = ax.lines
    np.testing.assert_allclose(median.get_ydata(), norms[:, 2])
    np.testing.assert_allclose(first.get_ydata(), norms[:, 0])
    np.testing.assert_allclose(last.get_ydata(), norms[:, 4])
    assert legend_texts(ax) == ["10th-90th percentile over layers", "median over 5 layers",
                                "dense_0 (first)", "dense_4 (last)"]
    # the band's outline holds the 10th and 90th percentiles (linear interpolation)
    ys = bands[0].get_paths()[0].vertices[:, 1]
    p10, p90 = np.percentile(norms, [10, 90], axis=1)
    assert np.isclose(ys.min(), p10.min()) and np.isclose(ys.max(), p90.max())
    # smoothing is applied before the statistics
    smoothed = plot.plot_grad_norms(h, view="median", smooth=2).lines[0]
    np.testing.assert_allclose(smoothed.get_ydata(), plot.moving_average(norms[:, 2], 2))


def test_grad_norms_median_view_real_deep_fit():
    h = fit(depth=6)
    assert len(h.layer_names) == 6
    ax = plot.plot_grad_norms(h, view="median", smooth=2)
    assert len(ax.lines) == 3 and len(ax.collections) == 1
    assert legend_texts(ax)[-2:] == ["dense_0 (first)", "dense_5 (last)"]
    single = FakeHistory(np.ones((4, 1)), iterations_per_epoch=2)
    assert len(plot.plot_grad_norms(single, view="median").lines) == 2


def test_grad_norms_many_layers_legend():
    h = FakeHistory(np.ones((4, 15)) * np.arange(1, 16), iterations_per_epoch=2)
    ax = plot.plot_grad_norms(h)
    assert len(ax.lines) == 15
    assert legend_texts(ax) == ["dense_0 (first)", "dense_14 (last)"]
    assert to_rgba(ax.lines[0].get_color()) != to_rgba(ax.lines[-1].get_color())


def test_grad_norms_checks(adam):
    with pytest.raises(ValueError, match="view must be"):
        plot.plot_grad_norms(adam, view="mean")
    with pytest.raises(ValueError, match="smooth=10 is longer than the 9 recorded iterations"):
        plot.plot_grad_norms(adam, smooth=10)
    with pytest.raises(ValueError, match="smooth must be >= 1, got 0"):
        plot.plot_grad_norms(adam, smooth=0)
    with pytest.raises(TypeError, match="smooth must be an integer"):
        plot.plot_grad_norms(adam, smooth=2.5)
    with pytest.raises(ValueError, match="smooth must be None"):
        plot.plot_grad_norms(adam, smooth="fast")
    with pytest.raises(TypeError, match="history must be a History"):
        plot.plot_grad_norms({"loss": [1.0]})


# ---- plot_schedule --------------------------------------------------------------------

class StepDecay:
    """The values(first_step, n) interface of nnumba.schedules (steps from 1)."""

    def __init__(self):
        self.calls = []

    def values(self, first_step, n):
        self.calls.append((first_step, n))
        steps = np.arange(first_step, first_step + n)
        return 0.1 * 0.5 ** ((steps - 1) // 10)


def test_schedule_object_and_callable():
    schedule = StepDecay()
    ax = plot.plot_schedule(schedule, 40)
    assert isinstance(ax, Axes) and len(ax.lines) == 1
    assert schedule.calls == [(1, 40)]       # one call over the span
    np.testing.assert_array_equal(ax.lines[0].get_xdata(), np.arange(1, 41))
    np.testing.assert_allclose(ax.lines[0].get_ydata()[[0, 9, 10, 39]], [0.1, 0.1, 0.05, 0.0125])
    plot.plot_schedule(lambda step: 0.1 / step, range(5, 15), ax=ax, label="1/t", log=True)
    assert len(ax.lines) == 2 and ax.get_yscale() == "log"
    np.testing.assert_allclose(ax.lines[1].get_ydata(), 0.1 / np.arange(5, 15))
    assert legend_texts(ax) == ["1/t"]
    sparse = StepDecay()
    ax = plot.plot_schedule(sparse, [1, 11, 100_000])
    np.testing.assert_allclose(ax.lines[0].get_ydata()[:2], [0.1, 0.05])
    assert all(n == 1 for _, n in sparse.calls)   # sparse steps: one call each


def test_schedule_of_an_optimizer_like_object():
    class Linear:
        def values(self, first_step, n):
            return np.linspace(1.0, 0.0, 11)[first_step - 1:first_step - 1 + n]

        def __call__(self, step):      # values() wins over __call__
            raise AssertionError("called")

    ax = plot.plot_schedule(Linear(), 10)
    np.testing.assert_allclose(ax.lines[0].get_ydata(), np.linspace(1.0, 0.0, 11)[:10])


def test_schedule_checks():
    with pytest.raises(TypeError, match="schedule must have values"):
        plot.plot_schedule(0.1, 10)
    with pytest.raises(ValueError, match="steps must be >= 1, got 0"):
        plot.plot_schedule(lambda s: 0.1, 0)
    with pytest.raises(TypeError, match="steps must"):
        plot.plot_schedule(lambda s: 0.1, "10")
    with pytest.raises(TypeError, match="steps must hold integers"):
        plot.plot_schedule(lambda s: 0.1, [1.5, 2.5])
    with pytest.raises(ValueError, match="non-finite learning rate nan at step 3"):
        plot.plot_schedule(lambda s: float("nan") if s == 3 else 0.1, 5)

    class Short:
        def values(self, first_step, n):
            return np.ones(n - 1)

    with pytest.raises(ValueError, match=r"returned shape \(4,\), expected \(5,\)"):
        plot.plot_schedule(Short(), 5)


# ---- plot_paths and a saved figure ------------------------------------------------------

def test_paths_and_savefig(tmp_path, adam):
    f = lambda a, b: a ** 2 + 10 * b ** 2
    path = nn.optim.trajectory(nn.optim.Adam(lr=0.1), lambda p: np.array([2 * p[0], 20 * p[1]]),
                               [1.0, 1.0], 20)
    ax = plot.plot_paths(f, {"adam": path}, (-1.5, 1.5), (-1.5, 1.5))
    assert len(ax.lines) == 1 and legend_texts(ax) == ["adam"]
    fig = plot.plot_history(adam, per_iteration=True, label="adam")
    fig.savefig(tmp_path / "history.png")
    assert (tmp_path / "history.png").stat().st_size > 1000


# ---- without matplotlib ------------------------------------------------------------------

MESSAGE = 'pip install "nnumba\\[plot\\]"'


def test_import_error_names_the_extra_sys_modules(monkeypatch, adam):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ImportError, match=MESSAGE):
        plot.plot_history(adam)
    with pytest.raises(ImportError, match=MESSAGE):
        plot.plot_grad_norms(adam)


def test_import_error_names_the_extra_import_hook(monkeypatch, adam):
    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ModuleNotFoundError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    # importing nnumba.plot afresh works without matplotlib; the first plot call raises
    monkeypatch.delitem(sys.modules, "nnumba.plot")
    monkeypatch.delattr(nn, "plot", raising=False)
    fresh = importlib.import_module("nnumba.plot")
    assert fresh is not plot
    for call in (lambda: fresh.plot_history(adam), lambda: fresh.compare_runs({"a": adam}),
                 lambda: fresh.plot_grad_norms(adam), lambda: fresh.plot_schedule(lambda s: 0.1, 3),
                 lambda: fresh.plot_paths(lambda a, b: a, {}, (0, 1), (0, 1))):
        with pytest.raises(ImportError, match=MESSAGE) as info:
            call()
        assert isinstance(info.value.__cause__, ImportError)
