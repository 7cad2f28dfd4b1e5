"""Elementwise helpers of the op interpreter: the residual sum and gradient copies.

a, b, y, src, dst: arrays of one shape (2-D (n, size) views of the workspaces).
"""
import numpy as np


def add(a, b, y):
    """y = a + b (a residual block's output: f(x) + x)."""
    np.add(a, b, out=y)


def copy(src, dst):
    """dst = src."""
    dst[...] = src


def add_into(dst, src):
    """dst += src (a residual block's skip gradient joining the inner one)."""
    dst += src
