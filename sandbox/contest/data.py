"""What a submission's two runs see: the training part, and the scored part without labels.

A track's data is the view of its tables under the dataset owner's grant to the
organizer (集中授权), built like a Python job's: the negative list never enters,
the columns the grant closes are dropped, persons without consent are left out,
and person and record keys are pseudonyms under a key of the track's own (so no
other view joins them). Each person falls in one part by the track's secret split
key (:mod:`sandbox.contest.splits`).

- ``fit`` sees every feature table restricted to the training part's persons,
  the target with them.
- ``predict`` sees the same tables restricted to the scored part's persons, the
  target table without its target, event and withheld columns, and every table's
  rows shuffled under the split key, so that row order says nothing. The labels,
  in the order of the target table's rows, stay with the worker.

A smoke run reads the same shapes made from mock rows (the dataset's DP marginals
where it has them), split under a throwaway key: it tells a team whether its code
runs, with its full log, and says nothing about the hidden data.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from datasets.mock import mock_view
from datasets.views import build_view, pseudonym_key
from policies.policy_file import DatasetPolicy
from sandbox.catalog import Published
from sandbox.contest.metrics import Task
from sandbox.contest.splits import KEY_BYTES, Part, Shares, parts
from sandbox.context import Sandbox
from sandbox.dp.marginals import load_marginals, mock_table
from sandbox.models import Track

# Mock persons of a smoke run: enough rows to fit on, small enough to run in seconds.
SMOKE_PERSONS = 2000


@dataclass(frozen=True)
class TrackTables:
    """One run's data: ``train`` for fit; ``features`` and ``labels`` for predict and scoring."""

    train: dict[str, pd.DataFrame]
    features: dict[str, pd.DataFrame]
    # The truth, row by row of the target table in ``features`` (survival: time, event).
    labels: npt.NDArray[Any]
    # Multi-class tasks: every class the target takes in the whole view.
    classes: list[Any] | None


@dataclass(frozen=True)
class TrackShape:
    """What of a track's tables the split needs, read from its row."""

    track_id: str
    dataset: str
    task: Task
    target_table: str
    target_column: str
    event_column: str | None
    withheld: frozenset[str]  # "table.column"
    tables: tuple[str, ...]
    shares: Shares

    @classmethod
    def of(cls, track: Track) -> TrackShape:
        table, _, column = track.target.partition(".")
        event = track.event.partition(".")[2] if track.event else None
        names = tuple(dict.fromkeys([*track.features, table]))
        return cls(
            track_id=track.id,
            dataset=track.dataset,
            task=Task(track.task),
            target_table=table,
            target_column=column,
            event_column=event or None,
            withheld=frozenset(track.withheld or ()),
            tables=names,
            shares=Shares(public=track.public_share, private=track.private_share),
        )


def hidden_tables(
    sandbox: Sandbox,
    shape: TrackShape,
    *,
    current: Published,
    policy: DatasetPolicy,
    consenting: frozenset[str] | None,
    split_key: bytes,
    scored: Part,
) -> TrackTables:
    """The real data's parts for one run, ``scored`` being the public or the private part."""
    raw = {name: sandbox.store.read_table(shape.dataset, name) for name in shape.tables}
    view = build_view(
        raw,
        current.manifest,
        key=pseudonym_key(
            sandbox.secrets.pseudonym_secret, shape.dataset, f"track-{shape.track_id}"
        ),
        consenting=consenting,
        table_names=shape.tables,
    )
    return split_tables(
        _open(view, policy),
        shape,
        person=current.manifest.privacy_unit,
        key=split_key,
        scored=scored,
    )


def smoke_tables(
    sandbox: Sandbox, shape: TrackShape, *, current: Published, policy: DatasetPolicy
) -> TrackTables:
    """Mock tables of the track's shape, split under a throwaway key (nothing real).

    From the dataset's DP marginals when they are this version's and their rows give
    a classification target two classes to learn from; otherwise (the noise of a
    small dataset's marginals can leave a rare class out) from the synthetic
    generator, or the columns' declarations.
    """
    key = secrets.token_bytes(KEY_BYTES)
    person = current.manifest.privacy_unit
    marginals = load_marginals(sandbox.settings.instance, shape.dataset)
    if (
        marginals is not None
        and marginals.get("version") == current.version
        and all(name in (marginals.get("tables") or {}) for name in shape.tables)
    ):
        drawn = {
            name: mock_table(marginals, current.manifest, name, _mock_rows(current, name), seed=7)
            for name in shape.tables
        }
        tables = split_tables(
            _open(drawn, policy), shape, person=person, key=key, scored=Part.PUBLIC
        )
        if _learnable(tables, shape):
            return tables
    view = mock_view(current.manifest, list(shape.tables), SMOKE_PERSONS, seed=7)
    return split_tables(_open(view, policy), shape, person=person, key=key, scored=Part.PUBLIC)


