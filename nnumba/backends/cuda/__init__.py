"""The cuda backend: the reference kernels as numba.cuda kernels with host wrappers.

Same modules, function names and argument order as ``backends.reference``;
arrays are numba device arrays and every wrapper does its own transfers.
``network.train_batches`` runs a whole chunk of iterations on the device (in
one launch for small networks). Flags and launch sizes live in ``_config``.

Importing this package needs neither numba-cuda nor a GPU: ``check_available``
(called by ``backends.get_backend`` before the kernel modules are imported)
says clearly what is missing. Without a GPU, setting NUMBA_ENABLE_CUDASIM=1
before numba is imported runs every kernel in Numba's CUDA simulator (slow,
for tests).
"""
import importlib.util
import os

import numpy as np


def check_available():
    """Raise RuntimeError unless numba-cuda is installed and a CUDA GPU (or the simulator) is there."""
    if importlib.util.find_spec("numba_cuda") is None:
        raise RuntimeError("the cuda backend needs numba-cuda, which is not installed: "
                           "pip install nnumba[cuda]  (or pip install numba-cuda)")
    try:
        from numba import cuda
    except ImportError as exc:  # e.g. the CUDA Python bindings are missing
        raise RuntimeError(f"the cuda backend cannot import numba.cuda ({exc}); "
                           "pip install nnumba[cuda]") from exc
    if not hasattr(np, "row_stack"):
        # numba-cuda 0.30 registers an overload of np.row_stack, an alias of np.vstack
        # that NumPy 2.5 removed, when it compiles its first kernel (seen on an H100
        # machine with NumPy 2.5.2)
        np.row_stack = np.vstack
    if not cuda.is_available():
        late = ""
        if os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0"):
            late = " (NUMBA_ENABLE_CUDASIM is set now, but numba.cuda was imported before it was.)"
        raise RuntimeError("backend='cuda': no CUDA device was found (numba.cuda.is_available() is "
                           "False). Use backend='cpu', or set NUMBA_ENABLE_CUDASIM=1 before numba is "
                           "imported to run the kernels in Numba's CUDA simulator (slow; for tests)."
                           + late)
