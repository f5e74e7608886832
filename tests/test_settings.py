"""Every SCALARGRAD_* environment variable the package reads is declared once, in config.SETTINGS,
with its default; the guide's settings table and ``scalargrad info`` list each of them."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from scalargrad import config
from scalargrad.bench import info

ROOT = Path(__file__).resolve().parent.parent
NAME = re.compile(r"\bSCALARGRAD_[A-Z_]+\b")


def test_every_variable_the_package_names_is_a_declared_setting():
    named = {m for path in (ROOT / "scalargrad").rglob("*.py") for m in NAME.findall(path.read_text("utf-8"))}
    assert named, "the scan found no SCALARGRAD_ variable at all"
    assert named == set(config.SETTINGS)


def test_the_guide_and_info_list_every_setting():
    guide = (ROOT / "docs" / "guide.md").read_text("utf-8")
    lines = info.info_lines()
    for name in config.SETTINGS:
        assert f"| `{name}` |" in guide, f"{name} is missing from docs/guide.md's settings table"
        assert any(line.split()[:1] == [name] for line in lines), f"scalargrad info does not show {name}"


@pytest.mark.parametrize("name, reader", [("SCALARGRAD_CODEGEN_MAX_OPS", config.codegen_max_ops),
                                          ("SCALARGRAD_CODEGEN_MAX_TAPES", config.codegen_max_tapes)])
def test_numbers_default_and_refuse_what_does_not_convert(monkeypatch, name, reader):
    monkeypatch.delenv(name, raising=False)
    assert reader() == config.SETTINGS[name].default
    monkeypatch.setenv(name, "7")
    assert reader() == 7
    monkeypatch.setenv(name, "many")
    with pytest.raises(ValueError, match=f"{name} must be an integer, got 'many'"):
        reader()


def test_cache_size_in_megabytes(monkeypatch):
    monkeypatch.setenv("SCALARGRAD_CACHE_MAX_MB", "0.5")
    assert config.cache_max_bytes() == 1 << 19
    monkeypatch.delenv("SCALARGRAD_CACHE_MAX_MB")
    assert config.cache_max_bytes() == 256 << 20
