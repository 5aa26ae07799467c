from __future__ import annotations

import numpy as np
import pytest

from datasets.idcard import CHANGZHOU_AREA_CODES, build_id_cards, check_digit, is_male, is_valid


def test_check_digit_known_example() -> None:
    assert check_digit("11010519491231002") == "X"


def test_check_digit_numeric_result() -> None:
    # Weighted sum 165, 165 mod 11 = 0 -> '1' (with a last digit 2 it is 167 -> 2 -> 'X').
    assert check_digit("11010519491231001") == "1"


@pytest.mark.parametrize(
    "body", ["1101051949123100", "110105194912310021", "1101051949123100A", ""]
)
def test_check_digit_rejects_bad_body(body: str) -> None:
    with pytest.raises(ValueError):
        check_digit(body)


def test_is_valid_known_example() -> None:
    assert is_valid("11010519491231002X")


@pytest.mark.parametrize(
    "id_card",
    [
        "110105194912310021",  # wrong check character
        "11010519491231002x",  # the check character is an upper-case X
        "11010519491231002",  # too short
        "11010519491231002X1",  # too long
        "01010519491231002X",  # area codes do not start with 0
        "1101051949123100AX",  # not digits
    ],
)
def test_is_valid_rejects_malformed(id_card: str) -> None:
    assert not is_valid(id_card)


def test_is_valid_rejects_impossible_birth_date() -> None:
    body = "32040219990230123"  # 30 February
    assert not is_valid(body + check_digit(body))


def test_is_male_reads_the_sequence_parity() -> None:
    assert not is_male("11010519491231002X")  # 2 is even: a woman
    body = "32040219900101001"
    assert is_male(body + check_digit(body))


def test_build_id_cards_valid_and_consistent() -> None:
    rng = np.random.default_rng(1)
    n = 2000
    areas = rng.choice(list(CHANGZHOU_AREA_CODES.values()), size=n)
    births = np.datetime64("1925-01-01") + rng.integers(0, 36000, size=n)
    male = rng.random(n) < 0.5
    cards = build_id_cards(areas, births, male, np.random.default_rng(2))
    assert len(set(cards)) == n
    for card, area, birth, man in zip(cards, areas, births, male, strict=True):
        assert is_valid(card)
        assert card[:6] == str(area)
        assert card[6:14] == str(birth).replace("-", "")
        assert is_male(card) == man


def test_build_id_cards_unique_within_a_crowded_group() -> None:
    n = 500
    cards = build_id_cards(
        [320402] * n, [np.datetime64("1980-05-05")] * n, [True] * n, np.random.default_rng(3)
    )
    assert len(set(cards)) == n
    assert all(is_valid(c) and is_male(c) for c in cards)


def test_build_id_cards_refuses_more_than_500_in_a_group() -> None:
    n = 501
    with pytest.raises(ValueError):
        build_id_cards(
            [320402] * n, [np.datetime64("1980-05-05")] * n, [False] * n, np.random.default_rng(3)
        )


def test_build_id_cards_empty() -> None:
    assert len(build_id_cards([], [], [], np.random.default_rng(0))) == 0
