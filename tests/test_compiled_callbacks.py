"""The cpu backend's built-in losses and optimizer steps as C callbacks
(``backends.cpu.rules.builtin_loss`` / ``builtin_step``): the same bits as the kernels they wrap, for every kind,
dtype and weighting; and a model compiles only the kinds it uses."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from nnumba.backends import codes
from nnumba.backends.cpu import losses, optim, rules

LOSSES = {"mse": codes.MSE, "binary_cross_entropy": codes.BINARY_CROSS_ENTROPY,
          "cross_entropy": codes.CROSS_ENTROPY, "mae": codes.MAE, "huber": codes.HUBER}
OPTIMIZERS = {"sgd": codes.SGD, "momentum": codes.MOMENTUM, "rmsprop": codes.RMSPROP,
              "adam": codes.ADAM}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("name", sorted(LOSSES))
def test_a_loss_callback_gives_the_kernels_bits(name, weighted, dtype):
    code, rng = LOSSES[name], np.random.default_rng(3)
    n, k = 7, 4
    out = rng.normal(size=(n, k)).astype(dtype)
    out[2, 1] = 0.0  # a kink of mae and huber
    target = rng.uniform(0.0, 1.0, size=(n, k)).astype(dtype)
    labels = rng.integers(0, k, size=n)
    weights = rng.uniform(0.1, 2.0, size=n).astype(dtype) if weighted else np.zeros(0, dtype)
    expected_d, expected = np.zeros_like(out), np.zeros(2)
    losses.weighted_loss_forward_backward(code, out, target, labels, weights, expected_d, expected)
    got_d, got = np.full_like(out, np.nan), np.full(2, np.nan)
    source = labels if code == codes.CROSS_ENTROPY else target
    rules.builtin_loss(code, weighted, dtype).ctypes(out.ctypes.data, source.ctypes.data,
                                                 weights.ctypes.data, got_d.ctypes.data,
                                                 got.ctypes.data, n, k, int(weighted))
    np.testing.assert_array_equal(got_d, expected_d)
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_a_step_callback_gives_the_kernels_bits(name, dtype):
    code, rng, n = OPTIMIZERS[name], np.random.default_rng(4), 37
    hp = np.zeros(codes.N_HP)
    hp[[codes.HP_LR, codes.HP_BETA1, codes.HP_BETA2, codes.HP_EPS]] = 1e-2, 0.9, 0.999, 1e-8
    w, g = rng.normal(size=n).astype(dtype), rng.normal(size=n).astype(dtype)
    state = np.abs(rng.normal(size=(2, n))).astype(dtype)
    w2, state2 = w.copy(), state.copy()
    for t in (1, 2, 3):
        expected = optim.optimizer_step(code, w, g, state, hp, t)
        got = rules.builtin_step(code, dtype).ctypes(w2.ctypes.data, g.ctypes.data, state2.ctypes.data,
                                                 hp.ctypes.data, n, t)
        assert got == expected == codes.STATUS_OK
        np.testing.assert_array_equal(w2, w)
        np.testing.assert_array_equal(state2, state)


def test_a_step_callback_reports_a_non_finite_update():
    n, hp = 5, np.zeros(codes.N_HP)
    hp[codes.HP_LR] = 1.0
    w, g = np.ones(n), np.ones(n)
    g[3] = np.inf
    status = rules.builtin_step(codes.SGD, np.float64).ctypes(w.ctypes.data, g.ctypes.data,
                                                          np.zeros(0).ctypes.data, hp.ctypes.data,
                                                          n, 1)
    assert status == codes.STATUS_UPDATE


def test_batch_loss_refuses_what_the_callback_cannot_read():
    out, dout, result = np.zeros((3, 2)), np.zeros((3, 2)), np.zeros(2)
    with pytest.raises(ValueError, match=r"dout \(3, 2\).*targets \(4, 2\)"):
        losses.batch_loss(codes.MSE, out, np.zeros((4, 2)), np.zeros(3, np.int64), dout, result)
    with pytest.raises(ValueError, match="dout must be C-contiguous float64"):
        losses.batch_loss(codes.MSE, out, out, np.zeros(3, np.int64), np.zeros((2, 3)).T, result)


# A fresh process fits a model, then reports which kernels of the kinds it does not use
# were compiled (loaded from Numba's cache or not, a kernel is compiled in a process only
# when something calls it there).
_PROBE = r"""
import json, sys
import numpy as np
import nnumba as nn
from nnumba.backends.cpu import batchnorm, losses, optim, pool1d, recurrent, rules
kind = sys.argv[1]
rng = np.random.default_rng(0)
if kind == "cnn":
    X, layers = rng.normal(size=(64, 12, 1)), [nn.Conv1D(1, 4, 3), nn.ReLU(), nn.Flatten(),
                                               nn.Dense(40, 3)]
    model = nn.Sequential(layers, input_shape=(12, 1), seed=0)
else:
    X, model = rng.normal(size=(64, 6)), nn.Sequential([nn.Dense(6, 8), nn.ReLU(), nn.Dense(8, 3)],
                                                       seed=0)
model.compile("cross_entropy", nn.optim.Adam(lr=1e-2))
model.fit(X, rng.integers(0, 3, 64), epochs=1, batch_size=16, verbose=0,
          validation_split=0.25)
kernels = {"batchnorm": batchnorm.batchnorm_forward_train, "maxpool": pool1d.maxpool1d_forward,
           "lstm": recurrent.recurrent_forward, "mse": losses.mse, "loss dispatcher":
           losses.loss_forward_backward, "weighted cross-entropy": losses._weighted_cross_entropy,
           "sgd": optim.sgd_loop, "momentum": optim.momentum_loop, "rmsprop": optim.rmsprop_loop}
print(json.dumps({"compiled": sorted(k for k, d in kernels.items() if d.signatures),
                  "callbacks": sorted(str(k) for k in rules._made)}))
"""


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_a_model_compiles_only_the_kinds_it_uses(kind):
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_DISABLE_JIT"}
    proc = subprocess.run([sys.executable, "-c", _PROBE, kind], capture_output=True, text=True,
                          env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["compiled"] == []
    assert report["callbacks"] == ["('loss', 2, False, 'float32')", "('step', 3, 'float32', 1)"]
