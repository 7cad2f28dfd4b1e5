"""Saving and loading models: one .npz file, written atomically, read without pickle.

The file is a zip archive (members stored, as ``np.savez`` writes them) of
plain .npy arrays:

==================  ==========================================================
member              content
==================  ==========================================================
format.npy          the string "nnumba.Sequential"
version.npy         the file format's version (int)
config.npy          JSON: layers, input shape, backend, dtype, seed, dropout
                    seed, loss, optimizer hyperparameters, epochs trained
params.npy          the flat parameter buffer (W0, b0, W1, b1, ... row-major)
optimizer_state.npy (n_slots, n_params) optimizer state (no rows for SGD or
                    an uncompiled model)
optimizer_t.npy     the optimizer's step count
shuffle_rng.npy     JSON: the state of the shuffling generator (PCG64)
buffers.npy         the running statistics of the BatchNorm layers (version 2)
==================  ==========================================================

Version 2 (written since the op-table layers: Conv1D, pools, Dropout,
BatchNorm, Residual) adds ``buffers`` and, in the config, ``input_shape`` and
``dropout_seed``; version-1 files (models of Dense layers, which have no
buffers) still load. The dropout masks are a hash of the dropout seed and the
optimizer's step count, both saved, so a resumed run draws the masks an
uninterrupted one would.

so that training resumed from a saved model continues exactly as if it had
never stopped.

Saving (``save_model``) writes a temporary file in the destination's folder,
syncs it, renames it over the destination and syncs the folder, so a crash
never leaves a half-written model.

Loading (``load``) treats the file as hostile. It reads the archive with
``zipfile`` itself and checks, in this order, each step bounded in time and
memory by the bounds below and before the next one starts:

1. the member list: exactly the members above (seven in version 1), each once, stored or
   deflated, not encrypted, lying inside the file, and not inflating to more
   than ``MAX_DEFLATE_RATIO`` times its compressed size;
2. the small members (format, version, counters, the two JSON texts), each
   with a bounded declared size; the JSON texts for length and nesting depth
   before they are parsed, then every entry of the description for its type
   and range, the layers and optimizer hyperparameters by the constructors
   that check user arguments (nothing is allocated);
3. the .npy headers of params and optimizer_state, parsed from a bounded
   prefix of the member, against the parameter count of the layers'
   ``Plan`` and the optimizer's number of state slots, before their data is
   read; the data is then read in chunks, never more bytes than the header
   announces;
4. the values, for being finite once converted to the model's dtype.

Only then is the model built. Every refusal is a ``ValueError`` naming the
file; pickled objects are never loaded. What load reads and allocates is
thus bounded by the file's size: a stored member (as ``save`` writes them)
holds its numbers, a deflated one at most ``MAX_DEFLATE_RATIO`` times its
size. One cost grows with the file rather than being bounded apart from it:
``zipfile`` reads the whole central directory (about 500 bytes of memory per
entry of 46 bytes or more) before the member list can be checked.
"""
import collections
import contextlib
import dataclasses
import errno
import io
import itertools
import json
import math
import os
import re
import stat
import struct
import sys
import tempfile
import threading
import zipfile
import zlib

import numpy as np
from numpy.lib import format as npformat

from .backends import BACKENDS, get_backend
from .layers import Dense, layer_from_config
from .losses import CUSTOM_LOSSES, LOSSES
from .optim import OPTIMIZERS, RULES
from .plan import Plan

FORMAT = "nnumba.Sequential"
VERSION = 2
KEYS_V1 = ("format", "version", "config", "params", "optimizer_state", "optimizer_t", "shuffle_rng")
KEYS = KEYS_V1 + ("buffers",)

