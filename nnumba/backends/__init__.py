"""Backends: three implementations of one set of kernels.

``numpy`` (the reference, pure NumPy), ``cpu`` (Numba @njit) and ``cuda``
(numba.cuda) each provide the modules ``activations``, ``dense``, ``losses``,
``optim``, ``gradients``, ``network`` and ``memory`` (loaded with the backend)
and ``interpreter``, ``conv1d``, ``pool1d``, ``dropout``, ``batchnorm``,
``recurrent``, ``rules`` (user-defined optimizer rules) and ``elementwise``
(loaded when first used, so that a model of Dense layers never imports, let
alone compiles, the other kinds), with the same function names and
arguments. Importing this package never imports numba.cuda; the cuda backend is
loaded on first use and refuses clearly where no GPU is found.
"""
import importlib

BACKENDS = ("numpy", "cpu", "cuda")
_PACKAGES = {"numpy": "reference", "cpu": "cpu", "cuda": "cuda"}
MODULES = ("activations", "dense", "losses", "optim", "gradients", "network", "memory")
LAZY_MODULES = ("interpreter", "conv1d", "pool1d", "dropout", "batchnorm", "elementwise",
                "recurrent", "rules")


class Backend:
    """The kernel modules of one backend, as attributes (``backend.network`` ...)."""

    def __init__(self, name):
        package = importlib.import_module(f"{__name__}.{_PACKAGES[name]}")
        if hasattr(package, "check_available"):
            package.check_available()
        self.name = name
        self._package = package.__name__
        for module in MODULES:
            setattr(self, module, importlib.import_module(f"{package.__name__}.{module}"))

    def __getattr__(self, module):
        if module not in LAZY_MODULES:
            raise AttributeError(module)
        loaded = importlib.import_module(f"{self._package}.{module}")
        setattr(self, module, loaded)
        return loaded

    def __repr__(self):
        return f"Backend({self.name!r})"


_loaded = {}


def get_backend(name):
    """The backend called ``name`` ("numpy", "cpu" or "cuda"), loaded once."""
    if not isinstance(name, str):
        raise TypeError(f"backend must be a string, one of {BACKENDS}; got {type(name).__name__}")
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}: expected one of {', '.join(map(repr, BACKENDS))}")
    if name not in _loaded:
        _loaded[name] = Backend(name)
    return _loaded[name]
