"""nn.load on damaged and hostile files: a ValueError naming the file, after bounded work.

Every call of ``nn.load`` here goes through ``attempt``, which requires that it
returns a model or raises ValueError with the path in its message (any other
exception fails the test), within LOAD_SECONDS and with a tracemalloc peak
under LOAD_BYTES.
"""
import io
import json
import os
import random
import re
import struct
import time
import tracemalloc
import warnings
import zipfile
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nnumba as nn
from nnumba.backends import get_backend

LOAD_BYTES = 4 << 20     # tracemalloc peak of one load
LOAD_SECONDS = 2.0       # wall time of one load (generous: the test machines are shared)
GIB = 1 << 30


# ---- the good file and ways to damage it --------------------------------------------------

def small_model():
    """57 parameters, Adam state, trained a little: every member holds something."""
    model = nn.Sequential([nn.Dense(5, 8), nn.Tanh(), nn.Dense(8, 1)], backend="numpy",
                          dtype="float32", seed=3)
    model.compile("mse", nn.optim.Adam(lr=0.01))
    X = np.random.default_rng(0).normal(size=(12, 5))
    model.fit(X, X[:, :1], epochs=1, batch_size=4)
    return model


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    path = tmp_path_factory.mktemp("good") / "model.npz"
    small_model().save(path)
    return path


@pytest.fixture(scope="module")
def deflated(good):
    """The good file with its members deflated (as np.savez_compressed writes them)."""
    return write_zip(good.parent / "deflated.npz", list(members(good).items()), zipfile.ZIP_DEFLATED)


@pytest.fixture(params=["stored", "deflated"])
def sample(request, good, deflated):
    return good if request.param == "stored" else deflated


@pytest.fixture(scope="module")
def traced():
    tracemalloc.start()
    yield
    tracemalloc.stop()


def attempt(path):
    """nn.load(path): the model, or the ValueError it raised (naming path); bounded."""
    tracemalloc.reset_peak()
    before = tracemalloc.get_traced_memory()[0]
    start = time.perf_counter()
    try:
        result = nn.load(path)
    except ValueError as exc:
        assert str(path) in str(exc), f"the message does not name the file: {exc}"
        result = exc
    elapsed = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1] - before
    assert elapsed < LOAD_SECONDS, f"load took {elapsed:.2f} s"
    assert peak < LOAD_BYTES, f"load allocated {peak / 2 ** 20:.1f} MiB"
    return result


def refused(path, match=None):
    result = attempt(path)
    assert isinstance(result, ValueError), "a damaged file was loaded"
    if match is not None:
        assert re.search(match, str(result)), str(result)
    return result


def npy(array):
    out = io.BytesIO()
    np.lib.format.write_array(out, np.asanyarray(array), allow_pickle=False)
    return out.getvalue()


