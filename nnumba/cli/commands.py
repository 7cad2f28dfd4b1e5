"""The three commands: train, evaluate and predict, and the checks made before training."""
import json
import os
import sys
import tempfile
import time

import numpy as np

from .. import data as datasets
from .. import distributed
from ..model import Sequential
from ..persistence import write_atomically
from .datasets import (_shape_words, canonical_dataset, dataset_file, load_data, model_layout,
                       output_width, parse_dataset, regression_targets, split_validation, to_layout)
from .model_spec import build_layers, input_layout, mlp_tokens, read_model_spec
from .optimization import _base_lr, check_backend, make_optimizer, parse_schedule
from .options import PLOT_EXTRA, REGRESSION_LOSSES, one_line
from .parser import _flag
from .preprocessing import Preprocessing, load_checkpoint, sidecar_path


# ---- checks made before training -------------------------------------------------------------

def check_output_path(path, option, data=None):
    """Refuse a path that a file could not be written to, before any training: its
    folder must exist and be writable, and it must not be a directory (nor the data
    file). Creates nothing."""
    if path is None:
        return
    if path == "":
        raise ValueError(f"{option}: the path is empty")
    if os.path.isdir(path):
        raise IsADirectoryError(f"{option} {path}: is a directory; give a file name such as "
                                f"{os.path.join(path, 'model.npz' if option != '--history' else 'history.csv')}")
    if os.path.exists(path) and not os.path.isfile(path):
        raise ValueError(f"{option} {path}: exists and is not a regular file")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.exists(folder):
        raise FileNotFoundError(f"{option} {path}: the folder {folder} does not exist")
    if not os.path.isdir(folder):
        raise NotADirectoryError(f"{option} {path}: {folder} is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise PermissionError(f"{option} {path}: the folder {folder} is not writable")
    if data is not None and os.path.isfile(path) and os.path.exists(data) \
            and os.path.samefile(path, data):
        raise ValueError(f"{option} {path}: is the data file; it would be overwritten")


def check_save_path(path, data=None):
    """``check_output_path`` for --save."""
    check_output_path(path, "--save", data)


def check_plotting(path):
    """matplotlib importable (with a non-interactive backend) and ``path`` an image
    format it writes; ImportError naming the extra otherwise."""
    try:
        import matplotlib
    except ImportError:
        raise ImportError(f"--plot {path}: plotting needs matplotlib, an optional dependency: "
                          f"{PLOT_EXTRA}") from None
    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")
    from matplotlib.backend_bases import FigureCanvasBase

    formats = FigureCanvasBase.get_supported_filetypes()
    extension = os.path.splitext(path)[1].lower().lstrip(".")
    if extension not in formats:
        raise ValueError(f"--plot {path}: the file name must end in an image format matplotlib "
                         f"writes: {', '.join('.' + e for e in sorted(formats))}")


def _check_targets(model, X, y, where):
    """The targets as the loss will take them, refused (ValueError naming ``where``)
    before any training when they do not fit the loss or the outputs."""
    try:
        model.loss.prepare_targets(y, X.shape[0], model.plan.n_out, model.dtype, "y")
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{where} with --loss {model.loss.name}: {one_line(exc)}") from None


def _metric_names(values):
    if values is None:
        return None
    names = [name.strip() for value in values for name in value.split(",") if name.strip()]
    if not names:
        raise ValueError("--metrics: no metric names given")
    return names


def _compile(model, loss, optimizer, metrics):
    try:
        model.compile(loss, optimizer, metrics=metrics)
    except (ValueError, TypeError) as exc:
        if metrics:
            raise ValueError(f"--metrics {' '.join(metrics)}: {one_line(exc)}") from None
        raise


def _remove_stale_checkpoint_record(path):
    """Remove ModelCheckpoint's best-value record ``<path>.json`` left by an earlier run,
    so that a new run's checkpoint is that run's best."""
    from ..callbacks import SIDECAR_FORMAT

    record = os.fspath(path) + ".json"
    try:
        with open(record, encoding="utf-8") as f:
            found = json.loads(f.read(1 << 20)).get("format") == SIDECAR_FORMAT
    except (OSError, ValueError, AttributeError):
        return False
    if found:
        os.remove(record)
    return found


# ---- train -------------------------------------------------------------------------------------

def _conflicts_with_resume(args, given, record):
    fixed = ["model", "hidden", "activation", "loss", "optimizer", "beta", "beta1", "beta2", "eps",
             "eps_outside_sqrt", "weight_decay", "dtype"]
    if record is not None:
        fixed.append("standardize")
    for dest in fixed:
        if dest in given:
            option = _flag(dest) if dest != "standardize" else "--standardize/--no-standardize"
            what = ("the model keeps the standardisation it was trained with (its preprocessing "
                    "record)" if dest == "standardize" else
                    "the checkpoint fixes the model, its loss, dtype and optimizer; --lr and "
                    "--lr-schedule may change its learning rate")
            raise ValueError(f"{option} cannot be combined with --resume {args.resume}: {what}")


def train(args):
    given = getattr(args, "given", set())
    if args.model is not None and given & {"hidden", "activation"}:
        used = "--hidden" if "hidden" in given else "--activation"
        raise ValueError(f"{used} applies without --model only; put the layers in the --model spec")
    spec = args.dataset if args.dataset is not None else "digits"
    data_file = dataset_file(spec) if args.dataset is not None else None
    # the output paths and the plotting package first: a typo must not cost a run
    outputs = [("--save", args.save), ("--checkpoint", args.checkpoint),
               ("--history", args.history), ("--plot", args.plot)]
    seen = {}
    for option, path in outputs:
        check_output_path(path, option, data_file)
        if path is not None:
            key = os.path.abspath(path)
            if key in seen:
                raise ValueError(f"{option} {path}: is also the {seen[key]} file")
            seen[key] = option
    if args.checkpoint is not None and ("{" in args.checkpoint or "}" in args.checkpoint):
        raise ValueError(f"--checkpoint {args.checkpoint}: give a plain file name (the best "
                         f"epoch's model is saved there), without format fields")
    if args.plot is not None:
        check_plotting(args.plot)
        if args.epochs == 0:
            raise ValueError(f"--plot {args.plot}: --epochs 0 trains nothing to plot")
    if args.lr_schedule is not None:  # its syntax now; its lengths once the data are known
        parse_schedule(args.lr_schedule, 1e-3, 2 ** 40, 1)
    metrics = _metric_names(args.metrics)
    check_backend(args.backend)

    # under mpiexec: data-parallel training; rank 0 alone writes the files (and prints: main)
    mpi = "mpi" if distributed.launched() > 1 else None
    root = distributed.launcher_rank() == 0

    record = None
    if args.resume is not None:
        model, record = load_checkpoint(args.resume, args.backend, "--resume")
        _conflicts_with_resume(args, given, record)
        if model.loss is None:
            raise ValueError(f"--resume {args.resume}: the model was saved before compile: it has no "
                             f"loss and optimizer to continue with")
        loss = model.loss.name
        if record is not None:
            if args.dataset is None and record.dataset is not None:
                spec = record.dataset
            if "test_size" not in given and record.test_size is not None:
                args.test_size = record.test_size
            if "seed" not in given and record.seed is not None:
                args.seed = record.seed
            if "val_split" not in given and record.val_split is not None:
                args.val_split = record.val_split
            if "batch_size" not in given and record.batch_size is not None:
                args.batch_size = record.batch_size
            if "drop_last" not in given and record.drop_last is not None:
                args.drop_last = record.drop_last
    else:
        model = None
        optimizer = make_optimizer(args)
        tokens = read_model_spec(args.model) if args.model is not None else \
            mlp_tokens(args.hidden, args.activation)

    ds = load_data(spec, args.test_size, args.seed, test_size_given="test_size" in given)
    if model is None:
        loss = args.loss if args.loss != "auto" else \
            ("cross_entropy" if ds.classification else "mse")
    n_out = output_width(loss, ds)
    X_train, y_train, X_val, y_val = split_validation(ds.X_train, ds.y_train, args.val_split,
                                                      args.seed)
    X_test, y_test = ds.X_test, ds.y_test
    if model is not None:
        check_input_shape(model, X_train, f"--dataset {spec}", f"--resume {args.resume}: the model")
    if args.early_stopping is not None and X_val is None:
        raise ValueError("--early-stopping watches the validation loss: it needs --val-split > 0")

    # standardisation: fitted on the training part only (or the checkpoint's)
    if record is not None:
        prep = record
    else:
        standardize = args.standardize if args.standardize is not None else ds.tabular
        prep = Preprocessing(inputs=datasets.Standardizer().fit(X_train) if standardize else None)
        if standardize and loss in REGRESSION_LOSSES:
            prep.targets = datasets.Standardizer().fit(regression_targets(y_train))
    prep.dataset, prep.loss = canonical_dataset(spec), loss
    prep.test_size = None if ds.kind == "cifar10" else float(args.test_size)
    prep.seed, prep.val_split = int(args.seed), float(args.val_split)
    prep.batch_size, prep.drop_last = int(args.batch_size), bool(args.drop_last)
    where = f"--dataset {spec}"
    X_train, X_test = prep.transform_x(X_train, where), prep.transform_x(X_test, where)
    if X_val is not None:
        X_val = prep.transform_x(X_val, where)
    if loss in REGRESSION_LOSSES:
        y_train, y_test = prep.transform_y(y_train), prep.transform_y(y_test)
        if y_val is not None:
            y_val = prep.transform_y(y_val)
    elif prep.targets is not None:
        raise ValueError(f"--resume {args.resume}: its record standardises targets, but its loss "
                         f"{loss} takes labels")

    natural_shape = ds.X_train.shape[1:]
    layout = model_layout(model) if model is not None else input_layout(tokens)
    X_train, X_test = to_layout(X_train, layout), to_layout(X_test, layout)
    if X_val is not None:
        X_val = to_layout(X_val, layout)
    input_shape = tuple(int(d) for d in X_train.shape[1:])

    if model is None:
        task = f"{n_out} classes" if loss == "cross_entropy" else \
            f"{n_out} output{'s' * (n_out != 1)} for the targets"
        layers = build_layers(tokens, input_shape, n_out, task)
        model = Sequential(layers, backend=args.backend, dtype=args.dtype, seed=args.seed,
                           input_shape=input_shape)
        _compile(model, loss, optimizer, metrics)
    else:
        if metrics:
            _compile(model, model.loss, model.optimizer, metrics)
    for part, Xp, yp in (("training", X_train, y_train), ("validation", X_val, y_val),
                         ("test", X_test, y_test)):
        if Xp is not None:
            _check_targets(model, Xp, yp, f"{where} ({part} part)")

    # the learning rate: per iteration, over the whole run
    n_train = X_train.shape[0]
    batch = n_train if args.batch_size == 0 else min(args.batch_size, n_train)
    ipe = datasets.iterations_per_epoch(n_train, batch, args.drop_last)
    first_step = model.optimizer.t + 1
    new_steps = args.epochs * ipe
    if args.resume is not None and "lr" in given:
        model.optimizer.lr = args.lr
    if args.lr_schedule is not None and new_steps:
        base = args.lr if args.lr is not None else _base_lr(model.optimizer)
        schedule = parse_schedule(args.lr_schedule, base, first_step - 1 + new_steps, ipe)
        if schedule is not None:
            try:
                schedule.values(first_step, new_steps)
            except ValueError as exc:
                raise ValueError(f"--lr-schedule {args.lr_schedule!r}: {one_line(exc)}") from None
            model.optimizer.lr = schedule
        elif args.resume is not None:
            model.optimizer.lr = base
    elif model.optimizer.scheduled and new_steps:
        try:
            model.optimizer.learning_rates(first_step, new_steps)
        except ValueError as exc:
            raise ValueError(f"--resume {args.resume}: the checkpoint's learning-rate schedule has no "
                             f"rate for the {new_steps} new steps ({first_step} to "
                             f"{first_step + new_steps - 1}): {one_line(exc)}; give --lr or "
                             f"--lr-schedule for the continued run") from None

    # callbacks
    from ..callbacks import CSVLogger, EarlyStopping, ModelCheckpoint

    callbacks = []
    stopper = checkpoint = None
    if args.early_stopping is not None:
        stopper = EarlyStopping("val_loss", patience=args.early_stopping, restore_best_weights=True)
        callbacks.append(stopper)
    if args.checkpoint is not None and root:
        if args.resume is None and _remove_stale_checkpoint_record(args.checkpoint):
            print(f"(removed {args.checkpoint}.json, the best value of an earlier run: this run's "
                  f"checkpoint is this run's best)")
        checkpoint = ModelCheckpoint(args.checkpoint, "val_loss" if X_val is not None else "loss",
                                     save_best_only=True)
        callbacks.append(checkpoint)
    if args.history is not None and root:
        callbacks.append(CSVLogger(args.history, append=args.resume is not None))

    n_val = 0 if X_val is None else X_val.shape[0]
    parts = (f"{n_train} training, {n_val} validation and {X_test.shape[0]} test samples"
             if n_val else f"{n_train} training and {X_test.shape[0]} test samples")
    scaled = "no" if not prep.standardized else \
        ("inputs and targets" if prep.targets is not None else "inputs")
    print(f"data: {spec}, {parts}, {_shape_words(natural_shape)} (standardized: {scaled})")
    if args.resume is not None:
        print(f"resuming {args.resume}: {model.epochs_trained} epochs and {model.optimizer.t} "
              f"weight updates done")
    print(model.summary())
    print(f"loss {loss}, optimizer {model.optimizer!r}")
    if model.optimizer.scheduled:
        print(f"learning rate: {model.optimizer.lr.describe()}")
    if args.checkpoint is not None and root:
        prep.write(args.checkpoint)

    initial_epoch = model.epochs_trained
    started = time.perf_counter()
    args.distributed_started = True  # (main: the ranks' failures are fit's to share from here)
    history = model.fit(X_train, y_train, epochs=initial_epoch + args.epochs,
                        batch_size=None if args.batch_size == 0 else args.batch_size,
                        drop_last=args.drop_last,
                        validation_data=None if X_val is None else (X_val, y_val),
                        verbose=0 if args.quiet else 1, callbacks=callbacks,
                        clip_grad_norm=args.clip_grad_norm, initial_epoch=initial_epoch,
                        distributed=mpi)
    seconds = time.perf_counter() - started
    more = " more" if args.resume is not None else ""
    print(f"trained {history.epochs}{more} epochs in {seconds:.2f} s on backend {args.backend!r}: "
          f"{history.iterations_per_epoch} iterations per epoch (batch size {history.batch_size}, "
          f"{history.n_samples} samples), {history.n_updates} weight updates")
    if stopper is not None and stopper.stopped_epoch:
        print(f"early stopping: val_loss did not improve for {stopper.patience} epochs; stopped "
              f"after epoch {stopper.stopped_epoch + 1}, restored the weights of epoch "
              f"{stopper.best_epoch + 1} (val_loss {stopper.best:.4f})")
    if checkpoint is not None and checkpoint.last_saved is not None:
        print(f"best checkpoint: {args.checkpoint} (epoch {checkpoint.best_epoch + 1}, "
              f"{checkpoint.monitor} {checkpoint.best:.4f})")
    if X_val is not None:
        _print_metrics("validation", model, X_val, y_val, prep, mpi)
    result = _print_metrics("test", model, X_test, y_test, prep, mpi)
    if args.save:
        try:
            model.save(args.save)  # (trained over MPI: rank 0 alone writes)
        except OSError as exc:
            raise OSError(f"--save {args.save}: the model could not be written: {one_line(exc)}") \
                from None
        if root:
            prep.write(args.save)
        print(f"saved to {args.save} (preprocessing: {sidecar_path(args.save)})")
    if args.history is not None:
        print(f"history: {args.history}")
    if args.plot is not None and root:
        _plot(history, args.plot)
        print(f"plot: {args.plot}")
    return result


def _print_metrics(part, model, X, y, prep, distributed=None):
    """Print and return ``model.evaluate`` on (X, y), plus the mean absolute error and
    root mean squared error in the targets' own units when they were standardised."""
    result = model.evaluate(X, y, distributed=distributed)
    suffix = " (standardized targets)" if prep.targets is not None else ""
    for key, value in result.items():
        print(f"{part} {key}: {value:.4f}{suffix if key != 'accuracy' else ''}")
    if prep.targets is not None:
        predicted = prep.inverse_y(np.asarray(model.predict(X), dtype=np.float64).reshape(len(X), -1))
        truth = prep.inverse_y(np.asarray(y, dtype=np.float64).reshape(len(X), -1))
        mae = float(np.mean(np.abs(predicted - truth)))
        rmse = float(np.sqrt(np.mean((predicted - truth) ** 2)))
        result = {**result, "mae_in_target_units": mae, "rmse_in_target_units": rmse}
        print(f"{part} mae (in the targets' units): {mae:.4f}")
        print(f"{part} rmse (in the targets' units): {rmse:.4f}")
    return result


def _plot(history, path):
    import matplotlib.pyplot as plt

    from .. import plot as plotting

    figure = plotting.plot_history(history)
    try:
        figure.savefig(path, dpi=100, bbox_inches="tight")
    except OSError as exc:
        raise OSError(f"--plot {path}: the image could not be written: {exc.strerror or exc}") \
            from None
    finally:
        plt.close(figure)


# ---- evaluate ----------------------------------------------------------------------------------

def check_input_shape(model, X, where, model_name):
    """Refuse samples (in their natural shape) that do not fit the model's input."""
    shape = tuple(int(d) for d in model.plan.input_shape)
    got = tuple(int(d) for d in to_layout(X[:1], model_layout(model)).shape[1:])
    if got != shape:
        hint = ""
        if len(shape) == 1 and X.ndim == 2 and X.shape[1] == shape[0] + 1:
            hint = " (does it still hold the target column? give the features only)"
        raise ValueError(f"{model_name} takes {_shape_words(shape)} per sample, but {where} gives "
                         f"{_shape_words(got)}{hint}")


def _model_inputs(model, prep, X, where, model_path):
    """X checked against the model's input, standardised as recorded, in its layout."""
    check_input_shape(model, X, where, f"the model {model_path}")
    if prep is not None:
        X = prep.transform_x(X, where)
    return to_layout(X, model_layout(model))


def evaluate(args):
    metrics = _metric_names(args.metrics)
    check_backend(args.backend)
    model, prep = load_checkpoint(args.ckpt, args.backend, "evaluate")
    if model.loss is None:
        raise ValueError(f"evaluate {args.ckpt}: the model was saved before compile: it has no loss "
                         f"to evaluate")
    recorded = prep or Preprocessing()
    spec = args.dataset or recorded.dataset or "digits"
    test_size = args.test_size if args.test_size is not None else (recorded.test_size or 0.2)
    seed = args.seed if args.seed is not None else (recorded.seed or 0)
    ds = load_data(spec, test_size, seed, test_size_given=args.test_size is not None)
    where = f"--dataset {spec}"
    X = _model_inputs(model, prep, ds.X_test, where, args.ckpt)
    y = ds.y_test
    if model.loss.name in REGRESSION_LOSSES and prep is not None:
        y = prep.transform_y(y)
    if metrics:
        _compile(model, model.loss, model.optimizer, metrics)
    _check_targets(model, X, y, f"{where} (test part)")
    split = "its test file" if ds.kind == "cifar10" else f"--test-size {test_size:g}, --seed {seed}"
    print(f"model: {args.ckpt}, {model.epochs_trained} epochs trained, loss {model.loss.name}")
    if prep is None:
        print(f"preprocessing: none recorded ({sidecar_path(args.ckpt)} does not exist): the inputs "
              f"are used as they are")
    else:
        print(f"preprocessing: {sidecar_path(args.ckpt)} (standardized: "
              f"{'no' if not prep.standardized else 'inputs and targets' if prep.targets is not None else 'inputs'})")
    print(f"data: {spec}, the test split ({split}): {X.shape[0]} samples")
    return _print_metrics("test", model, X, y, prep or Preprocessing())


# ---- predict -----------------------------------------------------------------------------------

def read_inputs(spec, x_name="X"):
    """The inputs of a .csv file (every column a feature, an optional header row) or of
    array ``x_name`` of a .npz file, as float32; ValueError naming --data."""
    kind, path = parse_dataset(spec, "--data")
    if kind not in ("csv", "npz"):
        raise ValueError(f"--data {spec}: predict reads a .csv or .npz file of inputs (csv:FILE, "
                         f"npz:FILE), not a named data set")
    try:
        datasets._checked_path(path)
        if kind == "npz":
            (X,) = datasets._load_npz(path, (x_name,))
            if X.dtype.kind not in "biuf":
                raise ValueError(f"{path}: array {x_name!r} must hold real numbers, got dtype "
                                 f"{X.dtype}")
            if X.ndim < 2 or X.shape[0] == 0 or X.size == 0:
                raise ValueError(f"{path}: array {x_name!r} must be at least 2-D (samples, features "
                                 f"...) and not empty, got shape {X.shape}")
            return datasets._float32(X, f"{path}: array {x_name!r}")
        header_line, _ = datasets._csv_header(path)
        table = datasets._read_csv_table(path, header_line)
        if table.shape[0] == 0:
            raise ValueError(f"{path} has a header row (line {header_line}) but no data rows")
        bad = ~np.isfinite(table) | (np.abs(table) > np.finfo(np.float32).max)
        if bad.any():
            row, column = (int(i) for i in np.argwhere(bad)[0])
            line = datasets._csv_data_lines(path, header_line=header_line)[row]
            raise ValueError(f"{path}, line {line}, column {column + 1}: {table[row, column]!r} is "
                             f"not a finite float32 number")
        return table.astype(np.float32)
    except (ValueError, OSError) as exc:
        raise ValueError(f"--data: {one_line(exc)}") from None


def _prediction_table(model, outputs, prep):
    """(column names, columns) of a model's predictions: a classifier's label and
    probabilities, a regressor's values in the targets' units."""
    n = outputs.shape[0]
    outputs = np.asarray(outputs, dtype=np.float64).reshape(n, -1)
    loss = model.loss.name if model.loss is not None else None
    if loss == "cross_entropy":
        labels = np.argmax(outputs, axis=1)
        return (["label", *[f"p{k}" for k in range(outputs.shape[1])]],
                {"labels": labels, "probabilities": outputs}, [labels, *outputs.T])
    if loss == "binary_cross_entropy":
        labels = (outputs > 0.5).astype(np.int64)
        if outputs.shape[1] == 1:
            names = ["label", "p"]
        else:
            k = outputs.shape[1]
            names = [f"label{j}" for j in range(k)] + [f"p{j}" for j in range(k)]
        return names, {"labels": labels, "probabilities": outputs}, [*labels.T, *outputs.T]
    values = prep.inverse_y(outputs) if prep is not None else outputs
    names = ["y"] if values.shape[1] == 1 else [f"y{j}" for j in range(values.shape[1])]
    return names, {"predictions": values}, list(values.T)


def _csv_text(names, columns):
    lines = [",".join(names)]
    for row in zip(*columns):
        lines.append(",".join(str(int(v)) if isinstance(v, (np.integer, int)) else f"{float(v):.9g}"
                              for v in row))
    return "\n".join(lines) + "\n"


def predict(args):
    if args.output is not None:
        check_output_path(args.output, "--output", dataset_file(args.data))
        if not args.output.lower().endswith((".csv", ".npz")):
            raise ValueError(f"--output {args.output}: the file name must end in .csv or .npz")
    check_backend(args.backend)
    model, prep = load_checkpoint(args.ckpt, args.backend, "predict")
    X = read_inputs(args.data, args.x_name)
    X = _model_inputs(model, prep, X, f"--data {args.data}", args.ckpt)
    if prep is None:
        print(f"nnumba: warning: {sidecar_path(args.ckpt)} does not exist: the inputs are used as "
              f"they are (not standardised)", file=sys.stderr)
    names, arrays, columns = _prediction_table(model, model.predict(X), prep)
    if args.output is None:
        sys.stdout.write(_csv_text(names, columns))
        return arrays
    if args.output.lower().endswith(".npz"):
        import io

        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        data = buffer.getvalue()
        try:
            folder, name = os.path.split(os.path.abspath(args.output))
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".tmp")
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, args.output)
        except OSError as exc:
            raise OSError(f"--output {args.output}: cannot be written: {exc.strerror or exc}") \
                from None
    else:
        try:
            text = _csv_text(names, columns)
            write_atomically(args.output, lambda f: f.write(text.encode("utf-8")))
        except OSError as exc:
            raise OSError(f"--output {args.output}: cannot be written: {exc.strerror or exc}") \
                from None
    print(f"predictions for {X.shape[0]} samples ({', '.join(names[:4])}"
          f"{', ...' if len(names) > 4 else ''}) written to {args.output}")
    return arrays
