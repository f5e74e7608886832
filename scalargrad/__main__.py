"""``python -m scalargrad``: the command line (see ``scalargrad.bench.cli``)."""
import sys

from .bench.cli import main

sys.exit(main())
