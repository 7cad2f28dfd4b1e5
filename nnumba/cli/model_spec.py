"""The --model spec: comma-separated layer tokens (or a JSON/TOML file) turned into layers."""
import difflib
import json
import math
import os

from ..layers import (AvgPool1D, BatchNorm, Conv1D, Dense, Dropout, Flatten, GlobalAvgPool1D,
                      LeakyReLU, MaxPool1D)
from .datasets import _shape_words
from .options import ACTIVATIONS, MAX_SPEC_FILE_BYTES, one_line


# ---- the --model spec ---------------------------------------------------------------------------

class LayerToken:
    """One token of a --model spec: its text, its position (from 1), its name and arguments."""

    def __init__(self, text, position, name, args):
        self.text, self.position, self.name, self.args = text, position, name, args

    def where(self):
        return f"--model: token {self.position} {self.text!r}"

    def __repr__(self):
        return f"LayerToken({self.text!r})"


# name: (minimum arguments, maximum arguments, syntax)
LAYER_TOKENS = {
    "dense": (1, 1, "dense:UNITS"),
    "conv1d": (2, 4, "conv1d:CHANNELS:KERNEL[:STRIDE[:PADDING]]"),
    "maxpool": (1, 2, "maxpool:SIZE[:STRIDE]"),
    "avgpool": (1, 2, "avgpool:SIZE[:STRIDE]"),
    "globalavgpool": (0, 0, "globalavgpool"),
    "flatten": (0, 0, "flatten"),
    "batchnorm": (0, 0, "batchnorm"),
    "dropout": (1, 1, "dropout:RATE"),
    "relu": (0, 0, "relu"),
    "tanh": (0, 0, "tanh"),
    "sigmoid": (0, 0, "sigmoid"),
    "identity": (0, 0, "identity"),
    "leaky_relu": (0, 1, "leaky_relu[:ALPHA]"),
}
_ALIASES = {"leakyrelu": "leaky_relu", "leaky-relu": "leaky_relu", "linear": "identity",
            "conv": "conv1d", "max_pool": "maxpool", "avg_pool": "avgpool",
            "global_avg_pool": "globalavgpool", "batch_norm": "batchnorm"}
_SEQUENCE_TOKENS = ("conv1d", "maxpool", "avgpool", "globalavgpool")


def parse_model_spec(spec):
    """The tokens of a --model spec string (or of the list a .json / .toml file holds),
    each checked for its name and number of arguments; ValueError naming the token."""
    if isinstance(spec, (list, tuple)):
        texts = []
        for i, item in enumerate(spec):
            if not isinstance(item, str):
                raise ValueError(f"--model: item {i + 1} of the list is {item!r}, not a token "
                                 f"such as 'dense:64'")
            texts += item.split(",")
    else:
        if not spec.strip():
            raise ValueError("--model: the spec is empty; give layers such as "
                             "'dense:64,relu' (the output layer is added)")
        texts = spec.split(",")
    tokens = []
    for position, raw in enumerate(texts, 1):
        text = raw.strip()
        if not text:
            raise ValueError(f"--model: token {position} is empty (two commas in a row, or a "
                             f"comma at an end?)")
        name, *args = [part.strip() for part in text.split(":")]
        key = _ALIASES.get(name.lower(), name.lower())
        if key not in LAYER_TOKENS:
            close = difflib.get_close_matches(key, list(LAYER_TOKENS), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"--model: token {position} {text!r}: unknown layer {name!r}{hint}; "
                             f"the layers are {', '.join(s for _, _, s in LAYER_TOKENS.values())}")
        low, high, syntax = LAYER_TOKENS[key]
        if not low <= len(args) <= high:
            count = f"{low}" if low == high else f"{low} to {high}"
            raise ValueError(f"--model: token {position} {text!r}: {key} takes {count} "
                             f"argument{'s' * (high != 1)} ({syntax}), got {len(args)}")
        tokens.append(LayerToken(text, position, key, args))
    return tokens


def read_model_spec(value):
    """The tokens of --model ``value``: a spec string, or a .json / .toml file."""
    if value.strip().lower().endswith((".json", ".toml")):
        path = value.strip()
        if not os.path.exists(path):
            raise FileNotFoundError(f"--model {path}: no such file")
        if not os.path.isfile(path):
            raise ValueError(f"--model {path}: is not a regular file")
        if os.path.getsize(path) > MAX_SPEC_FILE_BYTES:
            raise ValueError(f"--model {path}: larger than {MAX_SPEC_FILE_BYTES} bytes; a model "
                             f"spec is a short list of layers")
        try:
            with open(path, "rb") as f:
                raw = f.read()
        except OSError as exc:
            raise OSError(f"--model {path}: cannot be read: {exc.strerror or exc}") from None
        try:
            if path.lower().endswith(".json"):
                content = json.loads(raw.decode("utf-8"))
            else:
                content = _toml_loads(raw.decode("utf-8"), path)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"--model {path}: not a readable JSON file: {one_line(exc)}") from None
        if isinstance(content, dict):
            if "layers" not in content:
                raise ValueError(f"--model {path}: expected a list of layer tokens under the key "
                                 f"'layers', found the keys {sorted(content)}")
            content = content["layers"]
        if not isinstance(content, list) or not content:
            raise ValueError(f"--model {path}: expected a non-empty list of layer tokens such as "
                             f"[\"dense:64\", \"relu\"], got {type(content).__name__}")
        try:
            return parse_model_spec(content)
        except ValueError as exc:
            raise ValueError(f"{exc} (in {path})") from None
    return parse_model_spec(value)


