"""Render docs/bench-results.json as the README's results table, between the RESULTS_BEGIN and RESULTS_END
markers; the README's figures then always come from one committed `scalargrad bench --json` file.

    SCALARGRAD_CACHE_DIR=$(mktemp -d) scalargrad bench --json docs/bench-results.json   # measure
    python tools/readme_results.py            # rewrite the README's section from the JSON
    python tools/readme_results.py --check    # exit 1 if the README's section is not that rendering

The JSON layout is docs/bench-json.md (schema 4; a schema 3 file, which lacks the default-path rows, renders
without their sentence). tests/test_readme_results.py checks the README.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
RESULTS = ROOT / "docs" / "bench-results.json"

# The command stated next to the table; render() refuses a file that another command wrote. The empty
# codegen cache makes the run what a fresh install's first `scalargrad bench` does.
COMMAND = "SCALARGRAD_CACHE_DIR=$(mktemp -d) scalargrad bench --json docs/bench-results.json"
RESULTS_BEGIN = ("<!-- results: generated from docs/bench-results.json by python tools/readme_results.py;"
                 " edit that, not this -->")
RESULTS_END = "<!-- /results -->"

COLUMNS = ["workload", "ops", "ops after passes", "value µs", "value and gradient µs", "ratio",
           "ns per op", "kernel", "gradient check"]


SCHEMAS = (3, 4)  # schema 4 added default_path; the rows rendered here are the same in both


def check_layout(data: dict) -> None:
    """Raise ValueError unless data is what COMMAND writes: schema 3 or 4, a plain default bench run."""
    if data.get("schema") not in SCHEMAS or data.get("command") != "bench":
        raise ValueError(f"expected a `scalargrad bench --json` file of schema 3 or 4, got schema "
                         f"{data.get('schema')!r}, command {data.get('command')!r}")
    header = data["header"]
    options = {"backend": "default", "batch": None, "repeat": None}
    changed = [f"{key}={header.get(key)!r}" for key, want in options.items() if header.get(key) != want]
    if changed or data.get("higher_order") is None:
        raise ValueError("the README's table is a default `scalargrad bench` run (no --backend, --batch, "
                         "--repeat, --workload or --size); this file has "
                         + (", ".join(changed) or "no higher-order rows"))


def _number(x, digits: int) -> str:
    return "–" if x is None else f"{x:,.{digits}f}"


def _check(row: dict) -> str:
    if not row["ok"]:
        return "FAIL: " + " ".join(row["detail"].split()).replace("|", "/")
    return "ok" if row["fd_err"] is None else f"ok (error {row['fd_err']:.1e})"


def _ratio(x) -> str:
    return "–" if x is None else f"{x:.2f}x"


def default_path(data: dict) -> str:
    """The sentence on the default-path rows (schema 4), or "" without them."""
    table = data.get("default_path")
    if not table:
        return ""
    parts = []
    for row in table["rows"]:
        part = (f"{row['name']}: first call {_number(row['first_call_ms'], 1)} ms, first {table['first_window_s']:g} s "
                f"{_ratio(row['first_window_vs_handwritten'])}")
        if table["tier_up_wait_s"]:
            tier_up = "" if row["tier_up_s"] is None else f" (from {row['tier_up_s']:.1f} s)"
            part += f", after tier-up{tier_up} {_ratio(row['after_tier_up_vs_handwritten'])}"
        parts.append(part + ("" if row["ok"] else " (FAIL)"))
    return (" Default path of the same run (a fresh process per row, default backend, empty generated-code cache; "
            "times over hand-written Numba's): " + "; ".join(parts) + ".")


def render(data: dict) -> str:
    """The README's results section, from the first marker to the end of the last."""
    check_layout(data)
    h = data["header"]
    lines = [RESULTS_BEGIN, "",
             "| " + " | ".join(COLUMNS) + " |",
             "|" + "|".join("---" if i in (0, 7, 8) else "--:" for i in range(len(COLUMNS))) + "|"]
    for row in data["rows"]:
        cells = [f"`{row['name']}`",
                 _number(row["ops"], 0), _number(row["compiled_ops"], 0),
                 _number(row["fwd_us"], 1), _number(row["vg_us"], 1), _number(row["ratio"], 2),
                 _number(row["ns_per_op"], 1),
                 row["kernel"] or "–", _check(row)]
        lines.append("| " + " | ".join(cells) + " |")
    higher = "; ".join(
        f"{row['name']}: {row['measure']} " + (row["detail"] if row["ratio"] is None else f"{row['ratio']:.2f}")
        for row in data["higher_order"])
    lines += ["",
              f"Measured by `{COMMAND}` with scalargrad {h['scalargrad']}, Python {h['python']}, "
              f"NumPy {h['numpy']} and Numba {h['numba']} on {h['platform']} ({h['cpu_count']} CPUs). "
              f"Higher-order rows of the same run: {higher}.{default_path(data)}",
              "", RESULTS_END]
    return "\n".join(lines)


def section(text: str) -> str:
    """The README's results section as it stands, markers included (ValueError if they are missing)."""
    begin, end = text.find(RESULTS_BEGIN), text.find(RESULTS_END)
    if begin < 0 or end < begin:
        raise ValueError(f"README.md lacks the markers {RESULTS_BEGIN!r} ... {RESULTS_END!r}")
    return text[begin:end + len(RESULTS_END)]


def rewrite(text: str, data: dict) -> str:
    """text with its results section replaced by the rendering of data."""
    old = section(text)
    begin = text.find(RESULTS_BEGIN)
    return text[:begin] + render(data) + text[begin + len(old):]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only check; exit 1 if the README is stale")
    parser.add_argument("--json", type=Path, default=RESULTS, help=f"default {RESULTS.relative_to(ROOT)}")
    parser.add_argument("--readme", type=Path, default=README, help=f"default {README.relative_to(ROOT)}")
    args = parser.parse_args(argv)
    data = json.loads(args.json.read_text(encoding="utf-8"))
    text = args.readme.read_text(encoding="utf-8")
    new = rewrite(text, data)
    if args.check:
        if new != text:
            print(f"{args.readme}: the results table differs from {args.json}; run python tools/readme_results.py",
                  file=sys.stderr)
            return 1
        return 0
    if new != text:
        args.readme.write_text(new, encoding="utf-8")
        print(f"{args.readme}: results table rewritten from {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
