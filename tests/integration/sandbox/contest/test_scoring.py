"""Scoring submissions with the development runner, as the worker does.

A submission's smoke run on mock rows, then its fit and predict on the track's
public part; the Ladder's shown score, signed with the release key and audited; a
smoke failure told in full and not counted, a hidden failure told by a fixed reason
only; the model's size cap; no prediction kept. At the close: the picks, the private
scoring and the signed final board.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select

from policies.leaderboard import shown_decimals
from runners.local import LocalProcessRunner
from sandbox.contest import boards, contests, scoring, submissions
from sandbox.contest.splits import Part
from sandbox.context import Sandbox
from sandbox.demo import DEMO_CONTEST, DEMO_TEAMS, ensure_demo_contest
from sandbox.errors import Conflict
from sandbox.integrity import audit
from sandbox.integrity.signing import SignatureInvalid, sha256_json, verify_certificate
from sandbox.models import AuditEntry, Contest, FinalBoard, LeaderboardEntry, Submission, Track
from tests.factories import actor, make_sandbox
from tests.integration.sandbox.contest.track_data import track_part

TRACK = "length-of-stay"
MODEL_CAP = 10_000

# The mean stay, shifted by 14/330 = 0.0424242...: every prediction then holds the
# digits below, which nothing else in the database does (the code itself says 14 / 330).
MARKER = "424242424"
MEAN_STAY = """
import numpy as np


def fit(train):
    return round(float(train["visits"]["length_of_stay"].mean()), 1)


def predict(model, features):
    return np.full(len(features["visits"]), model + 14 / 330 + {shift})
"""

# The real visits have about three lab results each; the mock rows of a smoke run
# (drawn from the dataset's DP marginals) as many lab rows as visits. Code can thus
# run well on mock data and fail on the hidden data only.
ON_HIDDEN_DATA = """
import numpy as np


def fit(train):
    return float(train["visits"]["length_of_stay"].mean())


def predict(model, features):
    visits = features["visits"]
    print("smoke-run-output")
    if len(features["labs"]) > 2 * len(visits):
        print("hidden-run-output")
        {failure}
    return np.full(len(visits), model)
"""
HIDDEN_FAILURES = {
    "wrong_length": "return np.full(len(visits) - 1, model)",
    "not_finite": "return np.full(len(visits), np.nan)",
    "not_a_sequence": "return {'days': model}",
    "raises": "raise ValueError('hidden-exception-text')",
}


def code_of(template: str, **fields: object) -> str:
    code = textwrap.dedent(template)
    return code.format(**fields) if fields else code


def mean_stay(shift: float = 0.0) -> str:
    return MEAN_STAY.replace("{shift}", repr(shift))


def submit(sandbox: Sandbox, who: str, code: str, track: str = TRACK) -> str:
    view = submissions.submit(
        sandbox, by=actor(sandbox, who), contest=DEMO_CONTEST, track=track, code=code
    )
    return str(view["id"])


def run(sandbox: Sandbox, submission_id: str) -> Submission:
    """Run the submission as the worker would; its row after. Its model is gone either way."""
    scoring.run_submission(sandbox, submission_id)
    runner = sandbox.runner
    assert isinstance(runner, LocalProcessRunner)
    assert not list(runner.models_dir.glob(f"sandbox-model-{submission_id}-*"))
    with sandbox.tx() as session:
        row = session.get_one(Submission, submission_id)
        session.expunge(row)
        return row


def daily_used(sandbox: Sandbox, who: str, track: str = TRACK) -> int:
    mine = submissions.my_submissions(
        sandbox, by=actor(sandbox, who), contest=DEMO_CONTEST, track=track
    )
    return int(mine["quotas"]["daily"]["used"])


def audited(sandbox: Sandbox, subject: str) -> list[AuditEntry]:
    with sandbox.tx() as session:
        rows = list(
            session.scalars(
                select(AuditEntry).where(AuditEntry.subject == subject).order_by(AuditEntry.seq)
            )
        )
        session.expunge_all()
        return rows


def open_contest(instance: Path, **settings: Any) -> Sandbox:
    """The demo contest, open, on 1500 patients; the baselines it queues are not run."""
    sandbox = make_sandbox(instance, patients=1500, **settings)
    baselines: list[str] = []
    ensure_demo_contest(sandbox, enqueue=baselines.append)
    return sandbox


@pytest.fixture(scope="module")
def contest(tmp_path_factory: pytest.TempPathFactory) -> Sandbox:
    """One open contest for this module's tests. Each test works in a lane of its own
    (a team and a track), so none sees another's submissions on its board or quota."""
    return open_contest(tmp_path_factory.mktemp("scoring") / "instance", max_model_bytes=MODEL_CAP)


