"""The --dataset choices, loaded and split (test, validation, training), and input layouts."""
import difflib
import math
import os

import numpy as np

from .. import data as datasets
from .options import DATASETS, MAX_CLASSES, N_CLASSES, TABULAR, one_line


# ---- data sets ---------------------------------------------------------------------------------

def parse_dataset(spec, option="--dataset"):
    """(kind, argument) of a data set spec: ("digits", None), ("mnist1d", N or None),
    ("cifar10", folder), ("csv", file), ("npz", file), ..."""
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"{option}: the data set is empty; give one of {', '.join(DATASETS)}")
    text = spec.strip()
    name, colon, rest = text.partition(":")
    key = name.lower().replace("_", "-")
    if key in ("digits", "breast-cancer", "diabetes") and not colon:
        return key, None
    if key == "mnist1d":
        if not colon:
            return "mnist1d", None
        try:
            n = int(rest)
        except ValueError:
            n = None
        if n is None or n < 10 or n % 10:
            raise ValueError(f"{option} {spec}: N, the number of samples of mnist1d:N, must be a "
                             f"multiple of 10 and >= 10, got {rest!r}")
        return "mnist1d", n
    if key in ("cifar10", "csv", "npz"):
        if not colon or not rest:
            what = "folder of its binary files" if key == "cifar10" else "file"
            raise ValueError(f"{option} {spec}: give the {what} after '{key}:', e.g. "
                             f"{key}:{'cifar-10-batches-bin' if key == 'cifar10' else 'data.' + key}")
        return key, rest
    if text.lower().endswith(".csv"):
        return "csv", text
    if text.lower().endswith(".npz"):
        return "npz", text
    names = ["digits", "breast-cancer", "diabetes", "mnist1d", "cifar10", "csv", "npz"]
    close = difflib.get_close_matches(key, names, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ValueError(f"{option}: unknown data set {spec!r}{hint}: expected one of "
                     f"{', '.join(DATASETS)}, or the path of a .csv or .npz file")


def dataset_file(spec):
    """The file or folder a data set spec names, or None for a built-in one."""
    try:
        kind, arg = parse_dataset(spec)
    except ValueError:
        return None
    return arg if kind in ("cifar10", "csv", "npz") else None


def canonical_dataset(spec):
    """The spec as recorded next to a model: files and folders as absolute paths."""
    kind, arg = parse_dataset(spec)
    if kind in ("cifar10", "csv", "npz"):
        return f"{kind}:{os.path.abspath(arg)}"
    return kind if arg is None else f"{kind}:{arg}"


class Dataset:
    """A data set split into a training part and a held-out test part, in the loaders'
    natural shapes (samples first; images (N, 32, 32, 3))."""

    def __init__(self, spec, kind, X_train, y_train, X_test, y_test, n_classes=None,
                 y_all=None, line_of_row=None):
        self.spec, self.kind = spec, kind
        self.X_train, self.y_train, self.X_test, self.y_test = X_train, y_train, X_test, y_test
        self.n_classes = n_classes           # fixed by the data set, or None (from the labels)
        self.y_all = y_all if y_all is not None else np.concatenate([y_train, y_test])
        self.line_of_row = line_of_row       # the file line of row i of y_all (CSV), or None
        self.tabular = kind in TABULAR

    @property
    def classification(self):
        """Whether the targets are class labels (the task ``--loss auto`` chooses from)."""
        if self.n_classes is not None:
            return True
        return self.kind != "diabetes" and is_class_labels(self.y_all)


def is_class_labels(y):
    """Class labels: one per sample, integers (or integral floats below 2**53), at most
    ``datasets.CLASSIFICATION_MAX_CLASSES`` distinct values (load_csv's rule)."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or y.size == 0:
        return False
    if y.dtype == bool or np.issubdtype(y.dtype, np.integer):
        return np.unique(y).size <= datasets.CLASSIFICATION_MAX_CLASSES
    if not np.issubdtype(y.dtype, np.floating) or not np.all(np.isfinite(y)):
        return False
    if np.any(y != np.round(y)) or np.any(np.abs(y) >= 2.0 ** 53):
        return False
    return np.unique(y).size <= datasets.CLASSIFICATION_MAX_CLASSES


def load_data(spec, test_size=0.2, seed=0, option="--dataset", test_size_given=False):
    """The data set ``spec`` split into training and test parts (a ``Dataset``), every
    problem a ValueError (or ImportError) naming the option."""
    kind, arg = parse_dataset(spec, option)
    where = f"{option} {spec}"
    if kind == "cifar10" and test_size_given:
        raise ValueError(f"--test-size does not apply to {where}: CIFAR-10's test set is its own "
                         f"file, {datasets.CIFAR10_TEST_FILE}")
    try:
        if kind == "digits":
            parts = datasets.load_digits(test_size, seed)
        elif kind == "breast-cancer":
            parts = datasets.load_breast_cancer(test_size, seed, standardize=False)
        elif kind == "diabetes":
            parts = datasets.load_diabetes(test_size, seed)
        elif kind == "mnist1d":
            parts = datasets.load_mnist1d(test_size=test_size, seed=seed, n_samples=arg or 5000)
        elif kind == "cifar10":
            parts = datasets.load_cifar10(arg)
        if kind not in ("csv", "npz"):
            return Dataset(spec, kind, *parts, n_classes=N_CLASSES.get(kind))
    except ImportError as exc:
        raise ImportError(f"{where}: {one_line(exc)}") from None
    except (ValueError, OSError) as exc:
        if kind in ("cifar10",):
            raise ValueError(f"{option}: {one_line(exc)}") from None
        raise ValueError(f"{where} with --test-size {test_size:g} and --seed {seed}: "
                         f"{one_line(exc)}") from None
    try:
        X, y = datasets.load_csv(arg) if kind == "csv" else datasets.load_npz(arg)
    except (ValueError, OSError, TypeError) as exc:
        raise ValueError(f"{option}: {one_line(exc)}") from None
    line_of_row = None
    if kind == "csv":
        def line_of_row(i):
            return datasets._csv_data_lines(arg)[i]
    try:
        X_train, y_train, _, _, X_test, y_test = datasets.train_val_test_split(
            X, y, val_size=0, test_size=test_size, seed=seed)
    except ValueError as exc:
        raise ValueError(f"--test-size {test_size:g} with the {X.shape[0]} samples of {where}: "
                         f"{one_line(exc)}") from None
    return Dataset(spec, kind, X_train, y_train, X_test, y_test, y_all=y, line_of_row=line_of_row)


def split_validation(X, y, val_split, seed):
    """(X_train, y_train, X_val, y_val): ceil(val_split N) samples of the training part
    held out for validation (stratified for class labels), or (X, y, None, None)."""
    if not val_split:
        return X, y, None, None
    n = X.shape[0]
    n_val = math.ceil(val_split * n)
    if n_val >= n:
        raise ValueError(f"--val-split {val_split:g} of the {n} training samples holds out {n_val} "
                         f"for validation and leaves none for training")
    X_train, y_train, _, _, X_val, y_val = datasets.train_val_test_split(
        X, y, val_size=0, test_size=n_val, seed=seed)
    return X_train, y_train, X_val, y_val


def _label(value):
    """A label as written: 3, or 1e+20 for a float too large to be an exact integer."""
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if float(value).is_integer() and abs(float(value)) < 2.0 ** 53:
        return str(int(value))
    return str(value) if isinstance(value, np.floating) else repr(float(value))


def count_classes(y, where, line_of_row=None):
    """K = max label + 1, the output width --loss cross_entropy needs for labels y,
    after checking that the labels are class numbers: finite integers >= 0 with
    2 <= K <= min(MAX_CLASSES, number of samples). ``where`` (the --dataset value)
    and ``line_of_row(i)`` (the file line of row i, for a CSV file) name the
    culprit in the ValueError."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError(f"--dataset {where}: --loss cross_entropy needs one integer class label "
                         f"per sample (a 1-D y), got y of shape {y.shape}")
    if y.dtype == bool:
        y = y.astype(np.int64)
    if not (np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.floating)):
        raise ValueError(f"--dataset {where}: --loss cross_entropy needs integer class labels, "
                         f"got dtype {y.dtype}")
    n = y.shape[0]

    def refuse(i, problem):
        row = f"on line {line_of_row(i)}" if line_of_row is not None else f"at index {i} of y"
        raise ValueError(f"--dataset {where}: label {_label(y[i])} {row} {problem}; --loss "
                         f"cross_entropy needs integer class labels 0, 1, ..., K-1")

    if np.issubdtype(y.dtype, np.floating):
        bad = ~np.isfinite(y)
        if bad.any():
            refuse(int(np.argmax(bad)), "is not a finite number")
    bad = y < 0
    if bad.any():
        refuse(int(np.argmax(bad)), "is negative")
    if np.issubdtype(y.dtype, np.floating):
        bad = y != np.floor(y)
        if bad.any():
            refuse(int(np.argmax(bad)), "is not an integer")
    top = int(np.argmax(y))
    value = y[top]
    n_classes = int(value) + 1  # a Python int: 1e20 stays 1e20, no int64 wrap-around
    if n_classes > MAX_CLASSES or n_classes > n:
        limit = (f"the limit of {MAX_CLASSES}" if n_classes > MAX_CLASSES
                 else f"the {n} samples in the data")
        refuse(top, f"implies {n_classes} classes (the output layer's width), more than {limit} "
                    f"(a typo? or meant for --loss mse?)")
    if n_classes < 2:
        raise ValueError(f"--dataset {where}: every label is 0; --loss cross_entropy needs at least "
                         f"2 classes (use binary_cross_entropy for 0/1 targets)")
    return n_classes


