"""Batching arithmetic, and data sets that need no download.

The vocabulary (docs/topics.md, "Epochs, batches and iterations"):

- an *epoch* is one pass over all N training samples;
- a *batch* is the subset of B samples used for one back-propagation;
- an *iteration* is one parameter update made from one batch.

An epoch has ceil(N / B) batches (the last one smaller when B does not divide
N), or floor(N / B) when the last, smaller batch is dropped. (The common
textbook formula N / (B + 1) for the non-divisible case is wrong: CIFAR-10's
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

    A CSV file may start with one header row: a first line none of whose cells
    is a number (``x1,x2,label``) is skipped. ``#`` starts a comment and blank
    lines are skipped, as in ``np.loadtxt``. Every other line must hold the same
    number of comma-separated numbers.

    Returns (X, y): X a 2-D array (samples, features) with at least one sample
    and one feature, y a 1-D or 2-D array with one row per sample. Every problem
    raises an error whose message starts with the path: ``FileNotFoundError``,
    ``IsADirectoryError`` or ``PermissionError`` for the file itself,
    ``ValueError`` for its contents (with the line and column of a bad CSV cell).
    """
    import os

    path = os.fspath(path)
    if not path.endswith((".npz", ".csv")):
        raise ValueError(f"path must end in .npz or .csv, got {path!r}")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file")
    if os.path.isdir(path):
        raise IsADirectoryError(f"{path} is a directory, not a data file")
    if not os.path.isfile(path):
        raise ValueError(f"{path} is not a regular file")
    if not os.access(path, os.R_OK):
        raise PermissionError(f"{path}: permission denied (the file is not readable)")
    X, y = _load_npz(path) if path.endswith(".npz") else _load_csv(path)
    return _checked_arrays(X, y, path)


def _load_npz(path):
    import zipfile
    import zlib

    unreadable = (OSError, EOFError, ValueError, AttributeError, zipfile.BadZipFile, zlib.error)
    try:
        f = np.load(path, allow_pickle=False)
    except unreadable as exc:
        raise ValueError(f"{path} is not a readable .npz file (truncated, or not written by "
                         f"numpy.savez): {_one_line(exc)}") from None
    if not isinstance(f, np.lib.npyio.NpzFile):
        raise ValueError(f"{path} is not a readable .npz file: it is a .npy file holding one array; "
                         f"save X and y with numpy.savez(path, X=X, y=y)")
    with f:
        files = f.files
        if "X" not in files or "y" not in files:
            raise ValueError(f"{path} must hold arrays 'X' and 'y', found {files}")
        arrays = []
        for name in ("X", "y"):
            try:
                arrays.append(f[name])
            except unreadable as exc:
                raise ValueError(f"{path} is not a readable .npz file: its array {name!r} cannot be "
                                 f"read (truncated or damaged?): {_one_line(exc)}") from None
    return arrays


def _one_line(exc):
    return " ".join(str(exc).split()) or type(exc).__name__


def _checked_arrays(X, y, path):
    """X and y from a file, checked for kind, shape and length; ValueError naming the path."""
    for name, a in (("X", X), ("y", y)):
        if a.dtype == object or not (np.issubdtype(a.dtype, np.number) or a.dtype == bool):
            raise ValueError(f"{path}: {name} must hold numbers, got dtype {a.dtype}")
        if np.iscomplexobj(a):
            raise ValueError(f"{path}: {name} must hold real numbers, got dtype {a.dtype}")
    if X.ndim != 2:
        hint = " (for one feature, save X.reshape(-1, 1))" if X.ndim == 1 else ""
        raise ValueError(f"{path}: X must be a 2-D array (samples, features), got {X.ndim}-D with "
                         f"shape {X.shape}{hint}")
    if X.shape[0] == 0:
        raise ValueError(f"{path}: X has no samples (shape {X.shape})")
    if X.shape[1] == 0:
        raise ValueError(f"{path}: X has no features (shape {X.shape})")
    if y.ndim not in (1, 2):
        raise ValueError(f"{path}: y must be a 1-D array (one target per sample) or 2-D (samples, "
                         f"outputs), got {y.ndim}-D with shape {y.shape}")
    if y.shape[0] != X.shape[0]:
        raise ValueError(f"{path}: X has {X.shape[0]} samples but y has {y.shape[0]}")
    return X, y


# ---- CSV -------------------------------------------------------------------------------------

def _csv_lines(path):
    """(line number, cells) of every line that holds data, read as np.loadtxt reads them:
    ``#`` starts a comment, blank lines are skipped, cells are stripped of spaces."""
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, 1):
            text = line.split("#", 1)[0].strip()
            if text:
                yield number, [cell.strip() for cell in text.split(",")]


def _is_number(cell):
    if "_" in cell:  # float() reads 1_000, np.loadtxt does not
        return False
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _csv_header(path):
    """(line number, cells) of the header row, or (0, None) when the file has none;
    ValueError when the file holds no data at all."""
    lines = _csv_lines(path)
    try:
        first = next(lines, None)
    finally:
        lines.close()
    if first is None:
        raise ValueError(f"{path} holds no data (it is empty, or only blank and comment lines)")
    number, cells = first
    return first if not any(_is_number(cell) for cell in cells) else (0, None)


def _csv_data_lines(path):
    """The line number of each data row of a CSV file, in order (the header skipped)."""
    header_line, _ = _csv_header(path)
    return [number for number, _ in _csv_lines(path) if number > header_line]


def _csv_problem(path, header_line):
    """The first ragged row or non-numeric cell of a CSV file, described; None if none."""
    width = width_line = None
    for number, cells in _csv_lines(path):
        if number <= header_line:
            continue
        if width is None:
            width, width_line = len(cells), number
        elif len(cells) != width:
            return (f"{path}, line {number}: {len(cells)} values, but line {width_line} has {width} "
                    f"(every row needs the same number of comma-separated values)")
        for column, cell in enumerate(cells, 1):
            if not _is_number(cell):
                what = "the cell is empty" if cell == "" else f"{cell!r} is not a number"
                hint = (" (a first row is read as a header only when none of its cells is a number)"
                        if number == width_line and header_line == 0 else "")
                return f"{path}, line {number}, column {column}: {what}{hint}"
    return None


def _load_csv(path):
    import warnings

    header_line, header = _csv_header(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "input contained no data": reported below
            table = np.loadtxt(path, delimiter=",", ndmin=2, skiprows=header_line, dtype=np.float64,
                               encoding="utf-8")
    except ValueError as exc:  # UnicodeDecodeError included
        problem = _csv_problem(path, header_line)
        raise ValueError(problem or f"{path} is not a CSV file of numbers: {_one_line(exc)}") from None
    if table.shape[0] == 0:
        raise ValueError(f"{path} has a header row (line {header_line}) but no data rows")
    if table.shape[1] < 2:
        raise ValueError(f"{path} needs at least two columns (features, then the target), "
                         f"found {table.shape[1]}")
    if header is not None and len(header) != table.shape[1]:
        raise ValueError(f"{path}: the header row (line {header_line}) names {len(header)} columns "
                         f"but the data rows have {table.shape[1]}")
    return table[:, :-1], table[:, -1]
