"""Eager ``backward()``: the compiled reverse sweep over the recorder(s) a Variable came from.

A recorder is sealed by backward (later ops start a fresh one, so the old graph is freed once the
user drops it). Values imported from an older recorder are its inputs; their adjoints seed that
recorder's sweep, processed newest first, so the whole chain is visited without recursion. The
imports followed are those the seeded values depend on (their provenance, variable.py).

This module gives ``Variable`` its ``backward()`` method (installed at the end).
"""
from __future__ import annotations

import numpy as np

from ..jit.kernels import eager_backward
from .symbolic import backward_create_graph
from .variable import TracingError, Variable, as_real, imported_values


def backward(v: Variable, seed: float, create_graph: bool = False) -> None:
    if v._leaf:
        if v._requires_grad:
            v._grad = seed if v._grad is None else v._grad + seed
        return
    if v._rec.trace:
        raise TracingError("backward() inside a traced function; use sg.grad / sg.value_and_grad instead")
    if create_graph:  # gradients as recording Variables (symbolic.py replays the graph)
        return backward_create_graph(v, seed)
    pending = {v._rec: ({v._slot: seed}, [v._up])}  # recorder -> (seeds by slot, their provenances)
    while pending:
        rec = max(pending, key=lambda r: r.serial)  # imports always come from older recorders
        seeds, ups = pending.pop(rec)
        rec.seal()
        op, a, b, c, lit = rec.arrays()
        adj = eager_backward(op, a, b, c, lit,
                             np.fromiter(seeds.keys(), np.int32, len(seeds)),
                             np.fromiter(seeds.values(), np.float64, len(seeds)))
        del op, a, b  # release the views of the recorder's buffers
        rec.adj = adj if rec.adj is None else rec.adj + adj
        for k, var in rec.imports:
            if var._requires_grad:
                g = float(adj[k])
                var._grad = g if var._grad is None else var._grad + g
        if ups == [None]:  # the usual case: the graph is within one recorder
            continue
        for k, var in imported_values(*ups).items():
            into_seeds, into_ups = pending.setdefault(var._rec, ({}, []))
            into_seeds[var._slot] = into_seeds.get(var._slot, 0.0) + float(adj[k])
            into_ups.append(var._up)


def _backward_method(self, grad: float = 1.0, create_graph: bool = False) -> None:
    """Accumulate d(self)/d(leaf) * grad into every leaf's ``.grad``. With ``create_graph``
    the gradients are Variables that record, so they can be differentiated again."""
    backward(self, as_real(grad, "grad"), create_graph)


_backward_method.__name__ = _backward_method.__qualname__ = "backward"
Variable.backward = _backward_method
