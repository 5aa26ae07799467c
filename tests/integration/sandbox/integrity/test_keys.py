"""Keys on a real instance: the master key rotates without downtime and a retired one is
refused; release keys rotate and every certificate still verifies offline against the
published keyring, with the outputs as the analyst downloads them; and no job, on either
runner, leaves a plaintext copy of a raw table behind."""

from __future__ import annotations

import base64
import json
import os
import secrets
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner, Result
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

import datasets.storage
from datasets.errors import StorageError
from datasets.storage import DatasetStore, master_key_id
from sandbox import context
from sandbox.cli import main
from sandbox.context import Sandbox
from sandbox.db import upgrade_database
from sandbox.errors import ConfigurationError
from sandbox.integrity.certificates import grant_terms
from sandbox.integrity.keys import (
    KeyManagementError,
    master_key_file,
    master_keyring_source,
)
from sandbox.integrity.rotation import retire_master_keys, rotate_master_key
from sandbox.integrity.signing import sha256_json
from sandbox.jobs.pipeline import run_job
from sandbox.models import AuditEntry, Grant, Job
from tests.clients import Bearer
from tests.factories import health_tables, make_app, make_sandbox, make_settings, submit_job

MASTER_ENV = ("SANDBOX_MASTER_KEY", "SANDBOX_MASTER_KEY_OLD")


@pytest.fixture
def keyed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Sandbox:
    """An instance whose master keys are in its key file, with a second dataset."""
    for name in MASTER_ENV:
        monkeypatch.delenv(name, raising=False)
    sandbox = make_sandbox(tmp_path / "instance")
    sandbox.store.write("extra", {"t": pd.DataFrame({"x": [1, 2, 3]})})
    return sandbox


@pytest.fixture
def app(keyed: Sandbox) -> Flask:
    """The portal over the keyed instance; `client` and `bearer` use it."""
    return make_app(keyed)


@pytest.fixture
def cli(keyed: Sandbox, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Result]]:
    monkeypatch.setenv("SANDBOX_INSTANCE", str(keyed.settings.instance))
    monkeypatch.setenv("SANDBOX_DATABASE_URL", keyed.settings.database_url)
    monkeypatch.setenv("SANDBOX_RUNNER", "local")
    context.set_current(None)
    yield lambda *args: CliRunner().invoke(main, [str(a) for a in args])
    context.set_current(None)


def read_everything(store: DatasetStore) -> dict[str, int]:
    return {
        f"{name}.{table}": len(store.read_table(name, table))
        for name in store.names()
        for table in store.tables(name)
    }


def data_files(store: DatasetStore) -> dict[Path, bytes]:
    return {path: path.read_bytes() for path in store.root.glob("*/*.parquet.enc")}


# --- master key -----------------------------------------------------------------------


def test_keys_rotate_rewraps_every_dataset_and_they_still_read(
    keyed: Sandbox, cli: Callable[..., Result]
) -> None:
    store = keyed.store
    before, files = read_everything(store), data_files(store)
    old = store.keyring().current_id
    assert {store.wrapping_key_id(n) for n in store.names()} == {old}

    result = cli("keys", "rotate")
    assert result.exit_code == 0, result.output

    new = store.keyring().current_id  # the same store object: no restart needed
    assert new != old and f"current master key: {new}" in result.output
    assert f"retired: {old}" in result.output
    assert read_everything(store) == before
    assert data_files(store) == files  # the data itself was not re-encrypted
    assert {store.wrapping_key_id(n) for n in store.names()} == {new}
    keyfile = keyed.settings.master_key_path
    assert keyfile.stat().st_mode & 0o077 == 0
    entries = {e["id"]: e for e in json.loads(keyfile.read_text())["keys"]}
    assert entries[old]["key"] is None and entries[old]["retired_at"]  # the material is gone
    with keyed.tx() as session:
        rotated = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "keys.master_rotated")
        ).one()
        assert rotated.details["current"] == new and rotated.details["retired"] == [old]


