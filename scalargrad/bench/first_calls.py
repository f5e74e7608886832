"""One row of the default-path table (default_path.py), run in a fresh process whose generated-code
cache is empty: ``sg.value_and_grad(f)`` with no backend argument (or ``sg.vmap`` of it over a batch),
its first call, every call of the first seconds after it, and, once the path runs generated code,
a window of calls interleaved with hand-written Numba (handwritten.py, timed after its own compile).

``python -m scalargrad.bench.first_calls --workload NAME [--size N] [--batch B] --window S --wait S
--after S`` prints one JSON object (``measure_row``'s) and exits at once, without waiting for a
background compile still in flight (the numbers are taken; the process is thrown away).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np

import scalargrad as sg

from ..config import codegen_cache_dir
from ..jit.tier import wait_for_compiles
from .handwritten import batch_reference, reference
from .measure import GENERATED, HANDWRITTEN_TOLERANCE, batch_points, batch_settled, kernel_name
from .timing import interleaved_seconds, median_seconds, sample_seconds, without_gc
from .workloads import WORKLOADS, relative_error


def window_kernel(kernels) -> str | None:
    """What ran a window of calls, from the kernel noted before each (``measure.kernel_name``'s
    names), or their sequence (``interp→vector→codegen``) when it changed within the window (None:
    no calls)."""
    return "→".join(dict.fromkeys(kernels)) or None


def time_calls(call, kernel, settled, hand_call, window: float, wait: float, after: float) -> dict:
    """The default path's numbers, in seconds, for ``call`` (a fresh transformed function's call;
    ``kernel()`` names what its next call runs, ``settled()`` whether that is the last kernel it will
    get) against ``hand_call`` (hand-written Numba):

    - the first call;
    - the median of every call from the first call's start until ``window`` seconds later (at least
      MIN_REPEATS calls), with the kernel noted before each;
    - then, when ``wait`` > 0, calls until the path runs its last kernel (``settled()``) or ``wait``
      seconds have passed since the first call, and the median of ``after`` seconds of calls
      interleaved with ``hand_call`` (its first call, untimed, compiles it); otherwise hand_call's
      median alone, once no background compile is in flight.
    """
    notes = []  # (seconds since the first call's start, kernel) before each call of the window
    start = time.perf_counter()

    def note():
        notes.append((time.perf_counter() - start, kernel()))

    note()
    result, first = without_gc(call)
    times = sample_seconds(call, min_seconds=max(window - (time.perf_counter() - start), 0.0), first=first,
                           before=note)
    kernels = [k for _, k in notes]
    tier_up = next((t for t, k in notes if k in GENERATED), None)
    row = dict(first_call_s=first, first_call_kernel=kernels[0], first_window_s=statistics.median(times),
               first_window_calls=len(times), first_window_codegen_calls=sum(k in GENERATED for k in kernels),
               first_window_kernel=window_kernel(kernels), tier_up_s=tier_up, after_tier_up_s=None,
               after_tier_up_kernel=None)
    if wait > 0:
        while True:
            if tier_up is None and kernel() in GENERATED:
                tier_up = time.perf_counter() - start
            if settled() or time.perf_counter() - start >= wait:
                break
            call()
        before = kernel()
        row["after_tier_up_s"], row["handwritten_s"] = interleaved_seconds(call, hand_call, min_seconds=after)
        row.update(tier_up_s=tier_up, after_tier_up_kernel=window_kernel([before, kernel()]))
    else:
        wait_for_compiles()  # a background compile in flight would slow it (a prange loop, most)
        hand_call()  # compiles it (or loads it from Numba's cache)
        row["handwritten_s"] = median_seconds(hand_call)
    return dict(row, result=result)


def workload_calls(workload: str, size, batch):
    """(call, kernel, settled, hand_call, reference result) of one row: ``sg.value_and_grad(f)`` at
    the workload's point, or with ``batch`` its ``sg.vmap`` over that many points near it
    (measure.batch_points), and the hand-written code on the same input (into buffers of its own)."""
    fun, x0 = WORKLOADS[workload].make(size)
    vg = sg.value_and_grad(fun)
    if batch:
        X = batch_points(x0, batch)
        X2 = X.reshape(batch, -1)
        hand, values, G = batch_reference(workload, size), np.empty(batch), np.empty(X2.shape)
        batched = sg.vmap(vg)
        return (lambda: batched(X)), (lambda: kernel_name(vg, batch=True)), (lambda: batch_settled(vg)), \
            (lambda: hand(X2, values, G)), (lambda: (values, G))
    _, hand_vg = reference(workload, size)
    g = np.empty(x0.shape)
    return (lambda: vg(x0)), (lambda: kernel_name(vg)), (lambda: kernel_name(vg) == "codegen"), \
        (lambda: hand_vg(x0, g)), (lambda: (hand_vg(x0, g), g))


def measure_row(workload: str, size, batch, window: float, wait: float, after: float) -> dict:
    """``time_calls`` of one row, with the codegen cache's file count at the start (the parent
    made it empty) and the check of the first call's value and gradient against hand-written Numba."""
    cache = codegen_cache_dir()
    files = len(os.listdir(cache)) if cache.is_dir() else 0
    call, kernel, settled, hand_call, hand_result = workload_calls(workload, size, batch)
    row = time_calls(call, kernel, settled, hand_call, window, wait, after)
    (values, grads), (hand_values, hand_grads) = row.pop("result"), hand_result()
    n = np.size(hand_values)
    err = relative_error(np.column_stack((np.reshape(values, (n, 1)), np.reshape(grads, (n, -1)))),
                         np.column_stack((np.reshape(hand_values, (n, 1)), np.reshape(hand_grads, (n, -1)))))
    detail = "" if err <= HANDWRITTEN_TOLERANCE else \
        f"value and gradient differ from hand-written Numba's by {err:.1e}"
    return dict(row, cache_dir=str(cache), cache_files_at_start=files, ok=not detail, detail=detail)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m scalargrad.bench.first_calls", description=__doc__)
    parser.add_argument("--workload", required=True, choices=[n for n, w in WORKLOADS.items() if not w.check])
    parser.add_argument("--size", type=int)
    parser.add_argument("--batch", type=int)
    parser.add_argument("--window", type=float, required=True)
    parser.add_argument("--wait", type=float, required=True)
    parser.add_argument("--after", type=float, required=True)
    args = parser.parse_args(argv)
    row = measure_row(args.workload, args.size, args.batch, args.window, args.wait, args.after)
    sys.stdout.write(json.dumps(row) + "\n")
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # a background compile in flight would otherwise hold the exit (tier.py's thread)


if __name__ == "__main__":
    main()
