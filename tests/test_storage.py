"""Saved tapes: round trips that the kernels cannot tell apart, and every kind of bad file raising
ValueError (never IndexError, struct.error, UnicodeDecodeError, MemoryError or a crash)."""
from __future__ import annotations

import json
import os
import re
import struct
import subprocess
import sys
import tracemalloc
import zlib

import numpy as np
import pytest
from helpers import compiled_evaluate, compiled_value_and_grad, random_program, trace_program

import scalargrad as sg
from scalargrad.core import storage
from scalargrad.jit import kernels
from scalargrad.core.ops import OPCODE, OPS
from scalargrad.core.tape import Tape

TABLE = [[op.name, op.arity, op.literal] for op in OPS]


def _guarded(x, y):
    z = sg.sin(x) * y ** 2.5
    if x > y:
        z = z + sg.exp(x)
    return sg.where(x < 0.0, 2.0 ** x, z), z * y


def _small_tape() -> Tape:
    return sg.trace(_guarded, 1.5, 0.5)


def _valid_bytes() -> bytes:
    return _small_tape().to_bytes()


def _arrays(tape: Tape, **changes) -> dict:
    arrays = {k: np.array(v) for k, v in tape.arrays().items()}
    arrays.update({k: np.asarray(v) for k, v in changes.items()})
    return arrays


def _fix_crc(data: bytes) -> bytes:
    body = data[:-4]
    return body + struct.pack("<I", zlib.crc32(body))


def _header_bytes(data: bytes) -> tuple[dict, int]:
    (length,) = struct.unpack_from("<I", data, 12)
    return json.loads(data[16:16 + length]), length


def _with_header(data: bytes, header: dict) -> bytes:
    """Replace the header (keeping the arrays) and fix the length and checksum."""
    _, length = _header_bytes(data)
    text = json.dumps(header).encode("ascii")
    return _fix_crc(data[:12] + struct.pack("<I", len(text)) + text + data[16 + length:])


