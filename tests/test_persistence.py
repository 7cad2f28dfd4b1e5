"""save / load: round trip, exact resume, and refusal of anything else."""
import errno
import json
import os
import pickle
import re
import stat
import subprocess
import sys

import numpy as np
import pytest

import nnumba as nn
from conftest import toy_data
from nnumba import persistence


def trained(backend="cpu", optimizer=None):
    model = nn.Sequential([nn.Dense(5, 8), nn.LeakyReLU(0.05), nn.Dense(8, 3, bias=False)],
                          backend=backend, dtype="float32", seed=4)
    model.compile("cross_entropy", optimizer or nn.optim.Adam(lr=0.01))
    return model


def test_round_trip(tmp_path, host_backend):
    X, y = toy_data("cross_entropy", n=30)
    model = trained(host_backend)
    model.fit(X, y, epochs=2, batch_size=8)
    path = tmp_path / "model.npz"
    model.save(path)
    loaded = nn.load(path)
    assert loaded.backend == host_backend and loaded.dtype == np.float32
    assert [type(l) for l in loaded.layers] == [type(l) for l in model.layers]
    assert loaded.layers[1].alpha == 0.05 and loaded.layers[2].bias is False
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(model.predict(X), loaded.predict(X))
    assert loaded.optimizer.t == model.optimizer.t == 8 and loaded.optimizer.lr == 0.01
    assert loaded.epochs_trained == 2 and loaded.seed == model.seed


@pytest.mark.parametrize("optimizer", [nn.optim.Momentum(lr=0.05), nn.optim.RMSprop(lr=0.01),
                                       nn.optim.Adam(lr=0.01), nn.optim.SGD(lr=0.1)],
                         ids=lambda o: o.name)
def test_exact_resume(tmp_path, optimizer):
    """2 epochs + save + load + 2 epochs == 4 epochs straight, bit for bit."""
    X, y = toy_data("cross_entropy", n=30)
    straight = trained(optimizer=type(optimizer)(**optimizer.hyperparameters()))
    straight.fit(X, y, epochs=4, batch_size=7)
    first = trained(optimizer=optimizer)
    first.fit(X, y, epochs=2, batch_size=7)
    first.save(tmp_path / "half.npz")
    resumed = nn.load(tmp_path / "half.npz")
    resumed.fit(X, y, epochs=2, batch_size=7)
    for a, b in zip(straight.get_weights(), resumed.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert resumed.optimizer.t == straight.optimizer.t


def test_backend_override_and_uncompiled(tmp_path):
    model = nn.Sequential([nn.Dense(3, 2)], backend="numpy", seed=0)
    model.save(tmp_path / "m.npz")
    loaded = nn.load(tmp_path / "m.npz", backend="cpu")
    assert loaded.backend == "cpu" and loaded.loss is None
    np.testing.assert_array_equal(loaded.get_weights()[0], model.get_weights()[0])


def test_save_is_atomic(tmp_path, monkeypatch):
    """A failure while writing leaves the old file intact and no temporary behind."""
    model = trained()
    path = tmp_path / "m.npz"
    model.save(path)
    original = path.read_bytes()

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken)
    with pytest.raises(OSError, match="disk full"):
        model.save(path)
    assert path.read_bytes() == original
    assert os.listdir(tmp_path) == ["m.npz"]


def write_npz(path, **arrays):
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def valid_arrays(tmp_path):
    trained().save(tmp_path / "ok.npz")
    with np.load(tmp_path / "ok.npz") as f:
        return {k: f[k] for k in f.files}


