"""A Dense layer fused with its activation, as @njit kernels.

Same names and semantics as ``backends.reference.dense`` (formulas there). The
forward pass is one matrix product and one pass that adds the bias and applies
the activation; the backward pass scales dy by f'(z) in place, then two
products.
"""
from numba import njit

from ._config import INLINE, KERNEL, REDUCTION
from ._matmul import _tiles_pay, matmul, matmul_nt, matmul_tn
from .activations import activation_backward, bias_activation_forward
from .rules import PRODUCT_NN, PRODUCT_NT, PRODUCT_TN, call_products_at

# ``products`` (the cpu kernels' own trailing argument): the address of the parallel
# register-tiled products (``rules.builtin_products``), which then compute the products
# that ``_matmul.tiles_pay`` gives them; 0 (the default): BLAS and loops only.


@njit(**INLINE)
def _tiled(products, kind, a, b, out, rows, n_in, n_out):
    """out = the product ``kind`` of a and b, through the callback at ``products``, when
    it pays for a layer of n_in inputs and n_out outputs on ``rows`` rows; False (nothing
    done) when the caller is to compute it."""
    if products == 0 or not _tiles_pay(rows, n_in, n_out):
        return False
    call_products_at(products, (a.ctypes.data, b.ctypes.data, out.ctypes.data, kind,
                                out.shape[0], a.shape[0] if kind == PRODUCT_TN else a.shape[1],
                                out.shape[1]))
    return True


@njit(**KERNEL)
def dense_forward(x, w, b, act, alpha, y, products=0):
    """y = f(x @ w + b)."""
    if not _tiled(products, PRODUCT_NN, x, w, y, x.shape[0], w.shape[0], w.shape[1]):
        matmul(x, w, y)
    bias_activation_forward(act, alpha, b, y)


@njit(**KERNEL)
def dense_backward(x, y, act, alpha, dy, dw, db, products=0):
    """dy <- dz = dy * f'(z); dw = x^T dz; db = column sums of dz."""
    activation_backward(act, alpha, y, dy)
    if not _tiled(products, PRODUCT_TN, x, dy, dw, x.shape[0], dw.shape[0], dw.shape[1]):
        matmul_tn(x, dy, dw)
    if db.shape[0]:
        column_sums(dy, db)


@njit(**REDUCTION)
def column_sums(a, out):
    """out[j] = sum_i a[i, j], rows added in order (deterministic)."""
    out[:] = 0
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            out[j] += a[i, j]


@njit(**KERNEL)
def dense_backward_input(dz, w, dx, products=0):
    """dx = dz @ w^T: the gradient passed on to the previous block."""
    if not _tiled(products, PRODUCT_NT, dz, w, dx, dz.shape[0], w.shape[0], w.shape[1]):
        matmul_nt(dz, w, dx)
