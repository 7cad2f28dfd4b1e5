"""The training loop: counting, regimes, determinism, divergence, records."""
import numpy as np
import pytest

import nnumba as nn
from conftest import OPTIMIZERS, assert_replays_to_the_last_good_step, small_model, toy_data


def test_cifar_counting_example():
    """docs/topics.md, section 1: N=50000, B=256 -> 196 iterations per epoch, 1960 updates in 10."""
    assert nn.data.iterations_per_epoch(50000, 256) == 196
    assert nn.data.n_updates(50000, 256, 10) == 1960
    assert nn.data.iterations_per_epoch(50000, 256, drop_last=True) == 195
    assert nn.data.batch_sizes(50000, 256)[-1] == 50000 - 195 * 256 == 80


@pytest.mark.parametrize("n, batch_size, drop_last, ipe", [
    (23, 5, False, 5), (23, 5, True, 4), (20, 5, False, 4), (20, 5, True, 4),
    (23, None, False, 1), (23, 1, False, 23), (23, 100, False, 1)])
def test_fit_counts_iterations_and_updates(host_backend, n, batch_size, drop_last, ipe):
    X, y = toy_data("mse", n=n)
    model = small_model(host_backend, loss="mse")
    h = model.fit(X, y, epochs=3, batch_size=batch_size, drop_last=drop_last)
    assert h.iterations_per_epoch == ipe
    assert h.n_updates == 3 * ipe == model.optimizer.t
    assert len(h["loss"]) == 3 and h.grad_norms.shape == (3, 3)


def test_bgd_sgd_minibatch_are_one_knob():
    """Full batch = one update of the mean gradient; batch_size=1 = N updates."""
    X, y = toy_data("mse", n=6)
    bgd = small_model(loss="mse")
    by_hand = small_model(loss="mse")
    bgd.fit(X, y, epochs=1, batch_size=None, shuffle=False)
    grads = by_hand.gradients(X, y)
    expected = [w - 0.05 * g for w, g in zip(by_hand.get_weights(), grads)]
    for a, e in zip(bgd.get_weights(), expected):
        np.testing.assert_allclose(a, e, rtol=1e-13)
    sgd = small_model(loss="mse")
    assert sgd.fit(X, y, epochs=2, batch_size=1).n_updates == 12


@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
@pytest.mark.parametrize("loss", ["mse", "binary_cross_entropy", "cross_entropy"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("batch_size", [3, 8])  # 3: the cpu path that never forms x^T dz
@pytest.mark.parametrize("shuffle", [True, False])  # False: batches sliced from X, not gathered
def test_cpu_matches_reference(optimizer, loss, dtype, batch_size, shuffle):
    X, y = toy_data(loss, n=37)
    weights = {}
    for backend in ("numpy", "cpu"):
        model = small_model(backend, dtype, loss=loss, optimizer=OPTIMIZERS[optimizer]())
        model.fit(X, y, epochs=3, batch_size=batch_size, shuffle=shuffle, clip_grad_norm=1.0,
                  clip_grad_value=0.05)
        weights[backend] = model.get_weights()
    rtol = 1e-4 if dtype == "float32" else 1e-11
    for a, r in zip(weights["cpu"], weights["numpy"]):
        np.testing.assert_allclose(a, r, rtol=rtol, atol=rtol * 1e-2)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fused_epoch_equals_per_iteration_calls(dtype):
    """One compiled call per epoch gives the same bits as one call per iteration."""
    X, y = toy_data("cross_entropy", n=41)
    fused = small_model("cpu", dtype, "relu", loss="cross_entropy",
                        optimizer=nn.optim.Adam(lr=0.01))
    stepped = small_model("cpu", dtype, "relu", loss="cross_entropy",
                          optimizer=nn.optim.Adam(lr=0.01))
    h = fused.fit(X, y, epochs=2, batch_size=10, shuffle=False)
    losses = []
    for _ in range(2):
        for start in range(0, 41, 10):
            losses.append(stepped.train_step(X[start:start + 10], y[start:start + 10]))
    for a, b in zip(fused.get_weights(), stepped.get_weights()):
        np.testing.assert_array_equal(a, b)
    sizes = np.array([10, 10, 10, 10, 1])
    assert h["loss"][1] == pytest.approx(np.dot(sizes, losses[5:]) / 41, rel=1e-12)


@pytest.mark.parametrize("verbose", [0, 1])
def test_progress_chunks_do_not_change_results(verbose, capsys):
    X, y = toy_data("cross_entropy", n=200)
    models = [small_model("cpu", "float32", loss="cross_entropy",
                          optimizer=nn.optim.Adam(lr=0.01)) for _ in range(2)]
    models[0].fit(X, y, epochs=2, batch_size=4, verbose=0)
    models[1].fit(X, y, epochs=2, batch_size=4, verbose=verbose)
    for a, b in zip(models[0].get_weights(), models[1].get_weights()):
        np.testing.assert_array_equal(a, b)


def test_same_seed_same_bits_different_seed_differs(host_backend):
    X, y = toy_data("cross_entropy", n=40)
    runs = []
    for seed in (7, 7, 8):
        model = small_model(host_backend, "float32", "relu", seed=seed, loss="cross_entropy",
                            optimizer=nn.optim.Adam(lr=0.01))
        model.fit(X, y, epochs=3, batch_size=8)
        runs.append(model.get_weights())
    for a, b in zip(runs[0], runs[1]):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, c) for a, c in zip(runs[0], runs[2]))


