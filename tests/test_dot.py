"""Graphviz pictures of computational graphs (scalargrad.viz.dot): the DOT text, summaries, rendering."""
import contextvars
import re
import shutil

import pytest

import scalargrad as sg
from scalargrad.viz.dot import draw, to_dot
from scalargrad.bench.workloads import make_random


def apples_and_oranges():
    apple, apple_num, orange, orange_num, tax = (sg.Variable(v) for v in (100.0, 2.0, 150.0, 3.0, 1.1))
    price = (apple * apple_num + orange * orange_num) * tax
    names = {apple: "apple", apple_num: "apple num", orange: "orange", orange_num: "orange num", tax: "tax"}
    return price, names


def edge_labels(dot: str) -> list[str]:
    return re.findall(r'-> n?\w+ \[label="([^"]*)"\]', dot)


def test_forward_values_on_edges_before_backward():
    price, names = apples_and_oranges()
    dot = to_dot(price, names=names)
    assert dot.startswith("digraph") and dot.rstrip().endswith("}")
    for name in names.values():
        assert f'label="{name}"' in dot
    assert sorted(edge_labels(dot)) == sorted(["100", "2", "150", "3", "200", "450", "650", "1.1", "715"])
    assert "←" not in dot
    assert dot.count('shape=circle, label="×"') == 3 and dot.count('label="+"') == 1


def test_derivatives_on_edges_after_backward():
    price, names = apples_and_oranges()
    price.backward()
    labels = edge_labels(to_dot(price, names=names))
    for expected in (r"100\n← 2.2", r"2\n← 110", r"150\n← 3.3", r"3\n← 165", r"1.1\n← 650", r"715\n← 1"):
        assert expected in labels


def test_values_and_grads_switch_off():
    price, names = apples_and_oranges()
    price.backward()
    only_grads = edge_labels(to_dot(price, names=names, values=False))
    assert r"← 2.2" in only_grads and "100" not in " ".join(only_grads)
    only_values = to_dot(price, names=names, grads=False)
    assert "←" not in only_values and "100" in edge_labels(only_values)
    assert set(edge_labels(to_dot(price, values=False, grads=False))) == {""}


def test_names_by_id_and_default_names():
    apple, num = sg.Variable(100.0), sg.Variable(2.0)
    y = apple * num
    assert 'label="apple"' in to_dot(y, names={id(apple): "apple"})
    dot = to_dot(y)
    assert 'label="x0"' in dot and 'label="x1"' in dot


def test_only_instructions_the_output_depends_on():
    x = sg.Variable(2.0)
    unused = sg.exp(x)  # recorded in the same recorder, but not part of y
    y = x * 3.0
    dot = to_dot(y)
    assert "exp" not in dot and unused.data > 0


def test_tape_structure_and_values_with_x():
    def f(x, y):
        return sg.sin(x) * y + x ** 3.5
    tape = sg.trace(f, 1.0, 2.0)
    plain = to_dot(tape, names={0: "x", 1: "y"})
    assert 'label="x"' in plain and 'label="sin"' in plain and "x^3.5" in plain
    assert set(edge_labels(plain)) == {""}
    with_values = to_dot(tape, x=[1.0, 2.0])
    value, (gx, gy) = sg.value_and_grad(f, argnums=(0, 1))(1.0, 2.0)
    assert f'{value:.6g}\\n← 1"' in with_values
    assert f"← {gy:.6g}" in with_values


def test_large_graph_is_summarised():
    fun, x0 = make_random(10_000)
    tape = sg.trace(fun, x0)
    dot = to_dot(tape, x=x0, max_nodes=100)
    match = re.search(r"… (\d+) nodes omitted", dot)
    assert match and int(match.group(1)) > 1000
    assert len(re.findall(r"^  n\d+ \[", dot, re.M)) == 100
    assert len(dot) < 20_000


def test_rejects_other_objects():
    with pytest.raises(TypeError, match="Variable or Tape"):
        to_dot(3.0)


def test_draw_without_graphviz_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    price, _ = apples_and_oranges()
    with pytest.raises(RuntimeError, match="apt-get install graphviz"):
        draw(price, tmp_path / "g.png")


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz `dot` is not installed")
def test_draw_renders_png_and_svg(tmp_path):
    price, names = apples_and_oranges()
    price.backward()
    png = draw(price, tmp_path / "price.png", names=names)
    assert open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    svg = draw(price, tmp_path / "price.svg", names=names)
    assert "apple num" in open(svg).read()


def test_readme_picture_and_its_dot_text_are_current():
    from pathlib import Path
    root = Path(__file__).parent.parent
    readme = (root / "README.md").read_text()
    assert "](docs/apples_oranges.png)" in readme
    assert (root / "docs" / "apples_oranges.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The README shows the graph as a fresh interpreter records it; an earlier test's graph that was
    # never sealed by backward() would shift the node numbers, so record in an empty context.
    price, names = contextvars.Context().run(apples_and_oranges)
    price.backward()
    dot = to_dot(price, names=names)
    edges = re.findall(r"^  n\d+ -> \w+ \[label=.*\];$", readme, re.M)
    assert len(edges) == 9
    for line in edges:
        assert line in dot.splitlines(), line
