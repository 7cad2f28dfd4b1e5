"""Batching arithmetic, and data sets that need no download.

The vocabulary of SEED-NOTES section 1:

- an *epoch* is one pass over all N training samples;
- a *batch* is the subset of B samples used for one back-propagation;
- an *iteration* is one parameter update made from one batch.

An epoch has ceil(N / B) batches (the last one smaller when B does not divide
N), or floor(N / B) when the last, smaller batch is dropped. (The source notes
write N / (B + 1) for the non-divisible case, which is wrong: CIFAR-10's
50,000 training images in batches of 256 make ceil(50000 / 256) = 196
iterations per epoch, and 10 epochs make 1,960 weight updates.) Batch gradient
descent is B = N (one update per epoch), stochastic gradient descent B = 1 (N
updates), mini-batch anything in between.
"""
import numpy as np

from . import _checks


def iterations_per_epoch(n_samples, batch_size, drop_last=False):
    """ceil(N / B), or floor(N / B) with drop_last: the iterations (= updates) per epoch."""
    n = _checks.integer(n_samples, "n_samples", minimum=0)
    b = _checks.integer(batch_size, "batch_size", minimum=1)
    return n // b if drop_last else -(-n // b)


def n_updates(n_samples, batch_size, epochs, drop_last=False):
    """The weight updates of a training run: iterations per epoch times epochs."""
    epochs = _checks.integer(epochs, "epochs", minimum=0)
    return iterations_per_epoch(n_samples, batch_size, drop_last) * epochs


def batch_sizes(n_samples, batch_size, drop_last=False):
    """The size of each batch of one epoch, as an int64 array."""
    k = iterations_per_epoch(n_samples, batch_size, drop_last)
    sizes = np.full(k, batch_size, dtype=np.int64)
    if k and not drop_last:
        sizes[-1] = n_samples - (k - 1) * batch_size
    return sizes


# ---- data sets -------------------------------------------------------------------------------

def _split(X, y, test_size, seed, stratify):
    from sklearn.model_selection import train_test_split

    return train_test_split(X, y, test_size=test_size, random_state=seed,
                            stratify=y if stratify else None)


def load_digits(test_size=0.2, seed=0):
    """scikit-learn's handwritten digits (1797 8x8 images, 10 classes), shipped with
    scikit-learn: pixels scaled to [0, 1], split stratified into train and test.

    Returns (X_train, y_train, X_test, y_test) as float64 / int64 arrays.
    """
    from sklearn.datasets import load_digits as _load

    data = _load()
    X = data.data.astype(np.float64) / 16.0
    X_train, X_test, y_train, y_test = _split(X, data.target.astype(np.int64), test_size, seed, True)
    return X_train, y_train, X_test, y_test


def load_breast_cancer(test_size=0.2, seed=0, standardize=True):
    """scikit-learn's Wisconsin breast-cancer data (569 samples, 30 features, binary
    labels), split stratified; features standardised with the training set's mean
    and standard deviation when ``standardize``.

    Returns (X_train, y_train, X_test, y_test).
    """
    from sklearn.datasets import load_breast_cancer as _load

    data = _load()
    X_train, X_test, y_train, y_test = _split(data.data.astype(np.float64),
                                              data.target.astype(np.int64), test_size, seed, True)
    if standardize:
        from sklearn.preprocessing import StandardScaler

        scaler = StandardScaler().fit(X_train)
        X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)
    return X_train, y_train, X_test, y_test


def load_arrays(path):
    """Load a local data set: an ``.npz`` file with arrays ``X`` and ``y`` (read
    without pickle), or a ``.csv`` file of numbers whose last column is the target.

    Returns (X, y).
    """
    import os

    path = os.fspath(path)
    if path.endswith(".npz"):
        try:
            f = np.load(path, allow_pickle=False)
            files = f.files
        except FileNotFoundError:
            raise
        except (OSError, EOFError, ValueError, AttributeError) as exc:
            raise ValueError(f"{path} is not a readable .npz file: {exc}") from exc
        with f:
            if "X" not in files or "y" not in files:
                raise ValueError(f"{path} must hold arrays 'X' and 'y', found {files}")
            return f["X"], f["y"]
    if path.endswith(".csv"):
        try:
            table = np.loadtxt(path, delimiter=",", ndmin=2)
        except ValueError as exc:
            raise ValueError(f"{path} is not a CSV file of numbers: {exc}") from exc
        if table.shape[1] < 2:
            raise ValueError(f"{path} needs at least two columns (features, then the target)")
        return table[:, :-1], table[:, -1]
    raise ValueError(f"path must end in .npz or .csv, got {path!r}")
