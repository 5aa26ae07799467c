"""A track's split of persons into train, public and private parts."""

from __future__ import annotations

import secrets
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sandbox.contest.splits import Part, Shares, parts


def test_the_parts_have_about_their_shares_and_a_key_always_gives_the_same() -> None:
    key = secrets.token_bytes(32)
    persons = list(range(20_000))
    first = parts(persons, key, Shares(public=0.2, private=0.1))
    counts = Counter(first)
    assert abs(counts[Part.PUBLIC] / 20_000 - 0.2) < 0.015
    assert abs(counts[Part.PRIVATE] / 20_000 - 0.1) < 0.015
    assert parts(persons, key, Shares(public=0.2, private=0.1)) == first
    # Another key, other parts: without the key no one can tell who is scored.
    other = parts(persons, secrets.token_bytes(32), Shares(public=0.2, private=0.1))
    assert sum(a == b for a, b in zip(first, other, strict=True)) < 0.8 * len(persons)


@settings(max_examples=100, deadline=None)
@given(persons=st.lists(st.integers(0, 10**9) | st.text(min_size=1, max_size=12), max_size=50))
def test_a_person_is_in_one_part_whatever_their_rows(persons: list[object]) -> None:
    key = bytes(range(32))
    placed = parts(persons + persons, key, Shares())
    assert placed[: len(persons)] == placed[len(persons) :]
    # Ids compare as text, as the views spell them.
    assert parts([7], key, Shares()) == parts(["7"], key, Shares())


def test_bad_shares_and_keys_are_refused() -> None:
    with pytest.raises(ValueError, match="shares"):
        Shares(public=0.6, private=0.5)
    with pytest.raises(ValueError, match="32 bytes"):
        parts([1], b"short", Shares())
