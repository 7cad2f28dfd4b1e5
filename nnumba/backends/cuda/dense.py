"""A Dense layer fused with its activation, as CUDA kernels.

Same names and semantics as ``backends.reference.dense`` (formulas there):

    forward:   y = f(x @ w + b)
    backward:  dz = dy * f'(z) (over dy);  dw = x^T dz;  db = column sums of dz
               dx = dz @ w^T

All three products run through one tiled shared-memory kernel (``gemm_kernel``,
C = op(A) @ op(B), each operand read straight or transposed from its
row-major array): a block computes a BM x BN tile of C, stepping through K in
slices of BK that the block stages in shared memory (A transposed, so that the
inner loop reads rows of both tiles), and each thread accumulates TM x TN
outputs in registers: rows ty + i BM/TM and columns tx + j BN/TN, an
interleaving under which a warp's shared-memory reads are conflict-free
(broadcast for A, consecutive for B) and its stores to C coalesce. While a
slice is multiplied, the next one is already loaded from global memory into
registers. The forward pass adds the bias and applies the activation in the
kernel's epilogue, before C is stored.

Products that would leave the GPU mostly idle (few tiles, long K) are split
along K into slices computed by separate blocks into a scratch buffer, which
``splitk_reduce_kernel`` sums in slice order (then the epilogue): no atomics,
so the result is the same bits every run. The backward pass's dz = dy * f'(z)
is fused into the column-sum kernel that also produces db (a fixed-order
reduction down each column), which writes dz over dy for the two products.
"""
import functools

import numpy as np
from numba import cuda, float64

from ..codes import IDENTITY, LEAKY_RELU, RELU, SIGMOID, TANH
from . import _config as cfg
from .activations import apply, derivative
from .memory import scratch


