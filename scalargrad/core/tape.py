"""Tape: a recorded scalar program as flat, immutable arrays (struct of arrays, SSA by position).

Instruction ``k`` defines slot ``k``; its operand slots ``a[k] b[k] c[k]`` are ``< k`` (or -1 when
unused), so recording order is a topological order. ``validate()`` checks every invariant that a
compiled sweep relies on, so a malformed tape can never make a kernel read out of bounds.
"""
from __future__ import annotations

import numpy as np

from . import storage
from .ops import INPUT, OPS, display_name

_ARRAYS = {name: np.dtype(dtype).type for name, dtype in storage.LAYOUT}  # name -> dtype, as saved


class Tape:
    """Immutable recorded program.

    op, a, b, c, lit  instruction arrays (length n)
    inputs            slot of each input, in argument order
    outputs           slots whose values the program returns
    guards            slots of recorded comparisons that Python control flow depended on
    guard_values      the value (1.0 or 0.0) each guard had when traced; a different value on a
                      later call means the function would have taken another branch
    """

    __slots__ = tuple(_ARRAYS)

    def __init__(self, op, a, b, c, lit, inputs, outputs, guards=(), guard_values=()):
        given = dict(op=op, a=a, b=b, c=c, lit=lit, inputs=inputs, outputs=outputs, guards=guards,
                     guard_values=guard_values)
        for name, dtype in _ARRAYS.items():
            arr = _converted(name, given[name], dtype)
            arr.flags.writeable = False
            object.__setattr__(self, name, arr)
        self.validate()

    def __setattr__(self, name, value):
        raise AttributeError("Tape is immutable; transformations return a new Tape")

    def __len__(self) -> int:
        return len(self.op)

    def __reduce__(self):
        """Pickled as its arrays; unpickling builds (and so validates) a new Tape."""
        return Tape, tuple(getattr(self, name) for name in _ARRAYS)

    def validate(self) -> None:
        """Raise ValueError unless every invariant holds (lengths, opcodes, operand order)."""
        n = len(self.op)
        for name in ("a", "b", "c", "lit"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"tape array {name!r} has length {len(getattr(self, name))}, expected {n}")
        if n and (self.op.min() < 0 or self.op.max() >= len(OPS)):
            k = int(np.flatnonzero((self.op < 0) | (self.op >= len(OPS)))[0])
            raise ValueError(f"instruction {k}: opcode {int(self.op[k])} is not in the op table")
        arity = np.array([op.arity for op in OPS])[self.op] if n else np.zeros(0, int)
        index = np.arange(n)
        for j, name in enumerate("abc"):
            slots = getattr(self, name)
            used = arity > j
            bad = np.flatnonzero(used & ((slots < 0) | (slots >= index)) | ~used & (slots != -1))
            if bad.size:
                k = int(bad[0])
                raise ValueError(f"instruction {k} ({OPS[self.op[k]].name}): operand {name}={int(slots[k])} "
                                 f"must be {'in [0, ' + str(k) + ')' if used[k] else '-1 (unused)'}")
        for name in ("inputs", "outputs", "guards"):
            slots = getattr(self, name)
            if slots.size and (slots.min() < 0 or slots.max() >= n):
                raise ValueError(f"tape {name} refer to slots outside [0, {n})")
        if self.inputs.size:
            wrong = np.flatnonzero(self.op[self.inputs] != INPUT)
            if wrong.size:
                slot = int(self.inputs[wrong[0]])
                raise ValueError(f"tape input {int(wrong[0])} is slot {slot}, a "
                                 f"'{OPS[self.op[slot]].name}' instruction; inputs must be 'input' instructions")
            if len(np.unique(self.inputs)) != len(self.inputs):
                raise ValueError("tape inputs must be distinct slots")
        if np.count_nonzero(self.op == INPUT) != len(self.inputs):
            raise ValueError("every 'input' instruction must be listed in tape inputs")
        if len(self.guard_values) != len(self.guards):
            raise ValueError("guards and guard_values must have the same length")
        bad = np.flatnonzero((self.guard_values != 0.0) & (self.guard_values != 1.0))  # NaN included
        if bad.size:
            i = int(bad[0])
            raise ValueError(f"guard {i} (slot %{int(self.guards[i])}): guard value {float(self.guard_values[i])!r} "
                             "must be 0.0 or 1.0 (the comparison's value when traced)")

    def __repr__(self) -> str:
        return (f"<Tape: {len(self)} instructions, {len(self.inputs)} inputs, "
                f"{len(self.outputs)} outputs, {len(self.guards)} guards>")

    def __str__(self) -> str:
        input_index = {int(s): i for i, s in enumerate(self.inputs)}
        lines = []
        for k in range(len(self)):
            op = OPS[self.op[k]]
            args = [f"%{int(s)}" for s in (self.a[k], self.b[k], self.c[k])[: op.arity]]
            if op.literal and op.public:  # a custom op's literal is its id, printed as its name
                args.append(repr(float(self.lit[k])))
            if op.name == "input":
                args.append(str(input_index[k]))
            lines.append(f"%{k} = {display_name(int(self.op[k]), float(self.lit[k]))} {' '.join(args)}".rstrip())
        for s, v in zip(self.guards, self.guard_values):
            lines.append(f"guard %{int(s)} == {int(v)}")
        lines.append("return " + ", ".join(f"%{int(s)}" for s in self.outputs))
        return "\n".join(lines)

    def __eq__(self, other) -> bool:
        if not isinstance(other, Tape):
            return NotImplemented
        return all(np.array_equal(getattr(self, n), getattr(other, n)) for n in _ARRAYS)

    __hash__ = None

    def arrays(self) -> dict[str, np.ndarray]:
        """The tape's arrays by name (read-only views)."""
        return {name: getattr(self, name) for name in _ARRAYS}

    def save(self, path) -> None:
        """Write the tape to ``path`` in scalargrad's versioned binary format (see storage.py)."""
        storage.write(self.arrays(), path)

    def to_bytes(self) -> bytes:
        """The tape in the format ``save`` writes."""
        return storage.encode(self.arrays())

    @classmethod
    def load(cls, path) -> "Tape":
        """Read a tape written by ``save``; ValueError if the file is not a valid saved tape."""
        return cls._validated(*storage.read(path))

    @classmethod
    def from_bytes(cls, data: bytes) -> "Tape":
        """``load`` from a bytes object (as ``to_bytes`` gives)."""
        return cls._validated(*storage.decode(data))

    @classmethod
    def _validated(cls, arrays, where) -> "Tape":
        try:
            return cls(**arrays)
        except ValueError as e:
            raise storage.invalid(where, str(e)) from None


