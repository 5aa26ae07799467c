"""The audit chain on SQLite: append-only triggers, tampering caught, signed checkpoints,
browsing with filters, and the ``sandbox audit`` commands."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from click.testing import CliRunner
from sqlalchemy import create_engine, delete, text, update
from sqlalchemy.exc import DBAPIError

from sandbox import context
from sandbox.cli import main
from sandbox.context import Sandbox
from sandbox.db import alembic_config, engine_for
from sandbox.errors import InvalidRequest
from sandbox.integrity import audit, checkpoints
from sandbox.integrity.audit import APPEND_ONLY_MESSAGE, AuditFilter
from sandbox.integrity.signing import ReleaseKey, verify_certificate
from sandbox.models import AuditEntry, Base
from tests.tampering import SCENARIOS, append_entries, chain_sandbox, check_scenario, tamper


@pytest.fixture
def chain(tmp_path: Path) -> Sandbox:
    """An empty audit log on SQLite, its schema made from the models (as some tests do)."""
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    Base.metadata.create_all(engine_for(url))
    return chain_sandbox(tmp_path / "instance", url)


def triggers(url: str) -> list[tuple[str, str]]:
    engine = create_engine(url)
    with engine.connect() as connection:
        found = connection.execute(
            text("SELECT name, sql FROM sqlite_master WHERE type = 'trigger' ORDER BY name")
        )
        rows = [(name, sql) for name, sql in found]
    engine.dispose()
    return rows


# --- append-only ------------------------------------------------------------------------------


def test_audit_triggers_same_from_models_and_migrations(tmp_path: Path) -> None:
    migrated = f"sqlite:///{tmp_path / 'migrated.db'}"
    command.upgrade(alembic_config(migrated), "head")
    from_models = f"sqlite:///{tmp_path / 'models.db'}"
    Base.metadata.create_all(create_engine(from_models))
    assert [name for name, _ in triggers(migrated)] == [
        "audit_entries_no_delete",
        "audit_entries_no_update",
    ]
    assert triggers(migrated) == triggers(from_models)
    command.downgrade(alembic_config(migrated), "0006")
    assert triggers(migrated) == []


@pytest.mark.parametrize(
    "statement",
    [
        update(AuditEntry).where(AuditEntry.seq == 2).values(subject="forged"),
        update(AuditEntry).values(actor="everyone"),
        delete(AuditEntry).where(AuditEntry.seq == 3),
        delete(AuditEntry),
    ],
    ids=["update one", "update all", "delete one", "delete all"],
)
def test_audit_database_refuses_update_and_delete(chain: Sandbox, statement: object) -> None:
    append_entries(chain)
    with pytest.raises(DBAPIError, match=APPEND_ONLY_MESSAGE):
        with chain.tx() as session:
            session.execute(statement)  # type: ignore[call-overload]
    with chain.tx() as session:
        assert audit.verify(session).ok
        assert audit.head(session)[0] == 6


def test_audit_orm_delete_refused(chain: Sandbox) -> None:
    append_entries(chain)
    with pytest.raises(DBAPIError, match=APPEND_ONLY_MESSAGE):
        with chain.tx() as session:
            session.delete(session.get_one(AuditEntry, 6))
    with pytest.raises(DBAPIError, match=APPEND_ONLY_MESSAGE):
        with chain.tx() as session:
            session.get_one(AuditEntry, 6).details = {"i": "forged"}


# --- tampering ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_audit_tampering_named_on_sqlite(chain: Sandbox, name: str) -> None:
    check_scenario(chain, SCENARIOS[name])


def test_audit_verify_intact_chain_and_empty_log(chain: Sandbox) -> None:
    with chain.tx() as session:
        empty = audit.verify(session)
    assert empty.ok and empty.entries == 0 and empty.head == audit.GENESIS
    append_entries(chain)
    report = checkpoints.verify_chain(chain)
    assert report.to_dict() == {
        "ok": True,
        "entries": 6,
        "head": report.head,
        "first_broken": None,
        "reason": None,
        "checkpoints": 0,
    }


# --- checkpoints --------------------------------------------------------------------------------


def test_audit_checkpoint_signs_head_into_file_and_copy(chain: Sandbox, tmp_path: Path) -> None:
    append_entries(chain)
    copy = tmp_path / "copy.json"
    signed = checkpoints.write_checkpoint(chain, out=copy)
    with chain.tx() as session:
        seq, head = audit.head(session)
    document = signed["document"]
    assert (document["type"], document["seq"], document["head"]) == (
        checkpoints.DOCUMENT_TYPE,
        seq,
        head,
    )
    assert dt.datetime.fromisoformat(document["at"]).tzinfo is not None
    verify_certificate(signed, chain.release_key.public_pem)
    assert json.loads(copy.read_text()) == signed
    (line,) = checkpoints.default_file(chain).read_text().splitlines()
    assert json.loads(line) == signed


def test_audit_verify_signs_verified_head_once_per_growth(chain: Sandbox) -> None:
    append_entries(chain)
    path = checkpoints.default_file(chain)
    assert checkpoints.verify_chain(chain, checkpoint_after=True).ok
    assert checkpoints.verify_chain(chain, checkpoint_after=True).ok  # nothing new to sign
    assert len(path.read_text().splitlines()) == 1
    append_entries(chain, 2)
    report = checkpoints.verify_chain(chain, checkpoint_after=True)
    assert report.ok and report.checkpoints == 1
    last = json.loads(path.read_text().splitlines()[-1])["document"]
    assert (last["seq"], last["head"]) == (8, report.head)


def test_audit_forged_or_foreign_checkpoint_fails_verify(chain: Sandbox, tmp_path: Path) -> None:
    append_entries(chain)
    path = checkpoints.default_file(chain)
    checkpoints.write_checkpoint(chain)
    genuine = json.loads(path.read_text())
    document = {k: v for k, v in genuine["document"].items() if k != "key_id"}
    foreign = ReleaseKey.load_or_create(tmp_path / "other.pem").sign(document)
    longer = json.loads(json.dumps(genuine))
    longer["document"]["seq"] = 99  # claims a longer chain, signature no longer matches
    with path.open("a") as lines:
        for forged in (foreign, longer):
            lines.write(json.dumps(forged) + "\n")
        lines.write("not json\n")
    report = checkpoints.verify_chain(chain, checkpoint_after=True)
    assert not report.ok and report.first_broken is None
    assert report.reason is not None
    assert "line 2: signed with a key this instance does not know" in report.reason
    assert "line 3: the signature does not match the document" in report.reason
    assert "line 4:" in report.reason
    assert report.checkpoints == 1  # the genuine one was still compared
    assert len(path.read_text().splitlines()) == 4  # and nothing was signed


def test_audit_checkpoint_of_other_document_type_refused(chain: Sandbox) -> None:
    append_entries(chain, 1)
    path = checkpoints.default_file(chain)
    # A release certificate is signed by the same key, but is no checkpoint.
    certificate = chain.release_key.sign(
        {"type": "sandbox.release/v2", "seq": 1, "head": "a" * 64, "at": "2026-11-26"}
    )
    checkpoints.append_checkpoint(path, certificate)
    report = checkpoints.verify_chain(chain)
    assert not report.ok and "not an audit checkpoint" in str(report.reason)


# --- browsing -----------------------------------------------------------------------------------


@pytest.fixture
def browsable(chain: Sandbox, monkeypatch: pytest.MonkeyPatch) -> Iterator[Sandbox]:
    """Ten entries, one a day from 2026-11-20, by two actors, about three subjects."""
    day = dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.UTC)
    moments = iter([day + dt.timedelta(days=i) for i in range(10)])
    monkeypatch.setattr(audit, "utcnow", lambda: next(moments))
    with chain.tx() as session:
        for i in range(10):
            audit.append(
                session,
                actor="alice" if i % 2 else "bob",
                action=("job.submitted", "job.released", "auth.login")[i % 3],
                subject=f"s{i % 3}",
                details={"i": i},
            )
    yield chain


def page(sandbox: Sandbox, **args: str) -> audit.AuditPage:
    with sandbox.tx() as session:
        return audit.browse(session, AuditFilter.from_args(args))


def seqs(found: audit.AuditPage) -> list[int]:
    return [entry["seq"] for entry in found.entries]


def test_audit_browse_filters(browsable: Sandbox) -> None:
    assert seqs(page(browsable)) == list(range(1, 11))
    assert seqs(page(browsable, actor="alice")) == [2, 4, 6, 8, 10]
    assert seqs(page(browsable, action="job.released")) == [2, 5, 8]
    assert seqs(page(browsable, action="job.*")) == [1, 2, 4, 5, 7, 8, 10]
    assert seqs(page(browsable, action="job")) == []  # exact unless it ends in *
    assert seqs(page(browsable, subject="s0", actor="bob")) == [1, 7]
    # 2026-11-22T12:00 is entry 3; since is inclusive, until exclusive.
    assert seqs(page(browsable, since="2026-11-22T12:00:00Z", until="2026-11-24T12:00")) == [3, 4]
    assert seqs(page(browsable, since="2026-11-22T20:00+08:00")) == list(range(3, 11))
    assert seqs(page(browsable, until="2026-11-21")) == [1, 2]  # a date: that whole day
    assert seqs(page(browsable, actor="nobody")) == []
    entry = page(browsable, limit="1").entries[0]
    assert entry == {
        "seq": 1,
        "at": "2026-11-20T12:00:00+00:00",
        "actor": "bob",
        "action": "job.submitted",
        "subject": "s0",
        "details": {"i": 0},
        "prev_hash": audit.GENESIS,
        "hash": entry["hash"],
    }


def test_audit_browse_pages_forward_by_seq(browsable: Sandbox) -> None:
    first = page(browsable, actor="alice", limit="2")
    assert seqs(first) == [2, 4] and first.next_after_seq == 4
    second = page(browsable, actor="alice", limit="2", after_seq="4")
    assert seqs(second) == [6, 8] and second.next_after_seq == 8
    last = page(browsable, actor="alice", limit="2", after_seq="8")
    assert seqs(last) == [10] and last.next_after_seq is None
    exact = page(browsable, limit="10")
    assert len(exact.entries) == 10 and exact.next_after_seq is None


@pytest.mark.parametrize(
    ("args", "field"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "501"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"after_seq": "-1"}, "after_seq"),
        ({"since": "yesterday"}, "since"),
        ({"until": "2026-13-01"}, "until"),
        ({"actor": "x" * 129}, "actor"),
    ],
)
def test_audit_filter_refuses_bad_arguments(args: dict[str, str], field: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        AuditFilter.from_args(args)
    assert refused.value.details["field"] == field


def test_audit_filter_round_trips_for_paging_links() -> None:
    args = {"actor": "a", "action": "job.*", "since": "2026-11-22T08:00:00+08:00", "limit": "20"}
    filters = AuditFilter.from_args(args)
    assert filters.to_args() == {
        "actor": "a",
        "action": "job.*",
        "since": "2026-11-22T00:00:00+00:00",
        "limit": "20",
    }
    assert AuditFilter.from_args(filters.to_args()) == filters


# --- the commands -------------------------------------------------------------------------------


@pytest.fixture
def cli_instance(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    folder = tmp_path / "instance"
    monkeypatch.setenv("SANDBOX_INSTANCE", str(folder))
    monkeypatch.setenv("SANDBOX_RUNNER", "local")
    monkeypatch.delenv("SANDBOX_DATABASE_URL", raising=False)
    context.set_current(None)
    assert CliRunner().invoke(main, ["db", "upgrade"]).exit_code == 0
    append_entries(context.current())
    yield folder
    context.set_current(None)


def test_cli_audit_checkpoint_and_verify(cli_instance: Path, tmp_path: Path) -> None:
    copy = tmp_path / "offsite.json"
    made = CliRunner().invoke(main, ["audit", "checkpoint", "--out", str(copy)])
    assert made.exit_code == 0, made.output
    signed = json.loads(made.output)
    assert signed["document"]["seq"] == 6 and json.loads(copy.read_text()) == signed
    verified = CliRunner().invoke(main, ["audit", "verify", "--checkpoints", str(copy)])
    assert verified.exit_code == 0, verified.output
    assert json.loads(verified.output) | {"head": None} == {
        "ok": True,
        "entries": 6,
        "head": None,
        "first_broken": None,
        "reason": None,
        "checkpoints": 1,
    }


def test_cli_audit_verify_fails_on_cut_tail(cli_instance: Path, tmp_path: Path) -> None:
    assert CliRunner().invoke(main, ["audit", "checkpoint"]).exit_code == 0
    tamper(context.current(), "DELETE FROM audit_entries WHERE seq > 4")
    failed = CliRunner().invoke(main, ["audit", "verify", "--no-checkpoint"])
    assert failed.exit_code == 1
    report = json.loads(failed.output)
    assert report["first_broken"] == 5 and "cut off" in report["reason"]
    # Compared with no checkpoint, the shorter chain is consistent: exit 0.
    empty = tmp_path / "none.jsonl"
    empty.write_text("")
    bare = CliRunner().invoke(main, ["audit", "verify", "--checkpoints", str(empty)])
    assert bare.exit_code == 0, bare.output


# --- how details are stored ---------------------------------------------------------------------


def test_audit_details_stored_as_canonical_json_text(chain: Sandbox) -> None:
    with chain.tx() as session:
        audit.append(
            session,
            actor="t",
            action="a",
            subject="s",
            details={"b": [1, 2.5], "a": "名", "c": {"z": None, "y": True}},
        )
        stored = session.execute(text("SELECT CAST(details AS TEXT) FROM audit_entries")).scalar()
        entry = session.get_one(AuditEntry, 1)
        assert entry.details == {"a": "名", "b": [1, 2.5], "c": {"y": True, "z": None}}
    assert stored == '{"a":"名","b":[1,2.5],"c":{"y":true,"z":null}}'


def test_audit_entries_spelled_otherwise_still_verify(chain: Sandbox) -> None:
    """Entries written before 0007 (through the ORM) store their details as the
    driver spells them; verify hashes their canonical form instead."""
    append_entries(chain, 2)
    with chain.tx() as session:
        seq, prev = audit.head(session)
        details = {"名": "值", "n": 1.5}
        at = "2026-11-26T00:00:00+00:00"
        digest = audit.entry_hash(
            seq=seq + 1, at=at, actor="orm", action="old", subject="s", details=details, prev=prev
        )
        session.add(
            AuditEntry(
                seq=seq + 1,
                at=at,
                actor="orm",
                action="old",
                subject="s",
                details=details,
                prev_hash=prev,
                hash=digest,
            )
        )
    append_entries(chain, 2)
    with chain.tx() as session:
        stored = session.execute(text("SELECT details FROM audit_entries WHERE seq = 3")).scalar()
        assert stored != audit.canonical_json(details).decode()  # another spelling
        assert audit.verify(session).ok
    tamper(chain, "UPDATE audit_entries SET details = replace(details, '1.5', '2.5') WHERE seq = 3")
    with chain.tx() as session:
        report = audit.verify(session)
    assert (report.first_broken, report.reason) == (3, "its content does not match its hash")


def test_audit_checkpoints_survive_signing_key_rotation(chain: Sandbox) -> None:
    append_entries(chain)
    checkpoints.write_checkpoint(chain)
    old = chain.release_key.key_id
    chain.signing_keys.rotate()
    assert chain.release_key.key_id != old
    append_entries(chain, 1)
    checkpoints.write_checkpoint(chain)
    report = checkpoints.verify_chain(chain)
    assert report.ok and report.checkpoints == 2, report
