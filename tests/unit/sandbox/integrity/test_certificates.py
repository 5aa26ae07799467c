"""Release certificates verified offline: every changed byte is caught and named; a
rotated-out key still verifies through the published keyring; an unknown key does not."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from sandbox.cli import main
from sandbox.integrity.certificates import CertifiedRelease, certificate_document, grant_terms
from sandbox.integrity.keys import SigningKeys
from sandbox.integrity.signing import (
    CERTIFICATE_TYPE,
    KeyringInvalid,
    PublicKeyring,
    ReleaseKey,
    output_entries,
    sha256_json,
)
from sandbox.jobs.tables import result_csv
from sandbox.models import Grant

TABLES: list[dict[str, Any]] = [
    {
        "name": "by_district",
        "columns": ["district", "n", "mean_cost"],
        "rows": [["朝阳区", 120, 356.25], ["海淀区", 98, None]],
    },
    {
        "name": "by_sex",
        "columns": ["sex", "n"],
        "rows": [["F", 731], ["M", 769]],
        "error95": [[None, 3.1], [None, 3.1]],
    },
]


def released(key: ReleaseKey, *, at: dt.datetime | None = None) -> dict[str, Any]:
    """A result as the API serves it: tables, privacy and the certificate over them."""
    result: dict[str, Any] = {
        "tables": TABLES,
        "privacy": {"epsilon": 0.0, "delta": 0.0, "mechanism": None},
        "disclosure": {"k": 10, "suppressed_rows": 0, "suppressed_cells": 1},
    }
    csv = {t["name"]: result_csv(result, table=t["name"]).encode() for t in TABLES}
    document = {
        "type": CERTIFICATE_TYPE,
        "job": "0123456789abcdef0123456789abcdef",
        "analyst": "analyst",
        "dataset": "health",
        "dataset_version": "d" * 64,
        "grant": "g" * 32,
        "grant_version": "e" * 64,
        "policy_version": "f" * 64,
        "code_sha256": "c" * 64,
        "outputs": output_entries(TABLES, csv),
        "outputs_sha256": sha256_json(TABLES),
        "privacy": result["privacy"],
        "disclosure": result["disclosure"],
        "checks": [{"check": "disclosure.k_threshold", "k": 10}],
        "reviewers": [],
        "released_at": (at or dt.datetime.now(dt.UTC)).isoformat(),
    }
    return {**result, "certificate": key.sign(document)}


@pytest.fixture
def signing(tmp_path: Path) -> SigningKeys:
    return SigningKeys(tmp_path / "instance")


@pytest.fixture
def files(tmp_path: Path, signing: SigningKeys) -> dict[str, Path]:
    """The files an analyst holds after downloading a release, and the published keyring."""
    download = released(signing.current())
    folder = tmp_path / "downloads"
    folder.mkdir()
    paths = {
        "cert": folder / "certificate.json",
        "json": folder / "result.json",
        "csv": folder / "by_sex.csv",
        "keys": folder / "release-keys.json",
    }
    paths["cert"].write_text(json.dumps(download["certificate"], ensure_ascii=False, indent=2))
    paths["json"].write_text(json.dumps(download, indent=1))  # another spacing than signed
    paths["csv"].write_bytes(result_csv(download, table="by_sex").encode())
    paths["keys"].write_text(json.dumps(signing.public_keyring().to_dict()))
    return paths


def verify(*args: str | Path) -> Result:
    return CliRunner().invoke(main, ["verify-release", *map(str, args)])


def flip_byte(path: Path, old: bytes, new: bytes) -> None:
    data = path.read_bytes()
    assert data.count(old) >= 1, old
    path.write_bytes(data.replace(old, new, 1))


def test_verify_release_accepts_untouched_outputs_offline(
    files: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nowhere = tmp_path / "no-instance"
    monkeypatch.setenv("SANDBOX_INSTANCE", str(nowhere))
    monkeypatch.setenv("SANDBOX_DATABASE_URL", "postgresql+psycopg://nobody@192.0.2.1/none")
    result = verify(
        files["cert"], "--output", files["json"], "--output", files["csv"], "--keys", files["keys"]
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[-1] == "release certificate verified"
    for name in (
        "key",
        "signature",
        "key validity",
        "output by_district",
        "output by_sex",
        "privacy",
        "isolation",
    ):
        assert any(line.startswith(f"ok    {name}:") for line in lines), (name, result.output)
    assert not nowhere.exists()  # no instance, no database: offline


def test_verify_release_takes_the_download_as_the_certificate(files: dict[str, Path]) -> None:
    result = verify(files["json"], "--output", files["json"], "--keys", files["keys"])
    assert result.exit_code == 0, result.output


def test_verify_release_names_a_changed_csv_output(files: dict[str, Path]) -> None:
    flip_byte(files["csv"], b"731", b"732")
    result = verify(files["cert"], "--output", files["csv"], "--keys", files["keys"])
    assert result.exit_code == 1
    assert "FAIL  output by_sex:" in result.output
    assert "output hash mismatch for output by_sex" in result.output
    assert "NOT VERIFIED" in result.output


def test_verify_release_names_a_changed_table_in_the_json_download(
    files: dict[str, Path],
) -> None:
    flip_byte(files["json"], b"356.25", b"356.26")
    result = verify(files["cert"], "--output", files["json"], "--keys", files["keys"])
    assert result.exit_code == 1
    assert "output hash mismatch for output by_district" in result.output
    assert "ok    output by_sex:" in result.output  # the untouched table still passes


def test_verify_release_refuses_a_table_the_certificate_does_not_hold(
    files: dict[str, Path],
) -> None:
    download = json.loads(files["json"].read_text())
    download["tables"].append({"name": "extra", "columns": ["n"], "rows": [[1]]})
    files["json"].write_text(json.dumps(download))
    result = verify(files["cert"], "--output", files["json"], "--keys", files["keys"])
    assert result.exit_code == 1
    assert "output extra is not in the certificate" in result.output


def test_verify_release_asks_which_output_a_csv_file_is(
    files: dict[str, Path], tmp_path: Path
) -> None:
    anonymous = tmp_path / "download.csv"
    anonymous.write_bytes(files["csv"].read_bytes())
    unclear = verify(files["cert"], "--output", anonymous, "--keys", files["keys"])
    assert unclear.exit_code == 1 and "cannot tell which output" in unclear.output
    named = verify(files["cert"], "--output", f"by_sex={anonymous}", "--keys", files["keys"])
    assert named.exit_code == 0, named.output
    wrong = verify(files["cert"], "--output", f"by_district={anonymous}", "--keys", files["keys"])
    assert wrong.exit_code == 1 and "output hash mismatch for output by_district" in wrong.output


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (b'"analyst": "analyst"', b'"analyst": "analysu"'),
        (b'"suppressed_cells": 1', b'"suppressed_cells": 0'),
    ],
)
def test_verify_release_changed_certificate_byte_fails_the_signature(
    files: dict[str, Path], old: bytes, new: bytes
) -> None:
    flip_byte(files["cert"], old, new)
    result = verify(files["cert"], "--output", files["csv"], "--keys", files["keys"])
    assert result.exit_code == 1
    assert "FAIL  signature: signature invalid" in result.output


def test_verify_release_changed_signature_byte_fails(files: dict[str, Path]) -> None:
    signature = json.loads(files["cert"].read_text())["signature"]
    changed = ("B" if signature[0] != "B" else "C") + signature[1:]
    flip_byte(files["cert"], signature.encode(), changed.encode())
    result = verify(files["cert"], "--keys", files["keys"])
    assert result.exit_code == 1
    assert "FAIL  signature: signature invalid" in result.output


def test_verify_release_refuses_an_unknown_key(files: dict[str, Path], tmp_path: Path) -> None:
    stranger = released(ReleaseKey.generate())
    cert = tmp_path / "stranger.json"
    cert.write_text(json.dumps(stranger["certificate"]))
    result = verify(cert, "--keys", files["keys"])
    assert result.exit_code == 1
    key_id = stranger["certificate"]["key_id"]
    assert f"FAIL  key: unknown key {key_id}: it is not in the published keyring" in result.output


def test_verify_release_refuses_an_envelope_pointing_at_another_key(
    files: dict[str, Path], signing: SigningKeys, tmp_path: Path
) -> None:
    """Swapping the envelope's key id for a known key does not make a foreign document pass."""
    stranger = released(ReleaseKey.generate())["certificate"]
    stranger["key_id"] = signing.current().key_id
    cert = tmp_path / "swapped.json"
    cert.write_text(json.dumps(stranger))
    result = verify(cert, "--keys", files["keys"])
    assert result.exit_code == 1 and "FAIL  signature" in result.output