@pytest.fixture(scope="module")
def scored(contest: Sandbox) -> dict[str, Submission]:
    """analyst's team on the length-of-stay track: a first submission, then one no better."""
    first = run(contest, submit(contest, "analyst", mean_stay()))
    worse = run(contest, submit(contest, "analyst", mean_stay(0.5)))
    return {"first": first, "worse": worse}


def test_run_submission_scores_the_public_part_exactly(
    contest: Sandbox, scored: dict[str, Submission]
) -> None:
    first = scored["first"]
    public, metric = track_part(contest, TRACK, Part.PUBLIC)
    stay = round(float(public.train["visits"]["length_of_stay"].mean()), 1)
    exact = metric.score(public.labels, np.full(len(public.labels), stay + 14 / 330))

    assert first.status == "scored", first.error_message
    assert first.improved is True
    assert first.shown_score == round(exact, shown_decimals(len(public.labels)))
    assert first.shown_low is not None and first.shown_high is not None
    assert first.shown_low <= first.shown_score <= first.shown_high
    assert first.shown_low < first.shown_high
    assert first.smoke_score is not None  # on mock rows, told to the team in full
    with contest.tx() as session:
        track = session.scalars(select(Track).where(Track.slug == TRACK)).one()
        entry = session.scalars(
            select(LeaderboardEntry).where(
                LeaderboardEntry.track_id == track.id, LeaderboardEntry.team_id == first.team_id
            )
        ).one()
        assert (entry.submission_id, entry.shown_score) == (first.id, first.shown_score)


def test_run_submission_certificate_verifies_with_release_key(
    contest: Sandbox, scored: dict[str, Submission]
) -> None:
    first = scored["first"]
    certificate = first.certificate
    assert certificate is not None
    public, _ = track_part(contest, TRACK, Part.PUBLIC)

    verify_certificate(certificate, contest.release_key.public_pem)

    document = certificate["document"]
    assert document["type"] == scoring.SCORE_TYPE
    assert document["contest"] == DEMO_CONTEST and document["track"] == TRACK
    assert document["team"] == DEMO_TEAMS[0][0]
    assert document["submission"] == first.id
    assert document["code_sha256"] == first.code_sha256
    # The development runner: no container runtime, no image, and the certificate says so.
    assert (first.runtime, first.image_digest) == (None, None)
    assert (document["runtime"], document["image_digest"]) == (None, None)
    assert (document["part"], document["rule"]) == ("public", "ladder")
    assert document["examples"] == len(public.labels)
    assert document["score"] == first.shown_score
    assert document["interval"] == [first.shown_low, first.shown_high]
    forged = {**certificate, "document": {**document, "score": document["score"] - 0.5}}
    with pytest.raises(SignatureInvalid):
        verify_certificate(forged, contest.release_key.public_pem)


def test_run_submission_audits_created_running_scored(
    contest: Sandbox, scored: dict[str, Submission]
) -> None:
    first = scored["first"]

    entries = audited(contest, first.id)

    assert [e.action for e in entries] == [
        "submission.created",
        "submission.running",
        "submission.scored",
    ]
    released = entries[-1].details
    assert released["shown_score"] == first.shown_score
    assert released["interval"] == [first.shown_low, first.shown_high]
    assert released["key_id"] == contest.release_key.key_id
    with contest.tx() as session:
        assert audit.verify(session).ok


def test_ladder_shows_previous_score_for_no_better_submission(
    contest: Sandbox, scored: dict[str, Submission]
) -> None:
    first, worse = scored["first"], scored["worse"]

    assert worse.status == "scored", worse.error_message
    assert worse.improved is False
    assert worse.shown_score == first.shown_score
    assert (worse.shown_low, worse.shown_high) == (first.shown_low, first.shown_high)
    assert worse.certificate is not None
    verify_certificate(worse.certificate, contest.release_key.public_pem)
    assert worse.certificate["document"]["improved"] is False
    assert audited(contest, worse.id)[-1].details["improved"] is False
    board = boards.leaderboard(contest, contest=DEMO_CONTEST, track=TRACK)
    (line,) = [line for line in board["public"] if line["team"] == DEMO_TEAMS[0][0]]
    assert line["score"] == first.shown_score
    assert line["submissions"] == 2


