"""Memory pre-checks: a compiled program's buffers are sized before they are allocated, and one
that would not fit raises MemoryError naming the bytes needed and the bytes available.

Available memory is MemAvailable from /proc/meminfo, lowered to the room left under a cgroup
limit where one is set (containers); elsewhere the OS's count of free pages; where neither can be
read the check is skipped (the allocation itself then reports any failure).
"""
from __future__ import annotations

import os

# Per instruction: ins (6 x int32), lit (float64), one thread's workspace (vals, partials a and b,
# adjoints: 4 x float64). Building ins also holds ra, rb and the int32 opcodes for a moment.
PROGRAM_BYTES_PER_OP = 6 * 4 + 8 + 4 * 8
TRANSIENT_BYTES_PER_OP = 3 * 4
# Tracing holds a Variable, an object-array slot and an instruction per input: ~300 bytes measured.
TRACE_BYTES_PER_INPUT = 256

CHECK_ABOVE = 1 << 24  # bytes: smaller requests skip the check (reading /proc costs ~20 µs)

_CGROUP_FILES = (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),              # v2
                 ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                  "/sys/fs/cgroup/memory/memory.usage_in_bytes"))                              # v1


def _meminfo_available(path: str = "/proc/meminfo") -> int | None:
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_room() -> int | None:
    for limit_file, usage_file in _CGROUP_FILES:
        try:
            with open(limit_file) as f:
                limit = f.read().strip()
            with open(usage_file) as f:
                usage = int(f.read().strip())
        except (OSError, ValueError):
            continue
        if limit.isdigit() and int(limit) < 1 << 60:  # "max" or a huge number: no limit
            return max(int(limit) - usage, 0)
    return None


def available_bytes() -> tuple[int | None, str]:
    """(bytes of memory available to this process now, where the figure comes from); None if
    unknown."""
    found = []
    meminfo = _meminfo_available()
    if meminfo is not None:
        found.append((meminfo, "MemAvailable in /proc/meminfo"))
    else:
        try:
            found.append((os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"), "free physical pages"))
        except (AttributeError, ValueError, OSError):
            pass
    room = _cgroup_room()
    if room is not None:
        found.append((room, "room under the cgroup memory limit"))
    return min(found) if found else (None, "unknown")


def _size(nbytes: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if nbytes >= scale:
            return f"{nbytes / scale:.1f} {unit}"
    return f"{nbytes} bytes"


def require(nbytes: int, what: str, detail: str = "") -> None:
    """Raise MemoryError before ``what`` allocates ``nbytes`` if that much is not available."""
    if nbytes < CHECK_ABOVE:
        return
    available, source = available_bytes()
    if available is not None and nbytes > available:
        raise MemoryError(f"{what} needs about {_size(nbytes)} ({nbytes:,} bytes) but only "
                          f"{_size(available)} ({available:,} bytes) is available ({source}); "
                          "nothing was allocated" + (f" ({detail})" if detail else ""))


def require_program(n: int) -> None:
    """Check that a compiled program of ``n`` instructions (buffers plus one workspace) fits."""
    require(n * (PROGRAM_BYTES_PER_OP + TRANSIENT_BYTES_PER_OP), f"compiling a tape of {n:,} instructions",
            f"{PROGRAM_BYTES_PER_OP} bytes per instruction for the program and one workspace, "
            f"{TRANSIENT_BYTES_PER_OP} more while building it")
