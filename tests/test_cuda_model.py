"""Sequential on backend="cuda" against backend="cpu": training, the model API, persistence.

Runs in Numba's CUDA simulator unless a GPU is present (NUMBA_ENABLE_CUDASIM=0),
with launch sizes patched small; both training paths (per-layer kernels and the
single-block loop) are compared with the cpu backend for every optimizer and
every loss: float64 to 1e-10 relative, float32 to 1e-5.
"""
from cuda_setup import DEFAULTS, SIMULATOR, cfg, cuda, small_launches  # noqa: F401 (sets up numba.cuda)

import importlib.util
import io
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import pytest

import nnumba as nn

pytestmark = pytest.mark.cuda
ROOT = Path(__file__).resolve().parents[1]


OPTIMIZERS = {
    "sgd": lambda: nn.optim.SGD(lr=0.1),
    "momentum": lambda: nn.optim.Momentum(lr=0.1, beta=0.8),
    "rmsprop": lambda: nn.optim.RMSprop(lr=0.01, eps_inside_sqrt=False),
    "adam": lambda: nn.optim.Adam(lr=0.01),
}


def data(loss, n=10, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    if loss == "cross_entropy":
        y = rng.integers(0, 3, n)
    elif loss == "binary_cross_entropy":
        y = (rng.random((n, 3)) > 0.5).astype(float)
    else:
        y = rng.normal(size=(n, 3))
    return X, y


def model(backend, dtype, loss, optimizer, seed=3):
    m = nn.Sequential([nn.Dense(4, 6), nn.Tanh(), nn.Dense(6, 5, bias=False), nn.ReLU(),
                       nn.Dense(5, 3)], backend=backend, dtype=dtype, seed=seed)
    m.compile(loss=loss, optimizer=OPTIMIZERS[optimizer]())
    return m


def rtol(dtype):
    return 1e-10 if dtype == "float64" else 1e-5


def assert_same_weights(a, b, dtype):
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(wa, wb, rtol=rtol(dtype), atol=rtol(dtype) * 1e-2)


# (optimizer, loss) pairs covering every optimizer and every loss on both paths
PAIRS = [("adam", "cross_entropy"), ("sgd", "mse"), ("momentum", "binary_cross_entropy"),
         ("rmsprop", "cross_entropy")]


@pytest.mark.parametrize("path", ["always", "never"], ids=["single-block", "per-layer"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("optimizer,loss", PAIRS)
def test_fit_matches_cpu(optimizer, loss, dtype, path, monkeypatch):
    if path == "never" and (dtype == "float32") == (optimizer in ("adam", "momentum")):
        pytest.skip("the per-layer path runs half of the dtype combinations (simulator time)")
    monkeypatch.setattr(cfg, "FUSED_PATH", path)
    X, y = data(loss)
    runs = {}
    for backend in ("cpu", "cuda"):
        m = model(backend, dtype, loss, optimizer)
        clip = 2.0 if optimizer == "sgd" else None
        history = m.fit(X, y, epochs=1, batch_size=4, clip_grad_norm=clip)
        runs[backend] = m, history
    (cpu, h_cpu), (gpu, h_gpu) = runs["cpu"], runs["cuda"]
    assert_same_weights(gpu, cpu, dtype)
    np.testing.assert_allclose(h_gpu["loss"], h_cpu["loss"], rtol=rtol(dtype))
    np.testing.assert_allclose(h_gpu.grad_norms, h_cpu.grad_norms, rtol=rtol(dtype))
    if "accuracy" in h_cpu.history:
        assert h_gpu["accuracy"] == h_cpu["accuracy"]
    assert gpu.optimizer.t == cpu.optimizer.t == 3
    for k, v in cpu.optimizer.state_dict()["state"].items():
        np.testing.assert_allclose(gpu.optimizer.state_dict()["state"][k], v, rtol=rtol(dtype),
                                   atol=1e-12)


def test_model_api_on_cuda(tmp_path):
    X, y = data("cross_entropy", n=12)
    Xv, yv = data("cross_entropy", n=5, seed=1)
    cpu, gpu = (model(b, "float64", "cross_entropy", "adam") for b in ("cpu", "cuda"))
    assert gpu.backend == "cuda"
    h_cpu = cpu.fit(X, y, epochs=2, batch_size=5, validation_data=(Xv, yv))
    h_gpu = gpu.fit(X, y, epochs=2, batch_size=5, validation_data=(Xv, yv))
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        np.testing.assert_allclose(h_gpu[key], h_cpu[key], rtol=1e-10)
    assert h_gpu.n_updates == h_cpu.n_updates == 6

    got, expected = gpu.evaluate(X, y, batch_size=5), cpu.evaluate(X, y, batch_size=5)
    for a, b in zip(got.values(), expected.values()):
        np.testing.assert_allclose(a, b, rtol=1e-10)
    p = gpu.predict(Xv)
    np.testing.assert_allclose(p, cpu.predict(Xv), rtol=1e-10)
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    for ga, gb in zip(gpu.gradients(X, y), cpu.gradients(X, y)):
        np.testing.assert_allclose(ga, gb, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(gpu.train_step(X[:4], y[:4]), cpu.train_step(X[:4], y[:4]), rtol=1e-10)
    assert_same_weights(gpu, cpu, "float64")

    weights = [w * 0.5 for w in gpu.get_weights()]
    gpu.set_weights(weights)
    for a, b in zip(gpu.get_weights(), weights):
        np.testing.assert_array_equal(a, b)

    path = tmp_path / "model.npz"
    gpu.save(path)
    loaded = nn.load(path)
    assert loaded.backend == "cuda"
    np.testing.assert_array_equal(loaded.predict(Xv), gpu.predict(Xv))
    on_cpu = nn.load(path, backend="cpu")
    np.testing.assert_allclose(on_cpu.predict(Xv), gpu.predict(Xv), rtol=1e-12)
    # resuming from the file trains as the original does
    loaded.fit(X, y, epochs=1, batch_size=5)
    gpu.fit(X, y, epochs=1, batch_size=5)
    assert_same_weights(loaded, gpu, "float64")


@pytest.mark.parametrize("path", ["always", "never"], ids=["single-block", "per-layer"])
def test_divergence_raises_and_keeps_weights(path, monkeypatch):
    monkeypatch.setattr(cfg, "FUSED_PATH", path)
    X, y = data("mse", n=8)
    models = {}
    for backend in ("cpu", "cuda"):
        m = nn.Sequential([nn.Dense(4, 3)], backend=backend, dtype="float32", seed=1)
        m.compile(loss="mse", optimizer=nn.optim.SGD(lr=1e3))
        with pytest.raises(nn.NonFiniteError) as info:
            m.fit(X * 1e5, y, epochs=2, batch_size=2)
        models[backend] = m, info.value
    (cpu, e_cpu), (gpu, e_gpu) = models["cpu"], models["cuda"]
    assert (e_gpu.epoch, e_gpu.iteration) == (e_cpu.epoch, e_cpu.iteration)
    assert gpu.optimizer.t == cpu.optimizer.t
    for a, b in zip(gpu.get_weights(), cpu.get_weights()):  # huge numbers: float32 rounding grows
        np.testing.assert_allclose(a, b, rtol=1e-4)
        assert np.isfinite(a).all()


def test_cuda_backend_refuses_clearly_without_gpu(monkeypatch):
    from nnumba.backends import _loaded

    monkeypatch.setattr(cuda, "is_available", lambda: False)
    monkeypatch.delitem(_loaded, "cuda", raising=False)
    with pytest.raises(RuntimeError, match="no CUDA device was found.*NUMBA_ENABLE_CUDASIM=1"):
        nn.Sequential([nn.Dense(2, 1)], backend="cuda")


def test_gpu_report_quick_runs():
    spec = importlib.util.spec_from_file_location("gpu_report", ROOT / "benchmarks" / "gpu_report.py")
    report = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(report)
    out = io.StringIO()
    with redirect_stdout(out):
        report.main(["--quick", "--skip-tests"])
    text = out.getvalue()
    assert "matrix product" in text and "epoch time" in text
    assert "nnumba cuda" in text and "nnumba cpu" in text


@pytest.mark.skipif(SIMULATOR, reason="default launch sizes are too slow for the simulator")
@pytest.mark.parametrize("path", ["always", "never"], ids=["single-block", "per-layer"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_default_launch_sizes_on_gpu(path, dtype, monkeypatch):
    for name, value in DEFAULTS.items():
        monkeypatch.setattr(cfg, name, value)
    monkeypatch.setattr(cfg, "FUSED_PATH", path)
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(100, 40)), rng.integers(0, 10, 100)
    runs = []
    for backend in ("cpu", "cuda"):
        m = nn.Sequential([nn.Dense(40, 100), nn.ReLU(), nn.Dense(100, 100), nn.ReLU(),
                           nn.Dense(100, 10)], backend=backend, dtype=dtype, seed=0)
        m.compile(loss="cross_entropy", optimizer=nn.optim.Adam(lr=1e-3))
        runs.append((m, m.fit(X, y, epochs=1, batch_size=32, shuffle=False)))
    (cpu, h_cpu), (gpu, h_gpu) = runs
    tol = dict(rtol=1e-10, atol=1e-13) if dtype == "float64" else dict(rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(h_gpu["loss"], h_cpu["loss"], **tol)
    for a, b in zip(gpu.get_weights(), cpu.get_weights()):
        np.testing.assert_allclose(a, b, **tol)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_recurrent_model_on_cuda_matches_the_reference(dtype, small_launches):
    """A stacked LSTM -> Bidirectional(GRU) model (the second layer's input gradient, the
    shared output row of the two directions) on cuda against the numpy reference:
    gradients, a 2-epoch fit with an uneven last batch, predict."""
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(7, 5, 2)), rng.integers(0, 3, size=7)

    def build(backend):
        m = nn.Sequential([nn.LSTM(2, 3, return_sequences=True),
                           nn.Bidirectional(nn.GRU(3, 2)), nn.Dense(4, 3)],
                          backend=backend, dtype=dtype, seed=1, input_shape=(5, 2))
        m.compile("cross_entropy", nn.optim.Adam(lr=0.01))
        return m

    gpu, ref = build("cuda"), build("numpy")
    for ga, gb in zip(gpu.gradients(X, y), ref.gradients(X, y)):
        np.testing.assert_allclose(ga, gb, rtol=rtol(dtype), atol=rtol(dtype) * 1e-2)
    gpu.fit(X, y, epochs=2, batch_size=3, verbose=0)
    ref.fit(X, y, epochs=2, batch_size=3, verbose=0)
    assert_same_weights(gpu, ref, dtype)
    np.testing.assert_allclose(gpu.predict(X), ref.predict(X), rtol=rtol(dtype), atol=1e-7)
