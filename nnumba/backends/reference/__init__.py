"""The reference backend: pure NumPy, the readable definition of every kernel.

The fast backends (``cpu``, ``cuda``) expose the same modules, function names
and argument order, and are tested against this one.
"""
