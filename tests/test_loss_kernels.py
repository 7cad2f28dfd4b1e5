"""Loss kernels of the three backends: mae and huber next to mse, BCE and
cross-entropy, each with and without sample weights.

The reference is checked against torch.nn.functional (reduction="none", then the
weighted mean sum_i w_i l_i / n, and the gradient by autograd) and against
central finite differences; an empty weights array must give exactly the bits of
the unweighted function on every backend, weights of 1 the unweighted values
within rounding; the cpu kernels are checked against the reference from Python
and from inside @njit code on borrowed views, the cuda kernels (in the
simulator, with tiny launch sizes so ragged last blocks and grid-stride loops
run) against the reference.
"""
import numpy as np
import pytest
from numba import njit

from nnumba.backends import codes
from nnumba.backends.cpu import losses as cpu_loss
from nnumba.backends.cpu._views import flat_view, rows_view
from nnumba.backends.reference import losses as ref_loss

try:  # the cuda tests need numba.cuda (the simulator); the others run without it
    from cuda_setup import SMALL, small_launches  # noqa: F401 (autouse fixture)
    from nnumba.backends.cuda import losses as cuda_loss
    from nnumba.backends.cuda import memory as cuda_memory
    HAVE_CUDA = True
except (ImportError, pytest.skip.Exception):
    HAVE_CUDA = False

torch = pytest.importorskip("torch")
F = torch.nn.functional

needs_cuda = pytest.mark.skipif(not HAVE_CUDA, reason="numba.cuda is not available")

DTYPES = [np.float32, np.float64]
LOSSES = {"mse": codes.MSE, "mae": codes.MAE, "huber": codes.HUBER,
          "bce": codes.BINARY_CROSS_ENTROPY, "ce": codes.CROSS_ENTROPY}
ELEMENTWISE = ("mse", "mae", "huber", "bce")
SHAPES = [(1, 1), (1, 10), (7, 3), (32, 10), (33, 7)]


def problem(name, n, k, dtype, seed=0):
    """Outputs, targets, labels and weights for loss ``name``: differences spread over
    both sides of |d| = 1 and never exactly 0; BCE targets both hard and soft; weights
    in [0, 2] with a zero among them."""
    if name == "ce" and k == 1:
        k = 2
    rng = np.random.default_rng(seed + 100 * n + k)
    out = (rng.normal(size=(n, k)) * 2).astype(dtype)
    if name == "bce":
        target = np.where(rng.random((n, k)) < 0.5, rng.integers(0, 2, (n, k)),
                          rng.random((n, k))).astype(dtype)
    else:
        target = rng.normal(size=(n, k)).astype(dtype)
    labels = rng.integers(0, k, n)
    weights = (rng.random(n) * 2).astype(dtype)
    if n > 2:
        weights[1] = 0
    return out, target, labels, weights


def evaluate(kernels, name, out, target, labels, weights=None):
    """(dout, result) from a backend's loss_forward_backward (weights None) or its
    weighted twin."""
    dout, result = np.full_like(out, np.nan), np.full(2, np.nan)
    if weights is None:
        kernels.loss_forward_backward(LOSSES[name], out, target, labels, dout, result)
    else:
        kernels.weighted_loss_forward_backward(LOSSES[name], out, target, labels, weights, dout,
                                               result)
    return dout, result


def torch_loss(name, out, target, labels, weights=None):
    """(loss, gradient) from torch: l_i the mean over sample i's outputs (its -log
    softmax for cross-entropy), then mean_i l_i or sum_i w_i l_i / n, in out's dtype."""
    z = torch.tensor(out, requires_grad=True)
    t = torch.tensor(target)
    if name == "ce":
        per_sample = F.cross_entropy(z, torch.tensor(labels), reduction="none")
    else:
        terms = {"mse": F.mse_loss, "mae": F.l1_loss,
                 "huber": lambda a, b, reduction: F.huber_loss(a, b, reduction=reduction, delta=1.0),
                 "bce": F.binary_cross_entropy_with_logits}[name](z, t, reduction="none")
        per_sample = terms.mean(dim=1)
    if weights is None:
        value = per_sample.mean()
    else:
        value = (torch.tensor(weights) * per_sample).sum() / out.shape[0]
    value.backward()
    return value.item(), z.grad.numpy()


def torch_mean(name, out, target, labels):
    """torch's own reduction="mean" (the unweighted loss must be exactly that)."""
    z, t = torch.tensor(out), torch.tensor(target)
    if name == "ce":
        return F.cross_entropy(z, torch.tensor(labels)).item()
    return {"mse": F.mse_loss, "mae": F.l1_loss, "huber": lambda a, b: F.huber_loss(a, b, delta=1.0),
            "bce": F.binary_cross_entropy_with_logits}[name](z, t).item()


