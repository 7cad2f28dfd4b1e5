"""The cuda backend's kernels against their NumPy reference twins.

Runs in Numba's CUDA simulator unless a GPU is present (NUMBA_ENABLE_CUDASIM=0).
Launch sizes and tiles are patched small (8 threads per block, 8 x 8 tiles,
3-block grids) and sizes chosen like 3 * tpb + 1, so ragged last blocks, tile
edges, grid-stride loops, split-K and both tile configurations are exercised.
A few tests run only on a real GPU, with the default (full-size) launch sizes.
"""
from cuda_setup import DEFAULTS, SIMULATOR, SMALL, cfg, cuda, small_launches  # noqa: F401 (sets up numba.cuda)

import importlib.util

import numpy as np
import pytest

from nnumba.backends import codes
from nnumba.backends.bundles import Blocks, Data, MLPWorkspace, Step
from nnumba.backends.cuda import (activations, dense, gradients, losses, memory, network,
                                  optim)
from nnumba.backends.reference import activations as ref_act
from nnumba.backends.reference import dense as ref_dense
from nnumba.backends.reference import gradients as ref_grad
from nnumba.backends.reference import losses as ref_loss
from nnumba.backends.reference import network as ref_net
from nnumba.backends.reference import optim as ref_optim
from nnumba.layers import Dense, LeakyReLU, ReLU, Sigmoid, Tanh
from nnumba.plan import Plan

pytestmark = pytest.mark.cuda
DTYPES = [np.float64, np.float32]
ACTS = [codes.IDENTITY, codes.SIGMOID, codes.TANH, codes.RELU, codes.LEAKY_RELU]
TPB = SMALL["TPB"]


def tol(dtype):
    return dict(rtol=1e-12, atol=1e-14) if dtype == np.float64 else dict(rtol=2e-5, atol=2e-6)


def dev(a):
    return memory.to_backend(np.ascontiguousarray(a))


def host(a):
    return memory.to_host(a)


# ---- the simulator itself ------------------------------------------------------------------------

@pytest.mark.skipif(not SIMULATOR, reason="a repair of the simulator, not of the kernels")
def test_simulator_gives_a_block_one_shared_array(monkeypatch):
    """All threads of a block see the same shared array, and two shared.array lines two
    arrays, even when every thread is switched out while the array is being created (the
    race that once made CI's tiled product return garbage; see cuda_setup)."""
    import time

    import cuda_setup

    from numba.cuda.simulator.kernelapi import FakeCUDAShared
    assert getattr(FakeCUDAShared.array, "race_free", False)
    allocate = cuda_setup.new_shared

    def slow(shape, dtype):
        time.sleep(0.002)
        return allocate(shape, dtype)

    monkeypatch.setattr(cuda_setup, "new_shared", slow)

    @cuda.jit
    def reverse(out_a, out_b):
        a = cuda.shared.array(16, np.float64)
        b = cuda.shared.array(16, np.float64)
        t = cuda.threadIdx.x
        a[t] = t
        b[t] = -t
        cuda.syncthreads()
        out_a[t] = a[15 - t]
        out_b[t] = b[15 - t]

    out_a, out_b = np.zeros(16), np.zeros(16)
    reverse[2, 16](out_a, out_b)
    np.testing.assert_array_equal(out_a, np.arange(15.0, -1, -1))
    np.testing.assert_array_equal(out_b, -np.arange(15.0, -1, -1))


# ---- memory --------------------------------------------------------------------------------------

def test_memory_round_trips_and_zero_size():
    a = np.arange(12.0).reshape(3, 4)
    d = memory.to_backend(a)
    np.testing.assert_array_equal(memory.to_host(d), a)
    assert memory.asarray(d) is d
    np.testing.assert_array_equal(memory.to_host(memory.asarray(a)), a)
    memory.copy_from_host(d, a * 2)
    np.testing.assert_array_equal(memory.to_host(d), a * 2)
    np.testing.assert_array_equal(memory.to_host(memory.zeros((2, 3), np.float32)), np.zeros((2, 3)))
    assert memory.empty((5,), np.int64).shape == (5,)
    for shape in [(0,), (0, 4), (3, 0)]:
        z = memory.zeros(shape, np.float64)
        assert memory.to_host(z).shape == shape
        memory.copy_from_host(z, np.zeros(shape))
        assert memory.to_host(memory.asarray(np.zeros(shape, np.int64))).shape == shape
        assert memory.to_host(memory.to_backend(np.zeros(shape))).shape == shape
    with pytest.raises(ValueError, match="shape"):
        memory.copy_from_host(d, np.zeros((4, 3)))