def npy_header(descr, shape, fortran_order=False):
    """A version 1.0 .npy header as numpy writes it, without data."""
    text = "{'descr': %r, 'fortran_order': %r, 'shape': %r, }" % (descr, fortran_order, shape)
    text += " " * (63 - (10 + len(text)) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text.encode("latin1")


def members(path):
    with zipfile.ZipFile(path) as archive:
        return {info.filename: archive.read(info) for info in archive.infolist()}


def write_zip(path, items, compression=zipfile.ZIP_STORED):
    """A zip of (name, bytes) items, duplicates allowed."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about duplicate names
        with zipfile.ZipFile(path, "w", compression) as archive:
            for name, data in items:
                archive.writestr(name, data)
    return path


def variant(good, path, **changes):
    """The good file with members replaced: key=array (written as .npy) or raw bytes."""
    items = members(good)
    for key, value in changes.items():
        items[key + ".npy"] = value if isinstance(value, bytes) else npy(value)
    return write_zip(path, list(items.items()))


def config_of(good):
    with np.load(good) as f:
        return json.loads(str(f["config"])), json.loads(str(f["shuffle_rng"]))


def raw_zip(entries):
    """A zip written byte by byte: each entry (name, payload, method, flags, crc,
    compress_size, file_size), sizes as given, however false."""
    local, central = b"", b""
    for name, payload, method, flags, crc, csize, usize in entries:
        name = name.encode()
        central += struct.pack("<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 20, 20, flags, method, 0,
                               0x21, crc, csize, usize, len(name), 0, 0, 0, 0, 0, len(local)) + name
        local += struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, flags, method, 0, 0x21, crc,
                             csize, usize, len(name), 0) + name + payload
    end = struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, len(entries), len(entries),
                      len(central), len(local), 0)
    return local + central + end


def stored_entries(good, skip=()):
    return [(name, data, 0, 0, zlib.crc32(data), len(data), len(data))
            for name, data in members(good).items() if name not in skip]


def deflated_zeros(prefix, n_bytes):
    """A raw deflate stream of ``prefix`` followed by n_bytes zeros, made without
    holding them: after a full flush the compressor repeats itself, so one
    compressed MiB of zeros is repeated."""
    mib = bytes(1 << 20)
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = c.compress(prefix) + c.flush(zlib.Z_FULL_FLUSH)
    block = c.compress(mib) + c.flush(zlib.Z_FULL_FLUSH)
    assert c.compress(mib) + c.flush(zlib.Z_FULL_FLUSH) == block
    stream = head + block * (n_bytes >> 20) + c.flush()
    k = min(2, n_bytes >> 20)  # check the claim on the first MiBs only
    d = zlib.decompressobj(-15)
    assert d.decompress(stream[:len(head) + (k + 1) * len(block)], len(prefix) + k * len(mib)) == \
        prefix + bytes(k * len(mib))
    return stream


def patch_central(data, name, offset, value, size=2):
    """``data`` with the field at ``offset`` of ``name``'s central-directory entry set."""
    data = bytearray(data)
    at = 0
    while True:
        at = data.index(b"PK\x01\x02", at + 1)
        n = int.from_bytes(data[at + 28:at + 30], "little")
        if data[at + 46:at + 46 + n] == name.encode():
            data[at + offset:at + offset + size] = value.to_bytes(size, "little")
            return bytes(data)


def header_positions(data):
    """The byte positions of the zip structures and of each stored member's .npy header."""
    positions = set()
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for info in archive.infolist():
            at = info.header_offset
            start = at + 30 + int.from_bytes(data[at + 26:at + 28], "little") + \
                int.from_bytes(data[at + 28:at + 30], "little")
            positions.update(range(at, start))
            if info.compress_type == zipfile.ZIP_STORED:
                positions.update(range(start, start + 10 + int.from_bytes(data[start + 8:start + 10],
                                                                          "little")))
        positions.update(range(archive.start_dir, len(data)))
    return sorted(positions)


# ---- fuzz ------------------------------------------------------------------------------------

def test_good_file_loads_within_bounds(sample, traced):
    model = attempt(sample)
    assert isinstance(model, nn.Sequential) and model.count_params() == 57


def test_byte_flips(sample, tmp_path, traced):
    """Every header byte (of the zip structures and of the stored .npy headers) flipped
    in one bit and set to a random value, a sample of the other bytes flipped: each
    load returns a model or a ValueError naming the file."""
    data = sample.read_bytes()
    rng = random.Random(20240607)
    heads = header_positions(data)
    rest = sorted(set(range(len(data))) - set(heads))
    edits = [(p, data[p] ^ (1 << rng.randrange(8))) for p in heads]
    edits += [(p, rng.choice([v for v in range(256) if v != data[p]])) for p in heads]
    edits += [(p, data[p] ^ (1 << rng.randrange(8))) for p in rng.sample(rest, 300)]
    path = tmp_path / "flipped.npz"
    outcomes = {"loaded": 0, "refused": 0}
    for position, value in edits:
        damaged = bytearray(data)
        damaged[position] = value
        path.write_bytes(damaged)
        try:
            result = attempt(path)
        except Exception as exc:  # noqa: BLE001 -- say which edit
            raise AssertionError(f"byte {position} set to {value:#04x}: {exc!r}") from exc
        outcomes["loaded" if isinstance(result, nn.Sequential) else "refused"] += 1
    assert outcomes["refused"] > len(edits) // 2, outcomes


@pytest.mark.parametrize("kind", ["stored", "deflated"])
@settings(max_examples=150, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(edits=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)),
                      min_size=1, max_size=6),
       cut=st.one_of(st.none(), st.floats(0, 1)))