def tol(dtype):
    return dict(rtol=1e-12, atol=1e-15) if dtype == np.float64 else dict(rtol=2e-5, atol=2e-7)


def rel(dtype):
    return 1e-12 if dtype == np.float64 else 2e-6


def same_bits(a, b):
    a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


# ---- the reference against torch --------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("shape", [(1, 1), (7, 3), (33, 7)])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_reference_matches_torch(dtype, name, shape, weighted):
    out, target, labels, weights = problem(name, *shape, dtype)
    w = weights if weighted else None
    dout, result = evaluate(ref_loss, name, out, target, labels, w)
    want, grad = torch_loss(name, out, target, labels, w)
    assert result[0] == pytest.approx(want, rel=rel(dtype), abs=1e-300)
    np.testing.assert_allclose(dout, grad, **tol(dtype))
    assert dout.dtype == dtype
    if not weighted:
        assert result[0] == pytest.approx(torch_mean(name, out, target, labels), rel=rel(dtype))


def test_the_weighted_mean_is_over_the_batch_not_the_weights():
    """Keras' sum over batch size: weights (2, 0) give (2 l_0 + 0 l_1) / 2 = l_0."""
    out = np.array([[3.0], [1.0]])
    target = np.zeros((2, 1))
    for name, l0 in (("mse", 9.0), ("mae", 3.0), ("huber", 2.5)):
        dout, result = evaluate(ref_loss, name, out, target, np.zeros(2, np.int64),
                                np.array([2.0, 0.0]))
        assert result[0] == l0
        dout_u, _ = evaluate(ref_loss, name, out, target, np.zeros(2, np.int64))
        np.testing.assert_array_equal(dout, [[2 * dout_u[0, 0]], [0.0]])


def test_mae_and_huber_at_their_kinks():
    """sign(0) = 0 (torch's subgradient); at |d| = 1 huber's two pieces meet: value 1/2,
    slope sign(d); torch agrees on all of it."""
    out = np.array([[0.0, 1.0, -1.0, 2.5, -0.25, 1.0]])
    target = np.array([[0.0, 0.0, 0.0, 0.5, 0.0, 2.0]])
    labels = np.zeros(1, np.int64)
    for kernels in (ref_loss, cpu_loss):
        dout, result = evaluate(kernels, "mae", out, target, labels)
        assert dout[0, 0] == 0
        np.testing.assert_allclose(dout * 6, [[0, 1, -1, 1, -1, -1]], rtol=1e-15)
        assert result[0] == pytest.approx((0 + 1 + 1 + 2 + 0.25 + 1) / 6, rel=1e-15)
        dout, result = evaluate(kernels, "huber", out, target, labels)
        np.testing.assert_allclose(dout * 6, [[0, 1, -1, 1, -0.25, -1]], rtol=1e-15)
        assert result[0] == pytest.approx((0 + 0.5 + 0.5 + 1.5 + 0.03125 + 0.5) / 6, rel=1e-15)
        assert result[1] == 0
        for name in ("mae", "huber"):
            want, grad = torch_loss(name, out, target, labels)
            np.testing.assert_allclose(evaluate(kernels, name, out, target, labels)[0], grad,
                                       rtol=1e-15)


# ---- central finite differences -----------------------------------------------------------------

def numeric_gradient(kernels, name, out, target, labels, weights, h=1e-6):
    grad = np.empty_like(out)
    for idx in np.ndindex(out.shape):
        values = []
        for step in (h, -h):
            shifted = out.copy()
            shifted[idx] += step
            values.append(evaluate(kernels, name, shifted, target, labels, weights)[1][0])
        grad[idx] = (values[0] - values[1]) / (2 * h)
    return grad


@pytest.mark.parametrize("kernels", [ref_loss, cpu_loss], ids=["numpy", "cpu"])
@pytest.mark.parametrize("name", ["mae", "huber"])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_finite_differences(kernels, name, weighted):
    """Away from the kinks (d = 0 for mae; huber is smooth but for its second derivative
    at |d| = 1): differences on both sides of |d| = 1, of both signs."""
    d = np.array([[0.3, -0.7, 0.99, -0.995], [1.01, -1.2, 3.0, -2.5], [0.05, -0.02, 1.5, -1.003]])
    target = np.random.default_rng(0).normal(size=d.shape)
    out = target + d
    weights = np.array([0.5, 2.0, 1.25]) if weighted else None
    labels = np.zeros(3, np.int64)
    dout, _ = evaluate(kernels, name, out, target, labels, weights)
    numeric = numeric_gradient(kernels, name, out, target, labels, weights)
    np.testing.assert_allclose(dout, numeric, rtol=1e-6, atol=1e-10)


