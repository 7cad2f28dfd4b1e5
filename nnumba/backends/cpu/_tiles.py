"""Register-tiled products for the recurrent steps and for the MLP's batches of 8 to 64
rows (``rules.builtin_products``): out (+)= a @ b and out (+)= a @ b^T; and the outer
product of two rows (``outer_product``, a Dense layer's dW at batch 1).

A recurrent layer multiplies by the same W_hh once per time step, on a few dozen
rows: (n, U) @ (U, G U) forward and (n, G U) @ (U, G U)^T backward. BLAS packs
both operands again at every such call, zeroes ``out`` first (beta = 0) and wakes
its threads for a product too small to share; on the LSTM(32, 128) step
((32 x 128) @ (128 x 512), 2.1M multiply-adds) the packing and the zeroing took
a third of its time. These kernels read the operands where they lie, write or
accumulate into ``out`` directly, and keep a tile of the result in registers:

- ``tiled_matmul``, out (+)= a @ b: a tile of ``NN_ROWS`` rows x ``NN_VECTORS``
  registers of ``out`` (16 float32 or 8 float64 lanes each) accumulates, for
  k = 0, 1, ..., K - 1 in that order, a[i, k] b[k, j] with one fused multiply-add
  per element: out[i, j] = fma(a[i, K-1], b[K-1, j], ... fma(a[i, 0], b[0, j], s))
  with s = 0, or out[i, j] when accumulating. ``tiled_matmul_tn_steps`` is the same
  for a^T @ b, summed over blocks of rows that recur every ``stride`` rows (a batch
  block's rows in a time-major cache: the LSTM's weight gradients, all steps in one
  pass with the tile in registers throughout).
- ``tiled_matmul_nt``, out (+)= a @ b^T: a tile of ``NT_ROWS`` x ``NT_COLS``
  elements of ``out``, each a register of partial sums over k = l, l + L, l + 2L,
  ... (L lanes, fused multiply-adds), summed over its lanes by halves (lanes l and
  l + L/2, then l and l + L/4, ...), then the K mod L last terms one fma each,
  then added to out[i, j] when accumulating.

Each element's arithmetic is fixed by its row and column alone. The rows and
columns that do not fill a tile run the same sums in one row of registers, whose
last register is masked to the columns that exist (``llvm.masked.load`` and
``store``: nothing outside ``out`` or the operands is touched); the dot form's
edges run one element at a time. So the bits do not depend on where a row falls,
and a caller may split the rows across threads at any boundary and get the same
result. Written as LLVM vector IR (``@intrinsic``) because Numba cannot say "keep
these 16 registers": a loop that adds into ``out`` in memory stores and reloads it
at every k (the operands might alias it), while these accumulators are
function-local and live in registers.

Measured, float32, one thread: (32 x 128) @ (128 x 512) in 34 us (115 GFLOP/s,
the core's peak: a loop of 16 independent 512-bit fmas reaches 112-115 here, and
OpenBLAS 90-100 on a 2048^3 product); BLAS took 33 us on two threads and 54 us on
one. (16 x 100) @ (100 x 400), whose last 16 columns are one masked register, 99
GFLOP/s, and 15 rows of the first shape 95 (both 4-47 when the edges were one
element at a time). All arrays are 2-D and C-contiguous (borrowed views work);
nothing is checked, the callers own the shapes.
"""
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from ._config import KERNEL

NN_ROWS, NN_VECTORS = 4, 4
NN_PANEL_BYTES = 1 << 16  # the rows of a column block of b that ``tiled_matmul`` reuses from cache
NT_ROWS, NT_COLS = 4, 4


def _lanes(dtype):
    """Elements of dtype in one 512-bit register."""
    return 512 // dtype.bitwidth


def _operands(context, builder, sig, args):
    """(data pointer, columns) of the three arrays, the element type, the int type."""
    arrays = []
    for ty, value in zip(sig.args[:3], args[:3]):
        ary = context.make_array(ty)(context, builder, value)
        arrays.append((ary.data, cgutils.unpack_tuple(builder, ary.shape)[1]))
    return arrays, context.get_value_type(sig.args[0].dtype), ir.IntType(64)


def _fma(builder, vec):
    name = f"llvm.fma.v{vec.count}{'f32' if isinstance(vec.element, ir.FloatType) else 'f64'}"
    return cgutils.get_or_insert_function(builder.module, ir.FunctionType(vec, [vec] * 3), name)


def _load(builder, vec, base, index, align):
    return builder.load(builder.bitcast(builder.gep(base, [index]), vec.as_pointer()), align=align)