def output_width(loss, ds):
    """The output layer's width for ``loss`` on the data set ``ds``."""
    if loss == "cross_entropy":
        return ds.n_classes or count_classes(ds.y_all, ds.spec, ds.line_of_row)
    y = np.asarray(ds.y_all)
    return 1 if y.ndim == 1 else int(y.shape[1])


def regression_targets(y):
    """Targets of a regression loss as a float (N, outputs) array."""
    y = np.asarray(y)
    y = y.reshape(y.shape[0], -1)
    return y if np.issubdtype(y.dtype, np.floating) else y.astype(np.float64)


# ---- input layouts -----------------------------------------------------------------------------

def to_layout(X, layout):
    """Samples in a model's input layout: "flat" (N, features), every sample's values in
    order; "sequence" (N, steps, channels): a table row or 1-D signal is steps of one
    channel, an image (N, rows, columns, channels) its pixels row by row."""
    n = X.shape[0]
    if layout == "flat":
        return X.reshape(n, -1)
    if X.ndim == 2:
        return X[:, :, None]
    if X.ndim == 3:
        return X
    return X.reshape(n, -1, X.shape[-1])


def model_layout(model):
    return "sequence" if len(model.plan.input_shape) == 2 else "flat"


def _shape_words(shape):
    shape = tuple(int(d) for d in shape)
    if len(shape) == 1:
        return f"{shape[0]} feature{'s' * (shape[0] != 1)}"
    if len(shape) == 2:
        return f"{shape[0]} steps of {shape[1]} channel{'s' * (shape[1] != 1)}"
    return "samples of shape " + "x".join(map(str, shape))
