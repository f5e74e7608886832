"""Output helpers of ``scalargrad bench``: the progress bar on stderr, the note for a row or option
that needs a package not installed here, the row-at-a-time table and its legend, the ``--json``
document (its header's versions, the check that its path is writable, the writer) and the ``--plot``
figure."""
from __future__ import annotations

import importlib.util
import json
import os
import platform
import sys
import threading
import time

import numba
import numpy as np

import scalargrad as sg

SCHEMA = 4                 # version of the --json layout documented in docs/bench-json.md


def missing_package(module: str) -> str | None:
    """``needs scipy — pip install scipy`` when ``module`` (e.g. ``scipy.sparse``) cannot be imported
    here, else None; only its parent packages are imported. Printed after ``skipped: ``."""
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package is missing (or blocked with None in sys.modules)
        found = False
    package = module.split(".")[0]
    return None if found else f"needs {package} — pip install {package}"


class Progress:
    """A progress bar on stderr for runs longer than ``delay`` seconds, redrawn by a background thread;
    silent when the stream is not a terminal. ``clear()`` before printing to the same terminal."""

    def __init__(self, total: int, stream=None, delay: float = 1.5, interval: float = 0.25, width: int = 24):
        self.stream = stream or sys.stderr
        self.total, self.delay, self.width = max(total, 1), delay, width
        self.done, self.label, self.shown = 0, "", False
        self.start = time.perf_counter()
        self.active = bool(getattr(self.stream, "isatty", lambda: False)())
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        if self.active:
            threading.Thread(target=self._tick, args=(interval,), daemon=True).start()

    def _tick(self, interval: float) -> None:
        while not self.stopped.wait(interval):
            self.draw()

    def draw(self) -> None:
        with self.lock:
            elapsed = time.perf_counter() - self.start
            if not self.active or self.stopped.is_set() or elapsed < self.delay:
                return
            filled = self.width * self.done // self.total
            self.stream.write(f"\r\033[K[{'#' * filled}{'.' * (self.width - filled)}] {self.done}/{self.total} "
                              f"{self.label}  {elapsed:.0f} s")
            self.stream.flush()
            self.shown = True

    def update(self, label: str) -> None:
        self.label = label
        self.draw()

    def advance(self) -> None:
        self.done += 1

    def clear(self) -> None:
        with self.lock:
            if self.shown:
                self.stream.write("\r\033[K")
                self.stream.flush()
                self.shown = False

    def print(self, text: str) -> None:
        """Print ``text`` to stdout with the bar out of the way."""
        self.clear()
        print(text, flush=True)

    def close(self) -> None:
        self.clear()
        self.stopped.set()


def legend(columns, check: str, width: int = 110) -> list[str]:
    """'title: meaning' of every column and of the check column, joined by '; ' into lines of about
    ``width`` characters (never breaking one entry across lines)."""
    lines = [""]
    for entry in [f"{title}: {meaning}" for title, _, _, meaning in columns] + [f"check: {check}"]:
        if lines[-1] and len(lines[-1]) + len(entry) + 2 > width:
            lines.append("")
        lines[-1] += ("; " if lines[-1] else "") + entry
    return lines


class Table:
    """Aligned plain-text table printed a row at a time: numbers right-aligned, '-' where not measured.
    ``columns``: (title, row key, format, meaning); a column is as wide as its title (at least 8), or
    ``min_widths[title]``; ``first``: the title of the row names' column."""

    def __init__(self, names: list[str], columns, min_widths=None, first: str = "workload"):
        self.columns = columns
        titles = [first] + [title for title, _, _, _ in columns] + ["check"]
        self.widths = [max(len(titles[0]), *map(len, names))] \
            + [max(len(t), 8, (min_widths or {}).get(t, 0)) for t in titles[1:-1]] + [0]
        self.lines = [self._line(titles)]

    def _line(self, cells: list[str]) -> str:
        last = len(cells) - 1
        return "  ".join(c.ljust(w) if i in (0, last) else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, self.widths))).rstrip()

    def add(self, row: dict) -> list[str]:
        """The new lines for ``row`` (its detail, if any, on an indented line below)."""
        cells = [row["name"]] + ["-" if row.get(key) is None else fmt.format(row[key])
                                 for _, key, fmt, _ in self.columns]
        new = [self._line(cells + ["ok" if row["ok"] else "FAIL"])]
        if row["detail"]:
            new.append(f"    {row['detail']}")
        self.lines += new
        return new


