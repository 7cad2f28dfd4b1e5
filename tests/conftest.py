"""Shared test set-up.

The CUDA kernels run in Numba's simulator unless NUMBA_ENABLE_CUDASIM is set
otherwise (``NUMBA_ENABLE_CUDASIM=0`` on a machine with a GPU); the variable is
read when numba is first imported, so it is set here, before anything else.

Numba's on-disk cache notices when a function's own file changes, not when a
function it calls (in another file) does; a kernel edited during development
could then run stale machine code. Tests therefore cache into a folder named
after a hash of all of nnumba's sources: any edit starts a fresh cache.
"""
import hashlib
import os
import pathlib
import tempfile

os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")
_sources = sorted((pathlib.Path(__file__).resolve().parents[1] / "nnumba").rglob("*.py"))
_digest = hashlib.sha256(b"".join(p.read_bytes() for p in _sources)).hexdigest()[:16]
os.environ.setdefault("NUMBA_CACHE_DIR", os.path.join(tempfile.gettempdir(), f"nnumba-cache-{_digest}"))

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import nnumba as nn  # noqa: E402

ACTIVATIONS = {"identity": nn.Identity, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "relu": nn.ReLU,
               "leaky_relu": lambda: nn.LeakyReLU(0.1)}
LOSSES = ("mse", "binary_cross_entropy", "cross_entropy")
OPTIMIZERS = {
    "sgd": lambda: nn.optim.SGD(lr=0.05),
    "momentum": lambda: nn.optim.Momentum(lr=0.05, beta=0.9),
    "rmsprop": lambda: nn.optim.RMSprop(lr=0.01, beta=0.9, eps=1e-8),
    "adam": lambda: nn.optim.Adam(lr=0.01),
}


def toy_data(loss, n=23, n_in=5, n_out=3, seed=0):
    """Small random inputs and targets of the kind ``loss`` expects."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, n_in))
    if loss == "cross_entropy":
        y = rng.integers(0, n_out, size=n)
    elif loss == "binary_cross_entropy":
        y = rng.integers(0, 2, size=(n, n_out)).astype(float)
    else:
        y = rng.normal(size=(n, n_out))
    return X, y


def assert_replays_to_the_last_good_step(model, fresh, X, y, batch):
    """``model`` stopped on divergence (unshuffled batches of ``batch`` rows of X, y) holds
    what ``fresh()``, a new identical model, holds after train_step on the same batches
    for as many steps as ``model`` kept: every finite."""
    replay = fresh()
    batches = len(X) // batch
    for _ in range(model.optimizer.t):
        k = replay.optimizer.t % batches
        replay.train_step(X[batch * k:batch * (k + 1)], y[batch * k:batch * (k + 1)])
    for a, b in zip(model.get_weights(), replay.get_weights()):
        np.testing.assert_array_equal(a, b)
        assert np.all(np.isfinite(a))


def small_model(backend="cpu", dtype="float64", act="tanh", seed=0, n_in=5, hidden=7, n_out=3,
                loss=None, optimizer=None):
    model = nn.Sequential([nn.Dense(n_in, hidden), ACTIVATIONS[act](), nn.Dense(hidden, 4),
                           ACTIVATIONS[act](), nn.Dense(4, n_out)], backend=backend, dtype=dtype,
                          seed=seed)
    if loss is not None:
        model.compile(loss, optimizer if optimizer is not None else nn.optim.SGD(lr=0.05))
    return model


@pytest.fixture(params=["numpy", "cpu"])
def host_backend(request):
    return request.param
