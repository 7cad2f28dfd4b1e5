"""nnumba: classic feed-forward networks on Numba, correct to the last digit.

    import nnumba as nn
    model = nn.Sequential([nn.Dense(64, 32), nn.ReLU(), nn.Dense(32, 10)],
                          backend="cpu", dtype="float32", seed=0)
    model.compile(loss="cross_entropy", optimizer=nn.optim.Adam(lr=1e-3))
    history = model.fit(X, y, epochs=10, batch_size=32)

Backends: "numpy" (pure-NumPy reference), "cpu" (Numba @njit), "cuda"
(numba.cuda). The public API is described in docs/api.md and the subject
matter in docs/topics.md; the formulas of every kernel are in the docstrings
of ``nnumba.backends.reference``.
"""
from . import callbacks, data, diagnostics, initializers, layers, losses, metrics, optim, schedules
from . import testing  # nn.testing.gradcheck
from .errors import NonFiniteError
from .history import History
from .layers import (GRU, LSTM, AvgPool1D, BatchNorm, Bidirectional, Conv1D, Dense, Dropout, Flatten,
                     GlobalAvgPool1D, Identity, LeakyReLU, MaxPool1D, ReLU, Residual, Sigmoid,
                     SimpleRNN, Tanh)
from .model import Sequential
from .persistence import load

__version__ = "0.1.0"


def __getattr__(name):
    # nn.plot needs matplotlib, nn.sklearn scikit-learn's estimator machinery and
    # nn.distributed mpi4py: they are imported on first use only
    if name in ("plot", "sklearn", "distributed"):
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'nnumba' has no attribute {name!r}")

__all__ = [
    "Sequential", "Dense", "Sigmoid", "Tanh", "ReLU", "LeakyReLU", "Identity",
    "Conv1D", "MaxPool1D", "AvgPool1D", "GlobalAvgPool1D", "Flatten", "Dropout", "BatchNorm",
    "Residual", "SimpleRNN", "LSTM", "GRU", "Bidirectional", "layers",
    "losses", "optim", "data", "diagnostics", "initializers", "callbacks", "schedules", "metrics",
    "load", "History", "NonFiniteError",
]
