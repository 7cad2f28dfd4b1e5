"""``python -m nnumba.cli``: the same as the ``nnumba`` command."""
import sys

from . import main

sys.exit(main())
