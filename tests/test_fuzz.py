"""Property tests (hypothesis): the tape loader turns any bytes into a valid Tape or a ValueError, and
compiled kernels agree with the reference sweeps on random programs at ordinary and IEEE-edge inputs.

Bounded to a few seconds each. ``SCALARGRAD_FUZZ_SCALE=k`` multiplies the example counts;
``python tests/test_fuzz.py N`` runs the loader fuzz alone for N examples.
"""
from __future__ import annotations

import os
import struct
import sys
import zlib

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

from helpers import assert_same, compiled_evaluate, compiled_value_and_grad, random_program, trace_program  # noqa: E402

import scalargrad as sg  # noqa: E402
from scalargrad.core import reference, storage  # noqa: E402
from scalargrad.jit import batch, kernels  # noqa: E402
from scalargrad.core.ops import OPS  # noqa: E402
from scalargrad.core.tape import Tape  # noqa: E402

TABLE = [[op.name, op.arity, op.literal] for op in OPS]
SCALE = int(os.environ.get("SCALARGRAD_FUZZ_SCALE", "1"))
LOADER_EXAMPLES = 300 * SCALE
PROGRAM_EXAMPLES = 60 * SCALE
EDGES = (0.0, -0.0, np.inf, -np.inf, np.nan, 5e-324, -5e-324, 1e308, -1e308, 2.2250738585072014e-308)


def _seed_tapes() -> list[Tape]:
    def guarded(x, y, z):
        w = sg.where(x > y, sg.log(x) * z ** 1.5, 2.0 ** y)
        if z > 0.0:
            w = w + sg.arctan2(x, z)
        return w, sg.maximum(w, y), x
    rng = np.random.default_rng(7)
    program, x, outputs = random_program(rng, n_inputs=3, n_ops=12)
    return [sg.trace(guarded, 1.0, 2.0, 3.0), trace_program(program, x, outputs), sg.trace(lambda: 1.0)]


SEEDS = [t.to_bytes() for t in _seed_tapes()]


def _fix_crc(data: bytes) -> bytes:
    if len(data) < 4:
        return data
    body = data[:-4]
    return body + struct.pack("<I", zlib.crc32(body))


def run_loaded(tape: Tape) -> None:
    """Compile and run a loaded tape: must not crash whatever the inputs."""
    program = kernels.Program(tape)
    x = np.linspace(-1.5, 2.5, len(tape.inputs))
    compiled_evaluate(program, x)
    # kernels.value_and_grad reads output 0's slot from io: a tape without outputs has none.
    if len(tape.outputs):
        compiled_value_and_grad(program, x)


def check_loader(data: bytes) -> bool:
    """True if ``data`` loaded (and ran); False if it raised ValueError; anything else propagates."""
    try:
        tape = Tape.from_bytes(data)
    except ValueError as e:
        assert "not a valid saved tape" in str(e)
        return False
    assert isinstance(tape, Tape)
    tape.validate()
    run_loaded(tape)
    return True


# --- strategies ---------------------------------------------------------------------------------------

INTERESTING_INTS = (0, 1, -1, 2, 3, 4, 5, 7, 8, 127, 128, 255, -128, 2**15, 2**31 - 1, -2**31, 2**32 - 1)


@st.composite
def mutated_files(draw):
    """A valid file with bytes replaced/inserted/deleted or cut, the checksum often re-fixed so that
    the mutation reaches the structural checks."""
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["set", "flip", "int", "insert", "delete", "truncate"]))
        if not data:
            break
        i = draw(st.integers(0, len(data) - 1))
        if kind == "set":
            data[i] = draw(st.integers(0, 255))
        elif kind == "flip":
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif kind == "int":
            data[i:i + 4] = struct.pack("<I", draw(st.sampled_from(INTERESTING_INTS)) % 2**32)
        elif kind == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete":
            del data[i:i + draw(st.integers(1, 8))]
        else:
            del data[i:]
    data = bytes(data)
    return _fix_crc(data) if draw(st.booleans()) else data


@st.composite
def mutated_arrays(draw):
    """A valid tape's arrays with a few elements replaced by edge values (packed with a valid
    checksum): exercises opcode and operand validation, and often yields valid tapes to run."""
    tape = draw(st.sampled_from(_seed_tapes_cached()))
    arrays = {k: np.array(v) for k, v in tape.arrays().items()}
    for _ in range(draw(st.integers(1, 3))):
        name = draw(st.sampled_from([n for n, _ in storage.LAYOUT]))
        arr = arrays[name]
        if draw(st.integers(0, 4)) == 0:  # change the length
            arrays[name] = arr[:-1] if arr.size and draw(st.booleans()) else np.append(arr, arr[:1] if arr.size else 0)
            continue
        if not arr.size:
            continue
        i = draw(st.integers(0, arr.size - 1))
        if arr.dtype.kind == "f":
            arr[i] = draw(st.sampled_from(EDGES + (1.0, 2.5)))
        elif name == "op":
            arr[i] = draw(st.integers(-128, 127))
        else:
            value = draw(st.sampled_from(INTERESTING_INTS + tuple(range(-2, len(tape) + 2))))
            arr[i] = (value + 2**31) % 2**32 - 2**31  # as int32
    return storage.pack(TABLE, arrays)