def test_certificate_by_a_rotated_out_key_still_verifies(
    signing: SigningKeys, tmp_path: Path
) -> None:
    old_key = signing.current()
    old_release = released(old_key)
    old_id, new_id = signing.rotate()
    assert old_id == old_key.key_id != new_id == signing.current().key_id
    assert not (signing.private_dir / f"{old_id}.pem").exists()  # retired: cannot sign
    new_release = released(signing.current())
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps(signing.public_keyring().to_dict()))
    ring = json.loads(keys.read_text())
    assert ring["current"] == new_id
    states = {k["key_id"]: k["retired_at"] for k in ring["keys"]}
    assert states[new_id] is None and states[old_id] is not None
    for download in (old_release, new_release):
        cert = tmp_path / "cert.json"
        cert.write_text(json.dumps(download["certificate"]))
        result = verify(cert, "--keys", keys)
        assert result.exit_code == 0, result.output


def test_certificate_dated_after_its_key_retired_fails(
    signing: SigningKeys, tmp_path: Path
) -> None:
    """A retired key that leaked cannot sign releases dated after its retirement."""
    leaked = signing.current()
    signing.rotate()
    late = released(leaked, at=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))
    cert, keys = tmp_path / "late.json", tmp_path / "keys.json"
    cert.write_text(json.dumps(late["certificate"]))
    keys.write_text(json.dumps(signing.public_keyring().to_dict()))
    result = verify(cert, "--keys", keys)
    assert result.exit_code == 1
    assert "FAIL  key validity:" in result.output and "after key" in result.output


