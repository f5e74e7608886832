"""The file format of saved tapes (``Tape.save`` / ``Tape.load``): a small versioned binary format,
never pickle. This module reads and writes a tape's arrays; tape.py makes (and validates) the Tape.

Format version 1 (all integers little-endian)::

    offset  size  field
    0       8     magic  b"SGTAPE\\r\\n"  (the CR LF catches text-mode transfers)
    8       4     uint32 format version (1)
    12      4     uint32 header length H (at most MAX_HEADER_BYTES)
    16      H     header, ASCII JSON: {"ops": [[name, arity, literal], ...],
                                      "arrays": [[name, dtype, length], ...]}
    16+H    ...   the arrays' raw bytes, back to back, in header order
    end-4   4     uint32 CRC-32 (zlib) of every byte before it

The arrays are exactly, in this order: op "<i1", a b c "<i4", lit "<f8", inputs outputs guards
"<i4", guard_values "<f8"; op a b c lit share one length n (at most MAX_INSTRUCTIONS); outputs is
not empty.
``ops`` is the op table the tape was recorded with (saved opcode i is ``ops[i]``). Loading remaps
opcodes by name, so a tape saved before rows were added or reordered still loads; a saved op whose
name is unknown, or whose arity or literal flag differs from the current row, is rejected. Every check (a regular file, magic,
version, header shape, sizes against the file size before any allocation, checksum, opcode range, then
``Tape.validate()``, which tape.py runs on what ``read`` returns) happens before a compiled kernel can
see the arrays, and every failure raises ValueError naming what is wrong (``invalid``).
"""
from __future__ import annotations

import io
import json
import os
import stat
import struct
import zlib

import numpy as np

from .ops import BY_NAME, OPCODE, OPS

MAGIC = b"SGTAPE\r\n"
VERSION = 1
MAX_HEADER_BYTES = 1 << 16
MAX_INSTRUCTIONS = (1 << 31) - 2  # slots are int32 and the kernels use slot n as scratch
MAX_OPS = 127  # opcodes are int8
# (name, little-endian dtype) of every array of a tape, in file order: the tape's schema (tape.py).
LAYOUT = (("op", "<i1"), ("a", "<i4"), ("b", "<i4"), ("c", "<i4"), ("lit", "<f8"), ("inputs", "<i4"),
          ("outputs", "<i4"), ("guards", "<i4"), ("guard_values", "<f8"))
_NOT_REGULAR = {stat.S_IFDIR: "a directory", stat.S_IFIFO: "a FIFO (named pipe)", stat.S_IFCHR: "a character device",
                stat.S_IFBLK: "a block device", stat.S_IFSOCK: "a socket"}
NO_OUTPUTS = "the tape has no outputs: it computes nothing (and the gradient kernels read output 0)"
_PREFIX = struct.Struct("<8sII")
_CRC = struct.Struct("<I")


def _op_record(name: str) -> tuple[str, int, bool]:
    op = BY_NAME[name]
    return op.name, op.arity, op.literal


def pack(ops: list, arrays: dict[str, np.ndarray], version: int = VERSION) -> bytes:
    """Serialise without any checks (tests use it to build malformed files)."""
    header = {"ops": list(ops), "arrays": [[name, dtype, int(len(arrays[name]))] for name, dtype in LAYOUT]}
    text = json.dumps(header, separators=(",", ":")).encode("ascii")
    body = _PREFIX.pack(MAGIC, version, len(text)) + text
    body += b"".join(np.ascontiguousarray(arrays[name], dtype=dtype).tobytes() for name, dtype in LAYOUT)
    return body + _CRC.pack(zlib.crc32(body))


def encode(arrays: dict[str, np.ndarray]) -> bytes:
    """A tape's arrays (``Tape.arrays()``) in format version 1."""
    if not len(arrays["outputs"]):
        raise ValueError(f"save: {NO_OUTPUTS}; load would refuse the file")
    return pack([[op.name, op.arity, op.literal] for op in OPS], arrays)


def write(arrays: dict[str, np.ndarray], path) -> None:
    """Write a tape's arrays to ``path`` (see the module docstring for the format)."""
    data = encode(arrays)
    with open(path, "wb") as f:
        f.write(data)


def read(path) -> tuple[dict[str, np.ndarray], str]:
    """The arrays of a tape written by ``write`` (opcodes remapped to this op table) and the name
    to cite in errors; ValueError if the file is not a valid saved tape."""
    where = os.fspath(path)
    mode = os.stat(path).st_mode
    if not stat.S_ISREG(mode):  # checked before opening: opening a FIFO waits for a writer
        kind = _NOT_REGULAR.get(stat.S_IFMT(mode), "a special file")
        raise invalid(where, f"it is {kind}, not a regular file")
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        return _read(f, size, where=where), where


def decode(data: bytes) -> tuple[dict[str, np.ndarray], str]:
    """``read`` from a bytes object."""
    data = bytes(data)
    return _read(io.BytesIO(data), len(data), where="<bytes>"), "<bytes>"


def invalid(where: str, msg: str) -> ValueError:
    """The error for a file (or bytes) ``where`` that is not a valid saved tape."""
    return ValueError(f"{where}: not a valid saved tape: {msg}")