_TAPES = []


def _seed_tapes_cached():
    if not _TAPES:
        _TAPES.extend(_seed_tapes())
    return _TAPES


any_bytes = st.one_of(
    st.binary(max_size=200),
    st.binary(max_size=200).map(lambda b: storage.MAGIC + struct.pack("<II", 1, len(b)) + b),
    st.binary(max_size=64).map(lambda b: _fix_crc(storage.MAGIC + struct.pack("<II", 1, len(b)) + b + b"\0" * 4)),
)
loader_inputs = st.one_of(mutated_files(), mutated_arrays(), any_bytes)


@settings(max_examples=LOADER_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(loader_inputs)
def test_loader_returns_a_valid_tape_or_raises_value_error(data):
    check_loader(data)


def test_loader_fuzz_seeds_are_valid_files():
    for data in SEEDS:
        assert check_loader(data)


# --- random programs: compiled kernels against the reference ----------------------------------------

point = st.one_of(st.sampled_from(EDGES + (1.0, -1.0, 0.5)), st.floats(-3.0, 3.0))


@settings(max_examples=PROGRAM_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), n_ops=st.integers(1, 25), data=st.data())
def test_random_programs_compiled_equal_reference_at_ieee_edges(seed, n_ops, data):
    program, x0, outputs = random_program(np.random.default_rng(seed), n_inputs=3, n_ops=n_ops)
    tape = trace_program(program, x0, outputs)
    compiled = kernels.Program(tape)
    x = np.array(data.draw(st.lists(point, min_size=3, max_size=3)))
    for at in (x0, x):
        out, ok = compiled_evaluate(compiled, at)
        assert ok
        assert_same(out, reference.evaluate(tape, at), rtol=1e-12, what=f"outputs at {at}")
        value, grad, ok = compiled_value_and_grad(compiled, at)
        ref_value, ref_grad = reference.value_and_grad(tape, at)
        assert_same(value, ref_value, rtol=1e-12, what=f"value at {at}")
        assert_same(grad, ref_grad, rtol=1e-9, what=f"gradient at {at}")
    values, grads, ok = batch.value_and_grad(compiled, np.array([x0, x]))  # the batch backend too
    assert ok.all()
    for p, at in enumerate((x0, x)):
        ref_value, ref_grad = reference.value_and_grad(tape, at)
        assert_same(values[p], ref_value, rtol=1e-12, what=f"batch value at {at}")
        assert_same(grads[p], ref_grad, rtol=1e-9, what=f"batch gradient at {at}")
    check_finite_differences(tape, x0)


def _central(tape, x, i, h):
    step = np.zeros_like(x)
    step[i] = h
    return (reference.evaluate(tape, x + step)[0] - reference.evaluate(tape, x - step)[0]) / (2 * h)


def check_finite_differences(tape, x, h=1e-5, rtol=1e-5):
    """The compiled gradient against central differences, wherever the differences are
    trustworthy: two step sizes must agree (they do not across a kink, a branch of where or
    maximum, or near a singularity, which random programs hit often), and the values be finite.
    Non-finite gradient entries are left to the reference comparison (NaN in the same places)."""
    compiled = kernels.Program(tape)
    _, grad, _ = compiled_value_and_grad(compiled, x)
    checked = 0
    with np.errstate(all="ignore"):
        for i in range(len(x)):
            coarse, fine = _central(tape, x, i, h), _central(tape, x, i, h / 4)
            scale = max(abs(fine), 1.0)
            if not (np.isfinite(coarse) and np.isfinite(fine)) or abs(coarse - fine) > 1e-6 * scale:
                continue
            if not np.isfinite(grad[i]):
                continue  # an op without a derivative here (cpow of a negative base, ...), even where
                #           the function is smooth: AD differentiates the program, not the function
            assert abs(grad[i] - fine) <= rtol * scale, (i, grad[i], fine, str(tape))
            checked += 1
    return checked


if __name__ == "__main__":
    # Long loader fuzz: python tests/test_fuzz.py [examples]
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    sys.path.insert(0, "tests")
    loaded = 0

    @settings(max_examples=n, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(loader_inputs)
    def long_fuzz(data):
        global loaded
        loaded += check_loader(data)

    long_fuzz()
    print(f"{n} examples, {loaded} loaded as valid tapes and ran; the rest raised ValueError")
