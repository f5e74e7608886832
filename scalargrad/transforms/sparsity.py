"""Sparse Jacobians and Hessians: pattern from the tape, greedy colouring, compressed tangent sweeps.

The pattern is structural (output i depends on input j through operands that carry a derivative,
both branches of ``where`` included), so it can only over-approximate. Columns that share no row
get one colour; one tangent sweep per colour (seeded with the sum of its unit vectors) gives all
their entries at once. Results are ``scipy.sparse.csr_matrix`` (SciPy is imported lazily).
"""
from __future__ import annotations

import numpy as np

from ..core.ops import INPUT
from ..jit import tangent as tangent_kernels
from ..record.pytrees import describe_shape
from ..record.symbolic import grad_tape
from ..record.tracing import VariableArguments
from .first_argument import FirstArgument
from .transformed import Path


def _scipy_sparse():
    try:
        import scipy.sparse
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("sparse=True returns scipy.sparse matrices; install SciPy (pip install scipy)") from err
    return scipy.sparse


def pattern(program, n_block: int) -> tuple[np.ndarray, np.ndarray]:
    """CSR (indptr, indices) of which of the first ``n_block`` inputs each output of a compiled
    ``Program`` depends on (through operands that carry a derivative)."""
    rows, cols = tangent_kernels.dependency_pairs(program.ins, program.io, n_block, INPUT)
    order = np.argsort(rows, kind="stable")  # columns stay increasing within a row
    indptr = np.zeros(program.n_outputs + 1, dtype=np.int64)
    indptr[1:] = np.cumsum(np.bincount(rows, minlength=program.n_outputs))
    return indptr, cols[order]


def colour_columns(indptr, indices, n_cols: int) -> np.ndarray:
    """Greedy colouring: columns sharing a row get different colours (column order, smallest free)."""
    n_rows = len(indptr) - 1
    row_of = np.repeat(np.arange(n_rows), np.diff(indptr))
    order = np.argsort(indices, kind="stable")
    col_ptr = np.zeros(n_cols + 1, dtype=np.int64)
    np.add.at(col_ptr, indices + 1, 1)
    col_ptr = np.cumsum(col_ptr)
    rows_of_col = row_of[order].tolist()
    indptr_l, indices_l, col_ptr_l = indptr.tolist(), indices.tolist(), col_ptr.tolist()
    colour = [-1] * n_cols
    for j in range(n_cols):
        used = set()
        for r in rows_of_col[col_ptr_l[j]:col_ptr_l[j + 1]]:
            for k in indices_l[indptr_l[r]:indptr_l[r + 1]]:
                used.add(colour[k])
        c = 0
        while c in used:
            c += 1
        colour[j] = c
    return np.array(colour, dtype=np.int64)


class _SparsePath(Path):
    """A compiled path with its sparsity pattern, colouring and compressed seeds."""

    __slots__ = ("indptr", "indices", "colour", "seeds", "gather", "shape")

    def __init__(self, tape, structure, n_block):
        super().__init__(tape, structure)
        t = self.program.tape
        self.indptr, self.indices = pattern(self.program, n_block)
        self.colour = colour_columns(self.indptr, self.indices, n_block)
        n_colours = int(self.colour.max()) + 1 if n_block else 0
        self.seeds = np.zeros((len(t.inputs), n_colours))
        self.seeds[np.arange(n_block), self.colour] = 1.0
        rows = np.repeat(np.arange(len(self.indptr) - 1), np.diff(self.indptr))
        self.gather = (rows, self.colour[self.indices])  # entry (i, j) is compressed[i, colour[j]]
        self.shape = (len(t.outputs), n_block)


class Sparse(FirstArgument):
    """Shared call: one compressed ``jacobian_forward`` over the path's tape, scattered into CSR."""

    vmap_mode = None
    vmap_refusal = ("vmap does not map sparse Hessians or Jacobians (their patterns may differ per point); "
                    "call the sparse transform on each point")

    def __call__(self, *args, **kwargs):
        try:
            sig, xf = self._prepare(args, kwargs)
        except VariableArguments:
            raise TypeError(f"{self.what}({self.__name__}, sparse=True) takes float arguments and cannot be "
                            "called inside a traced function; use the dense transform there") from None
        sparse = _scipy_sparse()

        def attempt(path, xf):
            p = path.program
            compressed = np.empty((p.n_outputs, path.seeds.shape[1]))
            if not tangent_kernels.jacobian_forward(p.ins, p.lit, p.io, xf, path.seeds, compressed, p.workspace()):
                return None
            return path, compressed[path.gather]

        path, data = self._attempt(sig, xf, attempt)
        return sparse.csr_matrix((data, path.indices, path.indptr), shape=path.shape)

    def colours(self, *args, **kwargs) -> int:
        """How many colours (tangent sweeps) the path taken at these arguments needs."""
        _, (path, _) = self._run(args, kwargs, lambda path, xf: (path, None))
        return path.seeds.shape[1]


class SparseHessian(Sparse):
    """``hessian(fun, sparse=True)(x, *args)``: scipy.sparse CSR Hessian of scalar ``fun`` in 1-D x."""

    what = "hessian"

    def _make_path(self, sig, tape, structure):
        self._require_scalar(structure)
        _require_vector(self, sig)
        return _SparsePath(grad_tape(tape, wrt=range(sig.offsets[1]), value=False), None, sig.offsets[1])


class SparseJacobian(Sparse):
    """``jacobian(fun, sparse=True)(x, *args)``: scipy.sparse CSR Jacobian (outputs flattened) in 1-D x."""

    what = "jacobian"

    def _make_path(self, sig, tape, structure):
        _require_vector(self, sig)
        return _SparsePath(tape, structure, sig.offsets[1])


def _require_vector(self, sig):
    shape = sig.shapes[0]
    if type(shape) is not tuple or len(shape) != 1:
        raise TypeError(f"{self.what}({self.__name__}, sparse=True): the first argument must be a 1-D array, "
                        f"got {describe_shape(shape)}")


__all__ = ["pattern", "colour_columns", "SparseHessian", "SparseJacobian"]