def _rejects(data: bytes, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Tape.from_bytes(data)


# --- round trips ------------------------------------------------------------------------------------

def _assert_same_results(tape, loaded, x):
    assert loaded == tape
    assert str(loaded) == str(tape)
    p, q = kernels.Program(tape), kernels.Program(loaded)
    out_p, ok_p = compiled_evaluate(p, x)
    out_q, ok_q = compiled_evaluate(q, x)
    assert ok_p == ok_q
    np.testing.assert_array_equal(out_q, out_p)  # bit for bit, NaN in the same places
    v_p, g_p, ok_p = compiled_value_and_grad(p, x)
    v_q, g_q, ok_q = compiled_value_and_grad(q, x)
    assert ok_p == ok_q
    if ok_p:  # a failed guard leaves the gradient unwritten
        np.testing.assert_array_equal([v_q, *g_q], [v_p, *g_p])


@pytest.mark.parametrize("seed", range(8))
def test_random_program_round_trips_through_a_file(seed, tmp_path):
    rng = np.random.default_rng(seed)
    program, x, outputs = random_program(rng, n_inputs=4, n_ops=60)
    tape = trace_program(program, x, outputs)
    tape.save(tmp_path / "t.sgtape")
    loaded = sg.Tape.load(tmp_path / "t.sgtape")
    _assert_same_results(tape, loaded, x)
    _assert_same_results(tape, loaded, rng.uniform(-2, 2, len(x)))


def test_guards_literals_and_special_values_round_trip(tmp_path):
    tape = _small_tape()
    assert len(tape.guards) == 1
    path = str(tmp_path / "g.sgtape")
    tape.save(path)
    loaded = Tape.load(path)
    for x in ([1.5, 0.5], [0.1, 0.5], [-1.0, np.nan], [np.inf, -np.inf]):
        _assert_same_results(tape, loaded, np.array(x))
    lit = sg.trace(lambda x: x + np.inf + (-0.0) + 5e-324 + np.nan, 1.0)
    loaded = Tape.from_bytes(lit.to_bytes())
    assert loaded.lit.tobytes() == lit.lit.tobytes()  # NaN payloads and -0.0 preserved


def test_a_constant_tape_round_trips_and_one_without_outputs_is_not_saved():
    const = sg.trace(lambda: 3.0)
    assert Tape.from_bytes(const.to_bytes()) == const
    with pytest.raises(ValueError, match="save: the tape has no outputs"):
        Tape([], [], [], [], [], [], []).to_bytes()


def test_file_starts_with_magic_and_version():
    data = _valid_bytes()
    assert data[:8] == b"SGTAPE\r\n"
    assert struct.unpack_from("<I", data, 8)[0] == storage.VERSION == 1
    header, _ = _header_bytes(data)
    assert header["ops"] == TABLE
    assert [name for name, _, _ in header["arrays"]] == [name for name, _ in storage.LAYOUT]


def test_opcodes_are_remapped_by_name_when_the_table_is_reordered():
    tape = _small_tape()
    order = list(range(len(OPS)))[::-1]  # saved table = current table reversed
    saved_code = {old: new for new, old in enumerate(order)}
    data = storage.pack([TABLE[i] for i in order],
                        _arrays(tape, op=np.array([saved_code[int(o)] for o in tape.op])))
    assert Tape.from_bytes(data) == tape


# --- malformed files --------------------------------------------------------------------------------

def test_truncated_files_are_rejected():
    data = _valid_bytes()
    for cut in range(len(data)):
        with pytest.raises(ValueError, match="not a valid saved tape"):
            Tape.from_bytes(data[:cut])


def test_truncated_file_on_disk_is_rejected(tmp_path):
    path = tmp_path / "t.sgtape"
    path.write_bytes(_valid_bytes()[:-9])
    with pytest.raises(ValueError, match="truncated"):
        Tape.load(path)


def test_trailing_bytes_are_rejected():
    _rejects(_valid_bytes() + b"\0", "trailing bytes")


def test_wrong_magic_is_rejected():
    data = _valid_bytes()
    _rejects(b"SGTAPX" + data[6:], "magic")
    _rejects(b"\x80\x04\x95" + data[3:], "magic")  # a pickle
    _rejects(b"", "magic")
    _rejects(data.replace(b"\r\n", b"\n", 1), "magic")  # text-mode mangling


@pytest.mark.parametrize("version", [0, 2, 2**32 - 1])
def test_wrong_version_is_rejected(version):
    data = _valid_bytes()
    _rejects(_fix_crc(data[:8] + struct.pack("<I", version) + data[12:]), f"version {version}")


def test_every_flipped_bit_is_rejected():
    data = _valid_bytes()
    for i in range(len(data)):
        for bit in (0, 7):
            corrupt = bytearray(data)
            corrupt[i] ^= 1 << bit
            with pytest.raises(ValueError, match="not a valid saved tape"):
                Tape.from_bytes(bytes(corrupt))


def test_flipped_literal_byte_is_caught_by_the_checksum():
    tape = _small_tape()
    data = bytearray(tape.to_bytes())
    _, length = _header_bytes(bytes(data))
    n = len(tape)
    lit_start = 16 + length + n * (1 + 4 * 3)
    data[lit_start + 8 * int(np.flatnonzero(tape.lit)[0])] ^= 1
    _rejects(bytes(data), "checksum")


@pytest.mark.parametrize("length", [10**12, 2**31 - 2, 2**63, -1])
def test_huge_length_header_is_rejected_before_allocating(length):
    data = _valid_bytes()
    header, _ = _header_bytes(data)
    for entry in header["arrays"][:5]:
        entry[2] = length
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match="length|header describes"):
            Tape.from_bytes(_with_header(data, header))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