# ---- activations ---------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
def test_activations_match_reference(dtype):
    rng = np.random.default_rng(0)
    z = (rng.normal(size=(5, 5)) * 3).astype(dtype)  # 25 = 3 * TPB + 1 elements
    z[0, :3] = [0, -50, 50]
    for act in ACTS:
        y_ref = np.empty_like(z)
        ref_act.activation_forward(act, 0.1, z, y_ref)
        y = dev(np.zeros_like(z))
        activations.activation_forward(act, 0.1, dev(z), y)
        np.testing.assert_allclose(host(y), y_ref, **tol(dtype))
        inplace = dev(z)
        activations.activation_forward(act, 0.1, inplace, inplace)
        np.testing.assert_allclose(host(inplace), y_ref, **tol(dtype))

        dy = rng.normal(size=z.shape).astype(dtype)
        dy_ref = dy.copy()
        ref_act.activation_backward(act, 0.1, y_ref, dy_ref)
        d = dev(dy)
        activations.activation_backward(act, 0.1, dev(y_ref), d)
        np.testing.assert_allclose(host(d), dy_ref, **tol(dtype))


# ---- dense ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(25, 9, 17), (9, 13, 5), (3, 1, 2)],
                         ids=["large-tile", "small-tile-split-k", "tiny"])
def test_dense_forward_and_backward(shape, dtype):
    n, k, m = shape
    rng = np.random.default_rng(1)
    x = rng.normal(size=(n, k)).astype(dtype)
    w = rng.normal(size=(k, m)).astype(dtype)
    b = rng.normal(size=m).astype(dtype)
    for act, bias in [(codes.TANH, b), (codes.RELU, b[:0]), (codes.SIGMOID, b),
                      (codes.LEAKY_RELU, b), (codes.IDENTITY, b[:0])]:
        y_ref = np.empty((n, m), dtype)
        ref_dense.dense_forward(x, w, bias, act, 0.1, y_ref)
        y = dev(np.zeros((n, m), dtype))
        dense.dense_forward(dev(x), dev(w), dev(bias), act, 0.1, y)
        np.testing.assert_allclose(host(y), y_ref, **tol(dtype))

        dy = rng.normal(size=(n, m)).astype(dtype)
        dy_ref, dw_ref, db_ref = dy.copy(), np.empty((k, m), dtype), np.empty(len(bias), dtype)
        ref_dense.dense_backward(x, y_ref, act, 0.1, dy_ref, dw_ref, db_ref)
        d_dy, d_dw, d_db = dev(dy), dev(np.zeros((k, m), dtype)), dev(np.zeros(len(bias), dtype))
        dense.dense_backward(dev(x), dev(y_ref), act, 0.1, d_dy, d_dw, d_db)
        np.testing.assert_allclose(host(d_dy), dy_ref, **tol(dtype))
        np.testing.assert_allclose(host(d_dw), dw_ref, **tol(dtype))
        np.testing.assert_allclose(host(d_db), db_ref, **tol(dtype))

        dx_ref = np.empty((n, k), dtype)
        ref_dense.dense_backward_input(dy_ref, w, dx_ref)
        dx = dev(np.zeros((n, k), dtype))
        dense.dense_backward_input(dev(dy_ref), dev(w), dx)
        np.testing.assert_allclose(host(dx), dx_ref, **tol(dtype))


def test_product_plans_cover_both_tiles_and_split_k():
    assert dense._plan(25, 17, 9)[0] == SMALL["GEMM_TILE"]
    tile, slices, k_chunk = dense._plan(9, 5, 13)
    assert tile == SMALL["GEMM_TILE_SMALL"] and slices > 1 and k_chunk % tile[2] == 0
    assert dense._plan(3, 2, 1)[1] == 1


@pytest.mark.parametrize("dtype", DTYPES)
def test_matmul_variants_and_column_sums(dtype):
    rng = np.random.default_rng(2)
    a = rng.normal(size=(11, 7)).astype(dtype)
    b = rng.normal(size=(7, 10)).astype(dtype)
    out = dev(np.zeros((11, 10), dtype))
    dense.matmul(dev(a), dev(b), out)
    np.testing.assert_allclose(host(out), a @ b, **tol(dtype))
    out = dev(np.zeros((7, 10), dtype))
    dense.matmul_tn(dev(a), dev(rng.normal(size=(11, 10)).astype(dtype)), out)
    out = dev(np.zeros((11, 10), dtype))
    c = rng.normal(size=(10, 7)).astype(dtype)
    dense.matmul_nt(dev(a), dev(c), out)
    np.testing.assert_allclose(host(out), a @ c.T, **tol(dtype))
    sums = dev(np.zeros(7, dtype))
    dense.column_sums(dev(a), sums)
    np.testing.assert_allclose(host(sums), a.sum(axis=0), **tol(dtype))