@pytest.mark.parametrize("name", ["mse", "bce", "ce"])
def test_finite_differences_of_the_weighted_losses(name):
    out, target, labels, weights = problem(name, 4, 3, np.float64, seed=5)
    dout, _ = evaluate(ref_loss, name, out, target, labels, weights)
    numeric = numeric_gradient(ref_loss, name, out, target, labels, weights)
    np.testing.assert_allclose(dout, numeric, rtol=1e-6, atol=1e-10)


# ---- weights: empty, ones, the correct count, bad shapes ----------------------------------------

def backends():
    found = [("numpy", ref_loss, np.asarray, np.asarray), ("cpu", cpu_loss, np.asarray, np.asarray)]
    if HAVE_CUDA:
        found.append(("cuda", cuda_loss, lambda a: cuda_memory.to_backend(np.ascontiguousarray(a)),
                      cuda_memory.to_host))
    return found


def run(kernels, to, back, name, out, target, labels, weights=None):
    dout, result = to(np.full_like(out, np.nan)), to(np.full(2, np.nan))
    if weights is None:
        kernels.loss_forward_backward(LOSSES[name], to(out), to(target), to(labels), dout, result)
    else:
        kernels.weighted_loss_forward_backward(LOSSES[name], to(out), to(target), to(labels),
                                               to(weights), dout, result)
    return back(dout), back(result)


@pytest.mark.parametrize("backend", [b[0] for b in backends()])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", LOSSES)
def test_empty_weights_give_the_unweighted_bits(backend, dtype, name):
    _, kernels, to, back = {b[0]: b for b in backends()}[backend]
    for shape in ((13, 10), (1, 1)):
        out, target, labels, _ = problem(name, *shape, dtype)
        plain = run(kernels, to, back, name, out, target, labels)
        empty = run(kernels, to, back, name, out, target, labels, np.zeros(0, dtype))
        assert same_bits(plain[0], empty[0]) and same_bits(plain[1], empty[1]), shape
        assert np.all(np.isfinite(plain[0])) and np.all(np.isfinite(plain[1]))


@pytest.mark.parametrize("backend", [b[0] for b in backends()])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", LOSSES)
def test_weights_of_one_give_the_unweighted_values(backend, dtype, name):
    _, kernels, to, back = {b[0]: b for b in backends()}[backend]
    out, target, labels, _ = problem(name, 13, 10, dtype)
    plain = run(kernels, to, back, name, out, target, labels)
    ones = run(kernels, to, back, name, out, target, labels, np.ones(13, dtype))
    eps = np.finfo(dtype).eps
    np.testing.assert_allclose(ones[0], plain[0], rtol=4 * eps, atol=0)
    assert ones[1][0] == pytest.approx(plain[1][0], rel=1e-14)
    assert ones[1][1] == plain[1][1]


@pytest.mark.parametrize("backend", [b[0] for b in backends()])
@pytest.mark.parametrize("name", ["bce", "ce"])
def test_the_correct_count_is_not_weighted(backend, name):
    _, kernels, to, back = {b[0]: b for b in backends()}[backend]
    out, target, labels, weights = problem(name, 13, 10, np.float64)
    target = np.round(target)
    labels[::2] = np.argmax(out[::2], axis=1)  # some rows right for sure
    weights[:6] = 0
    weights[6:] = 3.5
    plain = run(kernels, to, back, name, out, target, labels)
    weighted = run(kernels, to, back, name, out, target, labels, weights)
    assert plain[1][1] > 0 and weighted[1][1] == plain[1][1]
    np.testing.assert_array_equal(weighted[0][:6], 0)


@pytest.mark.parametrize("backend", [b[0] for b in backends()])
def test_weights_of_the_wrong_length_are_refused(backend):
    _, kernels, to, back = {b[0]: b for b in backends()}[backend]
    out, target, labels, _ = problem("mse", 4, 3, np.float64)
    for bad in (np.ones(3), np.ones(5)):
        with pytest.raises(ValueError, match="weights"):
            run(kernels, to, back, "mse", out, target, labels, bad)


@pytest.mark.parametrize("backend", [b[0] for b in backends()])
@pytest.mark.parametrize("name", ["mae", "huber"])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_nan_outputs_give_a_nan_loss_and_gradient(backend, name, weighted):
    """The training loop stops on a non-finite loss: NaN must not be lost in sign or in
    huber's branch."""
    _, kernels, to, back = {b[0]: b for b in backends()}[backend]
    out, target, labels, weights = problem(name, 5, 4, np.float64)
    out[2, 1] = np.nan
    dout, result = run(kernels, to, back, name, out, target, labels, weights if weighted else None)
    assert np.isnan(result[0]) and np.isnan(dout[2, 1])
    assert np.isfinite(np.delete(dout.ravel(), 2 * 4 + 1)).all()


