"""npz uploads are read member by member, each bounded by its header before it is read: no
member but X.npy and y.npy, no array larger than max_dataset_bytes (alone or together), and
no member longer or shorter than its header says. In memory only (BytesIO)."""

import io
import time
import tracemalloc

import numpy as np
import pytest

from app.core.config import Settings
from app.core.errors import AppError
from app.datasets.npz_upload import parse_npz, read_npz
from app.datasets.parsing import UploadOptions
from tests.npz_files import Member, member, npy_bytes, npy_header, zeros_member, zip_of

SMALL = Settings(max_dataset_bytes=1_000_000)
X = member("X.npy", npy_bytes(np.zeros((4, 2), np.float32)))
Y = member("y.npy", npy_bytes(np.array([0, 1, 0, 1])))


def refused(data: bytes, status: int, match: str, settings: Settings = SMALL) -> AppError:
    with pytest.raises(AppError, match=match) as caught:
        read_npz(io.BytesIO(data), settings)
    assert caught.value.status_code == status, caught.value.message
    return caught.value


@pytest.mark.parametrize(
    ("members", "match"),
    [
        # np.load(...)["X"] reads a member named "X" before "X.npy": the one the check skipped
        ([member("X", npy_bytes(np.ones((4, 2)))), X, Y], "unexpected member 'X'"),
        ([X, Y, member("z.npy", npy_bytes(np.ones(2)))], "unexpected member 'z.npy'"),
        ([X, Y, member("notes.txt", b"hi")], "unexpected member 'notes.txt'"),
        ([member("a/X.npy", npy_bytes(np.ones((4, 2)))), Y], "unexpected member 'a/X.npy'"),
        ([member("X.npy/", b""), X, Y], "unexpected member 'X.npy/'"),
        ([X, X, Y], "'X.npy' appears twice"),
        ([member("X.npy", npy_bytes(np.ones((4, 2))), flags=1), Y], "'X.npy' is encrypted"),
        ([X], "arrays 'X' and 'y' are required"),
    ],
)
def test_only_x_npy_and_y_npy_are_read_and_anything_else_is_named(
    members: list[Member], match: str
) -> None:
    error = refused(zip_of(*members), 422, match)
    assert error.code == "invalid_dataset"


def test_a_hidden_80_mb_member_is_refused_not_loaded() -> None:
    """The finding: a 78 KB npz whose small X.npy passed the check while np.load read X."""
    hidden = zeros_member("X", (20_480, 1_024))
    y = member("y.npy", npy_bytes(np.arange(20_480) % 2))
    data = zip_of(hidden, member("X.npy", npy_bytes(np.zeros((20_480, 1), np.float32))), y)
    assert len(data) < 200_000
    tracemalloc.start()
    refused(data, 422, "unexpected member 'X'")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 10_000_000


def test_an_array_is_bounded_by_its_header_before_any_of_it_is_read() -> None:
    """1 MB on the wire, 1 GiB inflated: refused from the 128-byte header, in milliseconds."""
    data = zip_of(zeros_member("X.npy", (16_384, 16_384)), Y)
    assert len(data) < 1_100_000
    started = time.perf_counter()
    tracemalloc.start()
    error = refused(data, 413, "array 'X' would take 1073741824 bytes")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert time.perf_counter() - started < 0.5 and peak < 10_000_000
    assert error.details == {"setting": "max_dataset_bytes", "limit": 1_000_000}


def test_both_arrays_together_are_bounded_too() -> None:
    x = member("X.npy", npy_bytes(np.zeros((75_000, 1), np.float64)))  # 600 kB
    y = member("y.npy", npy_bytes(np.arange(75_000) % 2))  # 600 kB
    refused(zip_of(x, y), 413, "arrays 'X' and 'y' together would take 1200000 bytes")


def test_a_member_longer_than_its_header_says_is_refused_before_it_is_read() -> None:
    """A (4, 2) header followed by 8 MiB: np.load would read 32 bytes and ignore the rest."""
    data = npy_header((4, 2)) + bytes(32 + (8 << 20))
    refused(zip_of(member("X.npy", data), Y), 422, "array 'X' holds more data than its header")


def test_a_deflate_stream_longer_than_its_member_is_never_inflated_past_the_member() -> None:
    """Header and zip directory agree on (4, 2); the deflated stream runs on for 1 GiB."""
    long = zeros_member("X.npy", (256, 1024, 1024), says=(4, 2))
    started = time.perf_counter()
    arrays = read_npz(io.BytesIO(zip_of(long, Y)), SMALL)
    assert time.perf_counter() - started < 0.5
    assert arrays["X"].tolist() == [[0.0, 0.0]] * 4


def test_a_member_shorter_than_its_header_says_is_refused() -> None:
    short = member("X.npy", npy_header((4, 2)) + bytes(16))
    refused(zip_of(short, Y), 422, "array 'X' is truncated")


def test_a_member_whose_data_is_not_what_the_directory_says_is_refused() -> None:
    """The zip's sizes and CRC agree with the header, the deflated data does not."""
    good = npy_bytes(np.zeros((4, 2), np.float32))
    bad = member("X.npy", npy_header((4, 2)) + bytes(range(32)))
    forged = Member("X.npy", bad.deflated, member("X.npy", good).crc, len(good))
    refused(zip_of(forged, Y), 422, "not a usable npz")


@pytest.mark.parametrize(
    "x",
    [
        np.arange(12, dtype=np.float32).reshape(4, 3),
        np.asfortranarray(np.arange(12, dtype=np.float64).reshape(4, 3)),
        np.arange(12, dtype=">i4").reshape(4, 3),
        np.arange(4 * 3 * 5 * 5, dtype=np.uint8).reshape(4, 3, 5, 5),
    ],
)
def test_arrays_read_back_exactly_as_np_savez_wrote_them(x: np.ndarray) -> None:
    for save in (np.savez, np.savez_compressed):
        buffer = io.BytesIO()
        save(buffer, X=x, y=np.array(["a", "b", "a", "b"]))
        arrays = read_npz(io.BytesIO(buffer.getvalue()), SMALL)
        assert arrays["X"].dtype == x.dtype and np.array_equal(arrays["X"], x)
        assert arrays["y"].tolist() == ["a", "b", "a", "b"]


def test_a_read_array_is_writable_for_the_parsers_that_follow() -> None:
    buffer = io.BytesIO()
    np.savez(buffer, X=np.array([[1.0, np.nan], [3.0, 4.0]]), y=np.array([0, 1]))
    parsed = parse_npz(io.BytesIO(buffer.getvalue()), UploadOptions(impute="mean"), SMALL)
    assert parsed.arrays["x"].tolist() == [[1.0, 4.0], [3.0, 4.0]]
