"""``python -m scalargrad``: the command line (see ``scalargrad.cli``)."""
import sys

from .cli import main

sys.exit(main())