def _converted(name: str, value, dtype) -> np.ndarray:
    """A flat copy of ``value`` as ``dtype``; ValueError naming the array instead of a silent cast
    (NumPy would truncate 1.5 to 1 and wrap 2**32 + 1 to 1 in an int32 slot array)."""
    if isinstance(value, np.ndarray) and value.dtype == dtype:
        return np.array(value).reshape(-1)
    try:
        src = np.asarray(value)
        if src.dtype == object:
            src = src.astype(np.float64)
    except (TypeError, ValueError, OverflowError) as e:
        raise ValueError(f"tape array {name!r}: {e}") from None
    if src.dtype.kind not in "biuf" or (src.dtype.kind == "f" and np.dtype(dtype).kind != "f" and src.size
                                       and not np.array_equal(src, np.trunc(src))):
        raise ValueError(f"tape array {name!r} must hold {'integers' if np.dtype(dtype).kind == 'i' else 'numbers'}, "
                         f"got dtype {src.dtype}" + (" with fractional or non-finite values" if src.dtype.kind == "f" else ""))
    if np.dtype(dtype).kind == "i" and src.size:
        info = np.iinfo(dtype)
        if src.min() < info.min or src.max() > info.max:
            raise ValueError(f"tape array {name!r} has values outside the {np.dtype(dtype).name} range")
    return src.astype(dtype).reshape(-1)