# ---- losses --------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("loss", [codes.MSE, codes.BINARY_CROSS_ENTROPY, codes.CROSS_ENTROPY])
def test_losses_match_reference(loss, dtype):
    rng = np.random.default_rng(3)
    n, k = 13, 10  # rows = 3 * CE_TPB + 1; 10 classes > CE_TPB threads per row
    z = (rng.normal(size=(n, k)) * 3).astype(dtype)
    if loss == codes.BINARY_CROSS_ENTROPY:
        z[0, :4] = [1e4, -1e4, 30.0, -30.0]
    if loss == codes.CROSS_ENTROPY:
        z[1, 2] = z[1, 7] = z[1].max() + 1  # a tie: the first maximum wins
    target = (rng.random((n, k)) > 0.5).astype(dtype) if loss != codes.MSE else \
        rng.normal(size=(n, k)).astype(dtype)
    labels = rng.integers(0, k, n)
    labels[1] = 2
    dz_ref, res_ref = np.empty_like(z), np.zeros(2)
    ref_loss.loss_forward_backward(loss, z, target, labels, dz_ref, res_ref)
    dz, res = dev(np.zeros_like(z)), dev(np.zeros(2))
    losses.loss_forward_backward(loss, dev(z), dev(target), dev(labels), dz, res)
    got = host(res)
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got[0], res_ref[0], rtol=1e-12 if dtype == np.float64 else 1e-6)
    assert got[1] == res_ref[1]
    np.testing.assert_allclose(host(dz), dz_ref, **tol(dtype))


def test_cross_entropy_nan_logits_give_nan_loss():
    z = np.zeros((3, 4))
    z[1, 2] = np.nan
    res = dev(np.zeros(2))
    losses.cross_entropy(dev(z), dev(np.array([0, 1, 2])), dev(np.zeros_like(z)), res)
    assert np.isnan(host(res)[0])


# ---- optimizers and gradients ------------------------------------------------------------------

HP = {codes.SGD: (0.1, 0.0, 0.0, 0.0, 0.0), codes.MOMENTUM: (0.1, 0.9, 0.0, 0.0, 0.0),
      codes.RMSPROP: (0.01, 0.9, 0.0, 1e-8, 1.0), codes.ADAM: (0.01, 0.9, 0.999, 1e-8, 0.0)}


def _hp(opt):
    """The hyperparameter vector of HP[opt] (no weight decay)."""
    hp = np.zeros(codes.N_HP)
    hp[:5] = HP[opt]
    return hp


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("opt,inside", [(codes.SGD, 1), (codes.MOMENTUM, 1), (codes.RMSPROP, 1),
                                        (codes.RMSPROP, 0), (codes.ADAM, 1)])