def test_huge_header_length_field_is_rejected():
    data = _valid_bytes()
    _rejects(_fix_crc(data[:12] + struct.pack("<I", 2**32 - 1) + data[16:]), "header length")


@pytest.mark.parametrize("header, match", [
    (b"not json", "JSON"),
    ("{\"ops\": \"\u00e9\"}".encode("utf-8"), "JSON"),
    (b"[" * 5000 + b"]" * 5000, "JSON|keys"),
    (b"[]", "keys"),
    (b'{"ops": [], "arrays": []}', "ops"),
    (b'{"ops": [["add", 2, 0]], "arrays": []}', "ops"),
    (b'{"ops": [["add", 2, false], ["add", 2, false]], "arrays": []}', "twice"),
])
def test_malformed_headers_are_rejected(header, match):
    data = _valid_bytes()
    _, length = _header_bytes(data)
    _rejects(_fix_crc(data[:12] + struct.pack("<I", len(header)) + header + data[16 + length:]), match)


@pytest.mark.parametrize("change, match", [
    (lambda e: e.__setitem__(1, "<i8"), "should be"),
    (lambda e: e.__setitem__(0, "b"), "should be"),
    (lambda e: e.__setitem__(2, True), "length"),
    (lambda e: e.__setitem__(2, 1.0), "length"),
    (lambda e: e.append(0), "should be"),
])
def test_wrong_array_entries_are_rejected(change, match):
    data = _valid_bytes()
    header, _ = _header_bytes(data)
    change(header["arrays"][0])
    _rejects(_with_header(data, header), match)


def test_inconsistent_lengths_are_rejected():
    tape = _small_tape()
    _rejects(storage.pack(TABLE, _arrays(tape, lit=tape.lit[:-1])), "'lit' has length")
    _rejects(storage.pack(TABLE, _arrays(tape, guard_values=[])), "guards")


@pytest.mark.parametrize("opcode", [len(OPS), 99, 127, -1, -128])
def test_bad_opcode_is_rejected(opcode):
    tape = _small_tape()
    op = np.array(tape.op)
    op[3] = opcode
    _rejects(storage.pack(TABLE, _arrays(tape, op=op)), "instruction 3: opcode")


def test_unknown_or_changed_op_is_rejected():
    tape = _small_tape()
    renamed = [list(row) for row in TABLE]
    renamed[OPCODE["sin"]][0] = "sine"
    _rejects(storage.pack(renamed, _arrays(tape)), "'sine'.*not in")
    changed = [list(row) for row in TABLE]
    changed[OPCODE["sin"]][1] = 2
    _rejects(storage.pack(changed, _arrays(tape)), "'sin' was saved with arity 2")
    # An op the tape does not use may be unknown: only used rows must match.
    extra = TABLE + [["frobnicate", 5, False]]
    assert Tape.from_bytes(storage.pack(extra, _arrays(tape))) == tape


@pytest.mark.parametrize("slot", [3, 4, 100, 2**31 - 1, -2])
def test_operand_slot_not_before_its_instruction_is_rejected(slot):
    tape = _small_tape()
    a = np.array(tape.a)
    assert tape.op[3] != OPCODE["input"] and OPS[tape.op[3]].arity >= 1
    a[3] = slot
    _rejects(storage.pack(TABLE, _arrays(tape, a=a)), "instruction 3 .*operand a=")


def test_unused_operand_must_be_minus_one():
    tape = _small_tape()
    c = np.array(tape.c)
    c[3] = 0
    _rejects(storage.pack(TABLE, _arrays(tape, c=c)), "unused")


@pytest.mark.parametrize("name, value", [("inputs", [0, 99]), ("outputs", [-1]), ("guards", [10**6]),
                                         ("inputs", [0, 0]), ("inputs", [0, 2])])
def test_bad_input_output_and_guard_slots_are_rejected(name, value):
    tape = _small_tape()
    changes = {name: value}
    if name == "guards":
        changes["guard_values"] = [1.0]
    _rejects(storage.pack(TABLE, _arrays(tape, **changes)), "not a valid saved tape")