def lists_in(value: Any) -> Iterator[list[Any]]:
    if isinstance(value, list):
        yield value
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    for item in items:
        yield from lists_in(item)


def test_predictions_are_kept_nowhere(contest: Sandbox, scored: dict[str, Submission]) -> None:
    ids = [s.id for s in scored.values()]
    with contest.tx() as session:
        rows = [session.get_one(Submission, i) for i in ids]
        stored = [
            {c.name: getattr(row, c.name) for c in Submission.__table__.columns} for row in rows
        ]
        details = [e.details for e in session.scalars(select(AuditEntry))]

    text = json.dumps([stored, details], default=str)
    assert MARKER not in text
    # Nor any sequence as long as one prediction per public example would be.
    public, _ = track_part(contest, TRACK, Part.PUBLIC)
    longest = max(len(found) for found in lists_in([stored, details]))
    assert longest < len(public.labels)
    # The submission's own view says no more than its row.
    view = submissions.get_submission(contest, by=actor(contest, "analyst"), submission_id=ids[0])
    assert MARKER not in json.dumps(view)


def test_smoke_failure_gives_log_and_line_and_is_not_counted(contest: Sandbox) -> None:
    code = code_of(
        """
        def fit(train):
            stays = train["visits"]["length_of_stay"]
            raise ValueError("no stays to learn from")


        def predict(model, features):
            return [0.5] * len(features["visits"])
        """
    )
    line = code.splitlines().index('    raise ValueError("no stays to learn from")') + 1
    before = daily_used(contest, "analyst", "readmission-30d")

    failed = run(contest, submit(contest, "analyst", code, track="readmission-30d"))

    assert (failed.status, failed.failed_in, failed.error_code) == ("failed", "smoke", "error")
    assert failed.error_message == f"The job raised ValueError at line {line} of your code."
    assert failed.smoke_log is not None
    assert "no stays to learn from" in failed.smoke_log
    assert f'File "<job>", line {line}, in fit' in failed.smoke_log
    assert daily_used(contest, "analyst", "readmission-30d") == before
    view = submissions.get_submission(
        contest, by=actor(contest, "analyst"), submission_id=failed.id
    )
    assert view["counted"] is False
    assert "no stays to learn from" in view["smoke"]["log"]
    assert [e.action for e in audited(contest, failed.id)][-1] == "submission.failed"


def test_model_over_cap_fails_model_too_large(contest: Sandbox) -> None:
    code = code_of(
        """
        import numpy as np


        def fit(train):
            return np.arange(200_000, dtype=np.float64)


        def predict(model, features):
            return np.full(len(features["visits"]), 0.5)
        """
    )

    failed = run(contest, submit(contest, "analyst", code, track="readmission-30d"))

    assert (failed.status, failed.error_code) == ("failed", "model_too_large")
    assert failed.error_message == f"The fitted model is larger than the cap of {MODEL_CAP} bytes."


@pytest.mark.parametrize(
    ("case", "code", "message"),
    [
        (
            "wrong_length",
            "malformed_predictions",
            f"{scoring.HIDDEN_FAILURES['malformed_predictions']} (wrong_length)",
        ),
        (
            "not_finite",
            "malformed_predictions",
            f"{scoring.HIDDEN_FAILURES['malformed_predictions']} (not_finite)",
        ),
        ("not_a_sequence", "error", scoring.HIDDEN_FAILURES["error"]),
        ("raises", "error", scoring.HIDDEN_FAILURES["error"]),
    ],
)
def test_hidden_failure_says_fixed_reason_only(
    contest: Sandbox, case: str, code: str, message: str
) -> None:
    before = daily_used(contest, "analyst2")

    failed = run(
        contest, submit(contest, "analyst2", code_of(ON_HIDDEN_DATA, failure=HIDDEN_FAILURES[case]))
    )

    assert (failed.status, failed.failed_in) == ("failed", "hidden"), failed.error_message
    assert (failed.error_code, failed.error_message) == (code, message)
    # The smoke run went well and its log is the team's; nothing of the hidden run's is.
    assert failed.smoke_score is not None
    view = submissions.get_submission(
        contest, by=actor(contest, "analyst2"), submission_id=failed.id
    )
    told = json.dumps({k: v for k, v in view.items() if k != "code"}, ensure_ascii=False)
    assert "smoke-run-output" in view["smoke"]["log"]
    for secret in ("hidden-run-output", "hidden-exception-text", "ValueError", "TypeError"):
        assert secret not in told
    assert "line" not in view["error"]["message"]
    assert view["score"] is None and view["certificate"] is None
    # The hidden data was read: it counts.
    assert view["counted"] is True
    assert daily_used(contest, "analyst2") == before + 1
    assert audited(contest, failed.id)[-1].details == {"in": "hidden", "reason": code}