# ---- bounds of what load reads (see the module docstring) -------------------------------
# The model description: a layer's description is about 80 characters, so this allows
# thousands of layers, and reading it costs at most 4 MiB (numpy stores UCS-4).
MAX_CONFIG_CHARS = 1 << 20
# The shuffling generator's state: about 150 characters.
MAX_RNG_CHARS = 1024
MAX_FORMAT_CHARS = 64
# Nesting of the JSON texts (the description nests 3 deep, 2 more per block of layers
# inside a layer, as Residual); checked before json.loads, whose recursion would
# otherwise end in RecursionError, and bounding the recursion of layer_from_config.
MAX_JSON_DEPTH = 64
# Digits of one JSON integer (the generator's 128-bit state has 39, a seed drawn from
# the OS as many); int() of a long digit string takes quadratic time on Python 3.10.
MAX_INT_DIGITS = 1000
# Counters (epochs trained, optimizer steps) fit the kernels' int64.
MAX_COUNT = 2 ** 63 - 1
# numpy's own limit on a .npy header; a member's header is parsed from its first
# NPY_PREFIX bytes (magic, version and length fields, header).
MAX_NPY_HEADER = 10000
NPY_PREFIX = 12 + MAX_NPY_HEADER
# deflate cannot compress more than 1032:1, so a deflated member declaring more is a
# lie (a zip bomb); what stays within it is bounded by what the file holds.
MAX_DEFLATE_RATIO = 1032
# bytes of a member read per call while reading its data
READ_CHUNK = 1 << 20

# largest .npy data of the small members, by member; params and optimizer_state are
# bounded by the parameter count of the description instead
_SMALL_MEMBERS = {"format": 4 * MAX_FORMAT_CHARS, "version": 8, "optimizer_t": 8,
                  "config": 4 * MAX_CONFIG_CHARS, "shuffle_rng": 4 * MAX_RNG_CHARS}
# general-purpose flag bits allowed in a member: deflate options (1, 2), data
# descriptor (3), UTF-8 name (11); bit 0 is encryption, 5 patched data, 6 strong
# encryption, which zipfile cannot read
_ALLOWED_FLAGS = 0x0002 | 0x0004 | 0x0008 | 0x0800
# what zipfile and zlib raise for a damaged archive (NotImplementedError: e.g. a
# central-directory entry claiming a newer zip version, before any member is seen)
_ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, zlib.error,
               EOFError, OSError, struct.error)
# the header numpy writes: {'descr': ..., 'fortran_order': ..., 'shape': ..., } padded
# with spaces and a newline; anything else is refused before numpy parses it, as
# numpy's fallback parser (for Python 2 files) fails with tokenize errors
_NPY_HEADER = re.compile(rb"\{'descr': '[<>|=]?[A-Za-z][0-9]{0,9}', "
                         rb"'fortran_order': (?:True|False), "
                         rb"'shape': \((?:[0-9]{1,19}(?:, [0-9]{1,19}){0,31},?)?\), \} *\n")


# ---- saving ------------------------------------------------------------------------------

def save_model(model, path):
    """Write ``model`` to ``path`` (a .npz file) atomically.

    The data goes to a temporary file ``.{name}.nnumba-{pid}-{random}.tmp`` in
    the destination's folder, is synced, renamed over ``path``, and the folder
    is synced too (where the OS can open a folder), so a crash leaves either
    the old file or the new one. The file gets the mode ``0o666 & ~umask``,
    as ``open`` would give it. Temporaries for the same destination left by
    a save that was killed (their writer's pid is no longer alive) are
    removed; those of a live writer are kept.

    Raises ``OSError`` naming ``path`` (never the temporary file) when the
    file cannot be written: ``FileNotFoundError`` when its folder does not
    exist, ``NotADirectoryError`` when the folder is a file,
    ``IsADirectoryError`` when ``path`` is a folder, ``PermissionError``, ...;
    ``ValueError`` naming ``path``, before anything is written, for a model
    whose description ``load`` would refuse (beyond MAX_CONFIG_CHARS, or a seed
    of more than MAX_INT_DIGITS digits).
    """
    path = os.fspath(path)
    arrays = _arrays(model)
    try:
        _json(_check_length(str(arrays["config"]), MAX_CONFIG_CHARS, "config"), "config")
    except ValueError as exc:
        raise ValueError(f"cannot save the model to {path}: {exc}") from None
    target = os.path.abspath(path)
    folder, name = os.path.split(target)
    _check_destination(path, folder)
    _remove_stale_temporaries(folder, name)
    try:
        write_atomically(target, lambda f: np.savez(f, **arrays))
    except OSError as exc:
        reason = exc.strerror or str(exc)
        message = f"cannot save the model to {path}: {reason}"
        raise (OSError(exc.errno, message) if exc.errno else OSError(message)) from exc


