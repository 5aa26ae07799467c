"""18-digit resident ID numbers (居民身份证号码, GB 11643-1999).

Layout: 6-digit area code, birth date YYYYMMDD, 3-digit sequence whose last
digit is odd for men and even for women, and an ISO 7064 MOD 11-2 check
character (0-9 or X).
"""

from __future__ import annotations

import re
from datetime import date

import numpy as np
import numpy.typing as npt

# Weight of each of the first 17 digits: 2**(17 - i) mod 11.
WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
CHECK_CHARS = "10X98765432"

# Area codes (行政区划代码) of Changzhou's districts, keyed by the manifest's names.
CHANGZHOU_AREA_CODES = {
    "天宁区": 320402,
    "钟楼区": 320404,
    "新北区": 320411,
    "武进区": 320412,
    "金坛区": 320413,
    "溧阳市": 320481,
}

_ID_PATTERN = re.compile(r"^[1-9]\d{16}[\dX]$")
_WEIGHT_ARRAY = np.array(WEIGHTS, dtype=np.int64)
_CHECK_ARRAY = np.array(list(CHECK_CHARS))


def check_digit(first17: str) -> str:
    """The check character for the first 17 digits of an ID number."""
    if len(first17) != 17 or not first17.isascii() or not first17.isdigit():
        raise ValueError("an ID number's body is exactly 17 digits")
    total = sum(int(d) * w for d, w in zip(first17, WEIGHTS, strict=True))
    return CHECK_CHARS[total % 11]


def is_valid(id_card: str) -> bool:
    """True for a well-formed 18-digit ID number: pattern, real birth date, check character."""
    if not isinstance(id_card, str) or not _ID_PATTERN.match(id_card):
        return False
    try:
        date(int(id_card[6:10]), int(id_card[10:12]), int(id_card[12:14]))
    except ValueError:
        return False
    return check_digit(id_card[:17]) == id_card[17]


def is_male(id_card: str) -> bool:
    """The sex an ID number encodes: an odd 17th digit is male."""
    return int(id_card[16]) % 2 == 1


def build_id_cards(
    area_codes: npt.ArrayLike,
    birth_dates: npt.ArrayLike,
    male: npt.ArrayLike,
    rng: np.random.Generator,
) -> npt.NDArray[np.str_]:
    """ID numbers for many people at once, unique within the batch.

    ``birth_dates`` is anything numpy turns into ``datetime64[D]``. The
    sequence number is a random start plus the person's rank among people of
    the same area, birth date and sex, so two people never share a number
    while a group has at most 500 members (the sequence has 500 odd and 500
    even values).
    """
    areas = np.asarray(area_codes, dtype=np.int64)
    days = np.asarray(birth_dates, dtype="datetime64[D]")
    males = np.asarray(male, dtype=bool)
    n = len(areas)
    if not (len(days) == len(males) == n):
        raise ValueError("area_codes, birth_dates and male must have the same length")
    if n == 0:
        return np.array([], dtype="<U18")

    years = days.astype("datetime64[Y]").astype(np.int64) + 1970
    months = days.astype("datetime64[M]").astype(np.int64) % 12 + 1
    day_of_month = (days - days.astype("datetime64[M]")).astype(np.int64) + 1
    ymd = years * 10_000 + months * 100 + day_of_month

    # Rank of each person within (area, birth date, sex), in a random order.
    shuffle = rng.permutation(n)
    group = (areas * 100_000_000 + ymd) * 2 + males
    order = shuffle[np.argsort(group[shuffle], kind="stable")]
    sorted_group = group[order]
    starts = np.r_[0, np.flatnonzero(sorted_group[1:] != sorted_group[:-1]) + 1]
    sizes = np.diff(np.r_[starts, n])
    if sizes.max() > 500:
        raise ValueError("more than 500 people share an area, birth date and sex")
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n) - np.repeat(starts, sizes)
    offset = rng.integers(0, 500, size=n)  # drawn per person; used per group via its first
    group_offset = np.empty(n, dtype=np.int64)
    group_offset[order] = np.repeat(offset[order[starts]], sizes)
    sequence = 2 * ((group_offset + rank) % 500) + males  # odd for men

    body = areas * 100_000_000_000 + ymd * 1_000 + sequence  # 17 digits, fits int64
    digits = (body[:, None] // 10 ** np.arange(16, -1, -1, dtype=np.int64)) % 10
    check = _CHECK_ARRAY[(digits @ _WEIGHT_ARRAY) % 11]
    return np.char.add(body.astype("<U17"), check)