def _store(builder, value, base, index, align):
    builder.store(value, builder.bitcast(builder.gep(base, [index]), value.type.as_pointer()),
                  align=align)


def _splat(builder, value, lanes):
    """A register of ``lanes`` copies of the scalar ``value`` (a broadcast)."""
    undef = ir.Constant(ir.VectorType(value.type, lanes), ir.Undefined)
    return builder.shuffle_vector(builder.insert_element(undef, value, ir.IntType(32)(0)), undef,
                                  ir.Constant(ir.VectorType(ir.IntType(32), lanes), [0] * lanes))


def _lane_masks(builder, width, lanes, vectors):
    """The masks of ``vectors`` registers in a row: lane l of register v is set where
    v lanes + l < width (the columns that exist)."""
    splat_w = _splat(builder, width, lanes)
    return [builder.icmp_unsigned("<", ir.Constant(ir.VectorType(width.type, lanes),
                                                   list(range(v * lanes, (v + 1) * lanes))),
                                  splat_w) for v in range(vectors)]


def _is_c_matrix(*arrays):
    return all(isinstance(x, types.Array) and x.ndim == 2 and x.layout == "C"
               and x.dtype in (types.float32, types.float64) for x in arrays) and \
        len({x.dtype for x in arrays}) == 1


def _masked(builder, vec, name):
    """llvm.masked.load / llvm.masked.store for ``vec``: only the lanes whose mask bit is
    set are read or written (the last, partial register of a row)."""
    ptr, mask = vec.as_pointer(), ir.VectorType(ir.IntType(1), vec.count)
    suffix = f"v{vec.count}{'f32' if isinstance(vec.element, ir.FloatType) else 'f64'}.p0"
    if name == "load":
        signature = ir.FunctionType(vec, [ptr, ir.IntType(32), mask, vec])
    else:
        signature = ir.FunctionType(ir.VoidType(), [vec, ptr, ir.IntType(32), mask])
    return cgutils.get_or_insert_function(builder.module, signature, f"llvm.masked.{name}.{suffix}")


def _nn_block(rows, vectors, masked, transposed):
    """out[i0:i0+rows, j0:j0+vectors*L] (+)= a[i0:i0+rows, k0:k0+k_rows] @ b[k0:k0+k_rows,
    j0:j0+vectors*L], L the register's lanes; ``masked``: only the first ``width`` of those
    columns. With ``transposed``, a^T[i0:i0+rows] (a is (K, n)), over the rows
    k = s stride + q of a and b, s < steps, q < k_rows (a sum over several steps' blocks
    of rows; k0 is 0)."""

    def codegen(context, builder, sig, args):
        ((pa, na), (pb, nb), (po, no)), elt, i64 = _operands(context, builder, sig, args)
        i0_, j0_, acc_flag, width = args[3], args[4], args[5], args[6]
        k0, k_rows, stride, steps = (ir.Constant(i64, 0), *args[7:10]) if transposed else \
            (args[7], args[8], ir.Constant(i64, 0), ir.Constant(i64, 1))
        lanes = _lanes(sig.args[0].dtype)
        vec, align = ir.VectorType(elt, lanes), sig.args[0].dtype.bitwidth // 8
        c = lambda v: ir.Constant(i64, v)  # noqa: E731
        zero = ir.Constant(vec, None)
        if masked:  # register v's lanes j0 + v L + l, l < L, exist where v L + l < width
            masks = _lane_masks(builder, width, lanes, vectors)
            masked_load, masked_store = _masked(builder, vec, "load"), _masked(builder, vec, "store")

        def load(base, index, v):
            if not masked:
                return _load(builder, vec, base, index, align)
            ptr = builder.bitcast(builder.gep(base, [index]), vec.as_pointer())
            return builder.call(masked_load, [ptr, ir.IntType(32)(align), masks[v], zero])

        def store(value, base, index, v):
            if not masked:
                return _store(builder, value, base, index, align)
            ptr = builder.bitcast(builder.gep(base, [index]), vec.as_pointer())
            builder.call(masked_store, [value, ptr, ir.IntType(32)(align), masks[v]])

        out_index = [[builder.add(builder.mul(builder.add(i0_, c(r)), no),
                                  builder.add(j0_, c(v * lanes))) for v in range(vectors)]
                     for r in range(rows)]
        accs = [[cgutils.alloca_once_value(builder, zero) for _ in range(vectors)]
                for _ in range(rows)]
        with builder.if_then(builder.icmp_unsigned("!=", acc_flag,
                                                   ir.Constant(acc_flag.type, 0))):
            for r in range(rows):
                for v in range(vectors):
                    builder.store(load(po, out_index[r][v], v), accs[r][v])
        fma = _fma(builder, vec)
        with cgutils.for_range(builder, steps) as step:
            first = builder.add(k0, builder.mul(step.index, stride))
            with cgutils.for_range(builder, k_rows) as loop:
                k = builder.add(first, loop.index)
                b_row = builder.add(builder.mul(k, nb), j0_)
                bv = [load(pb, builder.add(b_row, c(v * lanes)), v) for v in range(vectors)]
                for r in range(rows):
                    if transposed:
                        index = builder.add(builder.mul(k, na), builder.add(i0_, c(r)))
                    else:
                        index = builder.add(builder.mul(builder.add(i0_, c(r)), na), k)
                    x = _splat(builder, builder.load(builder.gep(pa, [index])), lanes)
                    for v in range(vectors):
                        builder.store(builder.call(fma, [x, bv[v], builder.load(accs[r][v])]),
                                      accs[r][v])
        for r in range(rows):
            for v in range(vectors):
                store(builder.load(accs[r][v]), po, out_index[r][v], v)
        return context.get_dummy_value()

    if transposed:
        @intrinsic
        def block(typingctx, a, b, out, i0, j0, accumulate, width, k_rows, stride, steps):
            if _is_c_matrix(a, b, out):
                return types.void(a, b, out, i0, j0, accumulate, width, k_rows, stride,
                                  steps), codegen
    else:
        @intrinsic
        def block(typingctx, a, b, out, i0, j0, accumulate, width, k0, k_rows):
            if _is_c_matrix(a, b, out):
                return types.void(a, b, out, i0, j0, accumulate, width, k0, k_rows), codegen
    return block