def versions() -> dict:
    """The versions and machine of the ``--json`` header (and the table's first line)."""
    return dict(scalargrad=sg.__version__, python=platform.python_version(), numpy=np.__version__,
                numba=numba.__version__, cpu_count=os.cpu_count(), machine=platform.machine(),
                platform=platform.platform())


def write_json(target, command: str, header: dict, rows: list[dict], higher_order=None, default_path=None) -> None:
    """The results in the documented schema (docs/bench-json.md), to a path or an open stream."""
    document = dict(schema=SCHEMA, command=command, header=header, rows=rows, higher_order=higher_order,
                    default_path=default_path)
    if hasattr(target, "write"):
        json.dump(document, target, indent=1)
        target.write("\n")
        target.flush()
        return
    with open(target, "w") as f:
        json.dump(document, f, indent=1)


def check_writable(option: str, path: str | None) -> None:
    """ValueError naming ``option`` and ``path`` when the file could not be written after the run
    (missing or read-only directory, a directory); the file itself is not touched."""
    if not path:
        return
    parent = os.path.dirname(path) or "."
    if os.path.isdir(path):
        why = "is a directory"
    elif not os.path.isdir(parent):
        why = f"directory {parent} does not exist" if not os.path.exists(parent) else f"{parent} is not a directory"
    elif os.path.exists(path) and not os.access(path, os.W_OK):
        why = "the file is read-only"
    elif not os.path.exists(path) and not os.access(parent, os.W_OK):
        why = f"directory {parent} is not writable"
    else:
        return
    raise ValueError(f"{option} {path}: {why}")


def plot(results: list[dict], path: str) -> bool:
    """Two panels (needs matplotlib: pip install scalargrad[plot]): ns per traced op per library per
    row on a log axis, and value-and-gradient time against tape size (log-log), one line per library
    and workload. Rows without a vg time (over budget, failed) are left out. True when written."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.transforms
    except ImportError:
        print("note: --plot needs matplotlib (pip install matplotlib); no plot written", file=sys.stderr)
        return False
    timed_rows = [r for r in results if r.get("vg_us") and r.get("ops")]
    names = list(dict.fromkeys(r["name"] for r in results if r.get("ops")))
    libraries = list(dict.fromkeys(r["library"] for r in results))
    colors = {lib: f"C{i}" for i, lib in enumerate(libraries)}
    fig, (bars, growth) = plt.subplots(1, 2, figsize=(4 + 1.2 * len(names) + 5, 4.5),
                                       gridspec_kw=dict(width_ratios=[max(len(names), 2), 3]))
    width = 0.8 / max(len(libraries), 1)
    bottom = matplotlib.transforms.blended_transform_factory(bars.transData, bars.transAxes)
    for j, library in enumerate(libraries):
        xs, ys = [], []
        for i, name in enumerate(names):
            x = i + (j - (len(libraries) - 1) / 2) * width
            hit = [r for r in timed_rows if r["name"] == name and r["library"] == library]
            if hit:
                xs.append(x)
                ys.append(hit[0]["ns_per_op"])
            elif any(r["name"] == name and r["library"] == library and r.get("over_budget") for r in results):
                bars.text(x, 0.02, "over budget", transform=bottom, rotation=90, fontsize=6, ha="center",
                          va="bottom", color=colors[library])
        bars.bar(xs, ys, width, label=library, color=colors[library])
    bars.set_yscale("log")
    bars.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
    bars.set_ylabel("ns per traced instruction (value and gradient)")
    bars.set_title("cost per op")
    bars.legend(fontsize=8)
    markers = "osd^v<>"
    workloads = list(dict.fromkeys(r["workload"] for r in timed_rows))
    for library in libraries:
        for w, workload in enumerate(workloads):
            pts = sorted((r["ops"], r["vg_us"] * 1e-6) for r in timed_rows
                         if r["library"] == library and r["workload"] == workload)
            if pts:
                growth.plot(*zip(*pts), marker=markers[w % len(markers)], color=colors[library],
                            label=f"{library}, {workload}")
    growth.set_xscale("log")
    growth.set_yscale("log")
    growth.set_xlabel("traced instructions (tape size)")
    growth.set_ylabel("value and gradient, seconds")
    growth.set_title("time against tape size")
    growth.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    print(f"plot written to {path}")
    return True
