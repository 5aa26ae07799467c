"""Each person's part of a track's data: train, public or private, by a secret key.

A person is in one part only, whatever table their rows are in, so no team learns
a scored person's labels from the training part. The part is the HMAC-SHA256 of
the person's id under the track's split key, read as a number in [0, 1): no one
without the key (kept wrapped by the master key, never shown) can tell which
persons are scored, and the same key always gives the same parts.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import numpy.typing as npt

KEY_BYTES = 32
SCALE = float(1 << 64)


class Part(StrEnum):
    TRAIN = "train"
    PUBLIC = "public"  # scored for the leaderboard while the contest is open
    PRIVATE = "private"  # scored once, at the close, for the final board


@dataclass(frozen=True)
class Shares:
    """The shares of persons in the public and private parts; the rest train."""

    public: float = 0.15
    private: float = 0.15

    def __post_init__(self) -> None:
        if not (0 < self.public < 1 and 0 < self.private < 1 and self.public + self.private < 1):
            raise ValueError("the public and private shares must be above 0 and sum below 1")


def positions(persons: Iterable[object], key: bytes) -> npt.NDArray[np.float64]:
    """Each person's place in [0, 1) under ``key`` (persons as text: 7 and "7" are one)."""
    if len(key) != KEY_BYTES:
        raise ValueError(f"a split key is {KEY_BYTES} bytes")
    return np.array(
        [
            int.from_bytes(
                hmac.new(key, str(person).encode("utf-8"), hashlib.sha256).digest()[:8], "big"
            )
            / SCALE
            for person in persons
        ],
        dtype=np.float64,
    )


def parts(persons: Iterable[object], key: bytes, shares: Shares) -> list[Part]:
    """Each person's part: private below the private share, public next, train above."""
    placed = positions(persons, key)
    return [
        Part.PRIVATE
        if p < shares.private
        else Part.PUBLIC
        if p < shares.private + shares.public
        else Part.TRAIN
        for p in placed
    ]