def _nt_block(rows, cols):
    """out[i0:i0+rows, j0:j0+cols] (+)= a[i0:i0+rows] @ b[j0:j0+cols]^T."""

    @intrinsic
    def block(typingctx, a, b, out, i0, j0, accumulate):
        if not _is_c_matrix(a, b, out):
            return None

        def codegen(context, builder, sig, args):
            ((pa, ka), (pb, _), (po, no)), elt, i64 = _operands(context, builder, sig, args)
            i0_, j0_, acc_flag = args[3], args[4], args[5]
            lanes = _lanes(sig.args[0].dtype)
            vec, align = ir.VectorType(elt, lanes), sig.args[0].dtype.bitwidth // 8
            c = lambda v: ir.Constant(i64, v)  # noqa: E731
            a_rows = [builder.mul(builder.add(i0_, c(r)), ka) for r in range(rows)]
            b_rows = [builder.mul(builder.add(j0_, c(q)), ka) for q in range(cols)]
            accs = [[cgutils.alloca_once_value(builder, ir.Constant(vec, None))
                     for _ in range(cols)] for _ in range(rows)]
            fma = _fma(builder, vec)
            chunks = builder.udiv(ka, c(lanes))
            with cgutils.for_range(builder, chunks) as loop:
                k = builder.mul(loop.index, c(lanes))
                av = [_load(builder, vec, pa, builder.add(a_rows[r], k), align) for r in range(rows)]
                bv = [_load(builder, vec, pb, builder.add(b_rows[q], k), align) for q in range(cols)]
                for r in range(rows):
                    for q in range(cols):
                        builder.store(builder.call(fma, [av[r], bv[q], builder.load(accs[r][q])]),
                                      accs[r][q])
            sums = []
            for r in range(rows):
                for q in range(cols):
                    v, width = builder.load(accs[r][q]), lanes
                    while width > 1:  # lanes l and l + width/2, by halves
                        width //= 2
                        lo = builder.shuffle_vector(v, v, ir.Constant(
                            ir.VectorType(ir.IntType(32), width), list(range(width))))
                        hi = builder.shuffle_vector(v, v, ir.Constant(
                            ir.VectorType(ir.IntType(32), width), list(range(width, 2 * width))))
                        v = builder.fadd(lo, hi)
                    sums.append(cgutils.alloca_once_value(
                        builder, builder.extract_element(v, ir.IntType(32)(0))))
            scalar_fma = _fma(builder, ir.VectorType(elt, 1))

            def as1(x):
                return builder.insert_element(ir.Constant(ir.VectorType(elt, 1), None), x,
                                              ir.IntType(32)(0))

            with cgutils.for_range(builder, builder.sub(ka, builder.mul(chunks, c(lanes)))) as tail:
                k = builder.add(builder.mul(chunks, c(lanes)), tail.index)
                for r in range(rows):
                    x = as1(builder.load(builder.gep(pa, [builder.add(a_rows[r], k)])))
                    for q in range(cols):
                        y = as1(builder.load(builder.gep(pb, [builder.add(b_rows[q], k)])))
                        s = builder.call(scalar_fma, [x, y, as1(builder.load(sums[r * cols + q]))])
                        builder.store(builder.extract_element(s, ir.IntType(32)(0)),
                                      sums[r * cols + q])
            is_acc = builder.icmp_unsigned("!=", acc_flag, ir.Constant(acc_flag.type, 0))
            for r in range(rows):
                for q in range(cols):
                    ptr = builder.gep(po, [builder.add(builder.mul(builder.add(i0_, c(r)), no),
                                                       builder.add(j0_, c(q)))])
                    s = builder.load(sums[r * cols + q])
                    builder.store(builder.select(is_acc, builder.fadd(builder.load(ptr), s), s), ptr)
            return context.get_dummy_value()

        return types.void(a, b, out, i0, j0, accumulate), codegen

    return block


