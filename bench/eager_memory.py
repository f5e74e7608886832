"""Memory of an eager loop that never calls backward() (issue 19, item 10), measured in one run.

Run: python bench/eager_memory.py [iterations] [limit]
Each iteration builds ``z = (x*y + sin(x))*y`` from two fresh leaves and drops it. Prints the
resident set size as the loop goes, the time per iteration, and how many recorders stay alive after
``del`` and ``gc.collect()``. ``limit`` overrides EAGER_TAPE_LIMIT (instructions per recorder).
Linux only (reads /proc/self/status).
"""
import gc
import sys
import time

import scalargrad as sg

TRACE = sys.modules["scalargrad.record.variable"]  # Variable and the recorder


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main(n: int, limit: int | None) -> None:
    if limit:
        TRACE.EAGER_TAPE_LIMIT = limit
    print(f"EAGER_TAPE_LIMIT {TRACE.EAGER_TAPE_LIMIT}, {n} iterations")
    before, peak = rss_mib(), 0.0
    start = time.perf_counter()
    for i in range(n):
        x, y = sg.Variable(1.0), sg.Variable(2.0)
        z = (x * y + sg.sin(x)) * y
        if i % 100_000 == 0:
            peak = max(peak, rss_mib())
            print(f"  {i:>9}: {rss_mib():.0f} MiB", flush=True)
    per_iteration = (time.perf_counter() - start) / n
    print(f"RSS {before:.0f} -> {rss_mib():.0f} MiB (highest seen {max(peak, rss_mib()):.0f}); "
          f"{per_iteration * 1e6:.2f} us per iteration")
    del x, y, z
    gc.collect()
    alive = sum(type(o) is TRACE.Recorder for o in gc.get_objects())
    print(f"recorders alive after del + gc.collect(): {alive}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_500_000, int(sys.argv[2]) if len(sys.argv) > 2 else None)
