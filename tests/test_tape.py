"""Tape: immutability, ``validate()`` errors that name the instruction, and golden listings of
recorded programs."""
from __future__ import annotations

import re

import numpy as np
import pytest

import scalargrad as sg
from scalargrad.core.ops import OPCODE
from scalargrad.core.tape import Tape

IN, CONST, ADD, MUL, EXP, WHERE = (OPCODE[n] for n in ("input", "const", "add", "mul", "exp", "where"))


def _tape(**changes):
    """input, input, const 2.0, mul %0 %2, add %3 %1: a valid tape, with fields replaced."""
    fields = dict(op=[IN, IN, CONST, MUL, ADD], a=[-1, -1, -1, 0, 3], b=[-1, -1, -1, 2, 1],
                  c=[-1] * 5, lit=[0.0, 0.0, 2.0, 0.0, 0.0], inputs=[0, 1], outputs=[4])
    fields.update(changes)
    return Tape(**fields)


# --- immutability -----------------------------------------------------------------------------------

def test_tape_attributes_cannot_be_assigned():
    tape = _tape()
    with pytest.raises(AttributeError):
        tape.op = np.zeros(5, np.int8)
    with pytest.raises(AttributeError):
        tape.extra = 1


@pytest.mark.parametrize("name", ["op", "a", "b", "c", "lit", "inputs", "outputs", "guards", "guard_values"])
def test_tape_arrays_are_read_only(name):
    tape = _tape()
    arr = getattr(tape, name)
    assert not arr.flags.writeable
    if arr.size:
        with pytest.raises(ValueError):
            arr[0] = arr[0]
    assert not tape.arrays()[name].flags.writeable


def test_tape_copies_its_arguments():
    op = np.array([IN, IN, CONST, MUL, ADD], np.int8)
    tape = _tape(op=op)
    op[3] = ADD
    assert tape.op[3] == MUL


def test_tape_equality_and_length():
    assert _tape() == _tape()
    assert _tape() != _tape(lit=[0.0, 0.0, 3.0, 0.0, 0.0])
    assert len(_tape()) == 5
    assert "5 instructions" in repr(_tape())


# --- validate ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("changes, where", [
    (dict(a=[-1, -1, -1, 3, 3]), r"instruction 3\b"),                 # operand slot == k
    (dict(b=[-1, -1, -1, 2, 7]), r"instruction 4\b"),                 # operand slot > k
    (dict(a=[-1, -1, -1, -2, 3]), r"instruction 3\b"),                # negative operand slot
    (dict(c=[-1, -1, -1, 0, -1]), r"instruction 3\b"),                # unused operand not -1
    (dict(b=[-1, -1, 0, 2, 1]), r"instruction 2\b"),                  # const with an operand
    (dict(op=[IN, IN, CONST, 99, ADD]), r"instruction 3\b"),          # opcode not in the table
    (dict(op=[IN, IN, CONST, -1, ADD]), r"instruction 3\b"),          # negative opcode
    (dict(op=[IN, IN, CONST, MUL, WHERE]), r"instruction 4\b"),       # where without operand c
], ids=["operand-is-self", "operand-after", "operand-negative", "unused-operand-set",
        "leaf-with-operand", "bad-opcode", "negative-opcode", "missing-operand"])
def test_validate_rejects_malformed_instructions_naming_them(changes, where):
    with pytest.raises(ValueError, match=where):
        _tape(**changes)


def test_validate_rejects_inputs_that_are_not_input_instructions():
    with pytest.raises(ValueError, match="input") as info:
        _tape(op=[IN, CONST, CONST, MUL, ADD], inputs=[0, 2])
    # Names the offending slot, not just the rule.
    assert re.search(r"(instruction|slot|%)\s*2\b", str(info.value)), str(info.value)


def test_validate_rejects_input_instructions_missing_from_inputs():
    with pytest.raises(ValueError, match="input"):
        _tape(inputs=[0])


def test_validate_rejects_duplicate_inputs():
    with pytest.raises(ValueError, match="input"):
        _tape(inputs=[0, 0])


@pytest.mark.parametrize("name", ["a", "b", "c", "lit"])
def test_validate_rejects_array_length_mismatch_naming_the_array(name):
    short = dict(a=[-1, -1, -1, 0], b=[-1, -1, -1, 2], c=[-1] * 4, lit=[0.0] * 4)[name]
    with pytest.raises(ValueError, match=repr(name)):
        _tape(**{name: short})


@pytest.mark.parametrize("name, slots", [("outputs", [5]), ("outputs", [-1]), ("guards", [9])])
def test_validate_rejects_slots_outside_the_tape(name, slots):
    extra = dict(guard_values=[1.0] * len(slots)) if name == "guards" else {}
    with pytest.raises(ValueError, match=name):
        _tape(**{name: slots}, **extra)


def test_validate_rejects_guards_without_values():
    with pytest.raises(ValueError, match="guard"):
        _tape(guards=[3], guard_values=[])


def test_validate_accepts_recorded_tapes_and_the_empty_tape():
    sg.trace(lambda x, y: sg.where(x < y, x, y) * 2.0, 1.0, 2.0).validate()
    Tape([], [], [], [], [], [], []).validate()


# --- golden listings ------------------------------------------------------------------------------

