"""The command line: ``nnumba train`` trains an MLP and reports what happened.

    nnumba train                                  # digits, 64-64-10 ReLU MLP, Adam
    nnumba train --hidden 128 64 --optimizer momentum --lr 0.1 --batch-size 1
    nnumba train --data my.npz --loss cross_entropy --backend numpy --epochs 5

The default data set is scikit-learn's handwritten digits (1797 8x8 images,
shipped with scikit-learn, no download); ``--data`` takes a local .npz file
with arrays X and y, or a .csv file whose last column is the target (a first
row none of whose cells is a number is read as a header and skipped).

Errors: a user error (a bad option value, an unreadable or malformed data
file, an impossible ``--save`` path, labels that cannot be class numbers) is
reported as one line on stderr, ``nnumba: error: <message>``, naming the
option and the values or paths involved, with exit status 2 (argparse's
status for usage errors). Everything that can be checked before training is:
the ``--save`` path (its folder must exist and be writable, it must not be a
directory) is checked before the data is even loaded, so a run's model is not
lost to a typo in it. A run that diverges (``nnumba.NonFiniteError``) or runs
out of memory is reported in one line with exit status 1; Ctrl-C prints
``nnumba: interrupted`` and exits with 130.

For ``--loss cross_entropy`` the targets are class numbers 0, 1, ..., K-1 and
the output layer has K = max label + 1 units. Labels must be finite
integers >= 0, and K must be plausible: at most ``MAX_CLASSES`` (100000) and
at most the number of samples in the data; otherwise the command stops before
allocating anything, naming the label and the row it is on (a mistyped
``1e8`` would otherwise make a 6.7 GB output layer).
"""
import argparse
import math
import os
import sys
import time

import numpy as np

from . import data as datasets
from .backends import BACKENDS, get_backend
from .errors import NonFiniteError
from .layers import LAYERS, Dense
from .losses import LOSSES
from .model import DTYPES, Sequential
from .optim import OPTIMIZERS

ACTIVATIONS = {"relu": "ReLU", "leaky_relu": "LeakyReLU", "sigmoid": "Sigmoid", "tanh": "Tanh",
               "identity": "Identity"}
BUILTIN_DATA = {"digits": datasets.load_digits, "breast_cancer": datasets.load_breast_cancer}
MAX_CLASSES = 100_000  # the most output units --loss cross_entropy infers from the labels


# ---- the parser ------------------------------------------------------------------------------

class _Parser(argparse.ArgumentParser):
    """argparse, with each usage error as one line (``--help`` shows the usage)."""

    def error(self, message):
        self.exit(2, f"nnumba: error: {_one_line(message)}\n")


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows every default; an option whose default is None says in its help what
    happens when it is not given, instead of '(default: None)'."""

    def _get_help_string(self, action):
        if action.default is None:
            return action.help
        return super()._get_help_string(action)


def _integer(minimum):
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, got {value}")
        return value

    return parse


def _real(low=None, high=None, low_open=False, high_open=False):
    def parse(text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
        bad_low = low is not None and (value <= low if low_open else value < low)
        bad_high = high is not None and (value >= high if high_open else value > high)
        if bad_low or bad_high:
            if high is None:
                wanted = f"{'>' if low_open else '>='} {low:g}"
            else:
                wanted = f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
            raise argparse.ArgumentTypeError(f"must be {wanted}, got {text}")
        return value

    return parse


def _optimizer_defaults(name):
    """'sgd 0.01, momentum 0.01, ...': the optimizers' own defaults of hyperparameter ``name``."""
    found = [f"{key} {cls().hyperparameters()[name]:g}" for key, cls in sorted(OPTIMIZERS.items())
             if name in cls().hyperparameters()]
    return ", ".join(found)


