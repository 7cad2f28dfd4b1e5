"""The cpu backend keeps its arrays in host memory, as the reference backend does."""
from ..reference.memory import asarray, copy_from_host, copy_into, empty, to_backend, to_host, zeros

__all__ = ["empty", "zeros", "to_backend", "asarray", "to_host", "copy_from_host", "copy_into"]