def test_keyring_entry_under_a_false_id_is_refused(signing: SigningKeys) -> None:
    ring = signing.public_keyring().to_dict()
    ring["keys"][0]["key_id"] = "0" * 16
    with pytest.raises(KeyringInvalid, match="is really key"):
        PublicKeyring.from_dict(ring)


def test_verify_release_checks_the_code(files: dict[str, Path], tmp_path: Path) -> None:
    code = tmp_path / "job.sql"
    code.write_text("SELECT 1")
    result = verify(files["cert"], "--code", code, "--keys", files["keys"])
    assert result.exit_code == 1 and "FAIL  code: code hash mismatch" in result.output


def test_signing_keys_adopt_the_older_single_key_file(tmp_path: Path) -> None:
    instance = tmp_path / "instance"
    legacy = ReleaseKey.load_or_create(instance / "release_ed25519.pem")
    keys = SigningKeys(instance)
    assert keys.current().key_id == legacy.key_id
    assert not (instance / "release_ed25519.pem").exists()  # one copy of a private key
    assert (keys.private_dir / f"{legacy.key_id}.pem").stat().st_mode & 0o077 == 0


def test_signing_keys_refuse_a_readable_private_key(signing: SigningKeys) -> None:
    from sandbox.errors import ConfigurationError

    key_id = signing.current().key_id
    (signing.private_dir / f"{key_id}.pem").chmod(0o644)
    with pytest.raises(ConfigurationError, match="chmod 600"):
        SigningKeys(signing.instance).current()


def test_verify_release_refuses_another_signed_document(
    files: dict[str, Path], signing: SigningKeys, tmp_path: Path
) -> None:
    """The release key also signs audit checkpoints; one of those is not a release."""
    checkpoint = signing.current().sign({"type": "sandbox.audit-checkpoint/v1", "seq": 3})
    cert = tmp_path / "checkpoint.json"
    cert.write_text(json.dumps(checkpoint))
    result = verify(cert, "--keys", files["keys"])
    assert result.exit_code == 1
    assert "FAIL  certificate: not an Ed25519 release certificate" in result.output


# --- the document a release key signs, from plain values ---------------------------


def grant(**changes: Any) -> Grant:
    """A grant as the database hands it back (SQLite: naive UTC datetimes)."""
    terms: dict[str, Any] = {
        "id": "g" * 32,
        "dataset": "health",
        "analyst_id": 2,
        "purpose": "research",
        "modes": "masked,dp",
        "epsilon_total": 10.0,
        "epsilon_spent": 0.0,
        "max_epsilon_per_job": 2.0,
        "delta_total": 0.0,
        "delta_spent": 0.0,
        "max_delta_per_job": 1e-5,
        "max_rows_per_person": None,
        "k_threshold": 10,
        "requires_consent": True,
        "requires_review": False,
        "columns": ["visits.cost", "patients.sex"],
        "column_rules": {},
        "created_by": 1,
        "expires_at": dt.datetime(2027, 1, 1, 8, 0),
        "revoked_at": None,
    }
    return Grant(**{**terms, **changes})


def document(**changes: Any) -> dict[str, Any]:
    csv = {t["name"]: result_csv({"tables": TABLES}, table=t["name"]).encode() for t in TABLES}
    inputs: dict[str, Any] = {
        "job": "0123456789abcdef0123456789abcdef",
        "analyst": "analyst",
        "dataset": "health",
        "dataset_version": "d" * 64,
        "grant": grant_terms(grant()),
        "policy_version": "f" * 64,
        "language": "sql",
        "mode": "masked",
        "code_sha256": "c" * 64,
        "tables": TABLES,
        "csv": csv,
        "privacy": {"epsilon": 0.0, "delta": 0.0, "mechanism": None},
        "disclosure": {"k": 10, "suppressed_rows": 0, "suppressed_cells": 1},
        "rows_sketched": 0,
        "reviewers": [],
        "released_at": dt.datetime(2026, 12, 2, 9, 30, tzinfo=dt.UTC),
    }
    return certificate_document(CertifiedRelease(**{**inputs, **changes}))