def _arrays(model):
    """The arrays of the file, by key."""
    memory = model._backend.memory
    optimizer = model.optimizer
    config = {
        "layers": [layer.config() for layer in model.layers],
        "input_shape": None if model.input_shape is None else list(model.input_shape),
        "dropout_seed": model._dropout_seed,
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
    return {
        "format": np.array(FORMAT),
        "version": np.array(VERSION),
        "config": np.array(json.dumps(config)),
        "params": memory.to_host(model._params),
        "optimizer_state": state,
        "optimizer_t": np.array(t, dtype=np.int64),
        "shuffle_rng": np.array(json.dumps(model._shuffle_rng.bit_generator.state)),
        "buffers": memory.to_host(model._buffers),
    }


def _check_destination(path, folder):
    """Refuse, naming ``path``, a destination that is a folder or in no folder."""
    if os.path.isdir(path):
        raise IsADirectoryError(errno.EISDIR, f"cannot save the model to {path}: it is a folder")
    if not os.path.isdir(folder):
        if os.path.exists(folder):
            raise NotADirectoryError(errno.ENOTDIR, f"cannot save the model to {path}: "
                                                    f"{folder} is not a folder")
        raise FileNotFoundError(errno.ENOENT, f"cannot save the model to {path}: the folder "
                                              f"{folder} does not exist")


def write_atomically(target, write):
    """Write a file through ``write(f)`` (f: a binary file) atomically: into a synced
    temporary file in the destination's folder, renamed over ``target``, the folder
    synced; the mode as ``open`` would give it. Used for models and for the small
    records of the callbacks."""
    folder, name = os.path.split(os.path.abspath(target))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=_temporary_prefix(name), suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            if hasattr(os, "fchmod"):  # mkstemp creates the file 0600
                os.fchmod(f.fileno(), 0o666 & ~_umask())
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):  # the temporary may be gone already
            os.unlink(tmp)
        raise
    _sync_folder(folder)


def _sync_folder(folder):
    """fsync the folder, so that the rename survives a crash; skipped where the OS
    cannot open a folder (Windows) or the file system cannot sync one."""
    if not hasattr(os, "O_DIRECTORY"):
        return
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EBADF):
            raise
    finally:
        os.close(fd)


_PROC_STATUS = "/proc/self/status"
_umask_lock = threading.Lock()


def _umask():
    """The process's umask.

    Read from /proc/self/status where there is one (Linux 4.7 and later),
    which changes nothing. Elsewhere the only way is to set it and set it
    back: that happens under a lock, so concurrent saves do not see each
    other's 0, but another thread creating a file in that instant would create
    it with umask 0.
    """
    with contextlib.suppress(OSError, ValueError, IndexError):  # else: set it and set it back
        with open(_PROC_STATUS) as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    with _umask_lock:
        mask = os.umask(0)
        os.umask(mask)
    return mask


def _temporary_stem(name):
    # the name is shortened so that the temporary's name stays within 255 bytes (50
    # characters of up to 4 bytes in UTF-8); destinations sharing those 50 characters
    # then share the pattern, which only means that one save may remove another's stale
    # temporaries
    return f".{name[:50]}.nnumba"


def _temporary_prefix(name):
    return f"{_temporary_stem(name)}-{os.getpid()}-"


def _remove_stale_temporaries(folder, name):
    """Remove the temporaries for this destination whose writer has died.

    POSIX only: ``os.kill(pid, 0)`` tests a process there, but terminates it on
    Windows. A pid reused by another process keeps its temporary (the safe
    side). Writers on other machines sharing the folder (NFS) cannot be told
    apart from dead ones. Failures are ignored: cleaning never fails a save.
    """
    if os.name != "posix":
        return
    pattern = re.compile(re.escape(_temporary_stem(name)) +
                         r"-([0-9]{1,10})-[A-Za-z0-9_]{1,64}\.tmp")
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for entry in entries:
        match = pattern.fullmatch(entry.name)
        try:
            if match and not _alive(int(match.group(1))) and entry.is_file(follow_symlinks=False):
                os.unlink(entry.path)
        except OSError:
            continue  # another writer removed it, or it is not ours to remove: leave it