def test_listing_of_sum_of_squares():
    tape = sg.trace(lambda x, y: x * x + y * y, 2.0, 3.0)
    assert isinstance(tape, Tape)
    assert str(tape) == (
        "%0 = input 0\n"
        "%1 = input 1\n"
        "%2 = mul %0 %0\n"
        "%3 = mul %1 %1\n"
        "%4 = add %2 %3\n"
        "return %4"
    )


def test_listing_with_a_guard_and_a_constant():
    def f(x):
        if x > 0:
            return x * 3.0
        return -x

    assert str(sg.trace(f, 2.0)) == (
        "%0 = input 0\n"
        "%1 = const 0.0\n"
        "%2 = gt %0 %1\n"
        "%3 = const 3.0\n"
        "%4 = mul %0 %3\n"
        "guard %2 == 1\n"
        "return %4"
    )
    assert str(sg.trace(f, -2.0)) == (
        "%0 = input 0\n"
        "%1 = const 0.0\n"
        "%2 = gt %0 %1\n"
        "%3 = neg %0\n"
        "guard %2 == 0\n"
        "return %3"
    )


def test_listing_of_truthiness_records_a_comparison_with_zero():
    def f(x):
        return x + 1.0 if x * 2.0 else x

    assert str(sg.trace(f, 1.0)) == (
        "%0 = input 0\n"
        "%1 = const 2.0\n"
        "%2 = mul %0 %1\n"
        "%3 = const 0.0\n"
        "%4 = ne %2 %3\n"
        "%5 = const 1.0\n"
        "%6 = add %0 %5\n"
        "guard %4 == 1\n"
        "return %6"
    )


def test_listing_of_several_outputs_and_an_array_argument():
    tape = sg.trace(lambda v, s: (v[1] * s, sg.where(v[0], v[1], s)), np.array([1.0, 2.0]), 3.0)
    assert str(tape) == (
        "%0 = input 0\n"
        "%1 = input 1\n"
        "%2 = input 2\n"
        "%3 = mul %1 %2\n"
        "%4 = where %0 %1 %2\n"
        "return %3, %4"
    )


@pytest.mark.parametrize("f, line", [
    (lambda x: x ** 2, "%1 = square %0"),
    (lambda x: x ** 2.0, "%1 = square %0"),
    (lambda x: x ** 3.0, "%1 = powc %0 3.0"),
    (lambda x: x ** 0.5, "%1 = powc %0 0.5"),
    (lambda x: 2 ** x, "%1 = cpow %0 2.0"),
    (lambda x: sg.powc(x, -1.5), "%1 = powc %0 -1.5"),
    (lambda x: sg.cpow(x, 10.0), "%1 = cpow %0 10.0"),
    (lambda x: -x, "%1 = neg %0"),
    (lambda x: abs(x), "%1 = abs %0"),
], ids=["x**2", "x**2.0", "x**3.0", "x**0.5", "2**x", "powc", "cpow", "neg", "abs"])
def test_power_and_unary_operators_record_the_expected_op(f, line):
    assert str(sg.trace(f, 1.5)).splitlines() == ["%0 = input 0", line, "return %1"]


def test_power_of_two_variables_records_pow():
    assert str(sg.trace(lambda x, y: x ** y, 1.5, 2.0)).splitlines()[2] == "%2 = pow %0 %1"


@pytest.mark.parametrize("expr, name, order", [
    (lambda x, y: x + y, "add", "%0 %1"), (lambda x, y: y + x, "add", "%1 %0"),
    (lambda x, y: x - y, "sub", "%0 %1"), (lambda x, y: x * y, "mul", "%0 %1"),
    (lambda x, y: x / y, "div", "%0 %1"), (lambda x, y: x < y, "lt", "%0 %1"),
    (lambda x, y: x <= y, "le", "%0 %1"), (lambda x, y: x > y, "gt", "%0 %1"),
    (lambda x, y: x >= y, "ge", "%0 %1"), (lambda x, y: x == y, "eq", "%0 %1"),
    (lambda x, y: x != y, "ne", "%0 %1"),
], ids=["add", "radd-order", "sub", "mul", "div", "lt", "le", "gt", "ge", "eq", "ne"])
def test_binary_operators_record_their_op_with_operands_in_order(expr, name, order):
    assert str(sg.trace(expr, 1.0, 2.0)).splitlines()[2] == f"%2 = {name} {order}"


def test_reflected_operators_record_the_constant_first():
    assert str(sg.trace(lambda x: 1.0 - x, 2.0)).splitlines()[1:3] == ["%1 = const 1.0", "%2 = sub %1 %0"]
    assert str(sg.trace(lambda x: 2 / x, 2.0)).splitlines()[1:3] == ["%1 = const 2.0", "%2 = div %1 %0"]


def test_tape_pickles_as_arrays_and_is_validated_on_load():
    import pickle
    tape = sg.trace(lambda x, y: sg.where(x > y, x * y, sg.exp(x)), 1.0, 2.0)
    assert str(pickle.loads(pickle.dumps(tape))) == str(tape)
    cls, (op, *rest) = tape.__reduce__()
    bad = op.copy()
    bad[-1] = 120  # an opcode outside the table: rebuilding the tape rejects it
    with pytest.raises(ValueError, match="not in the op table"):
        cls(bad, *rest)