def test_shuffle_changes_the_order_every_epoch():
    X, y = toy_data("mse", n=30)
    a, b = small_model(loss="mse"), small_model(loss="mse")
    a.fit(X, y, epochs=2, batch_size=5, shuffle=True)
    b.fit(X, y, epochs=2, batch_size=5, shuffle=False)
    assert not np.array_equal(a.get_weights()[0], b.get_weights()[0])


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
def test_digits_accuracy(backend):
    X_train, y_train, X_test, y_test = nn.data.load_digits()
    model = nn.Sequential([nn.Dense(64, 64), nn.ReLU(), nn.Dense(64, 10)], backend=backend,
                          dtype="float32", seed=0)
    model.compile("cross_entropy", nn.optim.Adam(lr=1e-3))
    h = model.fit(X_train, y_train, epochs=30, batch_size=32, validation_data=(X_test, y_test))
    assert h["val_accuracy"][-1] >= 0.95
    assert model.evaluate(X_test, y_test)["accuracy"] >= 0.95
    assert h["loss"][-1] < h["loss"][0]


def test_history_records():
    X, y = toy_data("cross_entropy", n=30)
    Xv, yv = toy_data("cross_entropy", n=10, seed=1)
    model = small_model(loss="cross_entropy")
    h = model.fit(X, y, epochs=4, batch_size=7, validation_data=(Xv, yv),
                  record_grad_norms="iteration")
    assert set(h.keys()) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert all(len(h[k]) == 4 for k in h.keys())
    assert h.grad_norms.shape == (4, 3) and h.grad_norms_per_iteration.shape == (20, 3)
    np.testing.assert_allclose(h.grad_norms, h.grad_norms_per_iteration.reshape(4, 5, 3).mean(1))
    assert h["val_loss"][-1] == pytest.approx(model.evaluate(Xv, yv)["loss"], rel=1e-12)
    assert h.loss_per_iteration.shape == (20,)
    sizes = np.array([7, 7, 7, 7, 2])
    assert h["loss"][-1] == pytest.approx(np.dot(sizes, h.loss_per_iteration[-5:]) / 30, rel=1e-12)
    assert "mse" not in h and small_model(loss="mse").fit(*toy_data("mse"), epochs=1).keys() == {"loss"}


@pytest.mark.parametrize("n", [3, 8])
def test_grad_norms_are_the_weight_gradient_norms(n):
    X, y = toy_data("mse", n=n)
    model = small_model(loss="mse")
    grads = model.gradients(X, y)
    h = model.fit(X, y, epochs=1, batch_size=None)
    np.testing.assert_allclose(h.grad_norms[0], [np.linalg.norm(grads[k]) for k in (0, 2, 4)],
                               rtol=1e-12)


@pytest.mark.parametrize("batch_size", [2, 8])
def test_divergence_stops_and_keeps_the_last_good_weights(host_backend, batch_size):
    X, y = toy_data("mse", n=40)
    ipe = 40 // batch_size
    model = small_model(host_backend, act="relu", loss="mse", optimizer=nn.optim.SGD(lr=1e3))
    with pytest.raises(nn.NonFiniteError) as info:
        model.fit(X, y, epochs=50, batch_size=batch_size, shuffle=False)
    err = info.value
    assert isinstance(err, FloatingPointError) and err.epoch >= 1 and 1 <= err.iteration <= ipe
    assert f"epoch {err.epoch}, iteration {err.iteration}" in str(err)
    assert model.optimizer.t == (err.epoch - 1) * ipe + err.iteration - 1
    # replay: a fresh model stepped up to the failing iteration has the same weights
    replay = small_model(host_backend, act="relu", loss="mse", optimizer=nn.optim.SGD(lr=1e3))
    b = batch_size
    for _ in range(model.optimizer.t):
        k = replay.optimizer.t % ipe
        replay.train_step(X[b * k:b * k + b], y[b * k:b * k + b])
    for a, b in zip(model.get_weights(), replay.get_weights()):
        np.testing.assert_array_equal(a, b)
        assert np.all(np.isfinite(a))
    assert err.history.epochs == err.epoch - 1


