"""Gradient norms and clipping as @njit kernels.

Same names and semantics as ``backends.reference.gradients`` (formulas there).
"""
import numpy as np
from numba import njit

from ..codes import HP_DECOUPLED, HP_LR, HP_WEIGHT_DECAY
from ._config import KERNEL, REDUCTION


@njit(**REDUCTION)
def sum_of_squares(g, out):
    """out[0] = sum of g^2 in float64."""
    total = 0.0
    for i in range(g.shape[0]):
        gi = np.float64(g[i])
        total += gi * gi
    out[0] = total


@njit(**KERNEL)
def clip_by_norm(g, norm, max_norm):
    """Scale g so that a global norm ``norm`` becomes at most ``max_norm``."""
    coef = max_norm / (norm + 1e-6)
    if coef < 1.0:
        c = g.dtype.type(coef)
        for i in range(g.shape[0]):
            g[i] *= c


@njit(**KERNEL)
def clip_by_value(g, limit):
    """Clamp every component of g into [-limit, limit]."""
    hi = g.dtype.type(limit)
    lo = -hi
    for i in range(g.shape[0]):
        g[i] = min(max(g[i], lo), hi)


@njit(**KERNEL)
def apply_weight_decay(w, g, hp):
    """Weight decay of one decayed segment (see the reference twin)."""
    if hp[HP_DECOUPLED] != 0:
        factor = w.dtype.type(1.0 - hp[HP_LR] * hp[HP_WEIGHT_DECAY])
        for i in range(w.shape[0]):
            w[i] *= factor
    else:
        lam = w.dtype.type(hp[HP_WEIGHT_DECAY])
        for i in range(w.shape[0]):
            g[i] += lam * w[i]