@intrinsic
def _outer_product(typingctx, a, b, out):
    """out[p, j] = a[0, p] b[0, j]: the product a^T b of one row each, a (1, K), b (1, m),
    out (K, m), one multiply per element (the bits of any other order). Row by row of
    out, each block of L columns is one store of a[0, p] times b's register, the last
    block masked to the columns that exist."""
    if not _is_c_matrix(a, b, out):
        return None

    def codegen(context, builder, sig, args):
        ((pa, _), (pb, m), (po, _)), elt, i64 = _operands(context, builder, sig, args)
        k = cgutils.unpack_tuple(builder, context.make_array(sig.args[2])(
            context, builder, args[2]).shape)[0]
        lanes = _lanes(sig.args[0].dtype)
        vec, align = ir.VectorType(elt, lanes), sig.args[0].dtype.bitwidth // 8
        i32, c = ir.IntType(32), lambda v: ir.Constant(i64, v)
        masked_load, masked_store = _masked(builder, vec, "load"), _masked(builder, vec, "store")
        full = builder.udiv(m, c(lanes))
        tail = builder.mul(full, c(lanes))
        mask, = _lane_masks(builder, builder.sub(m, tail), lanes, 1)
        ptr = builder.bitcast(builder.gep(pb, [tail]), vec.as_pointer())
        b_tail = builder.call(masked_load, [ptr, i32(align), mask, ir.Constant(vec, None)])
        has_tail = builder.icmp_unsigned("<", tail, m)
        with cgutils.for_range(builder, k) as row:
            x = _splat(builder, builder.load(builder.gep(pa, [row.index])), lanes)
            base = builder.mul(row.index, m)
            with cgutils.for_range(builder, full) as block:
                j0 = builder.mul(block.index, c(lanes))
                _store(builder, builder.fmul(x, _load(builder, vec, pb, j0, align)), po,
                       builder.add(base, j0), align)
            with builder.if_then(has_tail):
                ptr = builder.bitcast(builder.gep(po, [builder.add(base, tail)]), vec.as_pointer())
                builder.call(masked_store, [builder.fmul(x, b_tail), ptr, i32(align), mask])
        return context.get_dummy_value()

    return types.void(a, b, out), codegen


@njit(**KERNEL)
def outer_product(a, b, out):
    """out = a^T @ b for a (1, K) and b (1, m): out (K, m) (see ``_outer_product``), the
    weight gradient of a batch of one row. Measured, float32, one thread: the 64-32-10
    network's two, (64 x 1) @ (1 x 32) and (32 x 1) @ (1 x 10), in 164 ns together,
    against 256 ns as loops (whose inner loop over m, shorter than LLVM's vector loop,
    ran in its epilogue) and 360 ns in BLAS."""
    _outer_product(a, b, out)


# per product: whole tiles, and one row of NN_VECTORS registers masked to its first ``width``
# columns for the rest (two kinds of block: each kind adds to the compile of every caller)
_nn_tile, _nn_edge = (_nn_block(NN_ROWS, NN_VECTORS, False, False),
                      _nn_block(1, NN_VECTORS, True, False))
_tn_tile, _tn_edge = (_nn_block(NN_ROWS, NN_VECTORS, False, True),
                      _nn_block(1, NN_VECTORS, True, True))
_nt_tile, _nt_edge = _nt_block(NT_ROWS, NT_COLS), _nt_block(1, 1)


@njit(**KERNEL)
def tiled_matmul(a, b, out, accumulate):
    """out = a @ b, or out += a @ b with ``accumulate``; a (n, K), b (K, m), out (n, m)."""
    tiled_matmul_columns(a, b, out, accumulate, 0, out.shape[1])