def _alive(pid):
    """Whether process ``pid`` may be alive (True unless it certainly is not)."""
    if pid <= 0:  # os.kill(0, ...) would signal a process group
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError):  # e.g. PermissionError: it exists, as another user
        return True
    return True


# ---- loading -----------------------------------------------------------------------------

@dataclasses.dataclass
class _Description:
    """The checked model description of a file."""
    layers: list
    backend: str
    dtype: np.dtype
    seed: object
    epochs_trained: int
    loss: object            # a loss name or None
    optimizer: object       # an unbound nn.optim object or None
    input_shape: object = None   # a tuple, or None (read off the first Dense layer)
    dropout_seed: object = None  # an int, or None (version 1: derived from the seed)
    plan: Plan = None
    buffers: object = None


def load(path, backend=None):
    """Load a model written by ``model.save(path)``.

    ``backend`` ("numpy", "cpu", "cuda") overrides the backend it was saved
    from; a wrong one raises the ``ValueError`` of ``nnumba.backends.get_backend``
    before the file is read. A missing file raises ``FileNotFoundError``; any
    other path that cannot be read or is not an nnumba model file (corrupt,
    truncated, empty, foreign, hostile, holding pickled objects, a folder, a
    pipe) raises ``ValueError`` naming ``path``, after bounded work (see the
    module docstring). Errors of the environment rather than of the file, such
    as a file saved from "cuda" loaded where there is no GPU, are raised as
    ``get_backend`` raises them.
    """
    path = os.fspath(path)
    if backend is not None:
        get_backend(backend)
    try:
        with _open_regular_file(path) as f:
            description, rng_state, params, state, t = _read(f)
    except FileNotFoundError:
        raise
    except _ZIP_ERRORS + (ValueError,) as exc:
        raise ValueError(f"{path} is not a readable nnumba model file: {exc}") from exc
    # the environment's errors (e.g. no GPU for a file saved from "cuda") are not the file's
    model_backend = get_backend(backend or description.backend)
    try:
        return _build(description, rng_state, params, state, t, model_backend.name)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path} has a damaged model description: {exc}") from exc


