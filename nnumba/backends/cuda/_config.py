"""Decorator flags and launch sizes of every cuda kernel, chosen here and nowhere else.

Kernels whose shared or local arrays are sized by a launch parameter (tiles,
threads of a reduction, the single-block training loop) are built by small
factories keyed on those sizes, so a test can monkeypatch any value below to
something tiny (a few threads, 4x4 tiles) and get freshly compiled kernels.

Flags
-----
- ``cache=True``: a second process loads the compiled kernel from __pycache__
  instead of compiling it again (ignored by the simulator). Numba checks only the
  source file of the kernel itself: after editing a module whose device functions
  other modules' kernels call (activations, gradients, optim), delete __pycache__.
- no ``fastmath``: NaN and inf must survive (the training loop stops on them),
  and IEEE division and square root keep float64 results within rounding of
  the reference.
- ``launch_bounds`` on kernels that need a fixed number of threads per block,
  so the compiler never uses more registers than that launch allows.
"""
import warnings

from numba import cuda

# The simulator's cuda.jit accepts fewer keywords than the real one.
SIMULATOR = cuda.jit.__module__.startswith("numba.cuda.simulator")

# Small grids are deliberate here (the single-block training loop, the second level of
# each reduction); numba-cuda would warn about them at every launch.
warnings.filterwarnings("ignore", message=r"Grid size \d+ will likely result in GPU under-utilization")
_SIMULATOR_FLAGS = ("device", "cache", "fastmath", "opt", "debug", "inline")


def kernel(**extra):
    """The cuda.jit flags of a kernel, plus ``extra`` (e.g. launch_bounds=256)."""
    flags = dict(cache=True, **extra)
    if SIMULATOR:
        flags = {k: v for k, v in flags.items() if k in _SIMULATOR_FLAGS}
    return flags


DEVICE = dict(device=True)

# ---- elementwise and reduction kernels (grid-stride loops) ---------------------------------
TPB = 256            # threads per block of the elementwise kernels
MAX_BLOCKS = 1024    # grid cap: every kernel loops over what the grid does not cover
REDUCE_TPB = 256     # threads of a reduction block (a power of two: fixed-shape tree)
REDUCE_BLOCKS = 128  # first-level partial sums of a two-level reduction
COLSUM_TX = 32       # column sums: columns per block (one warp reads a row segment) ...
COLSUM_TY = 8        # ... and row-threads per column (a power of two), summed by a tree
CE_TPB = 32          # softmax cross-entropy: threads per row (a power of two)

# ---- matrix products: tiles of C = A @ B computed by one block ---------------------------
# (BM, BN, BK, TM, TN): a BM x BN tile of C, stepping through K by BK, each thread
# computing TM x TN outputs, so a block has (BM / TM) * (BN / TN) threads.
GEMM_TILE = (128, 128, 16, 8, 8)
# Used instead when GEMM_TILE gives fewer than GEMM_MIN_BLOCKS blocks (small products
# would leave most of the GPU idle).
GEMM_TILE_SMALL = (64, 64, 16, 4, 4)
GEMM_MIN_BLOCKS = 264     # two blocks per SM of an H100 (132 SMs)
# Padding of the rows of the shared tiles: None picks 32 / BK, which makes the
# transposing stores into them free of bank conflicts.
GEMM_PAD = None
# launch_bounds' minimum resident blocks per SM: 2 caps registers at 128 for 256 threads
# (the 128 x 128 tile then spills a few bytes but may hide latency better); 1 leaves
# the register count to the compiler (about 150 for that tile).
GEMM_BLOCKS_PER_SM = 1
# Split-K: when a product still has fewer than GEMM_MIN_BLOCKS blocks, its K range is cut
# into slices of at least SPLIT_K_MIN_K, computed by separate blocks into a scratch
# buffer and summed in slice order by a second kernel (deterministic, no atomics).
SPLIT_K_MIN_K = 512
SPLIT_K_MAX = 16

# ---- the single-block training loop (network.train_batches, small networks) ---------------
# A kernel launch from Python costs about 10-30 us, and a training iteration of the
# per-layer path launches about 3 kernels per Dense layer plus 5, so for small networks
# (a few thousand to a few hundred thousand multiply-adds per iteration) the launches,
# not the arithmetic, set the speed. There one block of FUSED_TPB threads runs a whole
# chunk of iterations in one launch. One block uses one SM, so the path is taken only
# while an iteration's work is small:
#   batch rows x widest layer <= FUSED_MAX_ROWS_X_WIDTH  (elementwise phases: <= 64 per thread)
#   total parameters          <= FUSED_MAX_PARAMS
#   batch rows x parameters    <= FUSED_MAX_WORK (about 6x that in flops per iteration:
#                                 ~25 MFLOP, ~0.2 ms on one SM, the cost of ~15 launches)
# e.g. 40-100-100-10 with batch 32: 3,200 / 15,310 / 0.49 M -> single block.
FUSED_PATH = "auto"       # "auto" (the thresholds), "always" or "never" (tests, benchmarks)
FUSED_TPB = 512           # threads of the single block (a power of two)
FUSED_ROWS = 4            # batch rows per thread in its matrix products (register blocking)
FUSED_MAX_ROWS_X_WIDTH = 1 << 15
FUSED_MAX_PARAMS = 1 << 17
FUSED_MAX_WORK = 1 << 22


def grid(n, tpb=None):
    """Blocks for a grid-stride loop over n items: enough to cover n, at most MAX_BLOCKS."""
    tpb = TPB if tpb is None else tpb
    return max(1, min(MAX_BLOCKS, -(-n // tpb)))
