"""The semantics table (docs/semantics.md): generated from the op table, up to date, linked from the
README, and what the compiled kernels and finite differences actually give at the listed points."""
from __future__ import annotations

import numpy as np
import pytest
from helpers import assert_same, central_diff

import scalargrad as sg
from scalargrad.core import semantics
from scalargrad.core.ops import USER_OPS

README = semantics.DOC.parent.parent / "README.md"


def test_committed_table_is_up_to_date():
    assert semantics.DOC.exists(), "docs/semantics.md is missing: run python -m scalargrad.core.semantics"
    assert semantics.DOC.read_text(encoding="utf-8") == semantics.render(), \
        "docs/semantics.md is stale: run python -m scalargrad.core.semantics"


def test_table_has_a_row_per_op_and_the_readme_links_it():
    text = semantics.render()
    for op in USER_OPS:
        assert text.count(f"| `{op.name}` |") == 2, op.name  # once in each table
        if op.note and op.note != semantics.CMP:
            assert op.note in text
    assert "(docs/semantics.md)" in README.read_text(encoding="utf-8")


def test_main_writes_the_file(tmp_path):
    out = tmp_path / "semantics.md"
    assert semantics.main([str(out)]) == 0
    assert out.read_text(encoding="utf-8") == semantics.render()


def _compiled(op, x):
    fn = getattr(sg, op.name)
    args = [x] * op.arity + ([semantics.LITERAL] if op.literal else [])

    def f(*xs):
        return fn(*xs, *args[op.arity:])

    value, grads = sg.value_and_grad(f, argnums=tuple(range(op.arity)))(*args[:op.arity])
    return value, grads


@pytest.mark.parametrize("op", USER_OPS, ids=lambda op: op.name)
def test_documented_special_values_are_what_the_compiled_kernels_give(op):
    for x in semantics.SPECIAL:
        value, partials = semantics.at_point(op, x)
        got_value, got_grads = _compiled(op, x)
        assert_same(got_value, value, what=f"{op.name}({x})")
        assert_same(got_grads, partials, what=f"d {op.name}({x})")


@pytest.mark.parametrize("op", [op for op in USER_OPS if op.smooth], ids=lambda op: op.name)
def test_documented_derivatives_match_finite_differences_inside_the_domain(op):
    fn = getattr(sg, op.name)
    f = (lambda *xs: fn(*xs, semantics.LITERAL)) if op.literal else fn
    inside = [x for x in semantics.SPECIAL if all(lo < x < hi for lo, hi in op.domain)]
    assert inside, f"no documented point lies inside {op.name}'s domain: nothing would be checked"
    for x in inside:
        _, partials = semantics.at_point(op, x)
        np.testing.assert_allclose(partials, central_diff(f, [x] * op.arity), rtol=1e-6, atol=1e-8,
                                   err_msg=f"{op.name} at {x}")
