"""Optimizer update rules, in NumPy: one in-place step over a flat parameter buffer.

w: parameters, g: their gradient, same shape; the state arrays (v, s, m) start
at zero and are updated in place. Hyperparameters arrive as Python/NumPy
float64 and are rounded to w's dtype before use, so a float32 model computes
in float32 throughout. Formulas (explained in docs/topics.md, "Optimizers"):

SGD:        w <- w - lr g
Momentum:   v <- beta v + (1 - beta) g;            w <- w - lr v
            (the EWMA form; equals torch.optim.SGD(lr * (1 - beta), momentum=beta))
RMSprop:    s <- beta s + (1 - beta) g^2;          w <- w - lr g / sqrt(s + eps)
            or, with eps_inside_sqrt False,        w <- w - lr g / (sqrt(s) + eps)  (PyTorch, Keras)
Adam:       m <- beta1 m + (1 - beta1) g;          v <- beta2 v + (1 - beta2) g^2
            w <- w - lr mhat / (sqrt(vhat) + eps), with the bias-corrected moments
            mhat = m / (1 - beta1^t), vhat = v / (1 - beta2^t) (Kingma and Ba, 2015);
            t >= 1 counts the steps taken, this one included. Computed in the paper's
            "efficient version" (end of its section 2), equal in exact arithmetic:
            w <- w - lr_t m / (sqrt(v) + eps_t),
            lr_t = lr sqrt(1 - beta2^t) / (1 - beta1^t),  eps_t = eps sqrt(1 - beta2^t),
            one square root and one division per element.

The moving averages (Momentum's v, RMSprop's s, Adam's m and v) are flushed after
each update: an entry below the dtype's smallest normal number (float32 1.2e-38,
float64 2.2e-308) becomes 0 (``flush_subnormal``). A gradient entry that stays 0,
the weight of an always-zero input or of a dead ReLU unit, makes its average decay
geometrically into the subnormal range (Adam's m after about 800 steps in float32),
where Intel cores take a microcode assist of about a hundred cycles per operation:
measured, a 64-32-10 network's Adam epoch at batch 1 ran 5x slower. XLA flushes
subnormals too (it runs with the FPU's flush-to-zero mode); its effect on w is below
w's own rounding.
"""
import numpy as np

from ..codes import (ADAM, HP_BETA1, HP_BETA2, HP_EPS, HP_EPS_INSIDE, HP_LR, MOMENTUM, RMSPROP, SGD,
                     STATUS_OK, STATUS_STATE, STATUS_UPDATE)


def flush_subnormal(a):
    """a <- 0 where |a| is below the smallest normal number of a's dtype; NaN and inf stay."""
    a[np.abs(a) < np.finfo(a.dtype).tiny] = 0


def sgd_step(w, g, lr):
    lr = w.dtype.type(lr)
    w -= lr * g


def momentum_step(w, g, v, lr, beta):
    lr, beta = w.dtype.type(lr), w.dtype.type(beta)
    v *= beta
    v += (1 - beta) * g
    flush_subnormal(v)
    w -= lr * v


def rmsprop_step(w, g, s, lr, beta, eps, eps_inside_sqrt):
    lr, beta, eps = w.dtype.type(lr), w.dtype.type(beta), w.dtype.type(eps)
    s *= beta
    s += (1 - beta) * g * g
    flush_subnormal(s)
    if eps_inside_sqrt:
        w -= lr * g / np.sqrt(s + eps)
    else:
        w -= lr * g / (np.sqrt(s) + eps)


def adam_step(w, g, m, v, lr, beta1, beta2, eps, t):
    step_size, eps_hat = adam_bias_corrections(lr, beta1, beta2, eps, t)
    step_size, eps_hat = w.dtype.type(step_size), w.dtype.type(eps_hat)
    beta1, beta2 = w.dtype.type(beta1), w.dtype.type(beta2)
    m *= beta1
    m += (1 - beta1) * g
    v *= beta2
    v += (1 - beta2) * g * g
    flush_subnormal(m)
    flush_subnormal(v)
    w -= step_size * m / (np.sqrt(v) + eps_hat)


def adam_bias_corrections(lr, beta1, beta2, eps, t):
    """(lr_t, eps_t) = (lr sqrt(1 - beta2^t) / (1 - beta1^t), eps sqrt(1 - beta2^t)), float64."""
    root = np.sqrt(1.0 - beta2**t)
    return lr * root / (1.0 - beta1**t), eps * root


def verdict(w, state):
    """STATUS_STATE when an optimizer state element is NaN or infinite, else
    STATUS_UPDATE when a parameter is, else STATUS_OK: what a step left behind."""
    if state.size and not np.isfinite(state).all():
        return STATUS_STATE
    return STATUS_OK if np.isfinite(w).all() else STATUS_UPDATE


def step_dispatcher(sgd_step, momentum_step, rmsprop_step, adam_step, verdict=verdict):
    """The ``optimizer_step`` of a backend whose four per-rule steps are these
    (host-side dispatch, shared by the reference and the cuda backend)."""

    def optimizer_step(opt, w, g, state, hp, t):
        """One step of the optimizer with code ``opt``; returns ``verdict(w, state)``.

        state: (n_slots, len(w)) rows of optimizer state (Momentum: v; RMSprop: s;
        Adam: m, v). hp: float64 hyperparameters, indexed by the HP_* codes.
        """
        if opt == SGD:
            sgd_step(w, g, hp[HP_LR])
        elif opt == MOMENTUM:
            momentum_step(w, g, state[0], hp[HP_LR], hp[HP_BETA1])
        elif opt == RMSPROP:
            rmsprop_step(w, g, state[0], hp[HP_LR], hp[HP_BETA1], hp[HP_EPS], hp[HP_EPS_INSIDE] != 0)
        elif opt == ADAM:
            adam_step(w, g, state[0], state[1], hp[HP_LR], hp[HP_BETA1], hp[HP_BETA2], hp[HP_EPS], t)
        else:
            raise ValueError(f"unknown optimizer code {opt}")
        return verdict(w, state)

    return optimizer_step


optimizer_step = step_dispatcher(sgd_step, momentum_step, rmsprop_step, adam_step)
