"""Saving and loading models: one .npz file, written atomically, read without pickle.

The file holds plain arrays only:

==================  ==========================================================
key                 content
==================  ==========================================================
format              the string "nnumba.Sequential"
version             the file format's version (int)
config              JSON: layers, backend, dtype, seed, loss, optimizer
                    hyperparameters, epochs trained
params              the flat parameter buffer (W0, b0, W1, b1, ... row-major)
optimizer_state     (n_slots, n_params) optimizer state (empty rows for SGD)
optimizer_t         the optimizer's step count
shuffle_rng         JSON: the state of the shuffling generator (PCG64)
==================  ==========================================================

so that training resumed from a saved model continues exactly as if it had
never stopped. ``save`` writes a temporary file in the destination's folder
and renames it over the destination, so a crash never leaves a half-written
model. ``load`` reads with ``allow_pickle=False`` and refuses anything that is
not such a file with a ``ValueError``, before building anything.
"""
import json
import os
import tempfile
import zipfile

import numpy as np

FORMAT = "nnumba.Sequential"
VERSION = 1
KEYS = ("format", "version", "config", "params", "optimizer_state", "optimizer_t", "shuffle_rng")


def save_model(model, path):
    """Write ``model`` to ``path`` (a .npz file) atomically."""
    path = os.fspath(path)
    memory = model._backend.memory
    optimizer = model.optimizer
    config = {
        "layers": [layer.config() for layer in model.layers],
        "backend": model.backend,
        "dtype": model.dtype.name,
        "seed": model.seed,
        "epochs_trained": model.epochs_trained,
        "loss": None if model.loss is None else model.loss.name,
        "optimizer": None if optimizer is None else
        {"name": optimizer.name, "hyperparameters": optimizer.hyperparameters()},
    }
    if optimizer is None:
        state, t = np.zeros((0, model.plan.n_params), model.dtype), 0
    else:
        state, t = memory.to_host(optimizer.state), optimizer.t
    arrays = {
        "format": np.array(FORMAT),
        "version": np.array(VERSION),
        "config": np.array(json.dumps(config)),
        "params": memory.to_host(model._params),
        "optimizer_state": state,
        "optimizer_t": np.array(t, dtype=np.int64),
        "shuffle_rng": np.array(json.dumps(model._shuffle_rng.bit_generator.state)),
    }
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".nnumba-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _read(path):
    """All arrays of the file, checked for presence, kind and format; ValueError otherwise."""
    try:
        f = np.load(path, allow_pickle=False)
        if not isinstance(f, np.lib.npyio.NpzFile):
            raise ValueError("it holds a single array, not an nnumba model")
        with f:
            missing = [k for k in KEYS if k not in f.files]
            if missing:
                raise ValueError(f"it lacks {', '.join(missing)}")
            arrays = {k: f[k] for k in KEYS}
    except FileNotFoundError:
        raise
    except (OSError, EOFError, zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise ValueError(f"{path} is not a readable nnumba model file: {exc}") from exc
    for key in ("format", "config", "shuffle_rng"):
        if arrays[key].dtype.kind != "U" or arrays[key].shape != ():
            raise ValueError(f"{path} is not an nnumba model file: {key!r} is not a string")
    if str(arrays["format"]) != FORMAT:
        raise ValueError(f"{path} is not an nnumba model file (format {str(arrays['format'])!r})")
    if arrays["version"].shape != () or arrays["version"].dtype.kind not in "iu" \
            or int(arrays["version"]) > VERSION:
        raise ValueError(f"{path} has file format version {arrays['version'].item()!r}; this "
                         f"nnumba reads up to version {VERSION}")
    return arrays


def load(path, backend=None):
    """Load a model written by ``model.save(path)``.

    ``backend`` ("numpy", "cpu", "cuda") overrides the backend it was saved
    from. A file that is not an nnumba model (corrupt, truncated, empty,
    foreign, or holding pickled objects) raises ``ValueError``.
    """
    path = os.fspath(path)
    arrays = _read(path)
    params, state, t = arrays["params"], arrays["optimizer_state"], arrays["optimizer_t"]
    if params.dtype.kind != "f" or state.dtype.kind != "f" or t.dtype.kind not in "iu" or t.shape != ():
        raise ValueError(f"{path} has arrays of the wrong kind (params {params.dtype}, "
                         f"optimizer_state {state.dtype}, optimizer_t {t.dtype})")
    if not (np.isfinite(params).all() and np.isfinite(state).all()):
        raise ValueError(f"{path} holds NaN or inf weights or optimizer state")
    try:
        return _build(json.loads(str(arrays["config"])), json.loads(str(arrays["shuffle_rng"])),
                      params, state, int(t), backend)
    except (ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
        detail = f"missing entry {exc}" if isinstance(exc, KeyError) else str(exc)
        raise ValueError(f"{path} has a damaged model description: {detail}") from exc


def _build(config, rng_state, params, state, t, backend):
    from .layers import layer_from_config
    from .model import Sequential
    from .optim import get_optimizer

    layers = [layer_from_config(c) for c in config["layers"]]
    model = Sequential(layers, backend=backend or config["backend"], dtype=config["dtype"])
    if params.shape != (model.plan.n_params,):
        raise ValueError(f"it holds {params.shape[0]} parameters, but its layers need "
                         f"{model.plan.n_params}")
    try:
        model._shuffle_rng.bit_generator.state = rng_state
    except (TypeError, ValueError, KeyError) as exc:
        raise ValueError(f"bad shuffling-generator state: {exc}") from exc
    model.seed = config["seed"]
    model.epochs_trained = int(config["epochs_trained"])
    model._backend.memory.copy_from_host(model._params, params.astype(model.dtype))
    if config["loss"] is not None:
        opt = config["optimizer"]
        optimizer = get_optimizer(opt["name"])
        model.compile(config["loss"], optimizer)
        if state.shape != optimizer.state.shape:
            raise ValueError(f"its optimizer state has shape {state.shape}, expected "
                             f"{optimizer.state.shape}")
        optimizer.load_state_dict({
            "optimizer": opt["name"], "hyperparameters": opt["hyperparameters"], "t": t,
            "state": {slot: state[i] for i, slot in enumerate(optimizer.slots)}})
    return model