@functools.lru_cache(maxsize=None)
def _gemm_kernel(bm, bn, bk, tm, tn, a_trans, b_trans, pad, act, blocks_per_sm):
    if bm % tm or bn % tn:
        raise ValueError(f"tile {bm}x{bn} is not a multiple of the thread tile {tm}x{tn}")
    rx, ry = bn // tn, bm // tm
    nt = rx * ry
    a_loads = -(-(bm * bk) // nt)
    b_loads = -(-(bk * bn) // nt)
    a_width, b_width = bm + pad, bn + pad  # shapes of shared arrays must be plain constants

    @cuda.jit(**cfg.kernel(launch_bounds=(nt, blocks_per_sm)))
    def gemm_kernel(a, b, c, m_size, n_size, k_size, k_chunk, bias, has_bias, alpha):
        """c[s M:(s + 1) M] = op(a)[:, K_s] @ op(b)[K_s, :] for the K slice s = blockIdx.z of
        length k_chunk (c: (n_slices M, N)); with an epilogue (act >= 0), f(that + bias)."""
        dt = c.dtype
        a_tile = cuda.shared.array((bk, a_width), dt)
        b_tile = cuda.shared.array((bk, b_width), dt)
        a_next = cuda.local.array(a_loads, dt)
        b_next = cuda.local.array(b_loads, dt)
        ra = cuda.local.array(tm, dt)
        rb = cuda.local.array(tn, dt)
        acc = cuda.local.array((tm, tn), dt)
        zero = dt.type(0)
        tid = cuda.threadIdx.x
        tx = tid % rx
        ty = tid // rx
        m0 = cuda.blockIdx.y * bm
        n0 = cuda.blockIdx.x * bn
        s = cuda.blockIdx.z
        c0 = s * m_size  # this slice's rows of c
        kb = s * k_chunk
        ke = min(k_size, kb + k_chunk)
        for i in range(tm):
            for j in range(tn):
                acc[i, j] = zero

        # Step k0 stores the slice at k0 (loaded into registers by the step before) into
        # the shared tiles, loads the slice at k0 + BK into registers, and multiplies the
        # tiles; the extra first step only loads. Indices are made unsigned where an
        # array is read or written: numba then emits no negative-index wrap-around code.
        for k0 in range(kb - bk, ke, bk):
            if k0 >= kb:
                for l in range(a_loads):
                    e = tid + l * nt
                    if e < bm * bk:
                        if a_trans:
                            a_tile[np.uint64(e // bm), np.uint64(e % bm)] = a_next[l]
                        else:
                            a_tile[np.uint64(e % bk), np.uint64(e // bk)] = a_next[l]
                for l in range(b_loads):
                    e = tid + l * nt
                    if e < bk * bn:
                        if b_trans:
                            b_tile[np.uint64(e % bk), np.uint64(e // bk)] = b_next[l]
                        else:
                            b_tile[np.uint64(e // bn), np.uint64(e % bn)] = b_next[l]
                cuda.syncthreads()
            k1 = k0 + bk
            for l in range(a_loads):
                e = tid + l * nt
                if a_trans:  # a is (K, M): a warp reads along M
                    mm = e % bm
                    kk = e // bm
                    ok = e < bm * bk and m0 + mm < m_size and k1 + kk < ke
                    a_next[l] = a[np.uint64(k1 + kk), np.uint64(m0 + mm)] if ok else zero
                else:  # a is (M, K): a warp reads along K
                    kk = e % bk
                    mm = e // bk
                    ok = e < bm * bk and m0 + mm < m_size and k1 + kk < ke
                    a_next[l] = a[np.uint64(m0 + mm), np.uint64(k1 + kk)] if ok else zero
            for l in range(b_loads):
                e = tid + l * nt
                if b_trans:  # b is (N, K)
                    kk = e % bk
                    nn = e // bk
                    ok = e < bk * bn and n0 + nn < n_size and k1 + kk < ke
                    b_next[l] = b[np.uint64(n0 + nn), np.uint64(k1 + kk)] if ok else zero
                else:  # b is (K, N)
                    nn = e % bn
                    kk = e // bn
                    ok = e < bk * bn and n0 + nn < n_size and k1 + kk < ke
                    b_next[l] = b[np.uint64(k1 + kk), np.uint64(n0 + nn)] if ok else zero
            if k0 >= kb:
                for kk in range(bk):
                    uk = np.uint64(kk)
                    for i in range(tm):
                        ra[i] = a_tile[uk, np.uint64(ty + i * ry)]
                    for j in range(tn):
                        rb[j] = b_tile[uk, np.uint64(tx + j * rx)]
                    for i in range(tm):
                        for j in range(tn):
                            acc[i, j] += ra[i] * rb[j]
                cuda.syncthreads()

        one = dt.type(1)
        for i in range(tm):
            m = m0 + ty + i * ry
            for j in range(tn):
                n = n0 + tx + j * rx
                if m < m_size and n < n_size:
                    v = acc[i, j]
                    if act >= 0 and has_bias:
                        v += bias[n]
                    if act == RELU or act == LEAKY_RELU:
                        v = apply(act, v, alpha, one)
                    c[c0 + m, n] = v
        if act == SIGMOID or act == TANH:
            # a second pass over this thread's own outputs: with the long sigmoid and tanh
            # code inside the loop above, the compiler would stop unrolling it and move
            # acc from registers to local memory
            for i in range(tm):
                m = m0 + ty + i * ry
                for j in range(tn):
                    n = n0 + tx + j * rx
                    if m < m_size and n < n_size:
                        c[c0 + m, n] = apply(act, c[c0 + m, n], alpha, one)

    return gemm_kernel, nt


@cuda.jit(**cfg.kernel())
def splitk_reduce_kernel(parts, c, epilogue, bias, has_bias, act, alpha):
    """c[m, n] = sum over s (in order) of parts[s M + m, n]; with ``epilogue``, f(that + bias[n])."""
    m_size, n_size = c.shape
    n_slices = parts.shape[0] // m_size
    one = c.dtype.type(1)
    for e in range(cuda.grid(1), m_size * n_size, cuda.gridsize(1)):
        m = e // n_size
        n = e - m * n_size
        v = parts[m, n]
        for s in range(1, n_slices):
            v += parts[s * m_size + m, n]
        if epilogue:
            if has_bias:
                v += bias[n]
            v = apply(act, v, alpha, one)
        c[m, n] = v


def _plan(m_size, n_size, k_size):
    """(tile, n_slices, k_chunk) for a product of this shape."""
    tile = cfg.GEMM_TILE
    blocks = -(-m_size // tile[0]) * -(-n_size // tile[1])
    if blocks < cfg.GEMM_MIN_BLOCKS:
        tile = cfg.GEMM_TILE_SMALL
        blocks = -(-m_size // tile[0]) * -(-n_size // tile[1])
    bk = tile[2]
    slices = 1
    if blocks < cfg.GEMM_MIN_BLOCKS and k_size >= 2 * cfg.SPLIT_K_MIN_K:
        slices = min(-(-cfg.GEMM_MIN_BLOCKS // blocks), k_size // cfg.SPLIT_K_MIN_K, cfg.SPLIT_K_MAX)
    k_chunk = -(-k_size // slices)
    k_chunk = max(bk, -(-k_chunk // bk) * bk)   # whole BK slices: only the last one is ragged
    slices = max(1, -(-k_size // k_chunk))
    return tile, slices, k_chunk


def gemm(a, b, c, a_trans=False, b_trans=False, bias=None, act=IDENTITY, alpha=0.0):
    """c = op(a) @ op(b), op the transpose where asked; with ``bias`` (possibly empty),
    c = f(op(a) @ op(b) + bias) for the activation ``act``. All 2-D device arrays."""
    m_size, n_size = c.shape
    k_size = a.shape[0] if a_trans else a.shape[1]
    if c.size == 0:
        return
    epilogue = bias is not None
    has_bias = epilogue and bias.shape[0] > 0
    if not has_bias:
        bias = scratch("no_bias", 1, c.dtype)   # never read; keeps empty arrays out of kernels
    act, alpha = int(act), c.dtype.type(alpha)
    tile, slices, k_chunk = _plan(m_size, n_size, k_size)
    bm, bn, bk, tm, tn = tile
    grid = (-(-n_size // bn), -(-m_size // bm), slices)
    pad = cfg.GEMM_PAD if cfg.GEMM_PAD is not None else max(1, 32 // bk)
    fused = act if epilogue and slices == 1 else -1   # the epilogue, in the product kernel
    kernel, nt = _gemm_kernel(bm, bn, bk, tm, tn, bool(a_trans), bool(b_trans), pad, fused,
                              cfg.GEMM_BLOCKS_PER_SM)
    if slices == 1:
        kernel[grid, nt](a, b, c, m_size, n_size, k_size, k_chunk, bias, has_bias, alpha)
        return
    parts = scratch("splitk", (slices * m_size, n_size), c.dtype)
    kernel[grid, nt](a, b, parts, m_size, n_size, k_size, k_chunk, bias, has_bias, alpha)
    splitk_reduce_kernel[cfg.grid(c.size), cfg.TPB](parts, c, epilogue, bias, has_bias, act, alpha)


def matmul(a, b, out):
    """out = a @ b; a: (n, k), b: (k, m), out: (n, m)."""
    gemm(a, b, out)


def matmul_tn(a, b, out):
    """out = a^T @ b; a: (n, k), b: (n, m), out: (k, m)."""
    gemm(a, b, out, a_trans=True)


def matmul_nt(a, b, out):
    """out = a @ b^T; a: (n, m), b: (k, m), out: (n, k)."""
    gemm(a, b, out, b_trans=True)


@functools.lru_cache(maxsize=None)
def _column_sums_kernel(tx_n, ty_n):
    @cuda.jit(**cfg.kernel(launch_bounds=tx_n * ty_n))
    def column_sums_kernel(act, alpha, y, dy, db, scale, has_bias):
        """Per column c: dy[:, c] *= f'(y[:, c]) (with ``scale``), and db[c] = sum of the
        result (with ``has_bias``): thread (tx, ty) adds rows ty, ty + TY, ... of its
        column in float64, then a fixed tree over ty."""
        buf = cuda.shared.array((ty_n, tx_n), float64)
        tx = cuda.threadIdx.x
        ty = cuda.threadIdx.y
        n, m = dy.shape
        one = dy.dtype.type(1)
        for c0 in range(cuda.blockIdx.x * tx_n, m, cuda.gridDim.x * tx_n):
            c = c0 + tx
            acc = 0.0
            if c < m:
                for r in range(ty, n, ty_n):
                    v = dy[r, c]
                    if scale:
                        v *= derivative(act, y[r, c], alpha, one)
                        dy[r, c] = v
                    acc += float(v)
            buf[ty, tx] = acc
            cuda.syncthreads()
            s = ty_n // 2
            while s > 0:
                if ty < s:
                    buf[ty, tx] += buf[ty + s, tx]
                cuda.syncthreads()
                s //= 2
            if ty == 0 and c < m and has_bias:
                db[c] = buf[0, tx]
            cuda.syncthreads()

    return column_sums_kernel


def _scale_and_sum(act, alpha, y, dy, db):
    n, m = dy.shape
    scale = act != IDENTITY
    has_bias = db.shape[0] > 0
    if n * m == 0 or not (scale or has_bias):
        if has_bias and n == 0:
            db.copy_to_device(np.zeros(m, db.dtype))
        return
    if not has_bias:
        db = scratch("no_bias", 1, dy.dtype)   # never written; keeps empty arrays out of kernels
    tx_n, ty_n = cfg.COLSUM_TX, cfg.COLSUM_TY
    grid = max(1, min(cfg.MAX_BLOCKS, -(-m // tx_n)))
    _column_sums_kernel(tx_n, ty_n)[grid, (tx_n, ty_n)](int(act), dy.dtype.type(alpha), y, dy, db,
                                                         scale, has_bias)


def column_sums(a, out):
    """out[j] = sum_i a[i, j], in a fixed order (deterministic)."""
    _scale_and_sum(IDENTITY, 0.0, a, a, out)


def dense_forward(x, w, b, act, alpha, y):
    """y = f(x @ w + b): one tiled product with the bias and activation in its epilogue."""
    gemm(x, w, y, bias=b, act=act, alpha=alpha)


def dense_backward(x, y, act, alpha, dy, dw, db):
    """dy <- dz = dy * f'(z); dw = x^T dz; db = column sums of dz."""
    _scale_and_sum(act, alpha, y, dy, db)
    gemm(x, dy, dw, a_trans=True)


def dense_backward_input(dz, w, dx):
    """dx = dz @ w^T: the gradient passed on to the previous block."""
    gemm(dz, w, dx, b_trans=True)
