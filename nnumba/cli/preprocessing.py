"""The preprocessing record next to a saved model (<model>.preprocess.json)."""
import json
import math
import os

import numpy as np

from .. import data as datasets
from ..losses import LOSSES
from ..persistence import write_atomically
from .datasets import regression_targets
from .options import MAX_SPEC_FILE_BYTES, PREPROCESS_FORMAT, SIDECAR_SUFFIX, one_line


# ---- the preprocessing record next to a model --------------------------------------------------

def sidecar_path(model_path):
    return os.fspath(model_path) + SIDECAR_SUFFIX


def _standardizer(mean, scale):
    s = datasets.Standardizer()
    s.mean_ = np.asarray(mean, dtype=np.float64)
    s.scale_ = np.asarray(scale, dtype=np.float64)
    return s


class Preprocessing:
    """What ``train`` did to the data before the model saw it: the data set and split
    (spec, test size, seed, validation split), the loss, the batching (batch size,
    drop_last: a resumed run continues with them), and the Standardizers of the inputs
    and (for a regression loss) the targets, each None when not standardised. Saved
    next to a model as ``<model>.preprocess.json``."""

    def __init__(self, dataset=None, test_size=None, seed=None, val_split=None, loss=None,
                 inputs=None, targets=None, batch_size=None, drop_last=None):
        self.dataset, self.test_size, self.seed, self.val_split = dataset, test_size, seed, val_split
        self.loss, self.inputs, self.targets = loss, inputs, targets
        self.batch_size, self.drop_last = batch_size, drop_last

    @property
    def standardized(self):
        return self.inputs is not None

    def transform_x(self, X, where):
        if self.inputs is None:
            return X
        if X.shape[-1] != self.inputs.n_features_:
            raise ValueError(f"{where} gives {X.shape[-1]} values in the last axis of each sample, "
                             f"but the model's inputs were standardised with {self.inputs.n_features_} "
                             f"(its preprocessing record)")
        return self.inputs.transform(X)

    def transform_y(self, y):
        return y if self.targets is None else self.targets.transform(regression_targets(y))

    def inverse_y(self, y):
        return y if self.targets is None else self.targets.inverse_transform(y)

    def to_dict(self):
        def stats(s):
            return None if s is None else {"mean": [float(v) for v in s.mean_],
                                           "scale": [float(v) for v in s.scale_]}

        return {"format": PREPROCESS_FORMAT, "version": 1, "dataset": self.dataset,
                "test_size": self.test_size, "seed": self.seed, "val_split": self.val_split,
                "loss": self.loss, "batch_size": self.batch_size, "drop_last": self.drop_last,
                "standardize": self.standardized,
                "inputs": stats(self.inputs), "targets": stats(self.targets)}

    def write(self, model_path):
        path = sidecar_path(model_path)
        text = json.dumps(self.to_dict(), allow_nan=False, indent=1) + "\n"
        try:
            write_atomically(path, lambda f: f.write(text.encode("utf-8")))
        except OSError as exc:
            raise OSError(f"{path}: the preprocessing record could not be written: "
                          f"{exc.strerror or exc}") from None
        return path

    @classmethod
    def read(cls, model_path):
        """The record next to ``model_path``, or None when there is none."""
        path = sidecar_path(model_path)
        if not os.path.exists(path):
            return None
        try:
            if os.path.getsize(path) > MAX_SPEC_FILE_BYTES * 64:
                raise ValueError("it is too large")
            with open(path, encoding="utf-8") as f:
                record = json.load(f, parse_constant=_refuse_constant)
            return cls._from_dict(record)
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
            raise ValueError(f"{path}: the preprocessing record of {model_path} is damaged "
                             f"({one_line(exc)}); delete it (the model is then used on "
                             f"unstandardised data) or train again") from None
        except OSError as exc:
            raise OSError(f"{path}: cannot be read: {exc.strerror or exc}") from None

    @classmethod
    def _from_dict(cls, record):
        if not isinstance(record, dict) or record.get("format") != PREPROCESS_FORMAT:
            raise ValueError(f"it is not a {PREPROCESS_FORMAT} record")
        if record.get("version") != 1:
            raise ValueError(f"version {record.get('version')!r} is not 1")

        def stats(key):
            value = record.get(key)
            if value is None:
                return None
            mean, scale = value["mean"], value["scale"]
            if not (isinstance(mean, list) and isinstance(scale, list) and mean
                    and len(mean) == len(scale)):
                raise ValueError(f"{key}: mean and scale must be lists of the same length")
            for v in mean + scale:
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                    raise ValueError(f"{key}: {v!r} is not a finite number")
            if min(scale) <= 0:
                raise ValueError(f"{key}: a scale is {min(scale)!r}, not > 0")
            return _standardizer(mean, scale)

        dataset, test_size, seed, val_split = (record.get(k) for k in
                                               ("dataset", "test_size", "seed", "val_split"))
        if dataset is not None and not isinstance(dataset, str):
            raise ValueError(f"dataset {dataset!r} is not a string")
        for key, value, low, high in (("test_size", test_size, 0.0, 1.0),
                                      ("val_split", val_split, 0.0, 1.0)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not low <= value < high):
                raise ValueError(f"{key} {value!r} is not a fraction in [0, 1)")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
            raise ValueError(f"seed {seed!r} is not an integer >= 0")
        loss = record.get("loss")
        if loss is not None and loss not in LOSSES:
            raise ValueError(f"loss {loss!r} is not one of {', '.join(LOSSES)}")
        batch_size, drop_last = record.get("batch_size"), record.get("drop_last")
        if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int)
                                       or batch_size < 0):
            raise ValueError(f"batch_size {batch_size!r} is not an integer >= 0")
        if drop_last is not None and not isinstance(drop_last, bool):
            raise ValueError(f"drop_last {drop_last!r} is not true or false")
        return cls(dataset, None if test_size is None else float(test_size), seed,
                   None if val_split is None else float(val_split), loss,
                   stats("inputs"), stats("targets"), batch_size, drop_last)


def _refuse_constant(name):
    raise ValueError(f"{name} is not a number")


def load_checkpoint(path, backend, option):
    """(model, its Preprocessing record or None) of a saved model file."""
    from ..persistence import load

    try:
        model = load(path, backend=backend)
    except FileNotFoundError:
        raise FileNotFoundError(f"{option} {path}: no such file") from None
    except (ValueError, OSError) as exc:
        raise ValueError(f"{option} {path}: {one_line(exc)}") from None
    return model, Preprocessing.read(path)