def _read(f, size: int, where: str) -> dict[str, np.ndarray]:
    def fail(msg):
        return invalid(where, msg)

    prefix = f.read(_PREFIX.size)
    if len(prefix) < len(MAGIC) or prefix[: len(MAGIC)] != MAGIC:
        raise fail(f"wrong magic bytes (expected {MAGIC!r})")
    if len(prefix) < _PREFIX.size:
        raise fail(f"file ends inside the {_PREFIX.size}-byte prefix ({size} bytes)")
    _, version, header_len = _PREFIX.unpack(prefix)
    if version != VERSION:
        raise fail(f"format version {version} is not supported (this scalargrad reads version {VERSION})")
    if header_len > MAX_HEADER_BYTES:
        raise fail(f"header length {header_len} exceeds {MAX_HEADER_BYTES} bytes")
    raw_header = f.read(header_len)
    if len(raw_header) != header_len:
        raise fail(f"file ends inside the header ({size} bytes, header claims {header_len})")
    ops, lengths = _parse_header(raw_header, fail)

    dtypes = dict(LAYOUT)
    payload = sum(lengths[name] * np.dtype(dtypes[name]).itemsize for name in dtypes)
    expected = _PREFIX.size + header_len + payload + _CRC.size
    if size != expected:  # checked before allocating anything the header asked for
        raise fail(f"file is {size} bytes but its header describes {expected} "
                   f"({'truncated' if size < expected else 'trailing bytes'})")
    rest = f.read(payload + _CRC.size)
    if len(rest) != payload + _CRC.size:
        raise fail("file ended while reading the arrays")
    (crc,) = _CRC.unpack(rest[payload:])
    if zlib.crc32(rest[:payload], zlib.crc32(prefix + raw_header)) != crc:
        raise fail("checksum mismatch (the file is corrupted)")

    arrays = {}
    offset = 0
    for name, dtype in LAYOUT:
        count = lengths[name]
        arrays[name] = np.frombuffer(rest, dtype=dtype, count=count, offset=offset).astype(dtype[1:])
        offset += count * np.dtype(dtype).itemsize

    # Remap saved opcodes to the current table by name.
    saved_op = arrays["op"].astype(np.int64)
    if saved_op.size and (saved_op.min() < 0 or saved_op.max() >= len(ops)):
        k = int(np.flatnonzero((saved_op < 0) | (saved_op >= len(ops)))[0])
        raise fail(f"instruction {k}: opcode {int(saved_op[k])} is outside the saved op table "
                   f"of {len(ops)} ops")
    for code in np.unique(saved_op):
        name, arity, literal = ops[code]
        if name not in BY_NAME:
            raise fail(f"op {name!r} (saved opcode {code}) is not in this scalargrad's op table")
        if (arity, literal) != _op_record(name)[1:]:
            raise fail(f"op {name!r} was saved with arity {arity} and literal={literal}; this op table "
                       f"has arity {BY_NAME[name].arity} and literal={BY_NAME[name].literal}")
    remap = np.array([OPCODE.get(name, -1) for name, _, _ in ops], dtype=np.int64)
    arrays["op"] = (remap[saved_op] if saved_op.size else saved_op).astype(np.int8)
    return arrays


def _parse_header(raw: bytes, fail):
    try:
        header = json.loads(raw.decode("ascii"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise fail(f"header is not ASCII JSON ({type(e).__name__})") from None
    if not isinstance(header, dict) or set(header) != {"ops", "arrays"}:
        raise fail('header must be a JSON object with exactly the keys "ops" and "arrays"')
    ops = header["ops"]
    if not isinstance(ops, list) or not 0 < len(ops) <= MAX_OPS:
        raise fail(f'header "ops" must be a list of 1..{MAX_OPS} ops')
    for entry in ops:
        if not (isinstance(entry, list) and len(entry) == 3 and type(entry[0]) is str
                and type(entry[1]) is int and type(entry[2]) is bool):
            raise fail(f'header "ops" entry {entry!r:.80} should be [name, arity, literal]')
    ops = [tuple(entry) for entry in ops]
    if len({name for name, _, _ in ops}) != len(ops):
        raise fail('header "ops" lists an op name twice')
    arrays = header["arrays"]
    if not isinstance(arrays, list) or len(arrays) != len(LAYOUT):
        raise fail(f'header "arrays" must list the {len(LAYOUT)} arrays {[n for n, _ in LAYOUT]}')
    lengths = {}
    for entry, (name, dtype) in zip(arrays, LAYOUT):
        if not (isinstance(entry, list) and len(entry) == 3 and entry[0] == name and entry[1] == dtype):
            raise fail(f'header "arrays" entry {entry!r:.80} should be ["{name}", "{dtype}", length]')
        length = entry[2]
        if type(length) is not int or not 0 <= length <= MAX_INSTRUCTIONS:
            raise fail(f"array {name!r}: length {length!r:.40} is not an integer in [0, {MAX_INSTRUCTIONS}]")
        lengths[name] = length
    n = lengths["op"]
    for name in ("a", "b", "c", "lit"):
        if lengths[name] != n:
            raise fail(f"array {name!r} has length {lengths[name]}, expected {n} (the length of 'op')")
    if lengths["guard_values"] != lengths["guards"]:
        raise fail("arrays 'guards' and 'guard_values' must have the same length")
    if lengths["outputs"] == 0:
        raise fail(NO_OUTPUTS)
    return ops, lengths
