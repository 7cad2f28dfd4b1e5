"""The command line: train, evaluate and predict with feed-forward networks.

    nnumba train                                   # digits, a 64-unit ReLU MLP, Adam
    nnumba train --dataset mnist1d --model "conv1d:16:5,relu,maxpool:2,dense:64,relu" \
                 --epochs 20 --lr-schedule warmup:100,cosine --early-stopping 5 \
                 --checkpoint best.npz --history run.csv --plot run.png --save final.npz
    nnumba train --resume final.npz --epochs 10 --save more.npz
    nnumba evaluate final.npz                       # its test split, its standardisation
    nnumba predict final.npz --data new.csv --output predictions.csv

Data sets (``--dataset``, alias ``--data``): ``digits`` (scikit-learn's 8x8
handwritten digits), ``breast-cancer``, ``diabetes`` (regression), ``mnist1d``
or ``mnist1d:N`` (generated locally by the mnist1d package, N samples, 5000 by
default), ``cifar10:DIR`` (the binary version, already on disk), ``csv:FILE``
(numbers, the target in the last column, an optional header row) and
``npz:FILE`` (arrays X and y); a bare path ending in .csv or .npz works too.
Nothing is downloaded. The test split (``--test-size`` of all the samples;
CIFAR-10 has its own test file) is held out and used only for the final
report; ``--val-split`` of the rest is held out for validation (the
``val_`` metrics, early stopping, the best checkpoint); the model trains on
what remains. ``--standardize`` (on by default for the tabular data sets:
csv, npz, breast-cancer, diabetes) fits ``nn.data.Standardizer`` on that
training part only, per feature (per channel for images); for a regression
loss the targets are standardised too, and predictions are mapped back.

The task comes from the data: class labels (integers, at most 100 distinct
values) make a classifier trained with cross_entropy (one output per class),
anything else a regressor trained with mse (one output per target);
``--loss`` overrides it.

``--model`` takes the layers as tokens (see ``MODEL_SYNTAX``) whose input
sizes are inferred from the data; the output layer is added from the task.
``--lr-schedule`` sets the learning rate of every iteration through a
schedule of ``nnumba.schedules`` given to the optimizer as its lr (see
``SCHEDULE_SYNTAX``).

Models and their preprocessing. ``train --save PATH`` and ``--checkpoint PATH``
write the model (``model.save``) and, next to it, ``PATH.preprocess.json``:
the data set and split it was trained on (data set, test size, seed,
validation split), its loss, its batch size and drop_last, and the
Standardizer's ``mean`` and ``scale`` for the inputs (and the targets), or
null. ``evaluate`` and ``predict`` apply that record to their data, and
``train --resume`` continues with it (and with its data set, split and
batching, unless given again). A resumed run loads the model,
its optimizer state and step count, its shuffling generator and its epoch
count, and trains ``--epochs`` more epochs (fit's initial_epoch =
epochs_trained, epochs = epochs_trained + --epochs): with the same data and
batch size, 2 + 2 epochs give the same weights, bit for bit, as 4.

Errors: a user error (a bad option value or combination, an unreadable or
malformed data file or model spec, an output path that cannot be written,
labels that cannot be class numbers, a missing optional package) is reported
as one line on stderr, ``nnumba: error: <message>``, naming the option and the
values or paths involved, with exit status 2 (argparse's status for usage
errors). Everything that can be checked before training is: the output paths
(their folders must exist and be writable, they must not be folders) and the
plotting package are checked before the data is even loaded, so a run is not
lost to a typo. A run that diverges (``nnumba.NonFiniteError``) or runs out
of memory is reported in one line with exit status 1; Ctrl-C prints
``nnumba: interrupted`` and exits with 130. Warnings are printed as one line
each, ``nnumba: warning: <message>``.

For ``--loss cross_entropy`` the targets are class numbers 0, 1, ..., K-1 and
the output layer has K = max label + 1 units. Labels must be finite
integers >= 0, and K must be plausible: at most ``MAX_CLASSES`` (100000) and
at most the number of samples in the data; otherwise the command stops before
allocating anything, naming the label and the row it is on (a mistyped
``1e8`` would otherwise make a 6.7 GB output layer).
"""
import contextlib
import os
import sys
import warnings

from .. import distributed
from ..errors import NonFiniteError
from .commands import (check_input_shape, check_output_path, check_plotting, check_save_path,
                       evaluate, predict, read_inputs, train)
from .datasets import (Dataset, count_classes, load_data, output_width, parse_dataset,
                       split_validation, to_layout)
from .model_spec import LayerToken, build_layers, input_layout, parse_model_spec, read_model_spec
from .optimization import make_optimizer, parse_schedule
from .options import MAX_CLASSES, MODEL_SYNTAX, SCHEDULE_SYNTAX, one_line
from .parser import _given_options, build_parser
from .preprocessing import Preprocessing, load_checkpoint, sidecar_path


# ---- main --------------------------------------------------------------------------------------

def _report(message):
    print(f"nnumba: error: {one_line(message)}", file=sys.stderr)


def _show_warning(message, category, filename, lineno, file=None, line=None):
    print(f"nnumba: warning: {one_line(message)}", file=sys.stderr)


__all__ = ["main", "build_parser", "train", "evaluate", "predict", "check_input_shape",
           "check_output_path", "check_plotting", "check_save_path", "read_inputs", "Dataset",
           "count_classes", "load_data", "output_width", "parse_dataset", "split_validation",
           "to_layout", "LayerToken", "build_layers", "input_layout", "parse_model_spec",
           "read_model_spec", "make_optimizer", "parse_schedule", "MAX_CLASSES", "MODEL_SYNTAX",
           "SCHEDULE_SYNTAX", "Preprocessing", "load_checkpoint", "sidecar_path"]

COMMANDS = {"train": train, "evaluate": evaluate, "predict": predict}


def main(argv=None):
    """Run the command line; returns the exit status: 0 done, 2 a user error, 1 a run
    that diverged (or ran out of memory), 130 interrupted."""
    with _other_ranks_silent():
        return _main(argv)


def _main(argv):
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = build_parser().parse_args(argv)
        args.given = _given_options(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2), already printed
        return exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 2
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            try:
                COMMANDS[args.command](args)
            except BaseException as exc:
                # under mpiexec, a rank that fails before fit: the others, on their way to
                # fit's agreement, raise its error too (or the job is aborted)
                if args.command == "train" and distributed.launched() > 1 \
                        and not getattr(args, "distributed_started", False):
                    distributed.join_failure(exc)
                raise
    except KeyboardInterrupt:
        print("nnumba: interrupted", file=sys.stderr)
        return 130
    except (NonFiniteError, FloatingPointError) as exc:  # a run that diverged
        _report(exc)
        return 1
    except MemoryError as exc:
        _report(f"out of memory: {one_line(exc)} (try a smaller --model, --hidden or --batch-size)")
        return 1
    except RuntimeError as exc:
        _report(exc)
        return 1
    except (ValueError, TypeError, OSError, ImportError, KeyError) as exc:
        _report(exc)
        return 2
    return 0


@contextlib.contextmanager
def _other_ranks_silent():
    """Under mpiexec (``mpiexec -n 4 nnumba train ...``), rank 0 alone prints: the
    others' output and errors (the same ones: fit agrees on its errors) go nowhere."""
    if distributed.launched() <= 1 or distributed.launcher_rank() == 0:
        yield
        return
    with open(os.devnull, "w") as null, contextlib.redirect_stdout(null), \
            contextlib.redirect_stderr(null):
        yield


if __name__ == "__main__":
    sys.exit(main())
