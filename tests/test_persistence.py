"""save / load: round trip, exact resume, and refusal of anything else."""
import json
import os
import pickle

import numpy as np
import pytest

import nnumba as nn
from conftest import toy_data


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