def build_parser():
    parser = _Parser(prog="nnumba", description="Numba-accelerated feed-forward networks.",
                     formatter_class=_HelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="command",
                                     help="'train' (see nnumba train --help)")
    train = commands.add_parser(
        "train", help="train an MLP and report test accuracy and counts",
        description="Train an MLP and report test accuracy, iterations and weight updates. A user "
                    "error is reported as one line, 'nnumba: error: ...', with exit status 2.",
        formatter_class=_HelpFormatter)
    train.add_argument("--data", default="digits", metavar="NAME_OR_PATH",
                       help="'digits', 'breast_cancer', or a local .npz file (arrays X, y) or .csv "
                            "file (numbers, target last; an optional header row)")
    train.add_argument("--test-size", type=_real(0.0, 1.0, True, True), default=0.2,
                       metavar="FRACTION", help="fraction of the samples held out for testing, in (0, 1)")
    train.add_argument("--hidden", type=_integer(1), nargs="*", default=[64], metavar="WIDTH",
                       help="hidden layer widths, each >= 1 (none: a linear model)")
    train.add_argument("--activation", choices=sorted(ACTIVATIONS), default="relu",
                       help="activation after each hidden layer")
    train.add_argument("--loss", choices=sorted(LOSSES), default="cross_entropy",
                       help=f"loss; cross_entropy takes integer class labels 0..K-1 and makes K "
                            f"outputs (K at most {MAX_CLASSES} and at most the number of samples)")
    train.add_argument("--optimizer", choices=sorted(OPTIMIZERS), default="adam", help="optimizer")
    train.add_argument("--lr", type=_real(0.0, low_open=True), default=None,
                       help=f"learning rate, > 0 (default: the optimizer's: {_optimizer_defaults('lr')})")
    train.add_argument("--beta", type=_real(0.0, 1.0, high_open=True), default=None,
                       help=f"Momentum / RMSprop beta, in [0, 1) (default: the optimizer's: "
                            f"{_optimizer_defaults('beta')})")
    train.add_argument("--beta1", type=_real(0.0, 1.0, high_open=True), default=None,
                       help=f"Adam beta1, in [0, 1) (default: {_optimizer_defaults('beta1')})")
    train.add_argument("--beta2", type=_real(0.0, 1.0, high_open=True), default=None,
                       help=f"Adam beta2, in [0, 1) (default: {_optimizer_defaults('beta2')})")
    train.add_argument("--eps", type=_real(0.0, low_open=True), default=None,
                       help=f"RMSprop / Adam eps, > 0 (default: the optimizer's: "
                            f"{_optimizer_defaults('eps')})")
    train.add_argument("--eps-outside-sqrt", action="store_true",
                       help="RMSprop: eps outside the square root (PyTorch's form)")
    train.add_argument("--epochs", type=_integer(0), default=30,
                       help="passes over the training set, >= 0 (0 evaluates the untrained model)")
    train.add_argument("--batch-size", type=_integer(0), default=32,
                       help="samples per weight update, >= 0; 0 means the full batch (BGD)")
    train.add_argument("--drop-last", action="store_true",
                       help="drop each epoch's last, smaller batch")
    train.add_argument("--clip-grad-norm", type=_real(0.0, low_open=True), default=None,
                       metavar="MAX_NORM",
                       help="clip the gradient to this global norm, > 0 (default: no clipping)")
    train.add_argument("--backend", choices=BACKENDS, default="cpu", help="kernels to run on")
    train.add_argument("--dtype", choices=DTYPES, default="float32", help="floating-point type")
    train.add_argument("--seed", type=_integer(0), default=0,
                       help="seed of the split, the initial weights and the shuffling, >= 0")
    train.add_argument("--save", default=None, metavar="PATH",
                       help="write the trained model to this .npz file; its folder must exist "
                            "(checked before training) (default: not saved)")
    train.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


# ---- checks made before training -------------------------------------------------------------

