"""A dropped model is freed at once, and its rollback buffers serve the next model."""
import gc
import weakref

import numpy as np
import pytest

import nnumba as nn
from nnumba import _spares

from conftest import assert_replays_to_the_last_good_step, toy_data


def mlp(seed=0, width=16, optimizer=None):
    model = nn.Sequential([nn.Dense(5, width), nn.ReLU(), nn.Dense(width, width), nn.ReLU(),
                           nn.Dense(width, 3)], seed=seed)
    model.compile("cross_entropy", optimizer or nn.optim.Adam(lr=0.01))
    return model


@pytest.fixture
def no_collector(monkeypatch):
    """The cyclic garbage collector off (what is freed is freed by reference counts),
    after the loops are compiled (a first compile leaves frames in exception tracebacks
    that only the collector frees), and an empty spare store."""
    X, y = toy_data("cross_entropy", n=8)
    mlp().fit(X, y, epochs=1, batch_size=4)
    mlp(optimizer=nn.optim.SGD(lr=0.01)).fit(X, y, epochs=1, batch_size=4)
    gc.collect()
    monkeypatch.setattr(_spares, "_spares", [])
    gc.disable()
    yield
    gc.enable()


def test_a_dropped_model_is_freed_without_the_cyclic_collector(no_collector):
    X, y = toy_data("cross_entropy", n=12)
    model = mlp()
    model.fit(X, y, epochs=2, batch_size=4)
    gone = weakref.ref(model)
    del model
    assert gone() is None


def test_the_next_model_of_the_same_shape_reuses_the_snapshot_buffers(no_collector):
    X, y = toy_data("cross_entropy", n=12)
    first = mlp()
    first.fit(X, y, epochs=1, batch_size=4)
    buffers = first._snapshot_buffers.params
    del first
    other_shape = mlp(width=8)
    other_shape.fit(X, y, epochs=1, batch_size=4)
    assert other_shape._snapshot_buffers.params is not buffers
    same_shape = mlp(seed=1)
    same_shape.fit(X, y, epochs=1, batch_size=4)
    assert same_shape._snapshot_buffers.params is buffers
    assert _spares.reuse(("cpu", np.dtype("float32").str, ())) is None


def test_a_rollback_in_reused_buffers_restores_this_models_weights(no_collector):
    """Model B reuses model A's buffers; B's divergence undoes B's epoch, not A's."""
    X, y = toy_data("cross_entropy", n=12)
    first = mlp(seed=3, optimizer=nn.optim.SGD(lr=0.01))
    first.fit(X, y, epochs=1, batch_size=4)
    del first
    model = mlp(seed=4, optimizer=nn.optim.SGD(lr=1e6))
    assert model._snapshot().params is not None and not _spares._spares  # A's, taken over
    with pytest.raises(nn.NonFiniteError):
        model.fit(X * 1e3, y, epochs=20, batch_size=4, shuffle=False)
    assert_replays_to_the_last_good_step(
        model, lambda: mlp(seed=4, optimizer=nn.optim.SGD(lr=1e6)), X * 1e3, y, 4)


def test_the_spare_store_keeps_at_most_its_budget(monkeypatch):
    monkeypatch.setattr(_spares, "_spares", [])
    monkeypatch.setattr(_spares, "SPARE_BYTES", 1000)
    _spares._keep("a", (np.zeros(100),))        # 800 bytes
    _spares._keep("big", (np.zeros(200),))      # 1600 bytes: over the budget, not kept
    _spares._keep("b", (np.zeros(50),))         # 400 bytes: "a" goes
    assert [key for key, _ in _spares._spares] == ["b"]
    assert _spares.reuse("a") is None and _spares.reuse("b") is not None
    assert _spares._spares == []


def test_an_optimizer_is_free_again_once_its_model_is_gone(no_collector):
    optimizer = nn.optim.Adam(lr=0.01)
    model = mlp(optimizer=optimizer)
    with pytest.raises(ValueError, match="already trains another model"):
        mlp(optimizer=optimizer)
    del model
    X, y = toy_data("cross_entropy", n=8)
    mlp(optimizer=optimizer).fit(X, y, epochs=1, batch_size=4)