# A tape without outputs: the gradient kernel read output 0 out of bounds (a segfault), a compiled
# jit kernel returned garbage. Run apart, so that a crash fails this test instead of killing pytest.
_NO_OUTPUTS = """
import sys, numpy as np, scalargrad as sg
from scalargrad.core import storage
from scalargrad.jit import batch, cuda, kernels
from scalargrad.core.ops import OPS

def refused(call):
    try:
        call()
        print("not refused")
    except ValueError as e:
        print(e)

refused(lambda: sg.trace(lambda x: (), np.ones(1)))
refused(lambda: sg.jit(lambda x: ()).compile(1.0))
refused(lambda: sg.jit(lambda x: 2.0 * x).compile(np.zeros(0)))
empty = sg.Tape(op=[0], a=[-1], b=[-1], c=[-1], lit=[0.0], inputs=[0], outputs=[])  # built by hand
refused(lambda: empty.save(sys.argv[1]))
with open(sys.argv[1], "wb") as f:
    f.write(storage.pack([[op.name, op.arity, op.literal] for op in OPS], empty.arrays()))
refused(lambda: sg.Tape.load(sys.argv[1]))
p = kernels.Program(empty)
refused(lambda: kernels.value_and_grad(p.ins, p.lit, p.io, np.ones(1), np.empty(1), p.workspace()))
refused(lambda: batch.value_and_grad(p, np.ones((3, 1))))
refused(lambda: cuda.value_and_grad(p, np.ones((3, 1))))  # before it looks for a GPU
"""


def test_a_tape_without_outputs_never_reaches_a_gradient_kernel(tmp_path):
    path = tmp_path / "no_outputs.sgt"
    result = subprocess.run([sys.executable, "-c", _NO_OUTPUTS, str(path)], capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "<lambda> returned an empty tuple: a traced function must return at least one output",
        "<lambda> returned an empty tuple: a traced function must return at least one output",
        "jit(<lambda>).compile: the function has no outputs at these arguments (an empty array), and the "
        "compiled kernel returns the first",
        f"save: {storage.NO_OUTPUTS}; load would refuse the file",
        f"{path}: not a valid saved tape: {storage.NO_OUTPUTS}",
        kernels.NO_OUTPUT,
        kernels.NO_OUTPUT,
        kernels.NO_OUTPUT,
    ]
    assert sg.jit(lambda x: 2.0 * x)(np.zeros(0)).shape == (0,)  # an empty result is still a result


@pytest.mark.parametrize("value", [np.inf, -np.inf, np.nan, 0.5, 2.0])
def test_guard_values_other_than_0_and_1_are_rejected(value):
    tape = _small_tape()
    assert len(tape.guards) == 1
    _rejects(storage.pack(TABLE, _arrays(tape, guard_values=[value])),
             rf"not a valid saved tape: guard 0 \(slot %{int(tape.guards[0])}\): guard value {value!r} must be 0.0 or 1.0")


def test_a_directory_is_rejected_naming_it(tmp_path):
    with pytest.raises(ValueError, match=f"^{re.escape(str(tmp_path))}: not a valid saved tape: it is a directory"):
        Tape.load(tmp_path)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes on this platform")
def test_a_fifo_is_rejected_without_waiting_for_a_writer(tmp_path):
    fifo = tmp_path / "pipe.sgt"
    os.mkfifo(fifo)
    code = "import sys, scalargrad as sg\ntry:\n    sg.Tape.load(sys.argv[1])\nexcept ValueError as e:\n    print(e)"
    result = subprocess.run([sys.executable, "-c", code, str(fifo)], capture_output=True, text=True,
                            timeout=120)  # opening the FIFO would block forever: a timeout, not a hang
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{fifo}: not a valid saved tape: it is a FIFO (named pipe), not a regular file"