def _toml_loads(text, path):
    try:
        import tomllib
    except ImportError:  # Python 3.10
        try:
            import tomli as tomllib
        except ImportError:
            raise ImportError(f"--model {path}: reading TOML needs Python 3.11 or the tomli "
                              f"package (pip install tomli); or write the spec as JSON") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"--model {path}: not a readable TOML file: {one_line(exc)}") from None


def mlp_tokens(hidden, activation):
    """The tokens of the MLP of --hidden and --activation."""
    spec = []
    for width in hidden:
        spec += [f"dense:{width}", activation]
    return parse_model_spec(spec) if spec else []


def input_layout(tokens):
    """"sequence" when a conv1d or pool comes before any dense (or a flatten), else "flat"."""
    for token in tokens:
        if token.name == "dense":
            return "flat"
        if token.name in _SEQUENCE_TOKENS or token.name == "flatten":
            return "sequence"
    return "flat"


def _int_arg(token, text, what, minimum):
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < minimum:
        raise ValueError(f"{token.where()}: {what} must be an integer >= {minimum}, got {text!r}")
    return value


def _real_arg(token, text, what, low, high=None, high_open=False, low_open=False):
    try:
        value = float(text)
    except ValueError:
        value = None
    ok = value is not None and math.isfinite(value) and (value > low if low_open else value >= low)
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        interval = (f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
                    if high is not None else f"{'>' if low_open else '>='} {low:g}")
        raise ValueError(f"{token.where()}: {what} must be a number {interval}, got {text!r}")
    return value


def _make_layer(token, shape):
    """The layer of one token for the per-sample input ``shape``."""
    name, args = token.name, token.args
    if name in _SEQUENCE_TOKENS and len(shape) != 2:
        raise ValueError(f"{token.where()}: {name} works on sequences (steps, channels), but the "
                         f"layers before it give {_shape_words(shape)}; put conv1d and pools "
                         f"before the dense layers")
    if name == "dense":
        return Dense(shape[0], _int_arg(token, args[0], "UNITS", 1))
    if name == "conv1d":
        channels = _int_arg(token, args[0], "CHANNELS", 1)
        kernel = _int_arg(token, args[1], "KERNEL", 1)
        stride = _int_arg(token, args[2], "STRIDE", 1) if len(args) > 2 else 1
        padding = 0
        if len(args) > 3:
            padding = args[3].lower() if args[3].lower() in ("same", "valid") else \
                _int_arg(token, args[3], "PADDING (an integer, 'valid' or 'same')", 0)
        return Conv1D(shape[1], channels, kernel, stride=stride, padding=padding)
    if name in ("maxpool", "avgpool"):
        size = _int_arg(token, args[0], "SIZE", 1)
        stride = _int_arg(token, args[1], "STRIDE", 1) if len(args) > 1 else None
        return (MaxPool1D if name == "maxpool" else AvgPool1D)(size, stride)
    if name == "globalavgpool":
        return GlobalAvgPool1D()
    if name == "flatten":
        return Flatten()
    if name == "batchnorm":
        return BatchNorm(shape[-1])
    if name == "dropout":
        return Dropout(_real_arg(token, args[0], "RATE", 0.0, 1.0, high_open=True))
    if name == "leaky_relu":
        return LeakyReLU(_real_arg(token, args[0], "ALPHA", 0.0) if args else 0.01)
    return ACTIVATIONS[name]()


def build_layers(tokens, input_shape, n_out, task="outputs"):
    """The layers of the tokens for samples of ``input_shape`` and an output layer of
    ``n_out`` units: each layer's input size comes from the one before it, a flatten is
    put before a dense that follows sequence layers, and a final Dense(n_out) is added
    unless the last token is a dense (which must then have n_out units). ``task``
    says in an error what the n_out units are for."""
    shape = tuple(int(d) for d in input_shape)
    layers = []
    for token in tokens:
        if token.name == "dense" and len(shape) == 2:
            layers.append(Flatten())
            shape = (shape[0] * shape[1],)
        try:
            layer = _make_layer(token, shape)
            shape = layer.output_shape(shape)
        except (ValueError, TypeError) as exc:
            message = one_line(exc)
            if message.startswith("--model"):
                raise
            raise ValueError(f"{token.where()}: {message}") from None
        layers.append(layer)
    if tokens and tokens[-1].name == "dense":
        last = layers[-1]
        if last.out_features != n_out:
            raise ValueError(f"{tokens[-1].where()}: a final dense is the output layer and needs "
                             f"{n_out} units ({task}), got {last.out_features}; leave it out to have "
                             f"the output layer added, or end the spec with an activation")
        return layers
    if len(shape) == 2:
        layers.append(Flatten())
        shape = (shape[0] * shape[1],)
    layers.append(Dense(shape[0], n_out))
    return layers