def test_certificate_document_binds_the_grant_terms_and_the_outputs() -> None:
    signed = document()
    terms = grant_terms(grant())
    csv = {t["name"]: result_csv({"tables": TABLES}, table=t["name"]).encode() for t in TABLES}
    assert signed["type"] == CERTIFICATE_TYPE
    assert (signed["grant"], signed["grant_version"]) == ("g" * 32, sha256_json(terms))
    assert signed["outputs"] == output_entries(TABLES, csv)
    assert signed["outputs_sha256"] == sha256_json(TABLES)
    assert [signed[k] for k in ("language", "mode", "code_sha256")] == ["sql", "masked", "c" * 64]
    assert signed["released_at"] == "2026-12-02T09:30:00+00:00"
    assert signed["reviewers"] == []


def test_grant_terms_name_the_terms_never_what_was_spent() -> None:
    terms = grant_terms(grant())
    assert grant_terms(grant(epsilon_spent=4.0, delta_spent=1e-6)) == terms
    assert terms["modes"] == ["dp", "masked"] and terms["columns"] == [
        "patients.sex",
        "visits.cost",
    ]
    assert terms["expires_at"] == "2027-01-01T08:00:00+00:00"  # naive from SQLite: UTC
    assert terms["revoked_at"] is None
    later = dt.datetime(2027, 1, 1, 16, 0, tzinfo=dt.timezone(dt.timedelta(hours=8)))
    assert grant_terms(grant(expires_at=later))["expires_at"] == "2027-01-01T08:00:00+00:00"
    assert sha256_json(grant_terms(grant(k_threshold=11))) != sha256_json(terms)


def test_certificate_names_the_checks_a_masked_release_passed() -> None:
    disclosure = {"k": 10, "suppressed_rows": 0, "suppressed_cells": 1}
    assert document()["checks"] == [
        {"check": "grant.active", "expires_at": "2027-01-01T08:00:00+00:00"},
        {"check": "code.sql_policy", "policy_version": "f" * 64},
        {"check": "disclosure.k_threshold", **disclosure},
    ]
    python = document(language="python", rows_sketched=3, reviewers=["auditor"])["checks"]
    assert [c["check"] for c in python] == [
        "grant.active",
        "code.python_policy",
        "disclosure.declared_outputs",
        "disclosure.differencing",
        "review.approved",
    ]
    assert python[3] == {"check": "disclosure.differencing", "rows_sketched": 3}
    assert python[4] == {"check": "review.approved", "reviewers": ["auditor"]}
    assert [c["check"] for c in document(disclosure=None)["checks"]] == [
        "grant.active",
        "code.sql_policy",
    ]


def test_certificate_names_the_noise_and_the_budget_of_a_dp_release() -> None:
    privacy = {"epsilon": 1.0, "delta": 0.0, "mechanism": "laplace", "rows_per_person": 5}
    checks = document(mode="dp", privacy=privacy, disclosure=None)["checks"]
    assert checks[2:] == [
        {"check": "dp.noise", "mechanism": "laplace", "epsilon": 1.0, "delta": 0.0},
        {"check": "dp.budget_charged", "grant": "g" * 32, "epsilon": 1.0, "cached_from": None},
    ]
    cached = {**privacy, "cached_from": "j" * 32, "epsilon_spent_now": 0.0}
    charged = document(mode="dp", privacy=cached, disclosure=None)["checks"][3]
    assert charged == {
        "check": "dp.budget_charged",
        "grant": "g" * 32,
        "epsilon": 0.0,  # the earlier answer released again: nothing spent now
        "cached_from": "j" * 32,
    }


def test_certificate_document_names_the_runtime_and_image() -> None:
    image = "sha256:" + "9" * 64

    gvisor = document(runtime="runsc", image_digest=image)
    development = document()

    assert (gvisor["runtime"], gvisor["image_digest"]) == ("runsc", image)
    assert (development["runtime"], development["image_digest"]) == (None, None)


def test_verify_release_states_what_ran_the_job(tmp_path: Path, signing: SigningKeys) -> None:
    keys = tmp_path / "release-keys.json"
    keys.write_text(json.dumps(signing.public_keyring().to_dict()))
    cert = tmp_path / "certificate.json"
    stated = {
        "runtime": "runsc",
        "image_digest": "sha256:" + "9" * 64,
        "released_at": dt.datetime.now(dt.UTC),
    }
    body = {**document(**stated), "key_id": signing.current().key_id}
    cert.write_text(json.dumps(signing.current().sign(body)))

    result = verify(cert, "--keys", keys)

    assert result.exit_code == 0, result.output
    assert f"ok    isolation: ran under runsc (gVisor) in image sha256:{'9' * 64}" in (
        result.output.splitlines()
    )