def bad_files(tmp_path):
    ok = valid_arrays(tmp_path)
    good = (tmp_path / "ok.npz").read_bytes()
    (tmp_path / "empty.npz").write_bytes(b"")
    (tmp_path / "truncated.npz").write_bytes(good[: len(good) // 2])
    (tmp_path / "garbage.npz").write_bytes(os.urandom(300))
    (tmp_path / "pickle.npz").write_bytes(pickle.dumps({"params": [1, 2, 3]}))
    np.save(tmp_path / "single.npy", np.arange(3))
    write_npz(tmp_path / "foreign.npz", weights=np.arange(3))
    write_npz(tmp_path / "object.npz", **{**ok, "params": np.array([1, "a", None], dtype=object)})
    write_npz(tmp_path / "wrong_format.npz", **{**ok, "format": np.array("keras")})
    write_npz(tmp_path / "future.npz", **{**ok, "version": np.array(99)})
    write_npz(tmp_path / "short_params.npz", **{**ok, "params": ok["params"][:-1]})
    write_npz(tmp_path / "nan_params.npz", **{**ok, "params": ok["params"] * np.nan})
    config = json.loads(str(ok["config"]))
    config["layers"][0]["in_features"] = -5
    write_npz(tmp_path / "bad_layer.npz", **{**ok, "config": np.array(json.dumps(config))})
    config = json.loads(str(ok["config"]))
    del config["layers"]
    write_npz(tmp_path / "no_layers.npz", **{**ok, "config": np.array(json.dumps(config))})
    write_npz(tmp_path / "bad_json.npz", **{**ok, "config": np.array("{not json")})
    write_npz(tmp_path / "bad_rng.npz", **{**ok, "shuffle_rng": np.array('{"bit_generator": "MT"}')})
    write_npz(tmp_path / "bad_state.npz", **{**ok, "optimizer_state": ok["optimizer_state"][:1]})
    return ["empty.npz", "truncated.npz", "garbage.npz", "pickle.npz", "single.npy", "foreign.npz",
            "object.npz", "wrong_format.npz", "future.npz", "short_params.npz", "nan_params.npz",
            "bad_layer.npz", "no_layers.npz", "bad_json.npz", "bad_rng.npz", "bad_state.npz"]


def test_bad_files_are_refused(tmp_path):
    for name in bad_files(tmp_path):
        with pytest.raises(ValueError):
            nn.load(tmp_path / name)


def test_pickle_is_never_executed(tmp_path):
    class Boom:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    np.save(tmp_path / "evil.npy", np.array([Boom()], dtype=object), allow_pickle=True)
    os.rename(tmp_path / "evil.npy", tmp_path / "evil.npz")
    with pytest.raises(ValueError):
        nn.load(tmp_path / "evil.npz")
    assert not (tmp_path / "pwned").exists()


def test_missing_file():
    with pytest.raises(FileNotFoundError):
        nn.load("/nonexistent/model.npz")


# ---- hardening: what is written, and how it is refused ---------------------------------------

def small(backend="numpy"):
    model = nn.Sequential([nn.Dense(3, 4), nn.ReLU(), nn.Dense(4, 2)], backend=backend, seed=1)
    model.compile("cross_entropy", nn.optim.Momentum(lr=0.1))
    return model


def old_writer(model, path, savez=np.savez):
    """The arrays of a version-1 file, written as the first save_model wrote them."""
    config = {"layers": [layer.config() for layer in model.layers], "backend": model.backend,
              "dtype": model.dtype.name, "seed": model.seed, "epochs_trained": model.epochs_trained,
              "loss": model.loss.name, "optimizer": {"name": model.optimizer.name,
                                                     "hyperparameters": model.optimizer.hyperparameters()}}
    with open(path, "wb") as f:
        savez(f, format=np.array("nnumba.Sequential"), version=np.array(1),
              config=np.array(json.dumps(config)), params=np.array(model._params),
              optimizer_state=np.array(model.optimizer.state),
              optimizer_t=np.array(model.optimizer.t, dtype=np.int64),
              shuffle_rng=np.array(json.dumps(model._shuffle_rng.bit_generator.state)))


@pytest.mark.parametrize("savez", [np.savez, np.savez_compressed], ids=["stored", "deflated"])
def test_version_1_files_still_load(tmp_path, savez):
    X, y = toy_data("cross_entropy", n=12, n_in=3, n_out=2)
    model = small()
    model.fit(X, y, epochs=1, batch_size=4)
    old_writer(model, tmp_path / "v1.npz", savez)
    loaded = nn.load(tmp_path / "v1.npz")
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(loaded.optimizer.state_dict()["state"]["v"],
                                  model.optimizer.state_dict()["state"]["v"])
    assert loaded.optimizer.t == 3 and loaded.optimizer.lr == 0.1
    assert loaded._shuffle_rng.bit_generator.state == model._shuffle_rng.bit_generator.state


def test_load_blames_an_unknown_backend_argument(tmp_path):
    """Not the file: the argument, with get_backend's message, before the file is read."""
    small().save(tmp_path / "m.npz")
    (tmp_path / "garbage.npz").write_bytes(b"garbage")
    for name in ("m.npz", "garbage.npz", "missing.npz"):
        with pytest.raises(ValueError, match="^unknown backend 'tpu': expected one of"):
            nn.load(tmp_path / name, backend="tpu")


def test_bad_files_name_the_path(tmp_path):
    for name in bad_files(tmp_path):
        with pytest.raises(ValueError, match=re.escape(str(tmp_path / name))):
            nn.load(tmp_path / name)


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002], ids=oct)
@pytest.mark.parametrize("proc", [True, False], ids=["proc", "umask-call"])
def test_save_honours_the_umask(tmp_path, monkeypatch, umask, proc):
    if not proc:
        monkeypatch.setattr(persistence, "_PROC_STATUS", str(tmp_path / "no-proc"))
    old = os.umask(umask)
    try:
        small().save(tmp_path / "m.npz")
        assert stat.S_IMODE(os.stat(tmp_path / "m.npz").st_mode) == 0o666 & ~umask
        assert os.umask(umask) == umask  # the umask is left as it was
    finally:
        os.umask(old)