def test_arbitrary_byte_edits(good, deflated, tmp_path_factory, traced, kind, edits, cut):
    data = bytearray((good if kind == "stored" else deflated).read_bytes())
    for where, value in edits:
        data[int(where * len(data))] = value
    if cut is not None:
        data = data[:int(cut * len(data))]
    path = tmp_path_factory.getbasetemp() / f"edited-{kind}.npz"
    path.write_bytes(data)
    attempt(path)


def test_truncations(sample, tmp_path, traced):
    data = sample.read_bytes()
    path = tmp_path / "cut.npz"
    for n in list(range(0, 64)) + list(range(64, len(data), 37)):
        path.write_bytes(data[:n])
        refused(path)


# ---- crafted files: the zip layer ---------------------------------------------------------------

def test_not_a_regular_file(tmp_path, traced):
    """A folder, and a named pipe (which a plain open() would wait on forever)."""
    refused(tmp_path, "regular file")
    if hasattr(os, "mkfifo"):
        os.mkfifo(tmp_path / "pipe.npz")
        refused(tmp_path / "pipe.npz", "regular file")


def test_encrypted_flag(good, tmp_path, traced):
    path = tmp_path / "encrypted.npz"
    path.write_bytes(patch_central(good.read_bytes(), "params.npy", 8, 0x0001))
    refused(path, "encrypted")


@pytest.mark.parametrize("method", [12, 14, 99])  # bzip2, lzma, unknown
def test_compression_method(good, tmp_path, traced, method):
    path = tmp_path / "method.npz"
    path.write_bytes(patch_central(good.read_bytes(), "config.npy", 10, method))
    refused(path, "compression method")


def test_unsupported_zip_version(good, tmp_path, traced):
    path = tmp_path / "zipversion.npz"
    path.write_bytes(patch_central(good.read_bytes(), "config.npy", 6, 99))
    refused(path)


def test_extra_member(good, tmp_path, traced):
    items = list(members(good).items()) + [("extra.npy", npy(np.arange(3)))]
    refused(write_zip(tmp_path / "extra.npz", items), "unexpected members 'extra.npy'")


def test_duplicated_member(good, tmp_path, traced):
    items = list(members(good).items())
    items.append(("config.npy", npy(np.array("{}"))))
    refused(write_zip(tmp_path / "twice.npz", items), "more than once 'config.npy'")


def test_many_members(good, tmp_path, traced):
    entries = stored_entries(good) + [(f"m{i}.npy", b"", 0, 0, 0, 0, 0) for i in range(3000)]
    path = tmp_path / "many.npz"
    path.write_bytes(raw_zip(entries))
    message = str(refused(path, "unexpected members 'm0.npy'.* and 2995 more"))
    assert len(message) < 500


def test_member_without_npy_suffix(good, tmp_path, traced):
    items = [(n[:-4] if n == "params.npy" else n, d) for n, d in members(good).items()]
    refused(write_zip(tmp_path / "bare.npz", items), "lacks 'params.npy'")


def test_member_that_is_not_npy(good, tmp_path, traced):
    refused(variant(good, tmp_path / "notnpy.npz", params=b"these are not numbers" * 5),
            "magic string")


