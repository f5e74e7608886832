"""The ```python blocks of README.md, and of docs/guide.md, run in order in one namespace per file (as
one pasted session), in a temporary working directory holding an empty docs/. A block whose next line
says ``prints`` must print the inline `code` after that word, or else the plain ``` block that follows
(compared by ``same_output``); any other block must print nothing. ``<!-- readme: needs NAME -->`` on
the line right before a fence skips the block only when NAME is missing; NAME is a key of NEEDS: dask,
distributed, scipy (modules), graphviz (dot).
"""
from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import re
import shutil
import traceback
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = [README, ROOT / "docs" / "guide.md"]   # each file is its own session

NEEDS = {
    "dask": lambda: importlib.util.find_spec("dask") is not None,
    "distributed": lambda: importlib.util.find_spec("distributed") is not None,
    "scipy": lambda: importlib.util.find_spec("scipy") is not None,
    "graphviz": lambda: shutil.which("dot") is not None,
}

FENCE = re.compile(r"^```(\w*)\s*$")
MARKER = re.compile(r"^<!--\s*readme:\s*needs\s+(\S+)\s*-->\s*$")
NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")


@dataclass
class Block:
    line: int                   # README line of the opening fence
    code: str
    needs: str | None           # NAME from a marker, or None
    expected: str | None        # what it prints, or None when the README shows nothing


def fences(lines):
    """(language, first line index, closing fence index) of every fenced block, in order."""
    found, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if m:
            end = next(j for j in range(i + 1, len(lines)) if lines[j].rstrip() == "```")
            found.append((m.group(1), i, end))
            i = end
        i += 1
    return found


def parse(text: str, name: str = "README") -> list[Block]:
    lines = text.splitlines()
    all_fences = fences(lines)
    blocks = []
    for n, (lang, start, end) in enumerate(all_fences):
        if lang != "python":
            continue
        marker = MARKER.match(lines[start - 1]) if start else None
        expected = None
        after = next((j for j in range(end + 1, len(lines)) if lines[j].strip()), None)
        if after is not None and re.search(r"\bprints\b", lines[after]):
            inline = re.search(r"\bprints\s+`([^`]*)`", lines[after])
            if inline:
                expected = inline.group(1) + "\n"
            else:
                shown = next((f for f in all_fences[n + 1:] if f[1] > after), None)
                between = lines[after + 1:shown[1]] if shown else ["(end of file)"]
                if shown is None or shown[0] != "" or any(line.strip() for line in between):
                    raise ValueError(f"{name} line {after + 1}: 'prints' without inline `code` must be "
                                     f"followed by a plain ``` block holding the output")
                expected = "\n".join(lines[shown[1] + 1:shown[2]]) + "\n"
        blocks.append(Block(start + 1, "\n".join(lines[start + 1:end]) + "\n",
                            marker.group(1) if marker else None, expected))
    return blocks


BLOCKS = {doc: parse(doc.read_text(encoding="utf-8"), doc.name) for doc in DOCS}
CASES = [(doc, i) for doc in DOCS for i in range(len(BLOCKS[doc]))]


def same_number(actual: str, expected: str) -> bool:
    if not any(c in expected for c in ".eE"):
        return actual == expected
    a, e = float(actual), float(expected)
    tolerance = 1e-12 * max(abs(a), abs(e))
    decimals = re.fullmatch(r"[-+]?\d*\.(\d+)", expected)
    if decimals and len(decimals.group(1)) >= 6:
        tolerance = max(tolerance, 10.0 ** -len(decimals.group(1)))
    return abs(a - e) <= tolerance * (1 + 1e-9)