def _open(view: dict[str, pd.DataFrame], policy: DatasetPolicy) -> dict[str, pd.DataFrame]:
    """The columns a run may read: those the policy (as the grant narrows it) keeps open."""
    return {
        name: frame[[c for c in frame.columns if not policy.rule(name, c).forbidden]]
        for name, frame in view.items()
    }


def _learnable(tables: TrackTables, shape: TrackShape) -> bool:
    if shape.task not in (Task.BINARY, Task.MULTICLASS):
        return len(tables.labels) >= 2
    target = tables.train[shape.target_table][shape.target_column].dropna()
    return target.nunique() >= 2 and len(set(tables.labels.tolist())) >= 2


def _mock_rows(current: Published, table: str) -> int:
    spec = current.manifest.table(table)
    per_person = spec.max_rows_per_person if spec is not None else None
    return min(10_000, SMOKE_PERSONS * min(per_person or 5, 5))


def split_tables(
    view: dict[str, pd.DataFrame],
    shape: TrackShape,
    *,
    person: str,
    key: bytes,
    scored: Part,
) -> TrackTables:
    """Cut ``view`` into the training part and the ``scored`` part's features and labels."""
    if scored is Part.TRAIN:
        raise ValueError("the scored part is the public or the private part")
    withheld = {
        name: {w.partition(".")[2] for w in shape.withheld if w.partition(".")[0] == name}
        for name in view
    }
    target = view[shape.target_table]
    classes = (
        sorted(target[shape.target_column].dropna().astype(str).unique().tolist())
        if shape.task is Task.MULTICLASS
        else None
    )
    train: dict[str, pd.DataFrame] = {}
    features: dict[str, pd.DataFrame] = {}
    labels: npt.NDArray[Any] = np.array([])
    for name, frame in view.items():
        if person in frame.columns:
            placed = np.array(parts(frame[person].astype(str), key, shape.shares), dtype=object)
            train_rows, scored_rows = frame[placed == Part.TRAIN], frame[placed == scored]
        else:  # a table of no one (a lookup table): the same in both parts
            train_rows, scored_rows = frame, frame
        train[name] = _without(train_rows, withheld[name]).reset_index(drop=True)
        scored_rows = _shuffled(scored_rows, key, f"{scored}:{name}")
        if name == shape.target_table:
            truth_columns = [shape.target_column] + (
                [shape.event_column] if shape.event_column else []
            )
            scored_rows = scored_rows.dropna(subset=truth_columns)
            labels = _labels(scored_rows, shape)
            scored_rows = scored_rows.drop(columns=truth_columns)
        features[name] = _without(scored_rows, withheld[name]).reset_index(drop=True)
    return TrackTables(train=train, features=features, labels=labels, classes=classes)


def _without(frame: pd.DataFrame, columns: set[str]) -> pd.DataFrame:
    return frame.drop(columns=[c for c in frame.columns if c in columns])


def _shuffled(frame: pd.DataFrame, key: bytes, label: str) -> pd.DataFrame:
    """The rows in an order drawn under the split key: the same for every run of the track,
    unrelated to the stored order."""
    seed = int.from_bytes(hmac.new(key, label.encode(), hashlib.sha256).digest()[:8], "big")
    order = np.random.default_rng(seed).permutation(len(frame))
    return frame.iloc[order]


def _labels(rows: pd.DataFrame, shape: TrackShape) -> npt.NDArray[Any]:
    values = rows[shape.target_column]
    match shape.task:
        case Task.BINARY:
            return values.astype(float).astype(int).to_numpy()
        case Task.MULTICLASS:
            return np.asarray(values.astype(str).tolist())
        case Task.REGRESSION:
            return values.astype(float).to_numpy()
        case Task.SURVIVAL:
            assert shape.event_column is not None
            events = rows[shape.event_column].astype(float).astype(int).to_numpy()
            return np.column_stack([values.astype(float).to_numpy(), events])
