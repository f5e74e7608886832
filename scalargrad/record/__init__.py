"""Recording: Variable and the recorder, the op table's recording functions, tracing a function into
a Tape, eager backward, custom ops, and tape-to-tape transformations written as recorded ops.

Importing the package installs Variable's operators (operators.py) and ``backward()`` (eager.py).
"""
from . import eager, operators

__all__ = ["eager", "operators"]
