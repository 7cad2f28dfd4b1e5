"""The command line: ``nnumba train`` trains an MLP and reports what happened.

    nnumba train                                  # digits, 64-64-10 ReLU MLP, Adam
    nnumba train --hidden 128 64 --optimizer momentum --lr 0.1 --batch-size 1
    nnumba train --data my.npz --loss cross_entropy --backend numpy --epochs 5

The default data set is scikit-learn's handwritten digits (1797 8x8 images,
shipped with scikit-learn, no download); ``--data`` takes a local .npz file
with arrays X and y, or a .csv file whose last column is the target.
"""
import argparse
import sys
import time

import numpy as np

from . import data as datasets
from .backends import BACKENDS
from .layers import LAYERS, Dense
from .losses import LOSSES
from .model import DTYPES, Sequential
from .optim import OPTIMIZERS

ACTIVATIONS = {"relu": "ReLU", "leaky_relu": "LeakyReLU", "sigmoid": "Sigmoid", "tanh": "Tanh",
               "identity": "Identity"}


def build_parser():
    parser = argparse.ArgumentParser(prog="nnumba", description="Numba-accelerated feed-forward networks.")
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="train an MLP and report test accuracy and counts",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    train.add_argument("--data", default="digits",
                       help="'digits', 'breast_cancer', or a local .npz (X, y) / .csv (target last) file")
    train.add_argument("--test-size", type=float, default=0.2, help="fraction held out for testing")
    train.add_argument("--hidden", type=int, nargs="*", default=[64], help="hidden layer widths")
    train.add_argument("--activation", choices=sorted(ACTIVATIONS), default="relu")
    train.add_argument("--loss", choices=sorted(LOSSES), default="cross_entropy")
    train.add_argument("--optimizer", choices=sorted(OPTIMIZERS), default="adam")
    train.add_argument("--lr", type=float, default=None, help="learning rate (default: the optimizer's)")
    train.add_argument("--beta", type=float, default=None, help="Momentum / RMSprop beta")
    train.add_argument("--beta1", type=float, default=None, help="Adam beta1")
    train.add_argument("--beta2", type=float, default=None, help="Adam beta2")
    train.add_argument("--eps", type=float, default=None, help="RMSprop / Adam eps")
    train.add_argument("--eps-outside-sqrt", action="store_true",
                       help="RMSprop: eps outside the square root (PyTorch's form)")
    train.add_argument("--epochs", type=int, default=30)
    train.add_argument("--batch-size", type=int, default=32, help="0 means the full batch (BGD)")
    train.add_argument("--drop-last", action="store_true")
    train.add_argument("--clip-grad-norm", type=float, default=None)
    train.add_argument("--backend", choices=BACKENDS, default="cpu")
    train.add_argument("--dtype", choices=DTYPES, default="float32")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--save", default=None, help="write the trained model to this .npz file")
    train.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def load_data(name, test_size, seed):
    if name == "digits":
        return datasets.load_digits(test_size, seed)
    if name == "breast_cancer":
        return datasets.load_breast_cancer(test_size, seed)
    from sklearn.model_selection import train_test_split

    X, y = datasets.load_arrays(name)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=test_size, random_state=seed)
    return X_train, y_train, X_test, y_test


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
    return cls(**kwargs)


def train(args):
    X_train, y_train, X_test, y_test = load_data(args.data, args.test_size, args.seed)
    n_out = int(np.max(y_train)) + 1 if args.loss == "cross_entropy" else \
        (1 if np.ndim(y_train) == 1 else np.shape(y_train)[1])
    widths = [X_train.shape[1], *args.hidden, n_out]
    layers = []
    for i in range(len(widths) - 1):
        layers.append(Dense(widths[i], widths[i + 1]))
        if i < len(widths) - 2:
            layers.append(LAYERS[ACTIVATIONS[args.activation]]())
    model = Sequential(layers, backend=args.backend, dtype=args.dtype, seed=args.seed)
    model.compile(args.loss, make_optimizer(args))
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
        model.save(args.save)
        print(f"saved to {args.save}")
    return result


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        if args.command == "train":
            train(args)
    except (ValueError, TypeError, RuntimeError, FloatingPointError) as exc:
        print(f"nnumba: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