# ---- cpu against the reference ------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_cpu_matches_reference(dtype, name, shape, weighted):
    out, target, labels, weights = problem(name, *shape, dtype)
    w = weights if weighted else None
    dout, result = evaluate(cpu_loss, name, out, target, labels, w)
    dout_r, result_r = evaluate(ref_loss, name, out, target, labels, w)
    np.testing.assert_allclose(dout, dout_r, **tol(dtype))
    assert result[0] == pytest.approx(result_r[0], rel=rel(dtype), abs=1e-300)
    assert result[1] == result_r[1]
    assert dout.dtype == dtype


@njit
def _loss_on_views(loss, out_buf, target_buf, label_buf, weight_buf, dout_buf, result, start, n, k,
                   n_weights):
    """The weighted loss of rows start .. start + n - 1 of flat buffers, through borrowed
    views (as the fused training loops call it); n_weights 0: an empty weights view."""
    out = rows_view(out_buf, start * k, n, k)
    target = rows_view(target_buf, start * k, n, k)
    labels = flat_view(label_buf, start, n)
    weights = flat_view(weight_buf, start, n_weights)
    dout = rows_view(dout_buf, start * k, n, k)
    cpu_loss.weighted_loss_forward_backward(loss, out, target, labels, weights, dout, result)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", LOSSES)
def test_cpu_weighted_loss_inside_njit_on_borrowed_views(dtype, name):
    out, target, labels, weights = problem(name, 9, 4, dtype, seed=2)
    k, start, n = out.shape[1], 3, 5
    rows = slice(start, start + n)
    for n_weights in (n, 0):
        dout_buf, result = np.full(out.size, np.nan, dtype), np.full(2, np.nan)
        _loss_on_views(LOSSES[name], out.ravel(), target.ravel(), labels, weights, dout_buf, result,
                       start, n, k, n_weights)
        w = weights[rows] if n_weights else np.zeros(0, dtype)
        dout, want = evaluate(cpu_loss, name, out[rows].copy(), target[rows].copy(),
                              labels[rows].copy(), w)
        dout_buf = dout_buf.reshape(out.shape)
        assert same_bits(dout_buf[rows], dout) and same_bits(result, want)
        assert np.isnan(dout_buf[:start]).all() and np.isnan(dout_buf[start + n:]).all()
        np.testing.assert_allclose(
            dout, evaluate(ref_loss, name, out[rows], target[rows], labels[rows], w)[0], **tol(dtype))


# ---- cuda against the reference -----------------------------------------------------------------

@needs_cuda
@pytest.mark.cuda
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("shape", [(13, 10), (1, 1), (25, 3)])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_cuda_matches_reference(dtype, name, shape, weighted):
    """13 rows = 3 * CE_TPB + 1 with 10 > CE_TPB classes; 75 elements > the 3 blocks of 8
    threads of the patched launches: ragged blocks and grid-stride loops."""
    from nnumba.backends.cuda import _config as cfg
    assert cfg.REDUCE_TPB == SMALL["REDUCE_TPB"]  # the small launches are in force
    out, target, labels, weights = problem(name, *shape, dtype, seed=1)
    if name == "ce":
        out[0, 1] = out[0, 0] = out[0].max() + 1  # a tie: the first maximum wins
    w = weights if weighted else None
    to, back = backends()[2][2:]
    dout, result = run(cuda_loss, to, back, name, out, target, labels, w)
    dout_r, result_r = evaluate(ref_loss, name, out, target, labels, w)
    np.testing.assert_allclose(dout, dout_r, **tol(dtype))
    assert result[0] == pytest.approx(result_r[0], rel=rel(dtype), abs=1e-300)
    assert result[1] == result_r[1]


@needs_cuda
@pytest.mark.cuda
@pytest.mark.parametrize("name", LOSSES)
def test_cuda_weighted_loss_into_a_row_of_the_stats_table(name):
    out, target, labels, weights = problem(name, 13, 10, np.float64, seed=4)
    to, back = backends()[2][2:]
    table = to(np.full(7, -1.0))
    dout = to(np.zeros_like(out))
    cuda_loss.weighted_loss_into(LOSSES[name], to(out), to(target), to(labels), to(weights), dout,
                                 table, 3)
    got = back(table)
    _, want = evaluate(ref_loss, name, out, target, labels, weights)
    np.testing.assert_array_equal(got[[0, 1, 2, 5, 6]], -1.0)
    assert got[3] == pytest.approx(want[0], rel=1e-12) and got[4] == want[1]
