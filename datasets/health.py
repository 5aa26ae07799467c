"""Synthetic health data for the demo dataset ``health`` (Changzhou-like).

Everything is drawn with numpy from one seed, so a seed always gives the same
tables. Faker (``zh_CN``) is slow per call, so it only fills small pools of
surnames, given names, street names and phone prefixes that rows sample from.

The tables follow ``HEALTH``'s column order. Column dtypes:

- integers ``int64``, floats ``float64``, booleans ``bool``;
- strings pandas' default string dtype (``str``);
- DATE columns (``birth_date``, ``visit_date``) hold ``datetime.date`` objects
  (dtype ``object``): pyarrow writes them as Parquet DATE and reads them back
  as ``datetime.date``, so they round-trip unchanged;
- the TIMESTAMP column ``taken_at`` is ``datetime64[us]``, which Parquet
  stores as a microsecond TIMESTAMP that DuckDB reads as ``TIMESTAMP``
  (nanoseconds would become ``TIMESTAMP_NS``).

Built-in patterns, for analyses to find: chronic diagnoses grow with age;
O80 (childbirth) only for women aged 18-45, in 妇产科; children mostly in
儿科; the department fits the diagnosis; long stays for I63, I50, C34, S72
and J18; cost rises with the length of stay; readmission rises with stay and
age; lab values follow the person's conditions (GLU and HBA1C for E11, TC and
LDL for E78, CREA with age and heart failure, WBC for infections).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import numpy.typing as npt
import pandas as pd
from faker import Faker

from datasets.errors import DatasetError
from datasets.health_manifest import (
    DEPARTMENTS,
    DISTRICTS,
    HEALTH,
    HOSPITALS,
    ICD10,
    LAB_TESTS,
)
from datasets.idcard import CHANGZHOU_AREA_CODES, build_id_cards
from datasets.manifest import Table

FIRST_VISIT_DAY = np.datetime64("2022-01-01", "D")
LAST_VISIT_DAY = np.datetime64("2024-12-31", "D")  # ages are counted up to this day

CODES = tuple(ICD10)
CHRONIC = ("I10", "E11", "I25", "J44", "E78", "I50", "I63", "C34")
TESTS = tuple(LAB_TESTS)

# Share of residents per district (in the order of DISTRICTS), roughly by population.
DISTRICT_WEIGHTS = (0.14, 0.13, 0.18, 0.30, 0.10, 0.15)
# Share of residents per five-year age band 0-4 ... 95-99 (an ageing city).
AGE_BAND_WEIGHTS = (
    4.0,
    5.2,
    5.0,
    4.4,
    4.8,
    5.8,
    8.0,
    7.2,
    6.6,
    7.6,
    8.4,
    7.6,
    5.6,
    5.8,
    4.6,
    2.9,
    1.9,
    1.0,
    0.35,
    0.1,
)
# Chronic condition prevalence: (maximum, age at half of it, spread in years, factor for men).
CHRONIC_PREVALENCE = {
    "I10": (0.55, 62, 9, 1.1),
    "E11": (0.22, 60, 9, 1.1),
    "I25": (0.18, 72, 8, 1.3),
    "J44": (0.12, 70, 8, 1.5),
    "E78": (0.22, 55, 9, 1.0),
    "I50": (0.10, 78, 7, 1.1),
    "I63": (0.10, 74, 7, 1.2),
    "C34": (0.03, 68, 7, 1.6),
}
CHRONIC_VISIT_SHARE = 0.55  # of a chronically ill person's visits, those for a chronic condition

# Acute (non-chronic) diagnosis weights per age band; O80 is for women 18-45 only.
AGE_BANDS = (14, 18, 46, 65)  # <14 children, 14-17, 18-45, 46-64, 65+
ACUTE_WEIGHTS = {
    #       <14   14-17 18-45 46-64  65+
    "J06": (40.0, 30.0, 20.0, 12.0, 8.0),
    "J18": (12.0, 5.0, 4.0, 6.0, 12.0),
    "K29": (2.0, 6.0, 12.0, 12.0, 8.0),
    "A09": (15.0, 10.0, 8.0, 5.0, 4.0),
    "K80": (0.0, 0.5, 5.0, 8.0, 8.0),
    "M54": (0.5, 4.0, 10.0, 12.0, 10.0),
    "N39": (2.0, 3.0, 6.0, 6.0, 8.0),
    "S72": (0.2, 0.5, 0.5, 1.5, 5.0),
    "O80": (0.0, 0.0, 8.0, 0.0, 0.0),
    "F32": (0.2, 5.0, 6.0, 4.0, 3.0),
    "R51": (3.0, 8.0, 8.0, 6.0, 4.0),
    "Z00": (15.0, 15.0, 15.0, 15.0, 12.0),
}
# Department per diagnosis (adults); children go to 儿科 unless a fracture.
DEPARTMENT_WEIGHTS = {
    "I10": {"心内科": 0.7, "内科": 0.3},
    "E11": {"内分泌科": 0.8, "内科": 0.2},
    "I25": {"心内科": 0.85, "急诊科": 0.15},
    "J44": {"呼吸科": 0.85, "内科": 0.15},
    "E78": {"内分泌科": 0.4, "心内科": 0.3, "内科": 0.3},
    "I50": {"心内科": 0.75, "急诊科": 0.25},
    "I63": {"神经内科": 0.8, "急诊科": 0.2},
    "C34": {"呼吸科": 0.6, "外科": 0.4},
    "J06": {"内科": 0.5, "呼吸科": 0.2, "急诊科": 0.3},
    "J18": {"呼吸科": 0.7, "内科": 0.2, "急诊科": 0.1},
    "K29": {"内科": 1.0},
    "A09": {"内科": 0.6, "急诊科": 0.4},
    "K80": {"外科": 0.8, "急诊科": 0.2},
    "M54": {"骨科": 0.7, "内科": 0.3},
    "N39": {"内科": 0.7, "外科": 0.3},
    "S72": {"骨科": 0.85, "急诊科": 0.15},
    "O80": {"妇产科": 1.0},
    "F32": {"神经内科": 0.6, "内科": 0.4},
    "R51": {"神经内科": 0.6, "内科": 0.2, "急诊科": 0.2},
    "Z00": {"内科": 1.0},
}
CHILD_PAEDIATRICS_SHARE = 0.9
# Hospital weights per home district, in the order of HOSPITALS. 妇幼保健院 gets none here:
# it only takes children and births, which _draw_hospitals sends there.
HOSPITAL_WEIGHTS = {
    "天宁区": (0.38, 0.27, 0.12, 0.15, 0.0, 0.05, 0.01, 0.02),
    "钟楼区": (0.27, 0.33, 0.15, 0.17, 0.0, 0.05, 0.01, 0.02),
    "新北区": (0.22, 0.20, 0.33, 0.13, 0.0, 0.08, 0.02, 0.02),
    "武进区": (0.10, 0.10, 0.07, 0.06, 0.0, 0.63, 0.02, 0.02),
    "金坛区": (0.08, 0.06, 0.03, 0.05, 0.0, 0.06, 0.70, 0.02),
    "溧阳市": (0.07, 0.06, 0.03, 0.05, 0.0, 0.04, 0.03, 0.72),
}
MATERNITY_HOSPITAL = "常州市妇幼保健院"
# Per diagnosis: (inpatient probability, mean stay, outpatient cost, inpatient fixed cost,
# inpatient cost per day).
STAY_AND_COST = {
    "I10": (0.05, 6, 260, 1500, 700),
    "E11": (0.08, 8, 320, 1800, 700),
    "I25": (0.35, 8, 380, 9000, 900),
    "J44": (0.35, 9, 330, 2000, 750),
    "E78": (0.02, 5, 280, 1200, 600),
    "I50": (0.85, 10, 420, 3000, 950),
    "I63": (0.90, 13, 450, 4000, 900),
    "C34": (0.80, 15, 600, 9000, 1200),
    "J06": (0.01, 3, 160, 600, 500),
    "J18": (0.50, 8, 280, 1500, 700),
    "K29": (0.03, 4, 240, 1200, 600),
    "A09": (0.06, 3, 180, 800, 550),
    "K80": (0.40, 7, 300, 7000, 800),
    "M54": (0.04, 7, 220, 1500, 600),
    "N39": (0.10, 5, 230, 1000, 600),
    "S72": (0.95, 14, 500, 15000, 800),
    "O80": (0.98, 3, 300, 2500, 700),
    "F32": (0.05, 14, 300, 1500, 500),
    "R51": (0.02, 3, 200, 800, 550),
    "Z00": (0.00, 1, 260, 0, 0),
}
# Probability that a visit with this diagnosis orders each test (order of TESTS:
# GLU, HBA1C, TC, LDL, HGB, WBC, CREA, ALT); inpatients get nearly the full panel.
_DEFAULT_TESTS = (0.15, 0.02, 0.10, 0.10, 0.35, 0.35, 0.15, 0.15)
TEST_ORDER_PROBABILITY = {
    "I10": (0.40, 0.10, 0.50, 0.50, 0.20, 0.20, 0.60, 0.20),
    "E11": (0.95, 0.70, 0.40, 0.40, 0.20, 0.20, 0.50, 0.30),
    "I25": (0.50, 0.20, 0.70, 0.70, 0.50, 0.40, 0.60, 0.30),
    "J44": (0.20, 0.05, 0.10, 0.10, 0.70, 0.80, 0.30, 0.20),
    "E78": (0.30, 0.10, 0.95, 0.95, 0.10, 0.10, 0.20, 0.40),
    "I50": (0.40, 0.10, 0.40, 0.40, 0.70, 0.50, 0.90, 0.40),
    "I63": (0.60, 0.20, 0.70, 0.70, 0.60, 0.50, 0.50, 0.30),
    "C34": (0.30, 0.05, 0.20, 0.20, 0.90, 0.80, 0.50, 0.60),
    "J06": (0.05, 0.00, 0.02, 0.02, 0.80, 0.90, 0.05, 0.05),
    "J18": (0.20, 0.02, 0.05, 0.05, 0.90, 0.95, 0.40, 0.30),
    "A09": (0.10, 0.00, 0.02, 0.02, 0.80, 0.90, 0.30, 0.20),
    "K80": (0.20, 0.02, 0.20, 0.20, 0.50, 0.70, 0.20, 0.90),
    "N39": (0.15, 0.02, 0.05, 0.05, 0.40, 0.80, 0.60, 0.10),
    "Z00": (0.90, 0.30, 0.90, 0.90, 0.90, 0.90, 0.90, 0.90),
}
INPATIENT_TEST_PROBABILITY = 0.8
TEST_ORDER_SCALE = 0.92  # tunes the average to about 15 results per person

# Real roads of each district, mixed with Faker's invented street names.
DISTRICT_ROADS = {
    "天宁区": ("延陵中路", "局前街", "青洋北路", "劳动东路", "竹林西路", "和平北路"),
    "钟楼区": ("南大街", "怀德中路", "西新桥路", "勤业路", "广化街", "星港路"),
    "新北区": ("太湖东路", "通江中路", "河海中路", "龙锦路", "汉江路", "晋陵北路"),
    "武进区": ("延政中路", "人民中路", "常武中路", "花园街", "长安路", "湖塘路"),
    "金坛区": ("东门大街", "南环二路", "华城路", "金城大道", "西城路", "愚池路"),
    "溧阳市": ("燕山路", "天目路", "平陵路", "昆仑北路", "罗湾路", "育才路"),
}
REAL_ROAD_SHARE = 0.4
POOL_SIZE = 3000


def generate_health(patients: int = 20000, *, seed: int = 20221) -> dict[str, pd.DataFrame]:
    """The three tables ``patients``, ``visits`` and ``labs``; the same seed, the same data."""
    if patients < 0:
        raise ValueError("patients must not be negative")
    rng = np.random.default_rng(seed)
    people = _draw_people(patients, rng)
    visits = _draw_visits(people, rng)
    labs = _draw_labs(people, visits, rng)
    pools = _faker_pools(seed)
    return {
        "patients": _patients_frame(people, pools, rng),
        "visits": _visits_frame(visits),
        "labs": _labs_frame(labs),
    }


# --- people ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _People:
    n: int
    birth: npt.NDArray[np.datetime64]  # datetime64[D]
    age: npt.NDArray[np.float64]  # at LAST_VISIT_DAY
    male: npt.NDArray[np.bool_]
    district: npt.NDArray[np.int64]  # index into DISTRICTS
    chronic: npt.NDArray[np.bool_]  # (n, len(CHRONIC))


def _draw_people(n: int, rng: np.random.Generator) -> _People:
    bands = rng.choice(len(AGE_BAND_WEIGHTS), size=n, p=_normalised(AGE_BAND_WEIGHTS))
    age = (bands + rng.random(n)) * 5.0
    birth = LAST_VISIT_DAY - np.floor(age * 365.2425).astype(np.int64)
    male = rng.random(n) < 0.51
    district = rng.choice(len(DISTRICTS), size=n, p=_normalised(DISTRICT_WEIGHTS))
    chronic = np.zeros((n, len(CHRONIC)), dtype=bool)
    for j, code in enumerate(CHRONIC):
        top, middle, spread, men = CHRONIC_PREVALENCE[code]
        p = top / (1.0 + np.exp(-(age - middle) / spread))
        p = np.where(male, np.minimum(p * men, 0.95), p)
        p = np.where(age < 18, 0.0, p)
        chronic[:, j] = rng.random(n) < p
    return _People(n, birth, age, male, district, chronic)


# --- visits ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Visits:
    person: npt.NDArray[np.int64]  # row index into people
    day: npt.NDArray[np.datetime64]  # datetime64[D]
    age: npt.NDArray[np.float64]  # at the visit
    code: npt.NDArray[np.int64]  # index into CODES
    department: npt.NDArray[np.int64]
    hospital: npt.NDArray[np.int64]
    stay: npt.NDArray[np.int64]
    cost: npt.NDArray[np.float64]
    readmitted: npt.NDArray[np.bool_]


def _draw_visits(people: _People, rng: np.random.Generator) -> _Visits:
    # Visits per person: Gamma-Poisson (many people with none or few, some with many),
    # more with age, early childhood and chronic illness; about 5 on average.
    need = (
        1.0
        + 0.6 * (people.age < 6)
        + 0.03 * np.maximum(people.age - 20.0, 0.0)
        + 0.8 * people.chronic.sum(axis=1)
    )
    rate = 5.0 * need / need.mean() if people.n else need
    counts = np.minimum(rng.poisson(rate * rng.gamma(2.0, 0.5, size=people.n)), 40)
    person = np.repeat(np.arange(people.n), counts)
    nv = len(person)

    first = np.maximum(people.birth[person], FIRST_VISIT_DAY)
    span = (LAST_VISIT_DAY - first).astype(np.int64) + 1
    day = first + np.floor(rng.random(nv) * span).astype(np.int64)
    order = np.lexsort((day, person))
    person, day = person[order], day[order]
    age = (day - people.birth[person]).astype(np.float64) / 365.2425
    male = people.male[person]

    code = _draw_diagnoses(people, person, age, male, rng)
    department = _draw_departments(code, age, rng)
    hospital = _draw_hospitals(people.district[person], department, code, age, rng)
    stay, cost, readmitted = _draw_stay_and_cost(code, age, rng)
    return _Visits(person, day, age, code, department, hospital, stay, cost, readmitted)


def _age_band(age: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
    return np.searchsorted(np.array(AGE_BANDS, dtype=np.float64), age, side="right")


def _draw_diagnoses(
    people: _People,
    person: npt.NDArray[np.int64],
    age: npt.NDArray[np.float64],
    male: npt.NDArray[np.bool_],
    rng: np.random.Generator,
) -> npt.NDArray[np.int64]:
    nv = len(person)
    code = np.empty(nv, dtype=np.int64)
    # Acute diagnosis from the age band and sex: births (O80) only in the band 18-45 of women.
    acute_codes = np.array([CODES.index(c) for c in ACUTE_WEIGHTS])
    weights = np.array(list(ACUTE_WEIGHTS.values()), dtype=np.float64).T  # (bands, codes)
    o80 = list(ACUTE_WEIGHTS).index("O80")
    group = _age_band(age) * 2 + (~male)
    for g in np.unique(group):
        rows = np.flatnonzero(group == g)
        w = weights[g // 2].copy()
        if g % 2 == 0:  # men
            w[o80] = 0.0
        code[rows] = acute_codes[rng.choice(len(w), size=len(rows), p=w / w.sum())]
    # Visits of a chronically ill person are often for one of their conditions.
    flags = people.chronic[person]
    chronic_visit = flags.any(axis=1) & (rng.random(nv) < CHRONIC_VISIT_SHARE)
    which = np.argmax(rng.random(flags.shape) * flags, axis=1)
    chronic_codes = np.array([CODES.index(c) for c in CHRONIC])
    code[chronic_visit] = chronic_codes[which[chronic_visit]]
    return code


def _draw_departments(
    code: npt.NDArray[np.int64], age: npt.NDArray[np.float64], rng: np.random.Generator
) -> npt.NDArray[np.int64]:
    department = np.empty(len(code), dtype=np.int64)
    for c in np.unique(code):
        rows = np.flatnonzero(code == c)
        weights = DEPARTMENT_WEIGHTS[CODES[c]]
        choices = np.array([DEPARTMENTS.index(d) for d in weights])
        p = _normalised(tuple(weights.values()))
        department[rows] = choices[rng.choice(len(choices), size=len(rows), p=p)]
    child = (age < 14) & (code != CODES.index("S72"))
    paediatrics = child & (rng.random(len(code)) < CHILD_PAEDIATRICS_SHARE)
    department[paediatrics] = DEPARTMENTS.index("儿科")
    return department


def _draw_hospitals(
    district: npt.NDArray[np.int64],
    department: npt.NDArray[np.int64],
    code: npt.NDArray[np.int64],
    age: npt.NDArray[np.float64],
    rng: np.random.Generator,
) -> npt.NDArray[np.int64]:
    hospital = np.empty(len(district), dtype=np.int64)
    for d in np.unique(district):
        rows = np.flatnonzero(district == d)
        p = _normalised(HOSPITAL_WEIGHTS[DISTRICTS[d]])
        hospital[rows] = rng.choice(len(HOSPITALS), size=len(rows), p=p)
    u = rng.random(len(district))
    births = code == CODES.index("O80")
    children = (age < 14) & (department == DEPARTMENTS.index("儿科"))
    maternity = (births & (u < 0.6)) | (children & (u < 0.35))
    hospital[maternity] = HOSPITALS.index(MATERNITY_HOSPITAL)
    return hospital


def _draw_stay_and_cost(
    code: npt.NDArray[np.int64], age: npt.NDArray[np.float64], rng: np.random.Generator
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    table = np.array([STAY_AND_COST[c] for c in CODES], dtype=np.float64)
    p_in, mean_stay, out_cost, fixed, per_day = (table[code, i] for i in range(5))
    p_in = np.where((code == CODES.index("J18")) & (age < 14), 0.35, p_in)
    inpatient = rng.random(len(code)) < p_in
    older = 1.0 + 0.012 * np.maximum(age - 60.0, 0.0)
    days = np.ceil(rng.gamma(2.5, 1.0, size=len(code)) * mean_stay / 2.5 * older)
    stay = np.where(inpatient, np.clip(days, 1, 60), 0).astype(np.int64)
    inpatient_cost = (fixed + per_day * stay) * rng.lognormal(0.0, 0.18, size=len(code))
    outpatient_cost = out_cost * rng.lognormal(0.0, 0.45, size=len(code))
    low, high = _bounds("visits", "cost")
    cost = np.round(np.clip(np.where(inpatient, inpatient_cost, outpatient_cost), low, high), 2)
    logit = (
        -4.6
        + 0.09 * np.minimum(stay, 30)
        + 0.035 * (age - 50.0)
        + 0.5 * inpatient
        + 0.4 * np.isin(code, [CODES.index(c) for c in CHRONIC])
    )
    readmitted = rng.random(len(code)) < 1.0 / (1.0 + np.exp(-logit))
    return stay, cost, readmitted


# --- labs -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Labs:
    visit: npt.NDArray[np.int64]  # row index into visits
    person: npt.NDArray[np.int64]  # row index into people
    test: npt.NDArray[np.int64]  # index into TESTS
    value: npt.NDArray[np.float64]
    taken_at: npt.NDArray[np.datetime64]  # datetime64[us]


def _draw_labs(people: _People, visits: _Visits, rng: np.random.Generator) -> _Labs:
    order_p = (
        np.array([TEST_ORDER_PROBABILITY.get(c, _DEFAULT_TESTS) for c in CODES], dtype=np.float64)[
            visits.code
        ]
        * TEST_ORDER_SCALE
    )
    inpatient = visits.stay > 0
    order_p[inpatient] = np.maximum(order_p[inpatient], INPATIENT_TEST_PROBABILITY)
    visit, test = np.nonzero(rng.random(order_p.shape) < order_p)

    person = visits.person[visit]
    age = visits.age[visit]
    male = people.male[person]
    code = visits.code[visit]
    has = {c: people.chronic[person, j] for j, c in enumerate(CHRONIC)}
    value = np.empty(len(visit), dtype=np.float64)
    for t, name in enumerate(TESTS):
        rows = np.flatnonzero(test == t)
        value[rows] = _lab_values(
            name,
            age=age[rows],
            male=male[rows],
            code=code[rows],
            has={c: flag[rows] for c, flag in has.items()},
            rng=rng,
        )
    low, high = _bounds("labs", "value")
    value = np.round(np.clip(value, max(low, 0.01), high), 2).astype(np.float64)

    # Blood is drawn on the visit day: mornings for outpatients, 06:00-20:00 on a ward.
    start = np.where(inpatient[visit], 6 * 3600, 7 * 3600)
    length = np.where(inpatient[visit], 14 * 3600, 4 * 3600)
    seconds = start + np.floor(rng.random(len(visit)) * length).astype(np.int64)
    taken_at = visits.day[visit].astype("datetime64[us]") + (seconds * 1_000_000).astype(
        "timedelta64[us]"
    )
    return _Labs(visit, person, test, value, taken_at)


def _lab_values(
    test: str,
    *,
    age: npt.NDArray[np.float64],
    male: npt.NDArray[np.bool_],
    code: npt.NDArray[np.int64],
    has: dict[str, npt.NDArray[np.bool_]],
    rng: np.random.Generator,
) -> npt.NDArray[np.float64]:
    n = len(age)
    normal = rng.standard_normal(n)
    over40 = np.maximum(age - 40.0, 0.0)
    over30 = np.maximum(age - 30.0, 0.0)
    is_code = {c: code == CODES.index(c) for c in ("J06", "J18", "A09", "K80", "C34")}
    # Concentrations are log-normal around a mean, so they stay positive.
    if test == "GLU":
        mean = np.where(has["E11"], 8.6, 5.0 + 0.01 * over40)
        return mean * np.exp(np.where(has["E11"], 0.22, 0.09) * normal)
    if test == "HBA1C":
        mean = np.where(has["E11"], 7.9, 5.3 + 0.004 * over40)
        return mean * np.exp(np.where(has["E11"], 0.16, 0.065) * normal)
    if test == "TC":
        mean = np.where(has["E78"], 6.5, 4.5 + 0.01 * over30)
        return mean * np.exp(np.where(has["E78"], 0.13, 0.15) * normal)
    if test == "LDL":
        mean = np.where(has["E78"], 4.3, 2.6 + 0.008 * over30)
        return mean * np.exp(np.where(has["E78"], 0.16, 0.2) * normal)
    if test == "HGB":
        base = np.where(age < 14, 125.0, np.where(male, 145.0, 128.0))
        return base - 15.0 * is_code["C34"] - 8.0 * (age > 75) + 11.0 * normal
    if test == "WBC":
        mean = np.select(
            [is_code["J18"], is_code["A09"], is_code["J06"]], [12.5, 9.5, 8.2], default=6.3
        )
        return mean * np.exp(0.22 * normal)
    if test == "CREA":
        base = np.where(male, 80.0, 62.0) * np.where(age < 14, 0.5, 1.0)
        extra = 0.9 * np.maximum(age - 50.0, 0.0) + 35.0 * has["I50"] + 10.0 * has["E11"]
        return (base + extra) * np.exp(0.15 * normal)
    if test == "ALT":
        return (22.0 + 40.0 * is_code["K80"]) * np.exp(0.35 * normal)
    raise ValueError(f"no generator for lab test {test}")


# --- frames ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Pools:
    surnames: npt.NDArray[np.str_]
    male_names: npt.NDArray[np.str_]
    female_names: npt.NDArray[np.str_]
    streets: npt.NDArray[np.str_]
    phone_prefixes: npt.NDArray[np.int64]


@lru_cache(maxsize=4)
def _faker_pools(seed: int) -> _Pools:
    fake = Faker("zh_CN")
    fake.seed_instance(seed)
    return _Pools(
        surnames=np.array([fake.last_name() for _ in range(POOL_SIZE)]),
        male_names=np.array([fake.first_name_male() for _ in range(POOL_SIZE)]),
        female_names=np.array([fake.first_name_female() for _ in range(POOL_SIZE)]),
        streets=np.array([fake.street_name() for _ in range(POOL_SIZE)]),
        phone_prefixes=np.array([int(fake.phone_number()[:3]) for _ in range(POOL_SIZE)]),
    )


def _patients_frame(people: _People, pools: _Pools, rng: np.random.Generator) -> pd.DataFrame:
    n = people.n
    given = np.where(
        people.male,
        _given_names(pools.male_names, n, rng),
        _given_names(pools.female_names, n, rng),
    )
    name = np.char.add(pools.surnames[rng.integers(0, POOL_SIZE, size=n)], given)

    districts = np.array(DISTRICTS)
    area = np.array([CHANGZHOU_AREA_CODES[d] for d in DISTRICTS], dtype=np.int64)
    id_card = build_id_cards(area[people.district], people.birth, people.male, rng)

    prefix = pools.phone_prefixes[rng.integers(0, POOL_SIZE, size=n)]
    subscriber = rng.choice(100_000_000, size=n, replace=False) if n else np.zeros(0, np.int64)
    phone = (prefix * 100_000_000 + subscriber).astype("<U11")

    return _frame(
        "patients",
        {
            "person_id": np.arange(1, n + 1, dtype=np.int64),
            "name": name,
            "id_card": id_card,
            "phone": phone,
            "sex": np.where(people.male, "男", "女"),
            "birth_date": people.birth.astype(object),
            "district": districts[people.district],
            "address": _addresses(people.district, pools, rng),
            "consent_research": rng.random(n) < 0.85,
        },
    )


def _given_names(
    pool: npt.NDArray[np.str_], n: int, rng: np.random.Generator
) -> npt.NDArray[np.str_]:
    # Faker knows only a few dozen given names per sex; recombining their characters
    # (weighted as Faker draws them) keeps names plausible without every other one repeating.
    chars = np.array(list("".join(pool)))
    first = chars[rng.integers(0, len(chars), size=n)]
    second = chars[rng.integers(0, len(chars), size=n)]
    whole = pool[rng.integers(0, len(pool), size=n)]
    return np.where(rng.random(n) < 0.3, whole, np.char.add(first, second))


def _addresses(
    district: npt.NDArray[np.int64], pools: _Pools, rng: np.random.Generator
) -> npt.NDArray[np.str_]:
    n = len(district)
    roads = np.array([DISTRICT_ROADS[d] for d in DISTRICTS])  # (districts, roads)
    real = roads[district, rng.integers(0, roads.shape[1], size=n)]
    invented = pools.streets[rng.integers(0, POOL_SIZE, size=n)]
    street = np.where(rng.random(n) < REAL_ROAD_SHARE, real, invented)
    number = rng.integers(1, 400, size=n).astype("<U4")
    building = rng.integers(1, 40, size=n).astype("<U3")
    unit = rng.integers(1, 5, size=n).astype("<U2")
    room = (rng.integers(1, 19, size=n) * 100 + rng.integers(1, 5, size=n)).astype("<U5")
    parts = (
        "江苏省常州市",
        np.array(DISTRICTS)[district],
        street,
        number,
        "号",
        building,
        "幢",
        unit,
        "单元",
        room,
        "室",
    )
    address = np.array(parts[0])
    for part in parts[1:]:
        address = np.char.add(address, part)
    return address


def _visits_frame(visits: _Visits) -> pd.DataFrame:
    codes = np.array(CODES)
    diagnoses = np.array([ICD10[c][0] for c in CODES])
    return _frame(
        "visits",
        {
            "visit_id": np.arange(1, len(visits.person) + 1, dtype=np.int64),
            "person_id": visits.person.astype(np.int64) + 1,
            "hospital": np.array(HOSPITALS)[visits.hospital],
            "department": np.array(DEPARTMENTS)[visits.department],
            "visit_date": visits.day.astype(object),
            "icd10": codes[visits.code],
            "diagnosis": diagnoses[visits.code],
            "cost": visits.cost.astype(np.float64),
            "length_of_stay": visits.stay.astype(np.int64),
            "readmitted_30d": visits.readmitted.astype(bool),
        },
    )


def _labs_frame(labs: _Labs) -> pd.DataFrame:
    # Visits and persons are numbered from 1 in their frames, in row order.
    units = np.array([LAB_TESTS[t][1] for t in TESTS])
    return _frame(
        "labs",
        {
            "lab_id": np.arange(1, len(labs.visit) + 1, dtype=np.int64),
            "visit_id": labs.visit.astype(np.int64) + 1,
            "person_id": labs.person.astype(np.int64) + 1,
            "test_code": np.array(TESTS)[labs.test],
            "value": labs.value.astype(np.float64),
            "unit": units[labs.test],
            "taken_at": labs.taken_at.astype("datetime64[us]"),
        },
    )


def _manifest_table(table: str) -> Table:
    spec = HEALTH.table(table)
    if spec is None:
        raise DatasetError(f"the health manifest has no table {table!r}")
    return spec


def _bounds(table: str, column: str) -> tuple[float, float]:
    spec = _manifest_table(table).column(column)
    if spec is None or spec.bounds is None:
        raise DatasetError(f"the health manifest declares no bounds for {table}.{column}")
    return spec.bounds


def _frame(table: str, data: dict[str, object]) -> pd.DataFrame:
    # The generator and the manifest must agree on every column, in the manifest's order.
    names = [c.name for c in _manifest_table(table).columns]
    if sorted(names) != sorted(data):
        raise DatasetError(f"the generator's {table} columns differ from the manifest's")
    return pd.DataFrame({name: data[name] for name in names})


def _normalised(weights: tuple[float, ...]) -> npt.NDArray[np.float64]:
    w = np.array(weights, dtype=np.float64)
    return w / w.sum()
