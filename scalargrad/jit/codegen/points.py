"""Batches run by a tape's compiled per-point function, called through its address from one parallel
driver compiled once per installation: no per-tape batch compile.

Numba compiles, beside every nopython function, a C-callable wrapper taking the arguments by value
(an array as its struct); ``kernel_address`` reads the wrapper's address from a compiled
``evaluate`` or ``value_and_grad`` (codegen/load.py's one signature). ``value_and_grad_points`` and
``evaluate_points`` loop over the rows of X in parallel (``prange``) and call that address for each
row, so the results are the per-point function's, bit for bit. They are cached on disk like the
interpreter's kernels, so a path made hot by ``sg.vmap`` runs its batches on generated code as soon
as its per-point function is compiled (Rosenbrock-100: 0.3-0.8 s), where the lane code of lanes.py
takes 2.4-4.5 s more to compile. Lane code runs such a batch up to about 1.7x faster (it vectorises
across points), so tier.py still compiles it once the batches have paid for it; tapes without lane
code (buffers larger than a core's cache, as the MLP's) keep these drivers.
"""
from __future__ import annotations

import time

from llvmlite import ir
from numba import prange, types
from numba.extending import intrinsic

from ..flags import njit
from .load import BATCH_ARGS, KERNEL_ARGS

ROW = KERNEL_ARGS[0]  # a row of X, of values or of G: the argument type of both per-point functions
RETURNS = {"value_and_grad": types.Tuple((types.float64, types.boolean)), "evaluate": types.boolean}


def _caller(kind: str):
    """An intrinsic ``call(address, x, second)`` calling the C wrapper of a compiled per-point ``kind``."""
    restype = RETURNS[kind]

    @intrinsic
    def call(typingctx, address, x, second):
        if not (isinstance(address, types.Integer) and x == ROW and second == ROW):
            return None

        def lower(context, builder, signature, args):
            row = context.get_value_type(ROW)
            fnty = ir.FunctionType(context.get_value_type(restype), [row, row])
            return builder.call(builder.inttoptr(args[0], fnty.as_pointer()), [args[1], args[2]])

        return restype(address, x, second), lower
    return call


_call_value_and_grad = _caller("value_and_grad")
_call_evaluate = _caller("evaluate")


@njit(parallel=True)
def value_and_grad_points(address, X, values, G, ok):
    """The compiled ``value_and_grad`` at ``address`` at every row of X, in parallel."""
    for p in prange(X.shape[0]):
        values[p], ok[p] = _call_value_and_grad(address, X[p], G[p])


@njit(parallel=True)
def evaluate_points(address, X, out, ok):
    """The compiled ``evaluate`` at ``address`` at every row of X, in parallel."""
    for p in prange(X.shape[0]):
        ok[p] = _call_evaluate(address, X[p], out[p])


_DRIVERS = {"value_and_grad": value_and_grad_points, "evaluate": evaluate_points}
_FAILED: dict[str, Exception] = {}  # kind -> why its driver failed to compile: not tried again


def warm_up(kind: str) -> None:
    """Compile (once per installation; later loaded from Numba's disk cache) the driver of ``kind``:
    the generated batch function's signature (load.BATCH_ARGS) after the address."""
    _DRIVERS[kind].compile((types.int64, *BATCH_ARGS[kind]))


def kernel_address(dispatcher, kind: str) -> int | None:
    """The address of the C wrapper of ``dispatcher``'s compilation for load.KERNEL_ARGS, a per-point
    function of ``kind``; None when it has none or its return value is not laid out as the drivers
    expect."""
    compiled = dispatcher.overloads.get(KERNEL_ARGS)
    if compiled is None:
        return None
    context = compiled.target_context
    if context.get_value_type(compiled.signature.return_type) != context.get_value_type(RETURNS[kind]):
        return None
    address = compiled.library.get_pointer_to_function(compiled.fndesc.llvm_cfunc_wrapper_name)
    return address or None


class PointBatches:
    """A path's batches by its compiled per-point function ``kernel`` of ``kind``, with the same
    ``value_and_grad_batch(X, values, G, ok)`` / ``evaluate_batch(X, out, ok)`` as a generated batch
    module (lane code); ``seconds`` is the time its batches have taken so far (tier.py's rent for lane
    code)."""

    __slots__ = ("kernel", "kind", "address", "seconds")

    def __init__(self, kernel, kind: str, address: int):
        self.kernel = kernel  # keeps the machine code at ``address`` alive
        self.kind, self.address, self.seconds = kind, address, 0.0

    @classmethod
    def of(cls, kernel, kind: str):
        """The batches of ``kernel``, or None when it has no usable address or the driver failed to
        compile earlier in this process. Raises the driver's compile error the first time only, so
        that a caller warns once rather than at every batch."""
        address = kernel_address(kernel, kind)
        if address is None or kind in _FAILED:
            return None
        try:
            warm_up(kind)
        except Exception as exc:
            _FAILED[kind] = exc
            raise
        return cls(kernel, kind, address)

    def value_and_grad_batch(self, X, values, G, ok) -> None:
        started = time.perf_counter()
        value_and_grad_points(self.address, X, values, G, ok)
        self.seconds += time.perf_counter() - started

    def evaluate_batch(self, X, out, ok) -> None:
        started = time.perf_counter()
        evaluate_points(self.address, X, out, ok)
        self.seconds += time.perf_counter() - started
