"""Release certificates: canonical JSON signed with Ed25519 (pycryptodome).

The private key is generated on first use into the instance folder (0600);
anyone can verify a certificate with the published public key.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from Crypto.PublicKey import ECC
from Crypto.Signature import eddsa

from sandbox.audit import canonical_json
from sandbox.config import create_secret_file_once


class SignatureInvalid(Exception):
    """A certificate does not verify against the key it names."""


@dataclass(frozen=True)
class ReleaseKey:
    private: ECC.EccKey

    @classmethod
    def load_or_create(cls, path: Path) -> ReleaseKey:
        if not path.exists():
            create_secret_file_once(path, ECC.generate(curve="ed25519").export_key(format="PEM"))
        return cls(ECC.import_key(path.read_text()))

    @property
    def public_pem(self) -> str:
        return str(self.private.public_key().export_key(format="PEM"))

    @property
    def key_id(self) -> str:
        return key_id_of(self.private.public_key())

    def sign(self, document: dict[str, Any]) -> dict[str, Any]:
        signature = eddsa.new(self.private, "rfc8032").sign(canonical_json(document))
        return {
            "document": document,
            "signature": base64.b64encode(signature).decode(),
            "key_id": self.key_id,
            "algorithm": "Ed25519",
        }


def key_id_of(public: ECC.EccKey) -> str:
    raw = public.export_key(format="raw")
    return hashlib.sha256(raw).hexdigest()[:16]


def verify_certificate(certificate: dict[str, Any], public_pem: str) -> None:
    """Raise :class:`SignatureInvalid` unless the certificate verifies."""
    public = ECC.import_key(public_pem)
    if certificate.get("key_id") != key_id_of(public):
        raise SignatureInvalid("the certificate was signed with another key")
    try:
        signature = base64.b64decode(certificate["signature"], validate=True)
        eddsa.new(public, "rfc8032").verify(canonical_json(certificate["document"]), signature)
    except (KeyError, ValueError) as error:
        raise SignatureInvalid("the signature does not match the document") from error


def sha256_json(value: Any) -> str:
    return hashlib.sha256(canonical_json(value)).hexdigest()