def test_datasets_read_at_every_step_of_a_rotation(
    keyed: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process (its own store, reading the key file) reads throughout."""
    elsewhere = DatasetStore(keyed.settings.datasets_dir, master_keyring_source(keyed.settings))
    expected = read_everything(elsewhere)
    old, new = master_key_file(keyed.settings).add_current()
    assert read_everything(elsewhere) == expected  # step 1: new key current, all under old

    seen: list[set[str | None]] = []
    replace = datasets.storage._replace_private

    def replace_then_read(path: Path, data: bytes) -> None:
        replace(path, data)
        assert read_everything(elsewhere) == expected  # step 2: some re-wrapped, some not
        seen.append({elsewhere.wrapping_key_id(n) for n in elsewhere.names()})

    monkeypatch.setattr(datasets.storage, "_replace_private", replace_then_read)
    keyed.store.rewrap_all()
    assert {old, new} in seen  # a moment with both wrappings at once
    monkeypatch.undo()

    assert retire_master_keys(keyed, by="test") == [old]
    assert read_everything(elsewhere) == expected  # step 3: old key retired


def test_data_key_wrapped_under_a_retired_master_key_is_refused(
    keyed: Sandbox, cli: Callable[..., Result]
) -> None:
    key_file = keyed.settings.datasets_dir / "extra" / "key.json"
    stale = key_file.read_bytes()  # wrapped under the key about to be retired
    old = keyed.store.keyring().current_id
    assert cli("keys", "rotate").exit_code == 0
    key_file.write_bytes(stale)
    with pytest.raises(StorageError, match=f"master key {old}, which was retired"):
        keyed.store.read_table("extra", "t")


def test_keys_retire_waits_until_no_dataset_needs_the_old_key(
    keyed: Sandbox, cli: Callable[..., Result]
) -> None:
    key_file = keyed.settings.datasets_dir / "extra" / "key.json"
    stale = key_file.read_bytes()
    kept = cli("keys", "rotate", "--keep-old")
    assert kept.exit_code == 0, kept.output
    assert "still accepted" in kept.output
    rewrapped = key_file.read_bytes()
    key_file.write_bytes(stale)  # say its re-wrap had not happened yet
    assert keyed.store.read_table("extra", "t").shape == (3, 1)  # the old key is accepted
    status = cli("keys", "status")
    assert status.exit_code == 0 and "accepted" in status.output
    refused = cli("keys", "retire")
    assert refused.exit_code != 0
    assert "dataset extra is still wrapped under master key" in refused.output
    key_file.write_bytes(rewrapped)
    retired = cli("keys", "retire")
    assert retired.exit_code == 0, retired.output
    assert read_everything(keyed.store)["extra.t"] == 3


def test_master_key_file_open_to_others_is_refused(keyed: Sandbox) -> None:
    path = keyed.settings.master_key_path
    path.chmod(0o644)
    with pytest.raises(ConfigurationError, match="chmod 600"):
        keyed.store.read_table("extra", "t")
    path.chmod(0o600)
    assert len(keyed.store.read_table("extra", "t")) == 3


def test_master_key_from_the_environment_rotates_with_the_old_key_beside_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = (secrets.token_bytes(32) for _ in range(2))
    monkeypatch.setenv("SANDBOX_MASTER_KEY", base64.b64encode(first).decode())
    monkeypatch.delenv("SANDBOX_MASTER_KEY_OLD", raising=False)
    sandbox = Sandbox(make_settings(tmp_path / "instance"))
    upgrade_database(sandbox.settings)
    sandbox.store.write("d", {"t": pd.DataFrame({"x": [1, 2]})})
    assert not sandbox.settings.master_key_path.exists()  # the environment holds the key

    # Every process gets the new key, the old one beside it; then the re-wrap.
    monkeypatch.setenv("SANDBOX_MASTER_KEY", base64.b64encode(second).decode())
    monkeypatch.setenv("SANDBOX_MASTER_KEY_OLD", base64.b64encode(first).decode())
    rotating = Sandbox(sandbox.settings)
    assert len(rotating.store.read_table("d", "t")) == 2
    rotation = rotate_master_key(rotating, by="test")
    assert rotation.current == master_key_id(second) and rotation.old == [master_key_id(first)]
    assert "SANDBOX_MASTER_KEY_OLD" in rotation.note
    with pytest.raises(KeyManagementError):
        retire_master_keys(rotating, by="test")  # retiring is the operator's, in the environment

    monkeypatch.delenv("SANDBOX_MASTER_KEY_OLD")
    monkeypatch.setenv("SANDBOX_MASTER_KEY", second.hex())  # older instances wrote hex
    assert len(Sandbox(sandbox.settings).store.read_table("d", "t")) == 2
    monkeypatch.setenv("SANDBOX_MASTER_KEY", base64.b64encode(first).decode())
    with pytest.raises(StorageError, match="wrong master key"):
        Sandbox(sandbox.settings).store.read_table("d", "t")
    monkeypatch.setenv("SANDBOX_MASTER_KEY", base64.b64encode(first[:16]).decode())
    with pytest.raises(ConfigurationError, match="32 bytes"):
        Sandbox(sandbox.settings).store  # noqa: B018 - building it checks the key


def test_older_instance_master_key_is_adopted_then_retired(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in MASTER_ENV:
        monkeypatch.delenv(name, raising=False)
    instance = tmp_path / "instance"
    instance.mkdir(mode=0o700)
    legacy = secrets.token_bytes(32)
    values = {
        "master_key": legacy.hex(),
        "pseudonym_secret": secrets.token_hex(32),
        "session_key": secrets.token_hex(32),
    }
    (instance / "secrets.json").write_text(json.dumps(values))
    (instance / "secrets.json").chmod(0o600)
    old_store = DatasetStore(instance / "datasets", legacy)
    old_store.write("d", {"t": pd.DataFrame({"x": [1, 2]})})
    key_file = instance / "datasets" / "d" / "key.json"
    record = json.loads(key_file.read_text())
    del record["master_key_id"]  # as older versions wrote it
    key_file.write_text(json.dumps(record))

    sandbox = Sandbox(make_settings(instance))
    upgrade_database(sandbox.settings)
    assert len(sandbox.store.read_table("d", "t")) == 2
    assert sandbox.store.keyring().current_id == master_key_id(legacy)
    rotate_master_key(sandbox, by="test")
    assert len(sandbox.store.read_table("d", "t")) == 2
    assert "master_key" not in json.loads((instance / "secrets.json").read_text())
    assert legacy.hex() not in (instance / "secrets.json").read_text()
    assert (instance / "secrets.json").stat().st_mode & 0o077 == 0
    assert sandbox.store.wrapping_key_id("d") == sandbox.store.keyring().current_id


# --- release keys and certificates ------------------------------------------------------


def run(
    sandbox: Sandbox,
    code: str,
    *,
    language: str = "sql",
    mode: str = "masked",
    epsilon: float | None = None,
) -> Job:
    job = submit_job(sandbox, code, language=language, mode=mode, epsilon=epsilon)
    run_job(sandbox, job.id)
    with sandbox.tx() as session:
        found = session.get_one(Job, job.id)
        assert found.status == "released", (found.error_code, found.error_message, found.log)
        return found


SQL_MASKED = (
    "SELECT district, COUNT(*) AS n, AVG(cost) AS mean_cost FROM visits v "
    "JOIN patients p ON v.person_id = p.person_id GROUP BY district"
)
SQL_DP = "SELECT sex, COUNT(*) AS n FROM patients GROUP BY sex"
PYTHON = (
    "import sandbox_job\n"
    "v = sandbox_job.table('visits')\n"
    "sandbox_job.frequency_table('by_department', v, by=['department'])\n"
    "p = sandbox_job.table('patients')\n"
    "sandbox_job.frequency_table('by_district', p, by=['district'])\n"
)


def download(client: FlaskClient, headers: dict[str, str], job: Job, folder: Path) -> list[Path]:
    """The job's JSON result and each table's CSV, byte for byte as the API serves them."""
    folder.mkdir()
    answer = client.get(f"/api/v1/jobs/{job.id}/result", headers=headers)
    assert answer.status_code == 200, answer.get_json()
    (folder / "result.json").write_bytes(answer.get_data())
    paths = [folder / "result.json"]
    for table in answer.get_json()["tables"]:
        csv = client.get(
            f"/api/v1/jobs/{job.id}/result?format=csv&table={table['name']}", headers=headers
        )
        assert csv.status_code == 200
        (folder / f"{table['name']}.csv").write_bytes(csv.get_data())
        paths.append(folder / f"{table['name']}.csv")
    return paths


def test_downloads_verify_offline_across_a_signing_key_rotation(
    keyed: Sandbox,
    cli: Callable[..., Result],
    tmp_path: Path,
    client: FlaskClient,
    bearer: Bearer,
) -> None:
    first = run(keyed, SQL_MASKED)
    rotated = cli("keys", "rotate-signing")
    assert rotated.exit_code == 0, rotated.output
    second = run(keyed, PYTHON, language="python")
    assert first.certificate and second.certificate
    assert first.certificate["key_id"] != second.certificate["key_id"]

    published = client.get("/api/v1/release-keys")  # public: no token
    assert published.status_code == 200
    keyring = published.get_json()
    assert {k["key_id"] for k in keyring["keys"]} == {
        first.certificate["key_id"],
        second.certificate["key_id"],
    }
    exported = cli("keys", "export-public")
    assert exported.exit_code == 0 and json.loads(exported.output) == keyring
    keys = tmp_path / "release-keys.json"
    keys.write_bytes(published.get_data())

    headers = bearer("analyst")
    for number, job in enumerate((first, second)):
        files = download(client, headers, job, tmp_path / f"job{number}")
        options = [x for path in files for x in ("--output", path)]
        result = cli("verify-release", files[0], *options, "--keys", keys)
        assert result.exit_code == 0, result.output
        tables = len(files) - 1  # each table checked in the JSON download and in its CSV
        assert result.output.count("ok    output ") == 2 * tables

    by_district = tmp_path / "job1" / "by_district.csv"
    by_district.write_bytes(by_district.read_bytes().replace(b"\r\n", b"\n", 1))
    tampered = cli(
        "verify-release", tmp_path / "job1" / "result.json", "--output", by_district, "--keys", keys
    )
    assert tampered.exit_code == 1
    assert "output hash mismatch for output by_district" in tampered.output


def test_certificate_binds_grant_dataset_code_and_checks(keyed: Sandbox) -> None:
    job = run(keyed, SQL_DP, mode="dp", epsilon=1.0)
    assert job.certificate is not None and job.result is not None
    document = job.certificate["document"]
    with keyed.tx() as session:
        grant = session.get_one(Grant, job.grant_id)
        terms = grant_terms(grant)
    assert document["grant_version"] == sha256_json(terms)
    assert (
        sha256_json({**terms, "k_threshold": terms["k_threshold"] + 1}) != document["grant_version"]
    )  # other terms, another version
    assert document["dataset_version"] == keyed.store.version("health")
    assert document["code_sha256"] == job.code_sha256
    assert document["key_id"] == job.certificate["key_id"] == keyed.release_key.key_id
    assert document["privacy"]["epsilon"] == 1.0 and document["privacy"]["mechanism"]
    assert [c["check"] for c in document["checks"]] == [
        "grant.active",
        "code.sql_policy",
        "dp.noise",
        "dp.budget_charged",
    ]
    (output,) = document["outputs"]
    assert output["sha256"] == sha256_json(job.result["tables"][0])
    assert output["name"] == "result" and output["rows"] == len(job.result["tables"][0]["rows"])


def test_old_single_key_route_serves_the_current_key(keyed: Sandbox, client: FlaskClient) -> None:
    before = client.get("/api/v1/keys/release").get_json()["key_id"]
    keyed.signing_keys.rotate()
    after = client.get("/api/v1/keys/release").get_json()["key_id"]
    assert before != after == keyed.release_key.key_id


# --- no plaintext left behind -------------------------------------------------------------


def raw_values(step: int = 50) -> list[bytes]:
    """Direct identifiers of every step-th generated patient, as they are in the raw table."""
    patients = health_tables()["patients"]
    picked = patients.iloc[::step]
    values = [
        *picked["id_card"],
        *picked["phone"],
        *picked["address"],
        *(n for n in picked["name"] if len(n) >= 3),
    ]
    return [str(v).encode() for v in values]


SKIPPED = ("pytest-of-", "bash_jobs.")  # other test sessions' folders; the tool's own


def plaintext_in(
    roots: Iterable[Path], needles: list[bytes], *, since: float | None = None
) -> list[str]:
    """Parquet or CSV files, or files holding a raw value, under ``roots``."""
    found: list[str] = []
    for root in roots:
        for folder, dirs, names in os.walk(root, onerror=lambda _: None):
            if since is not None:
                dirs[:] = [d for d in dirs if not d.startswith(SKIPPED)]
            for name in names:
                path = Path(folder) / name
                try:
                    if path.is_symlink() or not path.is_file():
                        continue
                    if since is not None and path.stat().st_mtime < since:
                        continue
                    data = path.read_bytes()[: 256 * 1024 * 1024]
                except OSError:  # another user's, or gone meanwhile
                    continue
                if (
                    name.endswith((".parquet", ".csv"))
                    or data[:4] == b"PAR1"
                    or data[-4:] == b"PAR1"
                ):
                    found.append(f"{path}: a Parquet or CSV file")
                found += [f"{path}: holds {n.decode()!r}" for n in needles if n in data]
    return found


def test_plaintext_scan_finds_a_raw_table(tmp_path: Path) -> None:
    """The scan below would see a leak: a raw table written as Parquet, and as text."""
    patients = health_tables()["patients"].head(200)
    patients.to_parquet(tmp_path / "leak.bin")
    (tmp_path / "leak.txt").write_text(patients.to_string())
    found = plaintext_in([tmp_path], raw_values(step=50))
    assert any("leak.bin: a Parquet" in f for f in found)
    assert any("leak.txt: holds" in f for f in found)


@pytest.mark.parametrize("runner", ["local", pytest.param("docker", marks=pytest.mark.docker)])
def test_no_plaintext_copy_of_a_raw_table_survives_jobs(
    runner: str, request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if runner == "docker":
        request.getfixturevalue("docker_client")  # skips without an engine and the image
    system_tmp = Path(tempfile.gettempdir())
    private_tmp = tmp_path / "tmp"
    private_tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(private_tmp))
    monkeypatch.setattr(tempfile, "tempdir", None)  # gettempdir() reads TMPDIR again
    started = time.time() - 1
    sandbox = make_sandbox(tmp_path / "instance", runner=runner)
    assert sandbox.runner.name == runner
    released = [
        run(sandbox, SQL_MASKED),
        run(sandbox, SQL_DP, mode="dp", epsilon=1.0),
        run(sandbox, PYTHON, language="python"),
    ]
    assert all(job.certificate for job in released)

    needles = raw_values()
    assert not list(sandbox.settings.work_dir.iterdir())  # every view folder is gone
    leaks = plaintext_in([tmp_path], needles)  # the instance, its work dir, the private tmp
    leaks += plaintext_in([system_tmp], needles, since=started)
    assert leaks == [], "\n".join(leaks[:20])
    assert any(p.suffix == ".enc" for p in sandbox.settings.datasets_dir.rglob("*"))