def _open_regular_file(path):
    """``path`` opened for reading, refused unless it is a regular file. Opened
    without blocking, so that a named pipe is refused instead of waited on."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    fd = os.open(path, flags)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ValueError("it is not a regular file")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def to_bytes(model):
    """The model as the bytes of its file (what ``pickle`` and ``copy.deepcopy`` of a
    model use: in memory only; files are never unpickled)."""
    buffer = io.BytesIO()
    np.savez(buffer, **_arrays(model))
    return buffer.getvalue()


def from_bytes(data, backend=None):
    """The model of ``to_bytes`` output, checked as ``load`` checks a file."""
    description, rng_state, params, state, t = _read(io.BytesIO(data), len(data))
    return _build(description, rng_state, params, state, t,
                  get_backend(backend or description.backend).name)


def _read(f, size=None):
    """The checked contents of the open file ``f``: (description, generator state,
    params, optimizer state, optimizer step count); ValueError (or a zipfile
    error) for anything else. The steps are those of the module docstring."""
    size = os.fstat(f.fileno()).st_size if size is None else size
    with zipfile.ZipFile(f) as archive:
        members = _members(archive, size)
        t = _check_counters(archive, members, "buffers" in members)
        config = _json(_text(archive, members["config"], MAX_CONFIG_CHARS), "config")
        description = _description(config)
        rng_state = _rng_state(_json(_text(archive, members["shuffle_rng"], MAX_RNG_CHARS),
                                     "shuffle_rng"))
        params = _floats(archive, members["params"],
                         lambda shape: _check_params(description, shape))
        n_slots = 0 if description.optimizer is None else len(description.optimizer.slots)
        expected = (n_slots, description.plan.n_params)
        state = _floats(archive, members["optimizer_state"],
                        lambda shape: _check_shape("optimizer_state", shape, expected))
        buffers = np.zeros(0)
        if "buffers" in members:
            buffers = _floats(archive, members["buffers"], lambda shape: _check_shape(
                "buffers", shape, (description.plan.n_buffers,)))
        elif description.plan.n_buffers:
            raise ValueError("it has BatchNorm layers but no running statistics")
    params = _converted(params, description.dtype, "params")
    state = _converted(state, description.dtype, "optimizer_state")
    description.buffers = _converted(buffers, description.dtype, "buffers")
    return description, rng_state, params, state, t


def _check_counters(archive, members, has_buffers):
    """Check the format string and the version (and that its members are that
    version's); return the optimizer's step count."""
    if _text(archive, members["format"], MAX_FORMAT_CHARS) != FORMAT:
        raise ValueError("it is not an nnumba model (wrong format string)")
    version = _integer(archive, members["version"])
    if not 1 <= version <= VERSION:
        raise ValueError(f"it has file format version {version}; this nnumba reads "
                         f"versions 1 to {VERSION}")
    if has_buffers != (version >= 2):
        raise ValueError(f"its members are not those of file format version {version}")
    t = _integer(archive, members["optimizer_t"])
    if not 0 <= t <= MAX_COUNT:
        raise ValueError(f"its optimizer step count is {t}")
    return t


# ---- the archive -----------------------------------------------------------------

def _members(archive, size):
    """The archive's members by key, checked as step 1 of the module docstring."""
    infos = archive.infolist()
    names = collections.Counter(info.filename for info in infos)
    expected = [key + ".npy" for key in (KEYS if "buffers.npy" in names else KEYS_V1)]
    if len(infos) != len(expected) or set(names) != set(expected):
        problems = [("it lacks", [n for n in expected if n not in names]),
                    ("it has the unexpected members", [n for n in names if n not in expected]),
                    ("it has more than once", [n for n, count in names.items() if count > 1])]
        found = "; ".join(f"{what} {_some(which)}" for what, which in problems if which)
        raise ValueError(f"it does not hold the members of an nnumba model: {found}")
    for info in infos:
        _check_member(info, size)
    return {info.filename[:-len(".npy")]: info for info in infos}


def _some(names, n=5):
    """The first n names, quoted, for a message."""
    more = f" and {len(names) - n} more" if len(names) > n else ""
    return ", ".join(repr(name[:80]) for name in names[:n]) + more


def _check_member(info, size):
    name = info.filename
    if info.flag_bits & 0x0001:
        raise ValueError(f"member {name} is encrypted")
    if info.flag_bits & ~_ALLOWED_FLAGS:
        raise ValueError(f"member {name} has unsupported zip flags {info.flag_bits:#06x}")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise ValueError(f"member {name} uses compression method {info.compress_type}; "
                         "only stored and deflated members are read")
    if not 0 <= info.header_offset <= info.header_offset + info.compress_size <= size:
        raise ValueError(f"member {name} lies outside the file")
    if info.compress_type == zipfile.ZIP_STORED and info.file_size != info.compress_size:
        raise ValueError(f"stored member {name} declares {info.file_size} bytes but holds "
                         f"{info.compress_size}")
    if info.file_size > MAX_DEFLATE_RATIO * info.compress_size + NPY_PREFIX:
        raise ValueError(f"member {name} declares {info.file_size} bytes from "
                         f"{info.compress_size} compressed bytes, more than deflate can give")
    limit = _SMALL_MEMBERS.get(name[:-len(".npy")])
    if limit is not None and info.file_size > NPY_PREFIX + limit:
        raise ValueError(f"member {name} declares {info.file_size} bytes, more than an "
                         f"nnumba model's {name} can have")


def _read_npy(archive, info, accept):
    """(dtype, shape, fortran_order, data) of a .npy member.

    The header is parsed from the member's first NPY_PREFIX bytes; ``accept(dtype,
    shape)`` raises to refuse it before any data is read. The member must be
    exactly the header plus the data it announces, which is read in chunks.
    """
    with archive.open(info) as member:
        prefix = member.read(min(info.file_size, NPY_PREFIX))
        shape, fortran, dtype, offset = _npy_header(prefix, info.filename)
        accept(dtype, shape)
        nbytes = math.prod(shape) * dtype.itemsize
        if info.file_size != offset + nbytes:
            raise ValueError(f"member {info.filename} declares {info.file_size} bytes, but its "
                             f"header announces {offset + nbytes}")
        data = bytearray(nbytes)
        view = memoryview(data)
        done = len(prefix) - offset
        view[:done] = prefix[offset:]
        while done < nbytes:
            chunk = member.read(min(READ_CHUNK, nbytes - done))
            if not chunk:
                raise ValueError(f"member {info.filename} is truncated")
            view[done:done + len(chunk)] = chunk
            done += len(chunk)
    return dtype, shape, fortran, data


def _npy_header(prefix, name):
    """(shape, fortran_order, dtype, data offset) of the .npy bytes starting ``prefix``."""
    stream = io.BytesIO(prefix)
    version = npformat.read_magic(stream)
    if version not in ((1, 0), (2, 0)):
        raise ValueError(f"member {name} has .npy format version {version}")
    width = 2 if version == (1, 0) else 4
    length = int.from_bytes(prefix[8:8 + width], "little")
    header = prefix[8 + width:8 + width + length]
    if length > MAX_NPY_HEADER:
        raise ValueError(f"member {name} has a .npy header of {length} bytes, more than "
                         f"{MAX_NPY_HEADER}")
    if len(header) != length:
        raise ValueError(f"member {name} has a truncated .npy header")
    if not _NPY_HEADER.fullmatch(header):
        raise ValueError(f"member {name} has a damaged .npy header")
    read = npformat.read_array_header_1_0 if version == (1, 0) else npformat.read_array_header_2_0
    shape, fortran, dtype = read(stream, max_header_size=MAX_NPY_HEADER)
    return shape, fortran, dtype, stream.tell()


def _text(archive, info, max_chars):
    """The string of a 0-d unicode member of at most ``max_chars`` characters."""
    def accept(dtype, shape):
        if dtype.kind != "U" or shape != () or dtype.itemsize > 4 * max_chars:
            raise ValueError(f"member {info.filename} is not a string of at most {max_chars} "
                             f"characters (dtype {dtype}, shape {shape})")

    dtype, _, _, data = _read_npy(archive, info, accept)
    big = dtype.byteorder == ">" or (dtype.byteorder == "=" and sys.byteorder == "big")
    try:
        # decoded here, not by numpy, which fails with SystemError on invalid code points
        return data.decode("utf-32-be" if big else "utf-32-le").rstrip("\x00")
    except UnicodeDecodeError as exc:
        raise ValueError(f"member {info.filename} is not valid text: {exc}") from None


def _integer(archive, info):
    """The value of a 0-d integer member."""
    def accept(dtype, shape):
        if dtype.kind not in "iu" or shape != () or dtype.itemsize > 8:
            raise ValueError(f"member {info.filename} is not an integer (dtype {dtype}, "
                             f"shape {shape})")

    dtype, _, _, data = _read_npy(archive, info, accept)
    return int(np.frombuffer(data, dtype)[0])


def _floats(archive, info, check_shape):
    """The float array of a member whose shape ``check_shape(shape)`` accepts."""
    def accept(dtype, shape):
        if dtype.kind != "f" or dtype.itemsize > 8:
            raise ValueError(f"member {info.filename} does not hold floats of at most 64 bits "
                             f"(dtype {dtype})")
        check_shape(shape)

    dtype, shape, fortran, data = _read_npy(archive, info, accept)
    return np.frombuffer(data, dtype).reshape(shape, order="F" if fortran else "C")


def _converted(values, dtype, key):
    """``values`` in the model's dtype, refused unless finite there (1e39 is finite in
    float64 but inf in float32)."""
    with np.errstate(over="ignore", invalid="ignore"):
        converted = values.astype(dtype)
    if converted.size and not (np.isfinite(converted.min()) and np.isfinite(converted.max())):
        raise ValueError(f"its {key} hold NaN or numbers that are infinite in {dtype.name}")
    return converted


# ---- the description ---------------------------------------------------------------

_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_DEPTH_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def _check_length(text, max_chars, key):
    if len(text) > max_chars:
        raise ValueError(f"its {key} has {len(text)} characters, more than {max_chars}")
    return text


def _json(text, key):
    """``text`` parsed as strict JSON, refused when nested deeper than MAX_JSON_DEPTH
    or holding an integer of more than MAX_INT_DIGITS digits.

    The depth is counted before parsing, in linear time, over all brackets, those
    inside strings too: no string of a model description holds one.
    """
    brackets = _NOT_BRACKET.sub("", text)
    depth = max(itertools.accumulate(map(_DEPTH_STEP.__getitem__, brackets)), default=0)
    if depth > MAX_JSON_DEPTH:
        raise ValueError(f"its {key} is nested {depth} deep, more than {MAX_JSON_DEPTH}")
    try:
        return json.loads(text, parse_int=_json_int, parse_constant=_json_constant)
    except json.JSONDecodeError as exc:
        raise ValueError(f"its {key} is not valid JSON: {exc}") from None


def _json_int(digits):
    if len(digits) > MAX_INT_DIGITS:
        raise ValueError(f"an integer of {len(digits)} digits")
    return int(digits)


def _json_constant(name):
    raise ValueError(f"{name} is not a number")


def _is_int(value, low=0, high=None):
    return (isinstance(value, int) and not isinstance(value, bool) and value >= low
            and (high is None or value <= high))


def _description(config):
    """The checked model description (step 2): builds the layers and the optimizer
    object, whose constructors check every argument, allocating nothing (the Plan
    follows in ``_check_params``, once the declared parameter count is known)."""
    from .model import DTYPES

    if not isinstance(config, dict):
        raise ValueError("its config is not a JSON object")
    missing = [k for k in ("layers", "backend", "dtype", "seed", "epochs_trained", "loss",
                           "optimizer") if k not in config]
    if missing:
        raise ValueError(f"its config lacks {', '.join(missing)}")
    if config["backend"] not in BACKENDS or config["dtype"] not in DTYPES:
        raise ValueError(f"its config names backend {config['backend']!r} and dtype "
                         f"{config['dtype']!r}")
    seed, epochs = config["seed"], config["epochs_trained"]
    if not (seed is None or _is_int(seed)):
        raise ValueError(f"its seed is {seed!r}, not a non-negative integer or null")
    if not _is_int(epochs, high=MAX_COUNT):
        raise ValueError(f"its epochs_trained is {epochs!r}, not a non-negative integer")
    layers = _layers(config["layers"])
    loss, optimizer = _loss_and_optimizer(config["loss"], config["optimizer"])
    input_shape, dropout_seed = config.get("input_shape"), config.get("dropout_seed")
    if input_shape is not None and not (isinstance(input_shape, list) and 1 <= len(input_shape) <= 2
                                        and all(_is_int(d, low=1, high=MAX_COUNT)
                                                for d in input_shape)):
        raise ValueError(f"its input_shape is {input_shape!r}")
    if dropout_seed is not None and not _is_int(dropout_seed, high=MAX_COUNT):
        raise ValueError(f"its dropout_seed is {dropout_seed!r}")
    return _Description(layers, config["backend"], np.dtype(config["dtype"]), seed, epochs,
                        loss, optimizer, None if input_shape is None else tuple(input_shape),
                        dropout_seed)


def _layers(configs):
    if not isinstance(configs, list) or not configs:
        raise ValueError("its layers are not a non-empty list")
    layers = []
    for i, config in enumerate(configs):
        if not isinstance(config, dict) or not isinstance(config.get("type"), str):
            raise ValueError(f"layer {i} is not a layer description")
        try:
            layers.append(layer_from_config(config))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"layer {i}: {exc}") from None
    return layers