def test_zip_bomb_honest_size(good, tmp_path, traced):
    """params.npy deflates to 1.1 GiB of zeros (its .npy header says so): the header is
    refused after the member's first kilobytes are inflated."""
    n = (11 * GIB // 10) // 8
    stream = deflated_zeros(npy_header("<f8", (n,)), 8 * n)
    size = len(npy_header("<f8", (n,))) + 8 * n
    entries = stored_entries(good, skip=("params.npy",))
    entries.append(("params.npy", stream, 8, 0, 0, len(stream), size))
    path = tmp_path / "bomb.npz"
    path.write_bytes(raw_zip(entries))
    assert path.stat().st_size < 2 << 20
    refused(path, "parameters")


def test_zip_bomb_declared_size_beyond_deflate(good, tmp_path, traced):
    stream = deflated_zeros(b"", 1 << 20)
    entries = stored_entries(good, skip=("params.npy",))
    entries.append(("params.npy", stream, 8, 0, 0, len(stream), 4 * GIB - 1))
    path = tmp_path / "liar.npz"
    path.write_bytes(raw_zip(entries))
    refused(path, "more than deflate can give")


def test_zip_bomb_declared_small(good, tmp_path, traced):
    """A deflate stream that goes on for 1 GiB after the right params: only the declared
    bytes are inflated, so this loads (or is refused), cheaply."""
    params = members(good)["params.npy"]
    stream = deflated_zeros(params, GIB)
    entries = stored_entries(good, skip=("params.npy",))
    entries.append(("params.npy", stream, 8, 0, zlib.crc32(params), len(stream), len(params)))
    path = tmp_path / "tail.npz"
    path.write_bytes(raw_zip(entries))
    attempt(path)


def test_stored_size_lie(good, tmp_path, traced):
    entries = stored_entries(good)
    name, payload, method, flags, crc, csize, usize = entries[3]
    entries[3] = (name, payload, method, flags, crc, csize, 10 ** 9)
    path = tmp_path / "stored.npz"
    path.write_bytes(raw_zip(entries))
    refused(path)


def test_member_outside_the_file(good, tmp_path, traced):
    path = tmp_path / "outside.npz"
    path.write_bytes(patch_central(good.read_bytes(), "params.npy", 42, 2 ** 32 - 2, size=4))
    refused(path)


# ---- crafted files: the .npy headers ------------------------------------------------------------

def test_huge_shape_header(good, tmp_path, traced):
    refused(variant(good, tmp_path / "huge.npz", params=npy_header("<f4", (10 ** 12,))))


def test_huge_shape_header_matching_nothing(good, tmp_path, traced):
    refused(variant(good, tmp_path / "huge_state.npz",
                    optimizer_state=npy_header("<f4", (2, 10 ** 12))))


def test_damaged_npy_header(good, tmp_path, traced):
    """A header with an unclosed brace: numpy's fallback parser fails with tokenize.TokenError."""
    params = members(good)["params.npy"]
    damaged = params.replace(b"), }", b"),  ", 1)
    assert damaged != params
    refused(variant(good, tmp_path / "header.npz", params=damaged), "header")


def test_npy_header_too_long(good, tmp_path, traced):
    text = b"{'descr': '<f4', 'fortran_order': False, 'shape': (57,), }" + b" " * 70000 + b"\n"
    data = b"\x93NUMPY\x02\x00" + struct.pack("<I", len(text)) + text
    refused(variant(good, tmp_path / "long.npz", params=data), "header")


@pytest.mark.parametrize("array", [np.arange(57), np.zeros(57, np.complex64),
                                   np.zeros(57, np.longdouble), np.zeros(57, bool),
                                   np.array(["x"] * 57), np.zeros(57, "V4")],
                         ids=lambda a: a.dtype.name)
def test_params_of_the_wrong_dtype(good, tmp_path, traced, array):
    refused(variant(good, tmp_path / "dtype.npz", params=array))


def test_object_arrays_are_never_unpickled(good, tmp_path, traced):
    out = io.BytesIO()
    np.lib.format.write_array(out, np.array([1, "a", None], dtype=object), allow_pickle=True)
    refused(variant(good, tmp_path / "object.npz", config=out.getvalue()))


def test_invalid_code_point_in_config(good, tmp_path, traced):
    data = bytearray(members(good)["config.npy"])
    data[-4:] = b"\xff\xff\xff\xff"
    refused(variant(good, tmp_path / "codepoint.npz", config=bytes(data)), "text")


# ---- crafted files: the description and the counters -------------------------------------------

def with_config(good, path, **changes):
    config, _ = config_of(good)
    config.update(changes)
    return variant(good, path, config=np.array(json.dumps(config)))


def test_nested_json(good, tmp_path, traced):
    deep = "[" * 100000 + "]" * 100000
    refused(variant(good, tmp_path / "deep.npz", config=np.array(deep)), "nested")


def test_nested_json_in_rng_state(good, tmp_path, traced):
    refused(variant(good, tmp_path / "deep_rng.npz", shuffle_rng=np.array("{" * 300)), "nested")


def test_long_integer_in_json(good, tmp_path, traced):
    refused(with_config(good, tmp_path / "digits.npz", seed=10 ** 3000))


def test_json_constants(good, tmp_path, traced):
    config, _ = config_of(good)
    config["optimizer"]["hyperparameters"]["lr"] = float("inf")
    refused(variant(good, tmp_path / "inf.npz", config=np.array(json.dumps(config))))


@pytest.mark.parametrize("pad, match", [(1 << 20, "at most"), (2 << 20, "declares")])
def test_config_too_long(good, tmp_path, traced, pad, match):
    """Refused from its .npy header, or from its declared size, before it is read."""
    config, _ = config_of(good)
    text = json.dumps(config)[:-1] + ', "pad": "' + "x" * pad + '"}'
    refused(variant(good, tmp_path / "long.npz", config=np.array(text)), match)


@pytest.mark.parametrize("state", [-5, 2 ** 128, "5", 1.5, None])
def test_pcg64_state(good, tmp_path, traced, state):
    _, rng = config_of(good)
    rng["state"]["state"] = state
    refused(variant(good, tmp_path / "rng.npz", shuffle_rng=np.array(json.dumps(rng))),
            "shuffle_rng")


@pytest.mark.parametrize("changes", [{"has_uint32": 2}, {"uinteger": -1},
                                     {"bit_generator": "MT19937"}, {"extra": 1}])
def test_pcg64_fields(good, tmp_path, traced, changes):
    _, rng = config_of(good)
    rng.update(changes)
    refused(variant(good, tmp_path / "rng.npz", shuffle_rng=np.array(json.dumps(rng))),
            "shuffle_rng")


def test_layers_far_larger_than_the_file(good, tmp_path, traced):
    """Dense(40000, 40000) with the file's 57 numbers: refused before any model is built."""
    layers = [{"type": "Dense", "in_features": 40000, "out_features": 40000, "bias": True,
               "init": None}]
    refused(with_config(good, tmp_path / "dense.npz", layers=layers), "parameters")


def test_absurd_layer_sizes(good, tmp_path, traced):
    layers = [{"type": "Dense", "in_features": 10 ** 40, "out_features": 10 ** 40, "bias": True,
               "init": None}]
    refused(with_config(good, tmp_path / "absurd.npz", layers=layers), "parameters")


@pytest.mark.skipif(not hasattr(nn.layers, "Residual"), reason="no nested layers yet")
def test_absurd_layer_sizes_inside_blocks(good, tmp_path, traced):
    """Layers nested in a Residual count too; a pool of 10**40 steps is refused by the plan."""
    config, _ = config_of(good)
    dense = config["layers"][0]
    big = [{**dense, "in_features": 8, "out_features": 10 ** 40},
           {**dense, "in_features": 10 ** 40, "out_features": 8}]
    layers = [dense, {"type": "Residual", "layers": big}] + config["layers"][1:]
    refused(with_config(good, tmp_path / "nested.npz", layers=layers), "parameters")
    layers = [dense, {"type": "MaxPool1D", "pool_size": 10 ** 40, "stride": 10 ** 40}] + \
        config["layers"][1:]
    refused(with_config(good, tmp_path / "pool.npz", layers=layers))


def test_layers_with_the_wrong_count(good, tmp_path, traced):
    config, _ = config_of(good)
    config["layers"][0]["out_features"] = 9
    refused(variant(good, tmp_path / "count.npz", config=np.array(json.dumps(config))))


@pytest.mark.parametrize("layers", [[], [{"type": ["Dense"]}], [{"type": "Conv2d"}],
                                    [{"type": "Dense", "in_features": 5, "out_features": 8,
                                      "colour": "red"}], "Dense", [{"type": "Tanh"}]],
                         ids=["empty", "unhashable", "unknown", "keyword", "string", "no-dense"])
def test_bad_layer_descriptions(good, tmp_path, traced, layers):
    refused(with_config(good, tmp_path / "layers.npz", layers=layers))


@pytest.mark.parametrize("value", [-5, "5", 2.5, True, None, 2 ** 63])
def test_epochs_trained(good, tmp_path, traced, value):
    refused(with_config(good, tmp_path / "epochs.npz", epochs_trained=value), "epochs_trained")


@pytest.mark.parametrize("value", [-1, "abc", 1.0, False])
def test_seed(good, tmp_path, traced, value):
    refused(with_config(good, tmp_path / "seed.npz", seed=value), "seed")


def test_seed_none_is_accepted(good, tmp_path, traced):
    assert attempt(with_config(good, tmp_path / "seed_none.npz", seed=None)).seed is None


@pytest.mark.parametrize("changes", [{"backend": "tpu"}, {"dtype": "float16"},
                                     {"loss": "hinge"}, {"loss": None},
                                     {"optimizer": {"name": "adam", "hyperparameters": {"lr": -1}}},
                                     {"optimizer": {"name": "adam", "hyperparameters": {"mu": 1}}},
                                     {"optimizer": {"name": "lbfgs", "hyperparameters": {}}},
                                     {"optimizer": "adam"}])
def test_bad_description_entries(good, tmp_path, traced, changes):
    refused(with_config(good, tmp_path / "entries.npz", **changes))


def test_config_not_an_object(good, tmp_path, traced):
    refused(variant(good, tmp_path / "list.npz", config=np.array("[1, 2]")))


@pytest.mark.parametrize("version", [0, -1, 1, 3, 99])  # 1: a version-2 file's members
def test_format_version(good, tmp_path, traced, version):
    refused(variant(good, tmp_path / "version.npz", version=np.array(version)), "version")


@pytest.mark.parametrize("version", [np.array(1.0), np.array([1]), np.array(True)],
                         ids=["float", "vector", "bool"])
def test_format_version_kind(good, tmp_path, traced, version):
    refused(variant(good, tmp_path / "version.npz", version=version))


@pytest.mark.parametrize("t", [np.array(-5), np.array(2 ** 63, np.uint64), np.array(1.5)])
def test_optimizer_t(good, tmp_path, traced, t):
    refused(variant(good, tmp_path / "t.npz", optimizer_t=t))


def test_values_finite_in_float64_only(good, tmp_path, traced):
    """1e39 is a finite float64 but inf in the model's float32."""
    with np.load(good) as f:
        params = f["params"].astype(np.float64)
        state = f["optimizer_state"].astype(np.float64)
    params[7] = 1e39
    refused(variant(good, tmp_path / "params.npz", params=params), "infinite in float32")
    state[1, 3] = -1e39
    refused(variant(good, tmp_path / "state.npz", optimizer_state=state), "infinite in float32")


def test_float64_values_that_fit_are_loaded(good, tmp_path, traced):
    with np.load(good) as f:
        params = f["params"].astype(np.float64)
    model = attempt(variant(good, tmp_path / "f64.npz", params=params))
    np.testing.assert_array_equal(np.concatenate([w.ravel() for w in model.get_weights()]),
                                  params.astype(np.float32))


def test_nan_state(good, tmp_path, traced):
    with np.load(good) as f:
        state = f["optimizer_state"].copy()
    state[0, 0] = np.nan
    refused(variant(good, tmp_path / "nan.npz", optimizer_state=state), "NaN")


def test_state_of_the_wrong_shape(good, tmp_path, traced):
    with np.load(good) as f:
        state = f["optimizer_state"]
    refused(variant(good, tmp_path / "rows.npz", optimizer_state=state[:1]), "optimizer_state")
    refused(variant(good, tmp_path / "cols.npz", optimizer_state=state[:, :-1]), "optimizer_state")


def test_fortran_order_state_is_read_as_written(good, tmp_path, traced):
    with np.load(good) as f:
        state = f["optimizer_state"]
    model = attempt(variant(good, tmp_path / "fortran.npz", optimizer_state=np.asfortranarray(state)))
    host = model.optimizer.state_dict()["state"]
    np.testing.assert_array_equal(host["m"], state[0])
    np.testing.assert_array_equal(host["v"], state[1])


# ---- the backend argument ---------------------------------------------------------------

def test_backend_argument_is_blamed_before_the_file_is_read(good, tmp_path):
    with pytest.raises(ValueError) as expected:
        get_backend("tpu")
    for path in (good, tmp_path / "missing.npz"):
        with pytest.raises(ValueError) as raised:
            nn.load(path, backend="tpu")
        assert str(raised.value) == str(expected.value) and "backend" in str(raised.value)
