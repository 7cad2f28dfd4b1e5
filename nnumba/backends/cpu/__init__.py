"""The cpu backend: the reference kernels as Numba @njit functions.

Same modules, function names and argument order as ``backends.reference``;
``network.train_batches`` runs whole chunks of an epoch in one compiled call,
so no Python runs per iteration. Decorator flags come from ``_config``.
"""