def check_save_path(path, data=None):
    """Refuse a --save path the model could not be written to, before any training:
    its folder must exist and be writable, and it must not be a directory (nor
    the --data file). Creates nothing."""
    if path is None:
        return
    if path == "":
        raise ValueError("--save: the path is empty")
    if os.path.isdir(path):
        raise IsADirectoryError(f"--save {path}: is a directory; give a file name such as "
                                f"{os.path.join(path, 'model.npz')}")
    if os.path.exists(path) and not os.path.isfile(path):
        raise ValueError(f"--save {path}: exists and is not a regular file")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.exists(folder):
        raise FileNotFoundError(f"--save {path}: the folder {folder} does not exist")
    if not os.path.isdir(folder):
        raise NotADirectoryError(f"--save {path}: {folder} is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise PermissionError(f"--save {path}: the folder {folder} is not writable")
    if data is not None and data not in BUILTIN_DATA and os.path.isfile(path) \
            and os.path.isfile(data) and os.path.samefile(path, data):
        raise ValueError(f"--save {path}: is the --data file; it would be overwritten")


def _label(value):
    """A label as written: 3, or 1e+20 for a float too large to be an exact integer."""
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    value = float(value)
    return str(int(value)) if value.is_integer() and abs(value) < 2.0 ** 53 else repr(value)


def count_classes(y, where, line_of_row=None):
    """K = max label + 1, the output width --loss cross_entropy needs for labels y,
    after checking that the labels are class numbers: finite integers >= 0 with
    2 <= K <= min(MAX_CLASSES, number of samples). ``where`` (the --data value)
    and ``line_of_row(i)`` (the file line of row i, for a CSV file) name the
    culprit in the ValueError."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError(f"--data {where}: --loss cross_entropy needs one integer class label per "
                         f"sample (a 1-D y), got y of shape {y.shape}")
    if y.dtype == bool:
        y = y.astype(np.int64)
    if not (np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.floating)):
        raise ValueError(f"--data {where}: --loss cross_entropy needs integer class labels, "
                         f"got dtype {y.dtype}")
    n = y.shape[0]

    def refuse(i, problem):
        row = f"on line {line_of_row(i)}" if line_of_row is not None else f"at index {i} of y"
        raise ValueError(f"--data {where}: label {_label(y[i])} {row} {problem}; --loss "
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
        raise ValueError(f"--data {where}: every label is 0; --loss cross_entropy needs at least 2 "
                         f"classes (use binary_cross_entropy for 0/1 targets)")
    return n_classes


def load_data(args):
    """(X_train, y_train, X_test, y_test, n_out), with every problem a ValueError /
    OSError naming the option."""
    name, test_size, seed = args.data, args.test_size, args.seed
    if name in BUILTIN_DATA:
        try:
            X_train, y_train, X_test, y_test = BUILTIN_DATA[name](test_size, seed)
        except ValueError as exc:
            raise ValueError(f"--test-size {test_size} with --data {name}: {_one_line(exc)}") from None
        y = np.concatenate([y_train, y_test])
        line_of_row = None
    else:
        if not name.endswith((".npz", ".csv")):
            raise ValueError(f"--data must be 'digits', 'breast_cancer', or the path of a .npz or .csv "
                             f"file, got {name!r}")
        try:
            X, y = datasets.load_arrays(name)
        except (ValueError, OSError) as exc:
            raise ValueError(f"--data: {_one_line(exc)}") from None
        line_of_row = None
        if name.endswith(".csv"):
            def line_of_row(i):
                return datasets._csv_data_lines(name)[i]
    if args.loss == "cross_entropy":
        n_out = count_classes(y, name, line_of_row)
    else:
        n_out = 1 if np.ndim(y) == 1 else np.shape(y)[1]
    if name not in BUILTIN_DATA:
        from sklearn.model_selection import train_test_split

        try:
            X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=test_size,
                                                                random_state=seed)
        except ValueError as exc:
            raise ValueError(f"--test-size {test_size} with the {X.shape[0]} samples of --data "
                             f"{name}: {_one_line(exc)}") from None
    return X_train, y_train, X_test, y_test, n_out


def make_optimizer(args):
    names = {"lr": args.lr, "beta": args.beta, "beta1": args.beta1, "beta2": args.beta2, "eps": args.eps}
    cls = OPTIMIZERS[args.optimizer]
    accepted = cls().hyperparameters()
    kwargs = {k: v for k, v in names.items() if v is not None}
    unused = [k for k in kwargs if k not in accepted]
    if unused:
        raise ValueError(f"--{unused[0]} does not apply to {args.optimizer}")
    if args.optimizer == "rmsprop":
        kwargs["eps_inside_sqrt"] = not args.eps_outside_sqrt
    elif args.eps_outside_sqrt:
        raise ValueError(f"--eps-outside-sqrt applies to rmsprop, not {args.optimizer}")
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as exc:
        given = " ".join(f"--{k} {v:g}" for k, v in kwargs.items() if k in names)
        raise ValueError(f"--optimizer {args.optimizer}{' ' + given if given else ''}: "
                         f"{_one_line(exc)}") from None


def check_backend(name):
    try:
        get_backend(name)
    except RuntimeError as exc:  # cuda: numba-cuda missing or no GPU
        raise ValueError(f"--backend {name}: {_one_line(exc)}") from None


# ---- the command -----------------------------------------------------------------------------

def train(args):
    check_save_path(args.save, args.data)  # before anything else: a bad path must not cost a run
    optimizer = make_optimizer(args)
    check_backend(args.backend)
    X_train, y_train, X_test, y_test, n_out = load_data(args)
    widths = [X_train.shape[1], *args.hidden, n_out]
    layers = []
    for i in range(len(widths) - 1):
        layers.append(Dense(widths[i], widths[i + 1]))
        if i < len(widths) - 2:
            layers.append(LAYERS[ACTIVATIONS[args.activation]]())
    model = Sequential(layers, backend=args.backend, dtype=args.dtype, seed=args.seed)
    model.compile(args.loss, optimizer)
    batch_size = None if args.batch_size == 0 else args.batch_size
    print(f"data: {args.data}, {X_train.shape[0]} training and {X_test.shape[0]} test samples, "
          f"{X_train.shape[1]} features")
    print(model.summary())
    print(f"loss {args.loss}, optimizer {model.optimizer!r}")
    if args.backend != "numpy":
        print("(the first run compiles the kernels, which takes a while; later runs load them "
              "from Numba's cache)")
    started = time.perf_counter()
    history = model.fit(X_train, y_train, epochs=args.epochs, batch_size=batch_size,
                        drop_last=args.drop_last, validation_data=(X_test, y_test),
                        verbose=0 if args.quiet else 1, clip_grad_norm=args.clip_grad_norm)
    seconds = time.perf_counter() - started
    result = model.evaluate(X_test, y_test)
    print(f"trained {history.epochs} epochs in {seconds:.2f} s on backend {args.backend!r}: "
          f"{history.iterations_per_epoch} iterations per epoch (batch size {history.batch_size}, "
          f"{history.n_samples} samples), {history.n_updates} weight updates")
    for key, value in result.items():
        print(f"test {key}: {value:.4f}")
    if args.save:
        try:
            model.save(args.save)
        except OSError as exc:
            raise OSError(f"--save {args.save}: the model could not be written: {_one_line(exc)}") \
                from None
        print(f"saved to {args.save}")
    return result


def _one_line(message):
    text = " ".join(str(message).split())
    if not text and isinstance(message, BaseException):
        text = type(message).__name__
    return text


def _report(message):
    print(f"nnumba: error: {_one_line(message)}", file=sys.stderr)


def main(argv=None):
    """Run the command line; returns the exit status: 0 done, 2 a user error, 1 a run
    that diverged (or ran out of memory), 130 interrupted."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2), already printed
        return exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 2
    try:
        if args.command == "train":
            train(args)
    except KeyboardInterrupt:
        print("nnumba: interrupted", file=sys.stderr)
        return 130
    except (NonFiniteError, FloatingPointError, RuntimeError) as exc:  # a run that diverged
        _report(exc)
        return 1
    except MemoryError as exc:
        _report(f"out of memory: {_one_line(exc)} (try a smaller --hidden or --batch-size)")
        return 1
    except (ValueError, TypeError, OSError) as exc:
        _report(exc)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
