"""The lowest layer: the op table, the Tape and its file format, the pure-Python reference sweeps."""