def test_optimizer_steps_match_reference(opt, inside, dtype):
    rng = np.random.default_rng(4)
    n = 3 * TPB + 1
    hp = np.zeros(codes.N_HP)
    hp[:5] = HP[opt]
    hp[codes.HP_EPS_INSIDE] = inside
    slots = {codes.SGD: 0, codes.MOMENTUM: 1, codes.RMSPROP: 1, codes.ADAM: 2}[opt]
    w_ref = rng.normal(size=n).astype(dtype)
    s_ref = np.zeros((slots, n), dtype)
    w, s = dev(w_ref), dev(s_ref)
    for t in (1, 2, 3):
        g = rng.normal(size=n).astype(dtype)
        ref_optim.optimizer_step(opt, w_ref, g, s_ref, hp, t)
        optim.optimizer_step(opt, w, dev(g), s, hp, t)
        np.testing.assert_allclose(host(w), w_ref, **tol(dtype))
        np.testing.assert_allclose(host(s), s_ref, **tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("opt", [codes.MOMENTUM, codes.RMSPROP, codes.ADAM])
@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")  # the simulator's inf / inf
def test_moving_averages_flush_subnormals(opt, dtype):
    """Entries that decay below the smallest normal number become 0, as in the reference;
    normal ones, 0, NaN and inf are kept."""
    tiny = np.finfo(dtype).tiny
    row = np.array([1.05 * tiny, -1.05 * tiny, 100 * tiny, 0, np.nan, np.inf, 0.5], dtype)
    hp = np.zeros(codes.N_HP)
    hp[:5] = 0.01, 0.9, 0.9, 1e-8, 1.0
    slots = 2 if opt == codes.ADAM else 1
    w_ref, g = np.linspace(-1, 1, row.size).astype(dtype), np.zeros(row.size, dtype)
    s_ref = np.stack([row] * slots)
    w, s = dev(w_ref), dev(s_ref)
    ref_optim.optimizer_step(opt, w_ref, g, s_ref, hp, 3)
    optim.optimizer_step(opt, w, dev(g), s, hp, 3)
    np.testing.assert_array_equal(s_ref[:, [0, 1, 3]], 0)
    np.testing.assert_array_equal(host(s), s_ref)
    np.testing.assert_array_equal(host(w), w_ref)


@pytest.mark.parametrize("dtype", DTYPES)
def test_sum_of_squares_and_clipping(dtype):
    rng = np.random.default_rng(5)
    g = rng.normal(size=3 * 8 * 3 + 1).astype(dtype)  # more than REDUCE_BLOCKS blocks' worth
    out = dev(np.zeros(1))
    gradients.sum_of_squares(dev(g), out)
    expected = np.zeros(1)
    ref_grad.sum_of_squares(g, expected)
    np.testing.assert_allclose(host(out), expected, rtol=1e-13)
    gradients.sum_of_squares(dev(g[:0]), out)
    assert host(out)[0] == 0.0
    for max_norm in (1.0, 100.0):  # scales, does not
        d, r = dev(g), g.copy()
        norm = float(np.sqrt(expected[0]))
        gradients.clip_by_norm(d, norm, max_norm)
        ref_grad.clip_by_norm(r, norm, max_norm)
        np.testing.assert_allclose(host(d), r, **tol(dtype))
    d, r = dev(g), g.copy()
    gradients.clip_by_value(d, 0.5)
    ref_grad.clip_by_value(r, 0.5)
    np.testing.assert_array_equal(host(d), r)


# ---- network ---------------------------------------------------------------------------------------

def _plan():
    # a leading activation, a Dense without bias, an activation block after a fused one
    return Plan([ReLU(), Dense(6, 8), Tanh(), Dense(8, 5, bias=False), Sigmoid(), LeakyReLU(0.2),
                 Dense(5, 4)])


def _problem(dtype, n=25, rows=None, seed=6):
    plan = _plan()
    rng = np.random.default_rng(seed)
    rows = rows or n
    return dict(plan=plan, params=(rng.normal(size=plan.n_params) * 0.5).astype(dtype),
                X=rng.normal(size=(n, 6)).astype(dtype), T=rng.normal(size=(n, 4)).astype(dtype),
                labels=rng.integers(0, 4, n), rows=rows)


@pytest.mark.parametrize("dtype", DTYPES)
def test_network_forward_backward_and_norms(dtype):
    p = _problem(dtype)
    plan, n = p["plan"], 25
    blocks, alphas = plan.blocks, plan.alphas
    acts_r, deltas_r = np.zeros(n * plan.mlp_width, dtype), np.zeros(n * plan.mlp_width, dtype)
    grads_r, res_r = np.zeros(plan.n_params, dtype), np.zeros(2)
    ref_net.loss_and_gradients(blocks, alphas, p["params"], grads_r, codes.CROSS_ENTROPY, p["X"],
                               p["T"][:0], p["labels"], acts_r, deltas_r, res_r)
    acts, deltas = dev(np.zeros_like(acts_r)), dev(np.zeros_like(deltas_r))
    grads, res = dev(np.zeros_like(grads_r)), dev(np.zeros(2))
    network.loss_and_gradients(blocks, alphas, dev(p["params"]), grads, codes.CROSS_ENTROPY,
                               dev(p["X"]), dev(p["T"][:0]), dev(p["labels"]), acts, deltas, res)
    np.testing.assert_allclose(host(acts), acts_r, **tol(dtype))
    np.testing.assert_allclose(host(grads), grads_r, **tol(dtype))
    np.testing.assert_allclose(host(res), res_r, rtol=1e-6 if dtype == np.float32 else 1e-12)

    stats_r, stats = np.zeros(3), dev(np.zeros(3))
    norm_r = ref_net.gradient_norms(blocks, grads_r, stats_r, np.zeros(1))
    scratch = np.zeros(1)
    norm = network.gradient_norms(blocks, grads, stats, scratch)
    np.testing.assert_allclose(norm, norm_r, rtol=1e-6 if dtype == np.float32 else 1e-12)
    np.testing.assert_allclose(host(stats), stats_r, rtol=1e-6 if dtype == np.float32 else 1e-12)
    np.testing.assert_allclose(scratch[0], norm_r ** 2, rtol=1e-5)

    rows = network.workspace_rows(blocks, acts)
    view = network.block_view(blocks, 1, acts, rows, 3)
    np.testing.assert_array_equal(host(view), ref_net.block_view(blocks, 1, host(acts), rows, 3))
    assert host(network.bias_view(blocks, 3, grads)).shape == (0,)
    np.testing.assert_array_equal(host(network.weight_view(blocks, 1, grads)),
                                  ref_net.weight_view(blocks, 1, host(grads)))


def test_gather_rows():
    rng = np.random.default_rng(7)
    src, index = rng.normal(size=(30, 3)), rng.permutation(30)[:25]
    dst = dev(np.zeros((25, 3)))
    network.gather_rows(dev(src), dev(index), dst)
    np.testing.assert_array_equal(host(dst), src[index])
    labels = rng.integers(0, 5, 30)
    dst = dev(np.zeros(25, np.int64))
    network.gather_rows(dev(labels), dev(index), dst)
    np.testing.assert_array_equal(host(dst), labels[index])


def _train(backend_net, to, p, loss, opt, order, n_rows, batch, first, n_iter, clip=(np.inf, np.inf),
           t=0, state=None, params=None):
    plan, dtype = p["plan"], p["params"].dtype
    slots = {codes.SGD: 0, codes.MOMENTUM: 1, codes.RMSPROP: 1, codes.ADAM: 2}[opt]
    params = to(p["params"].copy() if params is None else params)
    state = to(np.zeros((slots, plan.n_params), dtype) if state is None else state)
    T = p["T"] if loss != codes.CROSS_ENTROPY else p["T"][:0]
    labels = p["labels"] if loss == codes.CROSS_ENTROPY else p["labels"][:0]
    rows = batch
    ws = [to(np.zeros((rows, plan.n_in), dtype)), to(np.zeros((rows, plan.n_out), dtype)),
          to(np.zeros(rows, np.int64)), to(np.zeros(rows * plan.mlp_width, dtype)),
          to(np.zeros(rows * plan.mlp_width, dtype)), to(np.zeros(rows, dtype))]
    stats = to(np.zeros((n_iter, codes.STAT_NORMS + 3)))
    grads = to(np.zeros(plan.n_params, dtype))
    done = backend_net.train_batches(
        Blocks(plan.blocks, plan.alphas), params, grads, loss,
        Data(to(p["X"]), to(T), to(labels), to(order), to(np.zeros(0, dtype))), n_rows, batch,
        first, n_iter,
        Step(opt, state, _hp(opt), t, clip[0], clip[1], 0, np.zeros(0), None), MLPWorkspace(*ws),
        stats)
    back = (lambda a: a) if to is np.array else host
    return done, back(params), back(state), back(stats)


CASES = [  # (loss, optimizer, clip_norm, clip_value, dtype)
    (codes.CROSS_ENTROPY, codes.ADAM, np.inf, np.inf, np.float64),
    (codes.MSE, codes.MOMENTUM, 0.5, np.inf, np.float64),
    (codes.BINARY_CROSS_ENTROPY, codes.RMSPROP, np.inf, 0.05, np.float32),
    (codes.CROSS_ENTROPY, codes.SGD, 0.3, 0.02, np.float32),
]


@pytest.mark.parametrize("path", ["never", "always"], ids=["per-layer", "single-block"])
@pytest.mark.parametrize("loss,opt,clip_norm,clip_value,dtype", CASES)
def test_train_batches_matches_reference(path, loss, opt, clip_norm, clip_value, dtype, monkeypatch):
    monkeypatch.setattr(cfg, "FUSED_PATH", path)
    p = _problem(dtype, n=21)
    order = np.random.default_rng(8).permutation(21)
    # iterations 1 and 2 of an epoch of batches of 8 (the last one ragged: 5 rows)
    args = (p, loss, opt, order, 21, 8, 1, 2, (clip_norm, clip_value), 3)
    done_r, params_r, state_r, stats_r = _train(ref_net, np.array, *args)
    done, params, state, stats = _train(network, dev, *args)
    assert done == done_r == 2
    np.testing.assert_allclose(params, params_r, **tol(dtype))
    np.testing.assert_allclose(state, state_r, **tol(dtype))
    np.testing.assert_allclose(stats, stats_r, rtol=1e-5 if dtype == np.float32 else 1e-11)
    again = _train(network, dev, *args)  # deterministic: the same bits
    np.testing.assert_array_equal(again[1], params)
    np.testing.assert_array_equal(again[3], stats)


@pytest.mark.parametrize("path", ["never", "always"], ids=["per-layer", "single-block"])
def test_train_batches_stops_at_non_finite(path, monkeypatch):
    monkeypatch.setattr(cfg, "FUSED_PATH", path)
    p = _problem(np.float64, n=24)
    p["X"][9, 2] = np.nan  # row 9 is in the second batch of 6
    order = np.arange(24)
    state0 = np.full((2, p["plan"].n_params), 0.01)
    args = (p, codes.CROSS_ENTROPY, codes.ADAM, order, 24, 6, 0, 4, (1.0, np.inf), 5, state0)
    done_r, params_r, state_r, stats_r = _train(ref_net, np.array, *args)
    done, params, state, stats = _train(network, dev, *args)
    assert done == done_r == 1
    # only iteration 0 updated: iterations 2 and 3 ran on finite batches but changed nothing
    np.testing.assert_allclose(params, params_r, rtol=1e-12)
    np.testing.assert_allclose(state, state_r, rtol=1e-12)
    np.testing.assert_allclose(stats[0], stats_r[0], rtol=1e-11)
    assert not np.isfinite(stats[1, codes.STAT_LOSS])


def test_single_block_threshold(monkeypatch):
    monkeypatch.setattr(cfg, "FUSED_PATH", "auto")
    small = Plan([Dense(40, 100), ReLU(), Dense(100, 100), ReLU(), Dense(100, 10)])
    assert network.use_single_block(small.blocks, small.n_params, 32)
    big = Plan([Dense(3072, 512), ReLU(), Dense(512, 256), ReLU(), Dense(256, 10)])
    assert not network.use_single_block(big.blocks, big.n_params, 256)


# ---- availability ----------------------------------------------------------------------------------

def test_check_available_without_gpu(monkeypatch):
    import nnumba.backends.cuda as package

    monkeypatch.setattr(cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="no CUDA device was found") as info:
        package.check_available()
    assert "NUMBA_ENABLE_CUDASIM" in str(info.value)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "numba_cuda" else real(name, *a))
    with pytest.raises(RuntimeError, match=r"pip install nnumba\[cuda\]"):
        package.check_available()


