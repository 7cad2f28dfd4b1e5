"""Set-up shared by the cuda test modules: import numba.cuda (in the simulator unless
NUMBA_ENABLE_CUDASIM=0 on a GPU machine), skip when it is unavailable, make the
simulator's shared arrays race-free, and patch every launch size small so partial
blocks, tile edges and grid-stride loops run."""
import os
import threading

os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")

import sys  # noqa: E402

import pytest  # noqa: E402

cuda = pytest.importorskip("numba.cuda")
if not cuda.is_available():
    pytest.skip("no CUDA GPU, and numba.cuda was imported without the simulator",
                allow_module_level=True)

from nnumba.backends.cuda import _config as cfg  # noqa: E402

SIMULATOR = cfg.SIMULATOR


def new_shared(shape, dtype):
    """The simulator's allocation of a shared array (a separate name, so a test can slow it)."""
    import numpy as np
    from numba.core import types
    from numba.np import numpy_support

    if isinstance(dtype, types.Type):
        dtype = numpy_support.as_dtype(dtype)
    return np.empty(shape, dtype)


def _race_free_shared_arrays():
    """Make the simulator's ``cuda.shared.array`` hand every thread of a block the same array.

    numba-cuda's simulator (0.30) runs each CUDA thread as a Python thread, and
    ``FakeCUDAShared.array`` creates a block's array in the first thread to ask for it:
    it looks the call site up in a dict, allocates on a miss and then stores, with no
    lock. When the interpreter switches threads between the lookup and the store (the
    tests switch every 0.1 ms), two threads of one block get two different arrays, each
    reads what the other never wrote, and the kernel's results are garbage, at random:
    one CI run in many failed this way in a tiled product. Here the lookup and the store
    happen under one lock; the key stays what the simulator uses (the caller's file and
    line), so distinct ``shared.array`` lines still get distinct arrays.
    """
    from numba.cuda.simulator.kernelapi import FakeCUDAShared

    original = FakeCUDAShared.array
    if getattr(original, "race_free", False):
        return
    lock = threading.Lock()

    def array(self, shape, dtype, alignment=None):
        if shape == 0 or alignment is not None:   # dynamic shared memory, errors: unchanged
            return original(self, shape, dtype, alignment)
        caller = sys._getframe(1)
        key = (caller.f_code.co_filename, caller.f_lineno)
        with lock:
            found = self._allocations.get(key)
            if found is None:
                found = self._allocations[key] = new_shared(shape, dtype)
        return found

    array.race_free = True
    FakeCUDAShared.array = array


if SIMULATOR:
    _race_free_shared_arrays()

SMALL = dict(TPB=8, MAX_BLOCKS=3, REDUCE_TPB=8, REDUCE_BLOCKS=3, COLSUM_TX=4, COLSUM_TY=4,
             CE_TPB=4, GEMM_TILE=(8, 8, 4, 2, 2), GEMM_TILE_SMALL=(4, 8, 2, 2, 4),
             GEMM_MIN_BLOCKS=4, SPLIT_K_MIN_K=4, SPLIT_K_MAX=3, FUSED_TPB=16, FUSED_ROWS=2)
DEFAULTS = {name: getattr(cfg, name) for name in SMALL}


@pytest.fixture(autouse=True, scope="module")
def small_launches():
    patch = pytest.MonkeyPatch()
    for name, value in SMALL.items():
        patch.setattr(cfg, name, value)
    # the simulator runs each CUDA thread as a Python thread: switch between them often
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-4)
    yield
    sys.setswitchinterval(interval)
    patch.undo()
