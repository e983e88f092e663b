"""Lists of test lengths: explicit lists, progressions that name their step, and refusals
(the old ``a,b,...,end`` form, too many lengths, non-integers), each one line."""

from __future__ import annotations

import time

import numpy as np
import pytest

from simcheck import SimcheckError, parse_lengths
from simcheck.settings.lengths import MAX_LENGTHS


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("8,16,32", [8, 16, 32]),
        ("32, 8,16", [8, 16, 32]),
        ("8,8,16,", [8, 16]),
        ("5", [5]),
        ("8..128*2", [8, 16, 32, 64, 128]),
        ("1..27*3", [1, 3, 9, 27]),
        ("10..100+10", list(range(10, 101, 10))),
        ("10..80+10", list(range(10, 81, 10))),
        ("10..55+15", [10, 25, 40, 55]),
        (" 8 .. 32 * 2 ", [8, 16, 32]),
        ("16..16*2", [16]),
        ("4,8..64*2,100", [4, 8, 16, 32, 64, 100]),
    ],
)
def test_lengths_read_as_written(text, expected):
    assert parse_lengths(text) == expected


def test_the_step_is_what_is_written_whatever_the_numbers():
    """The old form doubled 10,20,...,80 but added for 10,20,...,90; now the text says which."""
    assert parse_lengths("10..80*2") == [10, 20, 40, 80]
    assert parse_lengths("10..80+10") == [10, 20, 30, 40, 50, 60, 70, 80]


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("8,16,...,1024", "write 8..1024*2 to multiply by 2 or 8..1024+8 to add 8"),
        ("10,20,...,90", "write 10..90+10 to add 10"),
        ("1,2,...,100000000", "1..100000000+1 would make 100000000 lengths, more than 10000"),
        ("8,...", "8..1024*2"),
        ("8..1000*2", "end at 512 or 1024"),
        ("10..95+10", "end at 90 or 100"),
        ("8..64*1", "factor after * must be >= 2"),
        ("8..64+0", "step after + must be >= 1"),
        ("64..8*2", "below the start"),
        ("8..64", "8..1024*2"),
        ("a,b", "8..1024*2"),
        ("", "no lengths"),
        ("0,8", "positive"),
        ("-4,8", "positive"),
        ("0..8+2", "positive"),
        ("8.5,16", "8..1024*2"),
    ],
)
def test_bad_lengths_are_one_line_errors_that_say_how_to_write_them(text, fragment):
    with pytest.raises(SimcheckError) as info:
        parse_lengths(text)
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


def test_too_many_lengths_are_refused_from_the_counts_before_any_list_is_built():
    started = time.perf_counter()
    with pytest.raises(SimcheckError, match=f"more than {MAX_LENGTHS} lengths") as info:
        parse_lengths("1..100000000+1")
    assert "100000000" in str(info.value)
    with pytest.raises(SimcheckError, match=f"more than {MAX_LENGTHS}"):
        parse_lengths(",".join(map(str, range(1, MAX_LENGTHS + 2))))
    with pytest.raises(SimcheckError, match=f"more than {MAX_LENGTHS}"):
        parse_lengths(range(1, 10**8))
    assert time.perf_counter() - started < 1
    assert len(parse_lengths(f"1..{MAX_LENGTHS}+1")) == MAX_LENGTHS


def test_a_sequence_of_integers_is_sorted_and_deduplicated():
    assert parse_lengths([32, 8, 8, np.int64(16)]) == [8, 16, 32]
    assert all(type(n) is int for n in parse_lengths([np.int64(16)]))


@pytest.mark.parametrize(
    ("lengths", "fragment"),
    [([8, -1], "positive"), ([8, 0], "positive"), ([8, 2.0], "integers"),
     ([True], "integers"), (["8"], "integers"), ([], "no lengths")],
)  # fmt: skip
def test_bad_sequences_are_one_line_errors(lengths, fragment):
    with pytest.raises(SimcheckError) as info:
        parse_lengths(lengths)
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)
