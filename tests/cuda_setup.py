"""Set-up shared by the cuda test modules: import numba.cuda (in the simulator unless
NUMBA_ENABLE_CUDASIM=0 on a GPU machine), skip when it is unavailable, and patch
every launch size small so partial blocks, tile edges and grid-stride loops run."""
import os

os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")

import sys  # noqa: E402

import pytest  # noqa: E402

cuda = pytest.importorskip("numba.cuda")
if not cuda.is_available():
    pytest.skip("no CUDA GPU, and numba.cuda was imported without the simulator",
                allow_module_level=True)

from nnumba.backends.cuda import _config as cfg  # noqa: E402

SIMULATOR = cfg.SIMULATOR
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
