"""The Numba flags of every cpu kernel, chosen here and nowhere else.

- ``error_model="numpy"``: the default ("python") error model checks every
  division for zero, which blocks vectorisation (it made the Adam step 7x
  slower in the prototypes); with "numpy" a division by zero gives inf/nan as
  in NumPy, which the training loop then detects.
- ``cache=True``: a second process loads the machine code from __pycache__
  instead of compiling again (seconds saved per process).
- ``fastmath`` is used only to let LLVM reorder the additions of a reduction so
  that it vectorises (``reassoc``), and never with the flags that assume no NaN
  or inf (``nnan``, ``ninf``): NaN detection must keep working.
- ``parallel=True`` only on the large elementwise passes, and only above
  PARALLEL_MIN_SIZE elements. Below it the optimizer's arrays fit in the last
  level cache and one core streams them fast; and a parallel region waits for
  its slowest thread, which on a busy 2-core machine (or next to BLAS threads
  still spinning after a product) can be descheduled for a whole time slice:
  measured, the Adam step on 1.7M parameters took 1.4 ms serial and 8 ms in
  parallel on a loaded machine.
"""
KERNEL = dict(cache=True, nogil=True, error_model="numpy")
INLINE = dict(KERNEL, inline="always")
REDUCTION = dict(KERNEL, fastmath={"reassoc", "nsz"})
PARALLEL = dict(KERNEL, parallel=True)

# Elementwise passes over at least this many elements run on all cores.
PARALLEL_MIN_SIZE = 1 << 22
# Matrix products of one row and at most SMALL_MATMUL_FLOPS multiply-adds, and any
# of at most TINY_MATMUL_FLOPS, run as plain loops (``_matmul.loops_pay``): there
# the call into BLAS costs more than the product itself. Measured, one thread,
# loops against BLAS: (1 x 64) @ (64 x 32) 105 against 120 ns; (2 x 64) @ (64 x 32)
# 247 against 145 ns; (32 x 32) @ (32 x 10) 2.2 against 0.38 us.
SMALL_MATMUL_FLOPS = 1 << 15
TINY_MATMUL_FLOPS = 1 << 10
# A batch of at most OUTER_PRODUCT_MAX_ROWS rows, in a network of at least
# OUTER_PRODUCT_MIN_PARAMS parameters, never writes its weight gradients x^T dz:
# the optimizer forms them a row at a time as it updates W (one pass over W's
# memory instead of three), which at batch size 1 keeps a large network's weights
# and Adam state in the last level cache (3072-512-256-10: 1.9x faster per
# iteration). Small networks live in cache anyway and pay only the per-row calls.
OUTER_PRODUCT_MAX_ROWS = 4
OUTER_PRODUCT_MIN_PARAMS = 1 << 16
# Such an on-the-fly step of a W of at least OUTER_PARALLEL_MIN_SIZE elements runs on
# all cores (``network.outer_step_address``), when BLAS runs on one thread in that
# loop: the other core is idle then, and one core alone does not reach the memory
# bandwidth the step needs.
OUTER_PARALLEL_MIN_SIZE = 1 << 18
# A training loop whose largest product has fewer multiply-adds than this runs
# with one BLAS thread: waking BLAS's threads costs more than sharing a small
# product saves, and on a busy machine much more (measured: the forward pass of
# a 3072-512-256-10 network on one sample, 1.6M multiply-adds, took 0.09 ms on
# one thread and 10 ms on two while another process kept a core busy). Above it
# both threads pay on an idle machine (measured on 2 cores: 32x3072 @ 3072x512,
# 50M multiply-adds, 1.3 ms on one thread, 0.8 ms on two; 2x3072 @ 3072x512,
# 3.1M, 0.33 ms and 0.23 ms).
BLAS_THREADED_MIN_FLOPS = 1 << 21
# The MLP loop's products of batches of TILED_MIN_ROWS to TILED_MAX_ROWS rows with at
# least BLAS_THREADED_MIN_FLOPS multiply-adds run on Numba's threads as register-tiled
# products (``network.products_address``), and BLAS's smaller ones on one thread:
# measured, 32 x 3072 @ 3072 x 512 on two threads in 593 us, against OpenBLAS's 905-945
# (it packs all of W at every call, which a few rows do not amortise). At 256 rows
# OpenBLAS runs near the machine's peak, and below 8 rows BLAS on one thread (or the
# on-the-fly step) wins.
TILED_MIN_ROWS = 8
TILED_MAX_ROWS = 64
# ... and only for layers of at least TILED_MIN_WIDTH inputs and outputs (``tiles_pay``)
TILED_MIN_WIDTH = 64
# In such a loop the optimizer step runs on Numba's threads too, in parts of at least
# PARALLEL_STEP_MIN_PART elements (``rules.builtin_step``): their threads are awake
# there, while BLAS's sleep.
PARALLEL_STEP_MIN_PART = 1 << 16