def test_train_step_refuses_a_non_finite_step():
    model = small_model(loss="mse", optimizer=nn.optim.SGD(lr=1.0))
    weights = model.get_weights()
    weights[4][...] = 1e300  # outputs near 1e300: their square overflows
    model.set_weights(weights)
    X, y = toy_data("mse", n=4)
    with pytest.raises(nn.NonFiniteError, match="train_step"):
        model.train_step(X, y)
    for a, b in zip(weights, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert model.optimizer.t == 0


def test_clip_grad_norm_limits_the_update():
    X, y = toy_data("mse", n=10)
    model = small_model(loss="mse", optimizer=nn.optim.SGD(lr=1.0))
    before = model.get_weights()
    grads = model.gradients(X, y)
    total = np.sqrt(sum(np.sum(g ** 2) for g in grads))
    model.fit(X, y, epochs=1, batch_size=None, clip_grad_norm=total / 10)
    step = np.sqrt(sum(np.sum((a - b) ** 2) for a, b in zip(before, model.get_weights())))
    assert step == pytest.approx(total / 10, rel=1e-5)


def test_clip_grad_value_limits_each_component():
    X, y = toy_data("mse", n=10)
    model = small_model(loss="mse", optimizer=nn.optim.SGD(lr=1.0))
    before = model.get_weights()
    model.fit(X, y, epochs=1, batch_size=None, clip_grad_value=1e-3)
    assert max(np.abs(a - b).max() for a, b in zip(before, model.get_weights())) <= 1e-3 + 1e-15


def test_callbacks_and_early_stop():
    X, y = toy_data("mse", n=10)
    model = small_model(loss="mse")
    seen = []

    class Stopper:
        def on_epoch_end(self, epoch, logs):
            seen.append((epoch, round(logs["loss"], 12)))
            if epoch == 2:
                model.stop_training = True

    h = model.fit(X, y, epochs=10, batch_size=5, callbacks=[Stopper()])
    assert [e for e, _ in seen] == [0, 1, 2] and h.epochs == 3 and model.epochs_trained == 3


def test_verbose_output(capsys):
    X, y = toy_data("cross_entropy", n=10)
    model = small_model(loss="cross_entropy")
    model.fit(X, y, epochs=2, batch_size=5, verbose=2)
    out = capsys.readouterr().out
    assert "Epoch 2/2" in out and "loss" in out and "accuracy" in out
    model.fit(X, y, epochs=1, batch_size=5, verbose=1)
    assert "Epoch 1/1" in capsys.readouterr().err


def test_predict_and_evaluate_in_chunks_match_one_batch(host_backend):
    X, y = toy_data("cross_entropy", n=50)
    model = small_model(host_backend, loss="cross_entropy")
    p_all = model.predict(X, batch_size=50)
    np.testing.assert_allclose(model.predict(X, batch_size=7), p_all, rtol=1e-13)
    np.testing.assert_allclose(p_all.sum(1), 1.0, rtol=1e-13)
    assert model.evaluate(X, y, batch_size=7)["loss"] == pytest.approx(
        model.evaluate(X, y, batch_size=50)["loss"], rel=1e-13)


def test_predict_before_compile_gives_raw_outputs():
    model = small_model()
    X, _ = toy_data("mse", n=4)
    raw = model.predict(X)
    model.compile("binary_cross_entropy", "sgd")
    np.testing.assert_allclose(model.predict(X), 1 / (1 + np.exp(-raw)), rtol=1e-13)


def test_epochs_zero_trains_nothing():
    X, y = toy_data("mse")
    model = small_model(loss="mse")
    before = model.get_weights()
    h = model.fit(X, y, epochs=0)
    assert h.n_updates == 0 and h.epochs == 0
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def big_model(backend, dtype, optimizer):
    """Above OUTER_PRODUCT_MIN_PARAMS: batches of a few rows take the cpu path that
    forms each weight gradient inside the optimizer's pass."""
    from nnumba.backends.cpu._config import OUTER_PRODUCT_MIN_PARAMS

    model = nn.Sequential([nn.Dense(5, 256), nn.Tanh(), nn.Dense(256, 256, bias=False), nn.ReLU(),
                           nn.Dense(256, 3)], backend=backend, dtype=dtype, seed=0)
    assert model.count_params() >= OUTER_PRODUCT_MIN_PARAMS
    model.compile("cross_entropy", optimizer)
    return model


@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_cpu_outer_product_path_matches_reference(optimizer, dtype):
    X, y = toy_data("cross_entropy", n=13)
    weights, norms = {}, {}
    for backend in ("numpy", "cpu"):
        model = big_model(backend, dtype, OPTIMIZERS[optimizer]())
        h = model.fit(X, y, epochs=2, batch_size=3, clip_grad_norm=0.5, clip_grad_value=0.02,
                      record_grad_norms="iteration")
        weights[backend], norms[backend] = model.get_weights(), h.grad_norms_per_iteration
    # float64 checks the arithmetic; in float32, Adam and RMSprop turn a rounding-level
    # difference of a near-zero gradient into a step-sized one (g / sqrt(v) ~ sign(g)),
    # so the bound there is a fraction of one step (lr = 0.01)
    atol = 2e-4 if dtype == "float32" else 1e-13
    for a, r in zip(weights["cpu"], weights["numpy"]):
        np.testing.assert_allclose(a, r, rtol=1e-11, atol=atol)
    np.testing.assert_allclose(norms["cpu"], norms["numpy"], rtol=1e-5 if dtype == "float32" else 1e-12)


def test_cpu_outer_product_path_stops_on_divergence():
    X, y = toy_data("cross_entropy", n=12)
    model = big_model("cpu", "float32", nn.optim.SGD(lr=1e6))
    with pytest.raises(nn.NonFiniteError) as info:
        model.fit(X * 1e3, y, epochs=20, batch_size=2, shuffle=False)
    assert_replays_to_the_last_good_step(
        model, lambda: big_model("cpu", "float32", nn.optim.SGD(lr=1e6)), X * 1e3, y, 2)
    assert info.value.iteration >= 1


def test_cpu_parallel_on_the_fly_step_is_the_serial_one(monkeypatch):
    """At batch size 1 a W of OUTER_PARALLEL_MIN_SIZE elements or more is stepped on all
    cores (network.outer_step_address): the same bits as the serial step."""
    import numba

    from nnumba.backends.cpu import network
    from nnumba.backends.cpu._config import OUTER_PARALLEL_MIN_SIZE

    if numba.get_num_threads() < 2:
        pytest.skip("one Numba thread: the parallel step is never chosen")
    X, y = toy_data("cross_entropy", n=9, n_in=4)
    runs = []
    for parallel in (True, False):
        model = nn.Sequential([nn.Dense(4, 512), nn.ReLU(), nn.Dense(512, 512), nn.Tanh(),
                               nn.Dense(512, 3)], dtype="float32", seed=0)
        assert 512 * 512 >= OUTER_PARALLEL_MIN_SIZE
        model.compile("cross_entropy", nn.optim.Adam(lr=0.01))
        if parallel:
            blocks = model._loop.plan.blocks
            assert network.outer_step_address(blocks, model._params, True, 1, model.optimizer.code)
        else:
            monkeypatch.setattr(network, "outer_step_address", lambda *args: 0)
        h = model.fit(X, y, epochs=2, batch_size=1, clip_grad_norm=0.5,
                      record_grad_norms="iteration")
        runs.append((model.get_weights(), model.optimizer.state.copy(), h.grad_norms_per_iteration))
    for a, b in zip(runs[0][0], runs[1][0]):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(runs[0][1], runs[1][1])
    np.testing.assert_array_equal(runs[0][2], runs[1][2])


def _tiled_model(backend="cpu", dtype="float64", lr=0.01):
    """A network whose first product at 32 rows takes the parallel tiled products
    (network.products_address): 32 x 256 x 256 multiply-adds."""
    model = nn.Sequential([nn.Dense(256, 256), nn.ReLU(), nn.Dense(256, 10)], backend=backend,
                          dtype=dtype, seed=0)
    model.compile("cross_entropy", nn.optim.Adam(lr=lr))
    return model


def test_cpu_tiled_products_path_trains_as_the_reference(monkeypatch):
    """Batches of 8-64 rows with large products run them on Numba's threads (the
    register-tiled products and a parallel optimizer step): the NumPy reference's
    training to float64 rounding, the BLAS path's likewise, and bit for bit the same
    from run to run; a last batch of 5 rows (below TILED_MIN_ROWS) takes BLAS."""
    import numba

    from nnumba.backends.cpu import network

    if numba.get_num_threads() < 2:
        pytest.skip("one Numba thread: the tiled products are never chosen")
    X, y = toy_data("cross_entropy", n=101, n_in=256)
    y = y % 10
    blocks = _tiled_model()._loop.plan.blocks
    assert network.products_address(blocks, np.dtype(np.float64), 32, True)
    assert not network.products_address(blocks, np.dtype(np.float64), 32, False)  # MPI ranks
    assert not network.products_address(blocks, np.dtype(np.float64), 128, True)
    narrow = nn.Sequential([nn.Dense(8192, 10)], dtype="float64")._loop.plan.blocks
    assert not network.products_address(narrow, np.dtype(np.float64), 32, True)  # 10 outputs
    runs = {}
    for name in ("tiled", "tiled again", "blas", "reference"):
        if name == "blas":
            monkeypatch.setattr(network, "products_address", lambda *args: 0)
        model = _tiled_model("numpy" if name == "reference" else "cpu")
        h = model.fit(X, y, epochs=2, batch_size=32, shuffle=True, record_grad_norms="iteration")
        runs[name] = (model.get_weights(), model.optimizer.state.copy(), h.grad_norms_per_iteration)
    for a, b in zip(runs["tiled"][0] + [runs["tiled"][1], runs["tiled"][2]],
                    runs["tiled again"][0] + [runs["tiled again"][1], runs["tiled again"][2]]):
        np.testing.assert_array_equal(a, b)
    for other in ("blas", "reference"):
        for a, b in zip(runs["tiled"][0], runs[other][0]):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(runs["tiled"][2], runs[other][2], rtol=1e-10)


def test_cpu_tiled_products_path_keeps_the_last_good_step_on_divergence():
    """A fit on the tiled path whose first update overflows (the parallel step's verdict)
    stops there and keeps the weights from before it."""
    import numba

    if numba.get_num_threads() < 2:
        pytest.skip("one Numba thread: the tiled products are never chosen")
    X, y = toy_data("cross_entropy", n=96, n_in=256)
    X, y = (X * 1e18).astype(np.float32), y % 10
    model = _tiled_model(dtype="float32", lr=1e30)
    with pytest.raises(nn.NonFiniteError) as error:
        model.fit(X, y, epochs=3, batch_size=32, shuffle=False)
    assert error.value.kind == "update" and model.optimizer.t == 0
    assert_replays_to_the_last_good_step(model, lambda: _tiled_model(dtype="float32", lr=1e30),
                                         X, y, 32)


def test_blas_thread_limit_reaches_the_blas_that_numba_calls():
    """The cpu loop limits BLAS threads through threadpoolctl, which sees only the
    libraries loaded when its controller is made: the controller must include SciPy's
    BLAS (the one numba's np.dot calls) even when it is made before any product ran."""
    import subprocess
    import sys

    code = (
        "from nnumba.backends.cpu import network\n"
        "seen = {m['filepath'] for m in network._blas_controller().info()}\n"
        "import scipy.linalg.cython_blas\n"
        "from threadpoolctl import ThreadpoolController\n"
        "now = {m['filepath'] for m in ThreadpoolController().info() if m['user_api'] == 'blas'}\n"
        "assert now and now <= seen, (now, seen)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_blas_threads_by_product_size():
    """One BLAS thread for products too small to share, BLAS's default above."""
    from nnumba.backends.cpu._config import (BLAS_THREADED_MIN_FLOPS, SMALL_MATMUL_FLOPS,
                                             TINY_MATMUL_FLOPS)
    from nnumba.backends.cpu.network import blas_threads

    cifar = nn.Sequential([nn.Dense(3072, 512), nn.ReLU(), nn.Dense(512, 10)]).plan.blocks
    assert 3072 * 512 < BLAS_THREADED_MIN_FLOPS < 2 * 3072 * 512
    assert blas_threads(cifar, 1) == 1
    assert blas_threads(cifar, 32) is None
    tiny = nn.Sequential([nn.Dense(64, 32), nn.ReLU(), nn.Dense(32, 10)]).plan.blocks
    assert 64 * 32 <= SMALL_MATMUL_FLOPS and 2 * 64 * 32 > TINY_MATMUL_FLOPS
    assert blas_threads(tiny, 1) is None  # loops, no BLAS call at all
    assert blas_threads(tiny, 2) == 1  # BLAS, on one thread
