"""Gradient norms and clipping, in NumPy.

sum_of_squares:  out[0] = sum g_i^2, accumulated in float64 (the squared L2 norm)
clip_by_norm:    g <- g * min(1, max_norm / (norm + 1e-6))
                 (torch.nn.utils.clip_grad_norm_, with norm the global L2 norm
                 of all gradients before clipping)
clip_by_value:   g <- min(max(g, -limit), limit)   (torch.nn.utils.clip_grad_value_)
"""
import numpy as np


def sum_of_squares(g, out):
    """out[0] = sum of g^2 in float64."""
    g64 = g.astype(np.float64)
    out[0] = np.dot(g64, g64)


def clip_by_norm(g, norm, max_norm):
    """Scale g so that a global norm ``norm`` becomes at most ``max_norm``."""
    coef = max_norm / (norm + 1e-6)
    if coef < 1.0:
        g *= g.dtype.type(coef)


def clip_by_value(g, limit):
    """Clamp every component of g into [-limit, limit]."""
    np.clip(g, -limit, limit, out=g)
