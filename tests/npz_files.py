"""npz archives written member by member, by hand, as an attacker would: names np.savez never
writes, sizes that lie, and gigabytes of zeros deflated to a megabyte in a fraction of a second
(zlib over a whole GiB takes ~14 s)."""

import io
import struct
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

ZERO_CHUNK = 4 << 20


@dataclass
class Member:
    name: str
    deflated: bytes  # a raw deflate stream (method 8)
    crc: int
    size: int  # what the zip's headers say it inflates to
    flags: int = 0  # bit 0: encrypted


def npy_header(shape: tuple[int, ...], dtype: Any = "<f4") -> bytes:
    fields = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False}
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {**fields, "shape": shape})
    return buffer.getvalue()


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def member(name: str, data: bytes, **overrides: Any) -> Member:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    deflated = compressor.compress(data) + compressor.flush()
    return Member(name, deflated, zlib.crc32(data), len(data), **overrides)


def zeros_member(
    name: str, shape: tuple[int, ...], dtype: Any = "<f4", says: tuple[int, ...] | None = None
) -> Member:
    """A .npy of zeros of `shape` (a whole number of ZERO_CHUNKs), deflated in one pass over
    ZERO_CHUNK: after a full flush deflate starts afresh, so equal chunks deflate equally.
    With `says`, its header and the zip's directory give that shape instead: the deflated
    stream then runs on past the end of the member."""
    header = npy_header(says or shape, dtype)
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    declared = int(np.prod(says or shape)) * np.dtype(dtype).itemsize
    assert nbytes % ZERO_CHUNK == 0
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = compressor.compress(header) + compressor.flush(zlib.Z_FULL_FLUSH)
    chunk = compressor.compress(bytes(ZERO_CHUNK)) + compressor.flush(zlib.Z_FULL_FLUSH)
    assert compressor.compress(bytes(ZERO_CHUNK)) + compressor.flush(zlib.Z_FULL_FLUSH) == chunk
    deflated = head + chunk * (nbytes // ZERO_CHUNK) + compressor.flush()
    crc, left = zlib.crc32(header), declared
    while left:
        crc = zlib.crc32(bytes(min(left, ZERO_CHUNK)), crc)
        left -= min(left, ZERO_CHUNK)
    return Member(name, deflated, crc, len(header) + declared)


def zip_of(*members: Member) -> bytes:
    """A zip of these members, in this order, headers written with struct (PKWARE APPNOTE
    4.3.7, 4.3.12, 4.3.16): duplicates and any name or size as given."""
    out, central = io.BytesIO(), io.BytesIO()
    for m in members:
        offset, name = out.tell(), m.name.encode()
        fields = (20, m.flags, 8, 0, 0x21, m.crc, len(m.deflated), m.size, len(name), 0)
        out.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, *fields) + name + m.deflated)
        central.write(
            struct.pack("<IH", 0x02014B50, 20)
            + struct.pack("<HHHHHIIIHH", *fields)
            + struct.pack("<HHHII", 0, 0, 0, 0, offset)
            + name
        )
    start, directory = out.tell(), central.getvalue()
    n = len(members)
    out.write(
        directory + struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, n, n, len(directory), start, 0)
    )
    return out.getvalue()