def test_save_into_a_missing_folder_names_the_path(tmp_path):
    path = tmp_path / "missing" / "m.npz"
    with pytest.raises(FileNotFoundError, match=re.escape(str(path))):
        small().save(path)


def test_save_onto_a_folder_names_the_path(tmp_path):
    (tmp_path / "folder.npz").mkdir()
    with pytest.raises(IsADirectoryError, match=re.escape(str(tmp_path / "folder.npz"))):
        small().save(tmp_path / "folder.npz")
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(NotADirectoryError, match=re.escape(str(tmp_path / "file" / "m.npz"))):
        small().save(tmp_path / "file" / "m.npz")


def test_save_errors_name_the_path_not_the_temporary(tmp_path, monkeypatch):
    def full(f, **arrays):
        raise OSError(errno.ENOSPC, "No space left on device", f.name)

    monkeypatch.setattr(np, "savez", full)
    path = tmp_path / "m.npz"
    with pytest.raises(OSError) as raised:
        small().save(path)
    assert raised.value.errno == errno.ENOSPC
    assert str(path) in str(raised.value) and ".tmp" not in str(raised.value)
    assert os.listdir(tmp_path) == []


def test_temporaries_are_named_after_the_writer(tmp_path, monkeypatch):
    seen = []
    replace = os.replace

    def spy(src, dst):
        seen.append(os.path.basename(src))
        replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    small().save(tmp_path / "m.npz")
    assert re.fullmatch(rf"\.m\.npz\.nnumba-{os.getpid()}-\w+\.tmp", seen[0])


def dead_pid():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_save_removes_stale_temporaries_of_dead_writers_only(tmp_path):
    dead = dead_pid()
    stale = tmp_path / f".m.npz.nnumba-{dead}-abc123.tmp"
    live = tmp_path / f".m.npz.nnumba-{os.getppid()}-def456.tmp"
    mine = tmp_path / f".m.npz.nnumba-{os.getpid()}-ghi789.tmp"
    other = tmp_path / f".other.npz.nnumba-{dead}-jkl012.tmp"
    group = tmp_path / ".m.npz.nnumba-0-mno345.tmp"
    for path in (stale, live, mine, other, group):
        path.write_bytes(b"half a model")
    small().save(tmp_path / "m.npz")
    assert not stale.exists()
    assert live.exists() and mine.exists() and other.exists() and group.exists()
    nn.load(tmp_path / "m.npz")


def test_save_syncs_the_folder(tmp_path, monkeypatch):
    synced = []
    fsync = os.fsync

    def spy(fd):
        synced.append(stat.S_ISDIR(os.fstat(fd).st_mode))
        fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    small().save(tmp_path / "m.npz")
    assert synced == [False, True]  # the file, then (after the rename) its folder


def test_save_refuses_what_load_would_refuse(tmp_path):
    model = nn.Sequential([nn.Dense(3, 2)], backend="numpy", seed=10 ** 1200)
    with pytest.raises(ValueError, match=re.escape(str(tmp_path / "m.npz")) + ".*digits"):
        model.save(tmp_path / "m.npz")
    assert os.listdir(tmp_path) == []
    model.seed = 10 ** 900
    model.save(tmp_path / "m.npz")
    assert nn.load(tmp_path / "m.npz").seed == 10 ** 900
