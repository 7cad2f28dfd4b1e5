"""Batch normalisation over the channel axis (torch.nn.BatchNorm1d), in NumPy.

Layout: x, y, xhat, dy, dx are (rows, C) row-major; gamma, beta, inv_std,
running_mean, running_var, dgamma, dbeta are (C,). Dense data (n, C) has
rows = n. A sequence (n, L, C) is channels-last, so its memory already is
(n * L, C): rows = n * L, and the statistics are taken over batch and steps
together, as BatchNorm1d does for an (n, C, L) input.

Training (rows >= 2; the caller checks), per channel c, with every sum
accumulated in float64 in increasing row order (two passes):

    mean_c    = (sum_r x[r, c]) / rows
    var_c     = (sum_r (x[r, c] - mean_c)^2) / rows               (biased)
    inv_std_c = 1 / sqrt(var_c + eps)                             (float64, then cast)
    xhat      = (x - mean_c) * inv_std_c                          (mean cast to x's dtype)
    y         = gamma_c * xhat + beta_c
    running_mean_c = (1 - momentum) running_mean_c + momentum mean_c
    running_var_c  = (1 - momentum) running_var_c  + momentum var_c rows / (rows - 1)

(the running statistics computed in float64, then cast; the running variance
uses the unbiased variance, as torch does). xhat and inv_std are kept for the
backward pass.

Evaluation, with the running statistics:

    s_c = 1 / sqrt(running_var_c + eps)      (float64, then cast)
    y   = gamma_c * ((x - running_mean_c) * s_c) + beta_c

Backward, given dy = dL/dy (float64 sums in increasing row order):

    dbeta_c  = sum_r dy[r, c]
    dgamma_c = sum_r dy[r, c] xhat[r, c]
    dx       = inv_std_c / rows * (rows g - sum_r g - xhat sum_r g xhat),  g = dy gamma_c

where, gamma_c being constant over the rows, sum_r g = gamma_c dbeta_c and
sum_r g xhat = gamma_c dgamma_c, so the kernels evaluate (in x's dtype, n = rows)

    dx = (inv_std_c / n) * ((n * g - gamma_c * dbeta_c) - xhat * (gamma_c * dgamma_c)).

Outputs never overlap inputs, except that dx may be dy. dx may be an empty
(0, 0) array: then only dgamma and dbeta are computed.
"""
import numpy as np


def _sum_rows(a):
    """sum_r a[r, :] in float64, added in increasing row order (the last running sum)."""
    if a.shape[0] == 0:
        return np.zeros(a.shape[1])
    return np.cumsum(a, axis=0, dtype=np.float64)[-1]


def batchnorm_forward_train(x, gamma, beta, y, xhat, inv_std, running_mean, running_var,
                            momentum, eps):
    """Batch statistics, normalised xhat, y = gamma xhat + beta; running statistics updated."""
    rows = x.shape[0]
    x64 = x.astype(np.float64)
    mean = _sum_rows(x64) / rows
    d = x64 - mean
    var = _sum_rows(d * d) / rows
    inv_std[...] = 1.0 / np.sqrt(var + eps)
    xhat[...] = (x - mean.astype(x.dtype)) * inv_std
    y[...] = gamma * xhat + beta
    running_mean[...] = (1.0 - momentum) * running_mean.astype(np.float64) + momentum * mean
    running_var[...] = ((1.0 - momentum) * running_var.astype(np.float64)
                        + momentum * (var * rows / (rows - 1)))


def batchnorm_forward_eval(x, gamma, beta, y, running_mean, running_var, eps):
    """y = gamma (x - running_mean) / sqrt(running_var + eps) + beta."""
    s = (1.0 / np.sqrt(running_var.astype(np.float64) + eps)).astype(x.dtype)
    y[...] = gamma * ((x - running_mean) * s) + beta


def batchnorm_backward(dy, xhat, inv_std, gamma, dx, dgamma, dbeta):
    """dbeta = sum dy, dgamma = sum dy xhat; dx (unless empty) from the formula above."""
    rows = dy.shape[0]
    dy64 = dy.astype(np.float64)
    dbeta[...] = _sum_rows(dy64)
    dgamma[...] = _sum_rows(dy64 * xhat.astype(np.float64))
    if dx.size:
        n = dy.dtype.type(rows)
        g = dy * gamma
        dx[...] = (inv_std / n) * ((n * g - gamma * dbeta) - xhat * (gamma * dgamma))
