"""The audit chain verifies; certificates fail on any changed byte.

Tampering with the chain: test_audit_chain.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sandbox.db import transaction
from sandbox.integrity import audit
from sandbox.integrity.signing import ReleaseKey, SignatureInvalid, verify_certificate
from sandbox.models import Base


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    from sandbox.db import engine_for

    url = f"sqlite:///{tmp_path / 'audit.db'}"
    Base.metadata.create_all(engine_for(url))
    with transaction(url) as session:
        for i in range(5):
            audit.append(session, actor="t", action="test.event", subject=str(i), details={"i": i})
    return url


def test_audit_chain_verifies_when_untouched(db_url: str) -> None:
    with transaction(db_url) as session:
        report = audit.verify(session)
    assert report.ok and report.entries == 5


def test_certificate_fails_on_changed_output(tmp_path: Path) -> None:
    key = ReleaseKey.load_or_create(tmp_path / "k.pem")
    certificate = key.sign({"job": "j", "outputs_sha256": "ab" * 32})
    verify_certificate(certificate, key.public_pem)
    certificate["document"]["outputs_sha256"] = "ac" + "ab" * 31
    with pytest.raises(SignatureInvalid):
        verify_certificate(certificate, key.public_pem)


def test_certificate_fails_under_another_key(tmp_path: Path) -> None:
    certificate = ReleaseKey.load_or_create(tmp_path / "a.pem").sign({"job": "j"})
    other = ReleaseKey.load_or_create(tmp_path / "b.pem")
    with pytest.raises(SignatureInvalid):
        verify_certificate(certificate, other.public_pem)


def test_release_key_file_is_private(tmp_path: Path) -> None:
    ReleaseKey.load_or_create(tmp_path / "k.pem")
    assert (tmp_path / "k.pem").stat().st_mode & 0o077 == 0