def same_output(actual: str, expected: str) -> bool:
    """Equal up to trailing whitespace; or equal text between the numbers (whitespace runs collapsed)
    and equal numbers: integers exactly, floats within 1e-12 relative or, when printed with 6 or more
    decimals (NumPy's 8 digits, a repr's 17), one unit in the last place."""
    def strip(s):
        return "\n".join(line.rstrip() for line in s.strip("\n").splitlines())

    if strip(actual) == strip(expected):
        return True
    a_nums, e_nums = NUMBER.findall(actual), NUMBER.findall(expected)
    a_text, e_text = (" ".join(NUMBER.sub("#", s).split()) for s in (actual, expected))
    return (a_text == e_text and len(a_nums) == len(e_nums)
            and all(same_number(a, e) for a, e in zip(a_nums, e_nums)))


class Session:
    """One namespace for one file; runs its blocks in order, each once, remembering how each went."""

    def __init__(self, doc: Path, cwd: Path):
        self.doc = doc
        self.cwd = cwd
        self.namespace = {"__name__": "__main__"}
        self.outcomes: dict[int, str] = {}   # block index -> "passed", "skipped: ..." or "failed: ..."

    def run_through(self, index: int) -> str:
        for i in range(len(self.outcomes), index + 1):
            self.outcomes[i] = self._run(BLOCKS[self.doc][i])
        return self.outcomes[index]

    def _run(self, block: Block) -> str:
        if block.needs is not None:
            if block.needs not in NEEDS:
                return f"failed: unknown marker 'needs {block.needs}' (known: {', '.join(NEEDS)})"
            if not NEEDS[block.needs]():
                return f"skipped: needs {block.needs}, which is not installed"
        # Padding makes tracebacks and recorded source locations name the file's lines.
        code = compile("\n" * block.line + block.code, str(self.doc), "exec")
        out = io.StringIO()
        home = os.getcwd()
        try:
            os.chdir(self.cwd)
            with contextlib.redirect_stdout(out):
                exec(code, self.namespace)
        except Exception:
            return "failed: raised\n" + traceback.format_exc()
        finally:
            os.chdir(home)
        printed = out.getvalue()
        if block.expected is None:
            if printed:
                return f"failed: prints, but {self.doc.name} shows no 'prints' output after it:\n{printed}"
        elif not same_output(printed, block.expected):
            return f"failed: printed\n{printed}\nbut {self.doc.name} says it prints\n{block.expected}"
        return "passed"


@pytest.fixture(scope="module")
def sessions(tmp_path_factory):
    """A Session per file, made at its first block."""
    made = {}

    def get(doc: Path) -> Session:
        if doc not in made:
            cwd = tmp_path_factory.mktemp(doc.stem)
            (cwd / "docs").mkdir()  # the README writes docs/apples_oranges.png
            made[doc] = Session(doc, cwd)
        return made[doc]
    return get


@pytest.mark.parametrize("doc", DOCS, ids=lambda doc: doc.name)
def test_every_python_block_is_found(doc):
    text = doc.read_text(encoding="utf-8")
    assert len(BLOCKS[doc]) == len(re.findall(r"^```python", text, flags=re.M)) > 0
    if doc == README:
        assert BLOCKS[doc][0].expected is not None, "the first block's output should be shown and compared"


@pytest.mark.parametrize("doc, index", CASES, ids=[f"{doc.stem}-line{BLOCKS[doc][i].line}" for doc, i in CASES])
def test_block(sessions, doc, index):
    session, blocks = sessions(doc), BLOCKS[doc]
    outcome = session.run_through(index)
    if outcome.startswith("skipped"):
        pytest.skip(f"{doc.name} line {blocks[index].line}: {outcome[len('skipped: '):]}")
    if outcome.startswith("failed"):
        earlier = [f"{blocks[i].line} ({o.split(':')[0]})" for i, o in session.outcomes.items()
                   if i < index and o != "passed"]
        note = f"\n(earlier blocks not passed, at {doc.name} lines {', '.join(earlier)})" if earlier else ""
        pytest.fail(f"{doc.name} block at line {blocks[index].line} {outcome[len('failed: '):]}{note}",
                    pytrace=False)
