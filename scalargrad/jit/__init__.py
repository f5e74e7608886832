"""Everything Numba: the project's flags, the interpreter generated from the op table, kernels."""