def test_final_board_is_signed_and_closes_contest(tmp_path: Path) -> None:
    sandbox = open_contest(tmp_path / "instance")
    organizer = actor(sandbox, "organizer")
    ivy = [run(sandbox, submit(sandbox, "analyst", mean_stay(shift))) for shift in (0, 0.5, 1)]
    dragon = run(sandbox, submit(sandbox, "analyst2", mean_stay(0.25)))
    assert all(s.status == "scored" for s in [*ivy, dragon])
    analyst = actor(sandbox, "analyst")
    for pick in ivy[:2]:
        submissions.select_final(sandbox, by=analyst, submission_id=pick.id, selected=True)
    with pytest.raises(Conflict) as third:
        submissions.select_final(sandbox, by=analyst, submission_id=ivy[2].id, selected=True)
    assert third.value.details["rule"] == "submission.picks"
    contests.set_phase(sandbox, by=organizer, contest=DEMO_CONTEST, phase="final")

    queued: list[str] = []
    started = boards.start_final_scoring(
        sandbox, by=organizer, contest=DEMO_CONTEST, enqueue=queued.append
    )

    # Ivy's two picks; Dragon picked none, so the submission that set its public score.
    assert sorted(queued) == sorted([ivy[0].id, ivy[1].id, dragon.id])
    assert started["queued"] == 3
    with pytest.raises(Conflict) as early:
        boards.publish_final(sandbox, by=organizer, contest=DEMO_CONTEST)
    assert early.value.details["rule"] == "contest.final_pending"
    assert [scoring.score_final(sandbox, i) for i in queued] == ["scored"] * 3

    published = boards.publish_final(sandbox, by=organizer, contest=DEMO_CONTEST)

    assert published["phase"] == "closed"
    with sandbox.tx() as session:
        picked = list(session.scalars(select(Submission).where(Submission.id.in_(queued))))
        finals = {s.id: s.final_score for s in picked if s.final_score is not None}
        assert len(finals) == 3
        lane = session.scalars(select(Track).where(Track.slug == TRACK)).one()
        board = session.scalars(select(FinalBoard).where(FinalBoard.track_id == lane.id)).one()
        document, certificate = board.document, board.certificate
        assert session.scalars(select(Contest.phase)).one() == "closed"
        published_entries = list(
            session.scalars(
                select(AuditEntry).where(AuditEntry.action == "contest.final_published")
            )
        )
    verify_certificate(certificate, sandbox.release_key.public_pem)
    assert certificate["document"] == {**document, "key_id": sandbox.release_key.key_id}
    best_ivy = min(ivy[:2], key=lambda s: finals[s.id])  # mae: lower is better
    expected = sorted(
        [(DEMO_TEAMS[0][0], best_ivy.id), (DEMO_TEAMS[1][0], dragon.id)],
        key=lambda line: finals[line[1]],
    )
    assert [(line["team"], line["submission"]) for line in document["lines"]] == expected
    assert [line["place"] for line in document["lines"]] == [1, 2]
    assert [line["score"] for line in document["lines"]] == [finals[i] for _, i in expected]
    assert document["part"] == "private"
    by_track = {e.details["track"]: e.details for e in published_entries}
    assert sorted(by_track) == sorted(["readmission-30d", TRACK, "diagnosis-from-labs"])
    assert by_track[TRACK]["board_sha256"] == sha256_json(document)
    assert by_track[TRACK]["key_id"] == sandbox.release_key.key_id
    with pytest.raises(Conflict) as closed:
        submit(sandbox, "analyst", mean_stay())
    assert closed.value.details["rule"] == "contest.closed"