def _loss_and_optimizer(loss, optimizer):
    """(loss name, optimizer object) of a compiled model, (None, None) otherwise."""
    if loss is None and optimizer is None:
        return None, None
    if isinstance(loss, str) and loss not in LOSSES and loss in CUSTOM_LOSSES:
        loss = CUSTOM_LOSSES[loss]()
    elif not isinstance(loss, str) or loss not in LOSSES:
        raise ValueError(f"its loss is {loss!r}" + (
            ", neither a built-in loss nor one made in this process (make it with "
            "nn.losses.loss first, then load)" if isinstance(loss, str) else ""))
    if not isinstance(optimizer, dict) or not isinstance(optimizer.get("name"), str) \
            or not isinstance(optimizer.get("hyperparameters"), dict):
        raise ValueError(f"its optimizer is {optimizer!r}")
    name = optimizer["name"].lower()
    known = {**RULES, **OPTIMIZERS}
    if name not in known:
        raise ValueError(f"its optimizer is {optimizer['name']!r}, neither a built-in one nor a rule "
                         f"defined in this process (run the code that defines it with "
                         f"@nn.optim.rule first, then load)")
    try:
        return loss, known[name](**optimizer["hyperparameters"])
    except (TypeError, ValueError) as exc:
        raise ValueError(f"its optimizer's hyperparameters: {exc}") from None