# ---- full-size launches: real GPU only --------------------------------------------------------------

@pytest.mark.skipif(SIMULATOR, reason="default launch sizes are too slow for the simulator")
@pytest.mark.parametrize("dtype", DTYPES)
def test_default_launch_sizes_on_gpu(dtype, monkeypatch):
    for name, value in DEFAULTS.items():
        monkeypatch.setattr(cfg, name, value)
    rng = np.random.default_rng(9)
    for n, k, m in [(300, 200, 150), (64, 3000, 32), (1030, 130, 260)]:
        x, w, b = (rng.normal(size=s).astype(dtype) for s in [(n, k), (k, m), (m,)])
        for act in ACTS:
            y_ref = np.empty((n, m), dtype)
            ref_dense.dense_forward(x, w, b, act, 0.1, y_ref)
            y = dev(np.zeros((n, m), dtype))
            dense.dense_forward(dev(x), dev(w), dev(b), act, 0.1, y)
            np.testing.assert_allclose(host(y), y_ref, rtol=1e-4 if dtype == np.float32 else 1e-11,
                                       atol=1e-4 if dtype == np.float32 else 1e-11)
        dx = dev(np.zeros((n, k), dtype))
        dense.dense_backward_input(dev(y_ref), dev(w), dx)
        np.testing.assert_allclose(host(dx), y_ref @ w.T, rtol=1e-4, atol=1e-3)
        dw = dev(np.zeros((k, m), dtype))
        dense.dense_backward(dev(x), dev(y_ref), codes.IDENTITY, 0.0, dev(y_ref), dw,
                             dev(np.zeros(m, dtype)))
        np.testing.assert_allclose(host(dw), x.T @ y_ref, rtol=1e-4, atol=1e-3)
