"""The clocks of the benchmark harness, shared by ``scalargrad bench``, its peers' child processes and
the scripts in bench/: one call, the median of repeated calls, and several calls interleaved (median
or best). Every timed call runs with the cyclic garbage collector paused, as in ``timeit``.
Standard library only, so that a peer's child process measures with exactly the bench's clock.
"""
from __future__ import annotations

import gc
import statistics
import time

MIN_SECONDS = 0.2          # time each per-call measurement for at least this long ...
MIN_REPEATS = 5            # ... and at least this many calls


def timed(call):
    """(result, seconds) of one call."""
    t0 = time.perf_counter()
    result = call()
    return result, time.perf_counter() - t0


def without_gc(call):
    """``timed(call)`` with the cyclic garbage collector paused, so that a collection triggered by
    earlier garbage is not charged to this call. Earlier garbage is collected first, untimed, when
    the youngest generation is over its threshold: eager graphs are full of reference cycles, and
    otherwise every other call pays for a full collection of the last graph, and medians flip."""
    if gc.get_count()[0] > gc.get_threshold()[0]:
        gc.collect(0)
    enabled = gc.isenabled()
    gc.disable()
    try:
        return timed(call)
    finally:
        if enabled:
            gc.enable()


def sample_seconds(call, repeat: int | None = None, min_repeats: int = MIN_REPEATS,
                   min_seconds: float = MIN_SECONDS, deadline: float | None = None,
                   first: float | None = None, before=None) -> list[float]:
    """Seconds of each of ``repeat`` calls, or of as many as fill ``min_seconds`` (>= ``min_repeats``).
    ``deadline`` (a ``time.perf_counter()`` value): stop early when another call would pass it.
    ``first``: a sample already taken (say, by a checking call), counted among them; when even one
    more call would pass the deadline, that sample alone is the result. ``before()``, if given, runs
    untimed before each timed call (the default-path table notes there which kernel will run it)."""
    if first is not None and deadline is not None and time.perf_counter() + first > deadline:
        return [first]
    times = [] if first is None else [first]
    stop = time.perf_counter() + min_seconds
    while len(times) < (repeat or min_repeats) or (not repeat and time.perf_counter() < stop):
        if before is not None:
            before()
        times.append(without_gc(call)[1])
        if deadline is not None and time.perf_counter() + times[-1] > deadline:
            break
    return times


def median_seconds(call, repeat: int | None = None) -> float:
    """Median time of one ``call()``: ``repeat`` calls, or as many as fill MIN_SECONDS (>= MIN_REPEATS)."""
    return statistics.median(sample_seconds(call, repeat))


def interleaved_seconds(*calls, rounds: int = MIN_REPEATS, min_seconds: float = 0.0,
                        best: bool = False) -> list[float]:
    """Seconds of each call: after one untimed call of each (warm-up), rounds that run every call once
    in turn (so that load on a shared machine hits all alike), at least ``rounds`` of them and at
    least ``min_seconds``; the median of each call's times, or with ``best`` the minimum."""
    for call in calls:
        call()
    times = [[] for _ in calls]
    stop = time.perf_counter() + min_seconds
    while len(times[0]) < rounds or time.perf_counter() < stop:
        for call, samples in zip(calls, times):
            samples.append(without_gc(call)[1])
    return [min(samples) if best else statistics.median(samples) for samples in times]


def best_seconds(call, repeat: int = 7) -> float:
    """The fastest of ``repeat`` calls, after one untimed call (warm-up)."""
    return interleaved_seconds(call, rounds=repeat, best=True)[0]