def _check_params(description, shape):
    """Compare the declared shape of params with the parameter count of the layers
    (their Plan, which allocates nothing); sets ``description.plan``.

    A lower bound of the count (``_weights_lower_bound``) is compared with the
    declared count first: the declared count is bounded by what the file holds,
    so absurd layer sizes are refused before the Plan is made.
    """
    if len(shape) != 1:
        raise ValueError(f"its params have shape {shape}, not a vector")
    lower = _weights_lower_bound(description.layers)
    if lower > shape[0]:
        raise ValueError(f"its layers need at least {lower} parameters but it holds {shape[0]}")
    try:
        description.plan = Plan(description.layers, description.input_shape)
    except (OverflowError, TypeError) as exc:
        # sizes beyond the int64 tables of the plan (which escape the lower bound only
        # in layers without weights), or a layer the plan cannot compile
        raise ValueError(f"its layers cannot be compiled: {exc}") from None
    if description.plan.n_params != shape[0]:
        raise ValueError(f"it holds {shape[0]} parameters, but its layers need "
                         f"{description.plan.n_params}")


def _weights_lower_bound(layers):
    """in_features * out_features summed over the Dense layers (Conv1D is one), those
    inside blocks of layers (a ``layers`` list, as Residual has) too: a lower bound of
    the parameter count that needs no shapes."""
    total = 0
    for layer in layers:
        if isinstance(layer, Dense):
            total += layer.in_features * layer.out_features
        total += _weights_lower_bound(getattr(layer, "layers", ()))
    return total


