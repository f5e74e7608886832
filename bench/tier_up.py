"""When the default backend tiers a path up, and what a call costs before and after: each workload's
value_and_grad called in a loop for up to LIMIT seconds (argument 1, default 30).

    SCALARGRAD_CACHE_DIR=$(mktemp -d) python bench/tier_up.py 40    # a fresh generated-code cache
"""
import sys, time, numpy as np, scalargrad as sg
from scalargrad.bench.workloads import make_mlp, make_rosenbrock, make_random
from scalargrad.jit import tier as tiering
LIMIT = float(sys.argv[1]) if len(sys.argv) > 1 else 30.0
for name, (f, x0) in [("rosenbrock-20", make_rosenbrock(20)), ("random-1000", make_random(1000)),
                      ("rosenbrock-10000", make_rosenbrock(10000)), ("mlp", make_mlp())]:
    vg = sg.value_and_grad(f)
    vg(x0)
    t = next(iter(vg.cache.values())).paths[0].tier
    start = time.perf_counter(); before, after, tier_at = [], [], None
    while time.perf_counter() - start < LIMIT:
        c0 = time.perf_counter(); vg(x0); dt = time.perf_counter() - c0
        if t.kernel is None:
            before.append(dt)
        else:
            tier_at = tier_at or time.perf_counter() - start
            after.append(dt)
            if len(after) > 2000 or time.perf_counter() - start > (tier_at + 2):
                break
    med = lambda a: f"{1e6 * np.median(a):.1f} us" if a else "-"
    print(f"{name}: {len(t.tape)} instr, rent {1e6 * (t.rent or 0):.1f} us, hot_calls {t.hot_calls}, "
          f"tiered up after {tier_at and round(tier_at, 2)} s ({len(before)} calls); "
          f"call before {med(before)}, after {med(after)}; compile {t.compile_times}")
    tiering.wait_for_compiles()
