"""The asv benchmark suite of nnumba (see asv.conf.json); ``compare.py`` is the
one-run comparison against NumPy and PyTorch."""
