"""Gradient norms and clipping, in NumPy.

sum_of_squares:  out[0] = sum g_i^2, accumulated in float64 (the squared L2 norm)
clip_by_norm:    g <- g * min(1, max_norm / (norm + 1e-6))
                 (torch.nn.utils.clip_grad_norm_, with norm the global L2 norm
                 of all gradients before clipping)
clip_by_value:   g <- min(max(g, -limit), limit)   (torch.nn.utils.clip_grad_value_)
apply_weight_decay: with lambda = hp[HP_WEIGHT_DECAY], after clipping:
                 g <- g + lambda w                  (coupled: torch's weight_decay), or
                 w <- (1 - lr lambda) w             (decoupled, hp[HP_DECOUPLED]: AdamW)
                 on the weights of a layer (its decayed segment); lambda, and 1 - lr lambda
                 (computed in float64), are rounded to w's dtype first.
"""
import numpy as np

from ..codes import HP_DECOUPLED, HP_LR, HP_WEIGHT_DECAY


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


def apply_weight_decay(w, g, hp):
    """Weight decay of one decayed segment w (its gradient g), as the docstring says."""
    if hp[HP_DECOUPLED] != 0:
        w *= w.dtype.type(1.0 - hp[HP_LR] * hp[HP_WEIGHT_DECAY])
    else:
        g += w.dtype.type(hp[HP_WEIGHT_DECAY]) * w
