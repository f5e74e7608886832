"""Output helpers of ``scalargrad bench``: the progress bar on stderr, the note for a row or option
that needs a package not installed here, and the ``--plot`` figure."""
from __future__ import annotations

import importlib.util
import sys
import threading
import time


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
