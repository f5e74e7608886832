"""The README's results table is the rendering of the committed docs/bench-results.json by
tools/readme_results.py (regenerate with `python tools/readme_results.py`), and that renderer reads
what `scalargrad bench --json` writes."""
from __future__ import annotations

import copy
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("readme_results", ROOT / "tools" / "readme_results.py")
readme_results = importlib.util.module_from_spec(spec)
spec.loader.exec_module(readme_results)


def committed() -> dict:
    return json.loads(readme_results.RESULTS.read_text(encoding="utf-8"))


def test_readme_table_is_the_rendering_of_the_committed_json():
    text = readme_results.README.read_text(encoding="utf-8")
    assert readme_results.section(text) == readme_results.render(committed()), \
        "README.md's results table differs from docs/bench-results.json: run python tools/readme_results.py"
    assert readme_results.main(["--check"]) == 0


def test_committed_json_has_every_documented_bench_key():
    """docs/bench-json.md lists the keys of a bench row; the committed file must have them all."""
    doc = (ROOT / "docs" / "bench-json.md").read_text(encoding="utf-8")
    table = doc.split("## rows: bench\n", 1)[1].split("\n## ", 1)[0]
    keys = re.findall(r"^\| `(\w+)` \|", table, flags=re.M)
    assert "vg_us" in keys and "kernel" in keys
    for row in committed()["rows"]:
        assert set(keys) <= set(row), f"{row['name']} lacks {set(keys) - set(row)}"


def test_every_row_appears_with_its_figures():
    data = committed()
    rendered = readme_results.render(data)
    for row in data["rows"]:
        assert f"| `{row['name']}` |" in rendered
        if row["vg_us"] is not None:
            assert f"| {row['vg_us']:,.1f} |" in rendered
    assert data["header"]["platform"] in rendered and readme_results.COMMAND in rendered


@pytest.mark.parametrize("change", [{"batch": 1024}, {"backend": "interp"}, {"repeat": 3}])
def test_render_refuses_a_file_from_another_command(change):
    data = copy.deepcopy(committed())
    data["header"].update(change)
    with pytest.raises(ValueError, match="default `scalargrad bench` run"):
        readme_results.render(data)


def test_a_schema_4_file_adds_the_default_path_sentence():
    """Schema 4 adds the default-path rows; the committed schema 3 file renders without them."""
    if committed()["schema"] == 3:
        assert "Default path" not in readme_results.render(committed())
    data = copy.deepcopy(committed())
    data.update(schema=4, default_path=dict(first_window_s=1.5, tier_up_wait_s=20.0, after_window_s=1.0, rows=[
        dict(name="mlp", ok=True, first_call_ms=131.3, first_window_vs_handwritten=2.88, tier_up_s=11.9,
             after_tier_up_vs_handwritten=0.62),
        dict(name="rosenbrock-20", ok=False, first_call_ms=None, first_window_vs_handwritten=None, tier_up_s=None,
             after_tier_up_vs_handwritten=None)]))
    rendered = readme_results.render(data)
    assert ("Default path of the same run (a fresh process per row, default backend, empty generated-code cache; "
            "times over hand-written Numba's): mlp: first call 131.3 ms, first 1.5 s 2.88x, after tier-up "
            "(from 11.9 s) 0.62x; rosenbrock-20: first call – ms, first 1.5 s –, after tier-up – (FAIL).") in rendered
    data["schema"] = 5
    with pytest.raises(ValueError, match="schema 3 or 4, got schema 5"):
        readme_results.render(data)


def test_a_failed_row_shows_as_failed():
    data = copy.deepcopy(committed())
    data["rows"][1].update(ok=False, detail="gradient differs | at x[3]")
    assert "FAIL: gradient differs / at x[3]" in readme_results.render(data)


def test_main_rewrites_only_the_section(tmp_path):
    readme = tmp_path / "README.md"
    good = readme_results.README.read_text(encoding="utf-8")
    stale = good.replace(readme_results.section(good),
                         readme_results.RESULTS_BEGIN + "\n| old | table |\n" + readme_results.RESULTS_END)
    readme.write_text(stale, encoding="utf-8")
    assert readme_results.main(["--readme", str(readme), "--check"]) == 1
    assert readme_results.main(["--readme", str(readme)]) == 0
    assert readme.read_text(encoding="utf-8") == good


@pytest.mark.slow
def test_renders_what_bench_writes_now(tmp_path):
    """A fresh `scalargrad bench --quick --json` file renders (about 10 s)."""
    out = tmp_path / "results.json"
    subprocess.run([sys.executable, "-m", "scalargrad", "bench", "--quick", "--json", str(out)],
                   check=True, capture_output=True, cwd=tmp_path)
    data = json.loads(out.read_text(encoding="utf-8"))
    rendered = readme_results.render(data)
    assert all(f"| `{row['name']}` |" in rendered for row in data["rows"])
