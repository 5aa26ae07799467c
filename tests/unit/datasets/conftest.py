"""Synthetic health tables shared by the datasets tests (generated once per session)."""

from __future__ import annotations

import pandas as pd
import pytest

from datasets.health import generate_health

POPULATION = 4000
SEED = 7


@pytest.fixture(scope="session")
def health_tables() -> dict[str, pd.DataFrame]:
    """Tests must not modify these frames: copy first."""
    return generate_health(POPULATION, seed=SEED)


@pytest.fixture(scope="session")
def small_health_tables() -> dict[str, pd.DataFrame]:
    return generate_health(300, seed=11)
