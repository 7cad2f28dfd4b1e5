"""The argument parser of nnumba train, evaluate and predict: every option with its default."""
import argparse
import math
import textwrap

from ..backends import BACKENDS
from ..losses import LOSSES
from ..model import DTYPES
from ..optim import OPTIMIZERS
from .options import ACTIVATIONS, DATASETS, MAX_CLASSES, MODEL_SYNTAX, PLOT_EXTRA, SCHEDULE_SYNTAX, one_line


# ---- the parser ------------------------------------------------------------------------------

class _Parser(argparse.ArgumentParser):
    """argparse, with each usage error as one line (``--help`` shows the usage)."""

    def error(self, message):
        self.exit(2, f"nnumba: error: {one_line(message)}\n")


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows every default and keeps the epilog's line breaks; an option whose default
    is None says in its help what happens when it is not given, instead of
    '(default: None)'."""

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


def _wrap(text):
    return textwrap.fill(text, 78)


def _add_backend(command):
    command.add_argument("--backend", choices=BACKENDS, default="cpu",
                         help="kernels to run on (numpy needs no compilation)")


def _add_metrics(command):
    command.add_argument("--metrics", nargs="+", default=None, metavar="NAME",
                         help="extra metrics to report (nnumba.metrics: accuracy, mae, mse, r2, auc, "
                              "top_5_accuracy, ...; names may also be comma-separated) (default: "
                              "none: the loss, and the accuracy of a classifier)")


def build_parser():
    parser = _Parser(prog="nnumba", description="Numba-accelerated feed-forward networks: train, "
                     "evaluate and predict.", formatter_class=_HelpFormatter,
                     epilog=_wrap("Exit status: 0 done, 2 a user error (one line, 'nnumba: error: "
                                  "...'), 1 a run that diverged or ran out of memory, 130 "
                                  "interrupted."))
    commands = parser.add_subparsers(dest="command", required=True, metavar="command",
                                     help="'train', 'evaluate' or 'predict' (see nnumba COMMAND "
                                          "--help)")

    # ---- train
    train = commands.add_parser(
        "train", help="train a network and report its test metrics and counts",
        description=_wrap("Train a network on a data set and report the test metrics, iterations "
                          "and weight updates. A user error is reported as one line, 'nnumba: "
                          "error: ...', with exit status 2; a run that diverges with status 1."),
        epilog=MODEL_SYNTAX + "\n\n" + SCHEDULE_SYNTAX, formatter_class=_HelpFormatter)
    data = train.add_argument_group("data")
    data.add_argument("--dataset", "--data", dest="dataset", default=None, metavar="SPEC",
                      help=f"{', '.join(DATASETS)}, or a path ending in .csv or .npz (default: "
                           f"digits; with --resume, the data set recorded with the checkpoint)")
    data.add_argument("--test-size", type=_real(0.0, 1.0, True, True), default=0.2,
                      metavar="FRACTION",
                      help="fraction of all the samples held out for the final test, in (0, 1); "
                           "not for cifar10, which has its own test file; with --resume, the "
                           "recorded one unless given")
    data.add_argument("--val-split", type=_real(0.0, 1.0, high_open=True), default=0.1,
                      metavar="FRACTION",
                      help="fraction of the training part (what the test split leaves) held out "
                           "for validation, in [0, 1); 0: no validation; with --resume, the "
                           "recorded one unless given")
    data.add_argument("--standardize", action=argparse.BooleanOptionalAction, default=None,
                      help="standardise the inputs (and a regression's targets) with statistics of "
                           "the training part only (default: on for csv, npz, breast-cancer and "
                           "diabetes, off for digits, mnist1d and cifar10; with --resume, as the "
                           "checkpoint was trained)")
    data.add_argument("--seed", type=_integer(0), default=0,
                      help="seed of the splits, the initial weights, the shuffling and dropout, >= 0; "
                           "with --resume, the recorded one unless given")

    net = train.add_argument_group("model")
    net.add_argument("--model", default=None, metavar="SPEC",
                     help="the layers, e.g. 'dense:64,relu,dropout:0.2,dense:10', or a .json / "
                          ".toml file listing them (syntax below) (default: the MLP of --hidden "
                          "and --activation)")
    net.add_argument("--hidden", type=_integer(1), nargs="*", default=[64], metavar="WIDTH",
                     help="without --model: hidden layer widths, each >= 1 (none: a linear model)")
    net.add_argument("--activation", choices=sorted(ACTIVATIONS), default="relu",
                     help="without --model: the activation after each hidden layer")
    net.add_argument("--loss", choices=["auto", *sorted(LOSSES)], default="auto",
                     help=f"loss; auto: cross_entropy for class labels, mse otherwise. "
                          f"cross_entropy takes integer class labels 0..K-1 and makes K outputs (K "
                          f"at most {MAX_CLASSES} and at most the number of samples)")
    net.add_argument("--dtype", choices=DTYPES, default="float32", help="floating-point type")
    _add_backend(net)

    opt = train.add_argument_group("optimization")
    opt.add_argument("--epochs", type=_integer(0), default=30,
                     help="passes over the training part, >= 0 (0 evaluates the untrained model); "
                          "with --resume, the epochs to add")
    opt.add_argument("--batch-size", type=_integer(0), default=32,
                     help="samples per weight update, >= 0; 0 means the full batch (BGD); with "
                          "--resume, the recorded one unless given")
    opt.add_argument("--drop-last", action="store_true",
                     help="drop each epoch's last, smaller batch; with --resume, as recorded")
    opt.add_argument("--optimizer", choices=sorted(OPTIMIZERS), default="adam", help="optimizer")
    opt.add_argument("--lr", type=_real(0.0, low_open=True), default=None,
                     help=f"learning rate (the base rate of --lr-schedule), > 0 (default: the "
                          f"optimizer's: {_optimizer_defaults('lr')}; with --resume, the "
                          f"checkpoint's)")
    opt.add_argument("--lr-schedule", default=None, metavar="SCHEDULE",
                     help="learning rate per iteration: constant, cosine[:ETA_MIN], "
                          "step:EPOCHS[:GAMMA], multistep:E1/E2[:GAMMA], exp:GAMMA, onecycle[:PCT], "
                          "warmup:STEPS[,SCHEDULE] (details below) (default: constant; with "
                          "--resume, the checkpoint's)")
    opt.add_argument("--weight-decay", type=_real(0.0), default=None, metavar="LAMBDA",
                     help=f"weight decay of the weights (not the biases), >= 0; L2 added to the "
                          f"gradient, decoupled for adamw (default: the optimizer's: "
                          f"{_optimizer_defaults('weight_decay')})")
    opt.add_argument("--beta", type=_real(0.0, 1.0, high_open=True), default=None,
                     help=f"Momentum / RMSprop beta, in [0, 1) (default: the optimizer's: "
                          f"{_optimizer_defaults('beta')})")
    opt.add_argument("--beta1", type=_real(0.0, 1.0, high_open=True), default=None,
                     help=f"Adam beta1, in [0, 1) (default: {_optimizer_defaults('beta1')})")
    opt.add_argument("--beta2", type=_real(0.0, 1.0, high_open=True), default=None,
                     help=f"Adam beta2, in [0, 1) (default: {_optimizer_defaults('beta2')})")
    opt.add_argument("--eps", type=_real(0.0, low_open=True), default=None,
                     help=f"RMSprop / Adam eps, > 0 (default: the optimizer's: "
                          f"{_optimizer_defaults('eps')})")
    opt.add_argument("--eps-outside-sqrt", action="store_true",
                     help="RMSprop: eps outside the square root (PyTorch's form)")
    opt.add_argument("--clip-grad-norm", type=_real(0.0, low_open=True), default=None,
                     metavar="MAX_NORM",
                     help="clip the gradient to this global norm, > 0 (default: no clipping)")
    opt.add_argument("--early-stopping", type=_integer(0), default=None, metavar="PATIENCE",
                     help="stop when the validation loss has not improved for PATIENCE epochs and "
                          "restore the best epoch's weights (needs --val-split > 0) (default: no "
                          "early stopping)")
    _add_metrics(opt)

    out = train.add_argument_group("files")
    out.add_argument("--save", default=None, metavar="PATH",
                     help="write the final model to this .npz file and its preprocessing to "
                          "PATH.preprocess.json; the folder must exist (checked before training) "
                          "(default: not saved)")
    out.add_argument("--checkpoint", default=None, metavar="PATH",
                     help="save the model of the best epoch so far (lowest validation loss; the "
                          "training loss without validation) to PATH, with PATH.preprocess.json "
                          "(default: no checkpoints)")
    out.add_argument("--resume", default=None, metavar="CKPT",
                     help="continue training the model saved in CKPT for --epochs more epochs, with "
                          "its optimizer state and counters; the data must fit its input shape "
                          "(default: a new model)")
    out.add_argument("--history", default=None, metavar="CSV",
                     help="write one row of metrics per epoch to this CSV file (appended to with "
                          "--resume) (default: not written)")
    out.add_argument("--plot", default=None, metavar="IMAGE",
                     help=f"draw the training curves into this image file (.png, .pdf, .svg, ...); "
                          f"needs matplotlib: {PLOT_EXTRA} (default: no plot)")
    out.add_argument("--quiet", action="store_true", help="no progress bars")

    # ---- evaluate
    evaluate = commands.add_parser(
        "evaluate", help="evaluate a saved model on a data set's test split",
        description=_wrap("Load a saved model and report its metrics on the test split of a data "
                          "set, with the preprocessing recorded next to the model "
                          "(CKPT.preprocess.json)."),
        formatter_class=_HelpFormatter)
    evaluate.add_argument("ckpt", metavar="CKPT", help="a model file written by train --save or "
                                                       "--checkpoint (or model.save)")
    evaluate.add_argument("--dataset", "--data", dest="dataset", default=None, metavar="SPEC",
                          help=f"{', '.join(DATASETS)}, or a path ending in .csv or .npz (default: "
                               f"the data set recorded with CKPT, else digits)")
    evaluate.add_argument("--test-size", type=_real(0.0, 1.0, True, True), default=None,
                          metavar="FRACTION",
                          help="the test fraction of the split, in (0, 1) (default: the one "
                               "recorded with CKPT, else 0.2)")
    evaluate.add_argument("--seed", type=_integer(0), default=None,
                          help="the seed of the split, >= 0 (default: the one recorded with CKPT, "
                               "else 0)")
    _add_metrics(evaluate)
    _add_backend(evaluate)

    # ---- predict
    predict = commands.add_parser(
        "predict", help="predict with a saved model from a file of inputs",
        description=_wrap("Load a saved model and predict from a .csv file (features only, an "
                          "optional header row) or a .npz file (an array of inputs), with the "
                          "preprocessing recorded next to the model. A classifier gives each row's "
                          "label and class probabilities, a regressor its values (in the targets' "
                          "own units)."),
        formatter_class=_HelpFormatter)
    predict.add_argument("ckpt", metavar="CKPT", help="a model file written by train --save or "
                                                      "--checkpoint (or model.save)")
    predict.add_argument("--data", "--dataset", dest="data", required=True, metavar="FILE",
                         help="the inputs: FILE.csv or csv:FILE (one row per sample, no target "
                              "column), FILE.npz or npz:FILE (array --x-name)")
    predict.add_argument("--x-name", default="X", metavar="NAME",
                         help="the array of a .npz file that holds the inputs")
    predict.add_argument("--output", default=None, metavar="PATH",
                         help="write the predictions to PATH: a .csv file (a header row, then one "
                              "row per sample) or a .npz file (default: print them as CSV)")
    _add_backend(predict)
    return parser


def _given_options(argv):
    """The dests of the options given on the command line (not left at their defaults)."""
    parser = build_parser()

    def suppress(p):
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    suppress(sub)
            elif action.dest != "help":
                action.default = argparse.SUPPRESS

    suppress(parser)
    return set(vars(parser.parse_args(argv)))


def _flag(dest):
    return "--" + dest.replace("_", "-")