def _check_shape(key, shape, expected):
    if shape != expected:
        raise ValueError(f"its {key} has shape {shape}, expected {expected}")


def _rng_state(state):
    """The checked PCG64 state: the structure ``bit_generator.state`` gives, each
    number in the range of its C type (the setter raises OverflowError otherwise)."""
    inner = state.get("state") if isinstance(state, dict) else None
    valid = (isinstance(state, dict)
             and set(state) == {"bit_generator", "state", "has_uint32", "uinteger"}
             and state["bit_generator"] == "PCG64"
             and isinstance(inner, dict) and set(inner) == {"state", "inc"}
             and _is_int(inner["state"], high=2 ** 128 - 1)
             and _is_int(inner["inc"], high=2 ** 128 - 1)
             and _is_int(state["has_uint32"], high=1)
             and _is_int(state["uinteger"], high=2 ** 32 - 1))
    if not valid:
        raise ValueError("its shuffle_rng is not a PCG64 generator state")
    return state


def _build(description, rng_state, params, state, t, backend):
    """The model of a checked file (params and state already in its dtype)."""
    from .model import Sequential

    model = Sequential(description.layers, backend=backend, dtype=description.dtype,
                       input_shape=description.input_shape)
    model._shuffle_rng.bit_generator.state = rng_state
    if description.dropout_seed is not None:
        model._dropout_seed = description.dropout_seed
    if description.plan.n_buffers:
        model._backend.memory.copy_from_host(model._buffers, description.buffers)
    model.seed = description.seed
    model.epochs_trained = description.epochs_trained
    model._backend.memory.copy_from_host(model._params, params)
    optimizer = description.optimizer
    if optimizer is not None:
        model.compile(description.loss, optimizer)
        optimizer.load_state_dict({
            "optimizer": optimizer.name, "hyperparameters": optimizer.hyperparameters(), "t": t,
            "state": {slot: state[i] for i, slot in enumerate(optimizer.slots)}})
    return model
