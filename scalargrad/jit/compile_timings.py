"""How long a tape's generated code takes to compile, for tier.py's rule of tiering up by time.

Predicted as a fixed cost plus seconds per generated instruction line, straight and rolled lines
apart (lines in loops compile slower). The seconds per line are learned: each background compile's
time is recorded in ``timings.json`` next to the generated files, and the median of the recent
records of that kind is used; before any, the PRIOR figures. A tape whose compiled code is already
in the cache (from an earlier process) only loads it: LOAD_SECONDS. The lane code of a batch module
(codegen/lanes.py) is predicted as LANE_FACTOR times the tape's per-point module.
"""
from __future__ import annotations

import json
import statistics

from . import codegen

# Before any compile was measured here: bench/codegen_tier.py gave about 0.5 s of CPU per 100 straight
# lines, and the MLP workload's 162 loop lines about 10 s.
PRIOR_SECONDS_PER_LINE = {"straight": 0.005, "rolled": 0.06}
FIXED_SECONDS = 0.3   # Numba's pipeline for even a one-line module
LOAD_SECONDS = 0.05   # importing a generated module whose machine code is in Numba's disk cache
# Lane code took 2.4-4.5 s to compile where the per-point module took 0.3-0.8 s (Rosenbrock-100), and
# 4.1 s against 2.1 (random-1000), on the 2-core development machine.
LANE_FACTOR = 4.0
KEEP = 20             # records kept per kind
FILE = "timings.json"


def kind(tape) -> str:
    """"rolled" when the generated code writes periodic runs as loops, else "straight"."""
    return "straight" if codegen.rolled_plan(tape) is None else "rolled"


def compiled_on_disk(tape, batch: bool = False) -> bool:
    """Whether the tape's generated module (``batch``: its batch module) and Numba's index of its
    machine code are in the cache."""
    path = codegen.module_path(codegen.tape_key(tape), batch)
    return path.exists() and any(path.parent.glob(f"__pycache__/{path.stem}.*.nbi"))


def _records() -> dict:
    try:
        data = json.loads((codegen.cache_dir() / FILE).read_text("utf-8"))
        return {k: [r for r in data.get(k, []) if isinstance(r, list) and len(r) == 2]
                for k in PRIOR_SECONDS_PER_LINE}
    except (OSError, ValueError, AttributeError):  # none yet, or unreadable: start again
        return {k: [] for k in PRIOR_SECONDS_PER_LINE}


def seconds_per_line(of_kind: str) -> float:
    """The median of the recorded compile seconds per line of this kind, else the prior."""
    rates = [seconds / lines for lines, seconds in _records()[of_kind] if lines > 0]
    return statistics.median(rates) if rates else PRIOR_SECONDS_PER_LINE[of_kind]


def predicted_seconds(tape, batch: bool = False) -> float:
    """Seconds until the tape's generated code (``batch``: its lane code) is ready, if compiling
    started now."""
    if compiled_on_disk(tape, batch):
        return LOAD_SECONDS
    seconds = FIXED_SECONDS + codegen.generated_size(tape) * seconds_per_line(kind(tape))
    return LANE_FACTOR * seconds if batch else seconds


def record(tape, seconds: float) -> None:
    """Note a compile of the tape's generated code that took ``seconds`` (beyond the fixed cost)."""
    records = _records()
    of_kind = kind(tape)
    records[of_kind] = (records[of_kind] + [[codegen.generated_size(tape), max(seconds - FIXED_SECONDS, 0.0)]])[-KEEP:]
    try:
        codegen.write_atomic(codegen.cache_dir() / FILE, json.dumps(records))
    except OSError:  # a read-only cache: predictions keep using what was there
        pass
