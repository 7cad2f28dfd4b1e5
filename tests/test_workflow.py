"""fit's research-workflow arguments, metrics, schedules in the compiled loop and
validated hyperparameters (callbacks, schedules, data, plots and the scikit-learn
estimators have modules of their own)."""
import warnings

import numpy as np
import pytest

import nnumba as nn
from nnumba import schedules


def mlp(backend, loss="cross_entropy", n_out=3, seed=0, optimizer=None, metrics=None):
    model = nn.Sequential([nn.Dense(4, 6), nn.Tanh(), nn.Dense(6, n_out)], backend=backend,
                          dtype="float64", seed=seed)
    model.compile(loss, optimizer or nn.optim.SGD(lr=0.1), metrics=metrics)
    return model


def data(n=30, seed=0, n_out=3):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 4)), rng.integers(0, n_out, n), rng.uniform(0.2, 2.0, n)


def same(a, b):
    return all(np.array_equal(x, y) for x, y in zip(a.get_weights(), b.get_weights()))


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
@pytest.mark.parametrize("loss", ["cross_entropy", "binary_cross_entropy", "mse", "mae", "huber"])
def test_sample_weights_match_torch(backend, loss):
    """One weighted full-batch step against torch's reduction='none' and sum(w l) / n."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    X, y, w = data()
    n_out = 1 if loss == "binary_cross_entropy" else 3
    model = mlp(backend, loss, n_out=n_out)
    target = {"cross_entropy": y, "binary_cross_entropy": (y[:, None] > 0).astype(float)}.get(
        loss, np.random.default_rng(1).normal(size=(30, 3)) * 2)
    W = model.get_weights()
    model.fit(X, target, epochs=1, batch_size=30, sample_weight=w, shuffle=False)
    params = [torch.tensor(p, requires_grad=True) for p in W]
    z = torch.tanh(torch.from_numpy(X) @ params[0] + params[1]) @ params[2] + params[3]
    t = torch.from_numpy(target)
    per_sample = {
        "cross_entropy": lambda: F.cross_entropy(z, t, reduction="none"),
        "binary_cross_entropy": lambda: F.binary_cross_entropy_with_logits(
            z, t, reduction="none").mean(1),
        "mse": lambda: F.mse_loss(z, t, reduction="none").mean(1),
        "mae": lambda: F.l1_loss(z, t, reduction="none").mean(1),
        "huber": lambda: F.huber_loss(z, t, reduction="none", delta=1.0).mean(1),
    }[loss]()
    (per_sample * torch.from_numpy(w)).sum().div(30).backward()
    for ours, p in zip(model.get_weights(), params):
        np.testing.assert_allclose(ours, p.detach().numpy() - 0.1 * p.grad.numpy(), rtol=1e-12,
                                   atol=1e-14)


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
def test_class_weight_is_a_sample_weight_per_class(backend):
    X, y, _ = data()
    a, b = mlp(backend), mlp(backend)
    a.fit(X, y, epochs=2, batch_size=7, class_weight={0: 3.0, 2: 0.5})
    b.fit(X, y, epochs=2, batch_size=7, sample_weight=np.array([3.0, 1.0, 0.5])[y])
    assert same(a, b)


def test_sample_weights_agree_between_backends_and_with_train_step():
    X, y, w = data()
    ref, cpu = mlp("numpy"), mlp("cpu")
    ref.fit(X, y, epochs=3, batch_size=7, sample_weight=w)
    cpu.fit(X, y, epochs=3, batch_size=7, sample_weight=w)
    for a, b in zip(ref.get_weights(), cpu.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    ones, plain = mlp("cpu"), mlp("cpu")
    ones.fit(X, y, epochs=2, batch_size=7, sample_weight=np.ones(30), shuffle=False)
    plain.fit(X, y, epochs=2, batch_size=7, shuffle=False)
    for a, b in zip(ones.get_weights(), plain.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-13)


def test_validation_split_holds_out_the_last_fraction():
    X, y, _ = data(n=40)
    split, given = mlp("numpy"), mlp("numpy")
    h1 = split.fit(X, y, epochs=2, batch_size=8, validation_split=0.25)
    h2 = given.fit(X[:30], y[:30], epochs=2, batch_size=8, validation_data=(X[30:], y[30:]))
    assert h1.history == h2.history and same(split, given) and h1.n_samples == 30
    with pytest.raises(ValueError, match="not both"):
        split.fit(X, y, validation_split=0.2, validation_data=(X, y))
    with pytest.raises(ValueError, match=r"validation_split must be in \[0, 1\)"):
        split.fit(X, y, validation_split=1.0)


def test_initial_epoch_resumes_the_numbering():
    X, y, _ = data()
    model, seen = mlp("numpy"), []
    history = model.fit(X, y, epochs=5, initial_epoch=3, callbacks=[lambda e, logs: seen.append(e)])
    assert seen == [3, 4] and len(history.history["loss"]) == 2 and model.epochs_trained == 2
    with pytest.raises(ValueError, match="initial_epoch=6 is after the last epoch"):
        model.fit(X, y, epochs=5, initial_epoch=6)


@pytest.mark.parametrize("bad, message", [
    (dict(sample_weight=np.ones(29)), r"one weight per sample, shape \(30,\)"),
    (dict(sample_weight=-np.ones(30)), "must be >= 0"),
    (dict(sample_weight=np.full(30, np.nan)), "NaN"),
    (dict(class_weight=[1, 2]), "class_weight must be a dict"),
    (dict(class_weight={0: -1.0}), r"class_weight\[0\] must be in"),
])
def test_bad_weights_are_refused_and_nothing_trains(bad, message):
    X, y, _ = data()
    model = mlp("numpy")
    before = model.get_weights()
    with pytest.raises((ValueError, TypeError), match=message):
        model.fit(X, y, **bad)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


def test_metrics_match_scikit_learn():
    metrics = pytest.importorskip("sklearn.metrics")
    X, y, _ = data(n=60, n_out=2)
    model = mlp("numpy", n_out=2, metrics=["accuracy", "auc", "top_1_accuracy"])
    model.fit(X, y, epochs=3, batch_size=10)
    result = model.evaluate(X, y)
    p = model.predict(X)
    assert result["accuracy"] == pytest.approx(metrics.accuracy_score(y, p.argmax(1)))
    assert result["auc"] == pytest.approx(metrics.roc_auc_score(y, p[:, 1]))
    assert result["top_1_accuracy"] == pytest.approx(result["accuracy"])
    reg = mlp("numpy", "mse", metrics=["mae", "mse", "r2"])
    T = np.random.default_rng(2).normal(size=(60, 3))
    history = reg.fit(X, T, epochs=2, validation_data=(X, T))
    result, out = reg.evaluate(X, T), reg.predict(X)
    assert result["mae"] == pytest.approx(metrics.mean_absolute_error(T, out))
    assert result["r2"] == pytest.approx(metrics.r2_score(T, out))
    assert result["mse"] == pytest.approx(result["loss"])
    assert len(history.history["val_r2"]) == 2


@pytest.mark.parametrize("names, message", [
    (["accuracy"], "needs class labels"), (["precision"], "unknown metric"), ("mae", "a list"),
])
def test_bad_metrics_are_refused_at_compile(names, message):
    model = nn.Sequential([nn.Dense(4, 3)], backend="numpy")
    with pytest.raises((ValueError, TypeError), match=message):
        model.compile("mse", metrics=names)


def test_a_sigmoid_before_a_loss_on_logits_is_warned_about():
    model = nn.Sequential([nn.Dense(4, 1), nn.Sigmoid()], backend="numpy")
    with pytest.warns(UserWarning, match="squashed twice"):
        model.compile("binary_cross_entropy")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        nn.Sequential([nn.Dense(4, 1), nn.Sigmoid()], backend="numpy").compile("mse")


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
def test_a_schedule_sets_each_iterations_learning_rate(backend):
    """A schedule inside the compiled loop equals setting lr by hand before each step."""
    X, y, _ = data(n=24)
    schedule = schedules.CosineAnnealingLR(0.2, T_max=9, eta_min=0.01)
    fused = mlp(backend, optimizer=nn.optim.Adam(lr=schedule))
    fused.fit(X, y, epochs=3, batch_size=8, shuffle=False)
    by_hand = mlp(backend, optimizer=nn.optim.Adam(lr=0.2))
    for step in range(9):
        by_hand.optimizer.lr = float(schedule.values(step + 1, 1)[0])
        a = (step % 3) * 8
        by_hand.train_step(X[a:a + 8], y[a:a + 8])
    assert same(fused, by_hand)


def test_a_scheduled_optimizer_saves_and_resumes_exactly(tmp_path):
    X, y, _ = data(n=24)

    def build():
        return mlp("numpy", optimizer=nn.optim.SGD(lr=schedules.StepLR(0.3, step_size=4, gamma=0.5)))

    whole, half = build(), build()
    whole.fit(X, y, epochs=4, batch_size=8)
    half.fit(X, y, epochs=2, batch_size=8)
    half.save(tmp_path / "m.npz")
    resumed = nn.load(tmp_path / "m.npz")
    assert isinstance(resumed.optimizer.lr, schedules.StepLR)
    resumed.fit(X, y, epochs=2, batch_size=8)
    assert same(whole, resumed)


@pytest.mark.parametrize("attribute, value", [("lr", -1.0), ("lr", float("nan")), ("beta1", 1.0),
                                              ("eps", 0.0), ("weight_decay", -0.1),
                                              ("clip_grad_norm", 0.0)])
def test_hyperparameters_are_checked_when_set(attribute, value):
    optimizer = nn.optim.Adam()
    with pytest.raises(ValueError, match=attribute):
        setattr(optimizer, attribute, value)