@njit(**KERNEL)
def tiled_matmul_columns(a, b, out, accumulate, lo, hi):
    """The columns lo, ..., hi - 1 of ``tiled_matmul`` (lo a multiple of a column block,
    NN_VECTORS registers; hi one too, or m), the bits it gives them, so that threads can
    share out's columns: each then reads only its share of b (``rules.builtin_products``).

    A panel of NN_PANEL_BYTES of a column block of b is read from memory once and stays
    in the core's L1/L2 cache while every tile of rows runs over it; the tiles keep their
    sums in ``out`` between panels, which stores and reloads the registers exactly, so
    the bits are those of one pass over all K (a whole column block of b, 3072 rows, is
    768 KiB: measured, 32 x 3072 @ 3072 x 512 on two threads at 35 GFLOP/s without
    panels, 77 with them)."""
    n = out.shape[0]
    k = a.shape[1]
    lanes = 64 // a.itemsize
    cols = NN_VECTORS * lanes
    panel = NN_PANEL_BYTES // (cols * a.itemsize)
    for j0 in range(lo, hi, cols):
        width = min(cols, hi - j0)  # the last block may be narrower: rows of masked registers
        n_full = n - n % NN_ROWS if width == cols else 0
        for k0 in range(0, max(k, 1), panel):  # K = 0 still writes out (zeros)
            kn, acc = min(panel, k - k0), accumulate or k0 > 0
            for i0 in range(0, n_full, NN_ROWS):
                _nn_tile(a, b, out, i0, j0, acc, lanes, k0, kn)
            for i in range(n_full, n):     # the other rows, one row of the block each
                _nn_edge(a, b, out, i, j0, acc, width, k0, kn)


@njit(**KERNEL)
def tiled_matmul_nt(a, b, out, accumulate):
    """out = a @ b^T, or out += a @ b^T with ``accumulate``; a (n, K), b (m, K), out (n, m)."""
    n, m = out.shape
    n_full, m_full = n - n % NT_ROWS, m - m % NT_COLS
    for j0 in range(0, m_full, NT_COLS):
        for i0 in range(0, n_full, NT_ROWS):
            _nt_tile(a, b, out, i0, j0, accumulate)
        for i in range(n_full, n):
            for j in range(j0, j0 + NT_COLS):
                _nt_edge(a, b, out, i, j, accumulate)
    for i in range(n):
        for j in range(m_full, m):
            _nt_edge(a, b, out, i, j, accumulate)


@njit(**KERNEL)
def tiled_matmul_tn_steps(a, b, out, rows, stride, steps, accumulate):
    """out (+)= sum over s < steps of a[s stride : s stride + rows]^T @ b[s stride : s stride
    + rows]: the blocks of ``rows`` rows that start every ``stride`` rows (one batch block's
    rows in a time-major cache), in order, held in registers throughout; a (>= (steps - 1)
    stride + rows, n), b (the same rows, m), out (n, m); steps = 1, stride 0 is plain a^T
    @ b (K may be 0). The same bits as one accumulating call per step (one fma chain per
    element, k in order)."""
    _tn_rows(a, b, out, rows, stride, steps, accumulate, 0, out.shape[0])


@njit(**KERNEL)
def tiled_matmul_tn_rows(a, b, out, lo, hi):
    """out[lo:hi] = (a^T @ b)[lo:hi]; a (K, n), b (K, m), out (n, m): the rows lo, ...,
    hi - 1 of a^T @ b, the bits ``tiled_matmul_tn_steps`` (one step) gives them, so that
    threads can share out's rows (``rules.builtin_products``)."""
    _tn_rows(a, b, out, a.shape[0], 0, 1, False, lo, hi)


@njit(**KERNEL)
def _tn_rows(a, b, out, rows, stride, steps, accumulate, lo, hi):
    """Rows lo, ..., hi - 1 of ``tiled_matmul_tn_steps``: whole tiles from lo, then the
    rest one row at a time, and the last columns masked."""
    m = out.shape[1]
    lanes = 64 // a.itemsize
    cols = NN_VECTORS * lanes
    full = hi - (hi - lo) % NN_ROWS
    m_full = m - m % cols
    for j0 in range(0, m_full, cols):
        for i0 in range(lo, full, NN_ROWS):
            _tn_tile(a, b, out, i0, j0, accumulate, lanes, rows, stride, steps)
    for i in range(full, hi):
        for j0 in range(0, m_full, cols):
            _tn_edge(a, b, out, i, j0, accumulate, cols, rows, stride, steps)
    if m_full < m:
        for i in range(lo, hi):
            _tn_edge(a, b, out, i, m_full, accumulate, m - m_full, rows, stride, steps)
