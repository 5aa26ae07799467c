"""Release certificates: canonical JSON signed with Ed25519 (pycryptodome), and their check.

A certificate is ``{"document", "signature", "key_id", "algorithm"}``; the
signature covers the canonical JSON of the document (sorted keys, no spaces,
UTF-8), and the document names its own key id so the envelope cannot point
elsewhere. Anyone verifies it offline with the published keyring
(:class:`PublicKeyring`, ``GET /api/v1/release-keys``): no database, no
instance. docs/release-certificates.md describes every field.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from Crypto.PublicKey import ECC
from Crypto.Signature import eddsa

from sandbox.config import create_secret_file_once
from sandbox.errors import SandboxError
from sandbox.integrity.audit import canonical_json

ALGORITHM = "Ed25519"
# v3 adds what ran the job: "runtime" and "image_digest".
CERTIFICATE_TYPE = "sandbox.release/v3"
RELEASE_TYPES = frozenset({"sandbox.release/v1", "sandbox.release/v2", CERTIFICATE_TYPE})
KEYRING_FORMAT = "sandbox-release-keys/1"
# How far a certificate's time may lie outside its key's working life: a release
# that read the key just before a rotation, and clocks of hosts that differ a little.
KEY_TIME_GRACE = dt.timedelta(minutes=5)


class SignatureInvalid(SandboxError):
    """A certificate does not verify against the key it names."""

    code = "signature_invalid"


class KeyringInvalid(SandboxError):
    """A published keyring cannot be read or holds a key that is not what it claims."""

    code = "keyring_invalid"


@dataclass(frozen=True)
class ReleaseKey:
    private: ECC.EccKey

    @classmethod
    def generate(cls) -> ReleaseKey:
        return cls(ECC.generate(curve="ed25519"))

    @classmethod
    def from_pem(cls, pem: str) -> ReleaseKey:
        key = ECC.import_key(pem)
        if not key.has_private() or key.curve != ALGORITHM:
            raise ValueError("not an Ed25519 private key")
        return cls(key)

    @classmethod
    def load_or_create(cls, path: Path) -> ReleaseKey:
        if not path.exists():
            create_secret_file_once(path, cls.generate().private_pem)
        return cls.from_pem(path.read_text())

    @property
    def private_pem(self) -> str:
        return str(self.private.export_key(format="PEM"))

    @property
    def public_pem(self) -> str:
        return str(self.private.public_key().export_key(format="PEM"))

    @property
    def key_id(self) -> str:
        return key_id_of(self.private.public_key())

    def sign(self, document: dict[str, Any]) -> dict[str, Any]:
        """The certificate for ``document``; the signed document names this key."""
        if document.get("key_id", self.key_id) != self.key_id:
            raise ValueError("the document names another signing key")
        document = {**document, "key_id": self.key_id}
        signature = eddsa.new(self.private, "rfc8032").sign(canonical_json(document))
        return {
            "document": document,
            "signature": base64.b64encode(signature).decode(),
            "key_id": self.key_id,
            "algorithm": ALGORITHM,
        }


def key_id_of(public: ECC.EccKey) -> str:
    raw = public.export_key(format="raw")
    return hashlib.sha256(raw).hexdigest()[:16]


def verify_certificate(certificate: Mapping[str, Any], public_pem: str) -> None:
    """Raise :class:`SignatureInvalid` unless the certificate verifies under this key."""
    public = ECC.import_key(public_pem)
    if certificate.get("key_id") != key_id_of(public):
        raise SignatureInvalid("the certificate was signed with another key")
    document = certificate.get("document")
    if not isinstance(document, dict):
        raise SignatureInvalid("the certificate holds no document")
    if document.get("key_id", certificate.get("key_id")) != certificate.get("key_id"):
        raise SignatureInvalid("the document names another key than the certificate")
    try:
        signature = base64.b64decode(certificate["signature"], validate=True)
        eddsa.new(public, "rfc8032").verify(canonical_json(document), signature)
    except (KeyError, TypeError, ValueError) as error:
        raise SignatureInvalid("the signature does not match the document") from error


def sha256_json(value: object) -> str:
    return hashlib.sha256(canonical_json(value)).hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- the published keyring -----------------------------------------------------------


@dataclass(frozen=True)
class PublicKeyEntry:
    key_id: str
    public_pem: str
    created_at: str | None = None
    retired_at: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "key_id": self.key_id,
            "algorithm": ALGORITHM,
            "public_key": self.public_pem,
            "created_at": self.created_at,
            "retired_at": self.retired_at,
        }


@dataclass(frozen=True)
class PublicKeyring:
    """Every release key ever used: id → public key, when it began and stopped signing."""

    keys: Mapping[str, PublicKeyEntry]
    current: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": KEYRING_FORMAT,
            "algorithm": ALGORITHM,
            "current": self.current,
            "keys": [entry.to_dict() for entry in self.keys.values()],
        }

    @classmethod
    def from_dict(cls, data: object) -> PublicKeyring:
        """A keyring as ``export-public`` and the API give it, or one key as
        ``GET /api/v1/keys/release`` gives it."""
        if not isinstance(data, dict):
            raise KeyringInvalid("a keyring is a JSON object")
        if "keys" in data:
            if data.get("format") != KEYRING_FORMAT or not isinstance(data["keys"], list):
                raise KeyringInvalid(f"not a keyring in the format {KEYRING_FORMAT}")
            items = data["keys"]
        elif "public_key" in data:
            items = [data]
        else:
            raise KeyringInvalid("the file holds neither a keyring nor a public key")
        keys: dict[str, PublicKeyEntry] = {}
        for item in items:
            entry = _entry(item)
            keys[entry.key_id] = entry
        current = data.get("current", items[0].get("key_id") if "public_key" in data else None)
        return cls(keys, current if isinstance(current, str) else None)

    @classmethod
    def load(cls, path: Path) -> PublicKeyring:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise KeyringInvalid(f"{path} cannot be read as JSON: {error}") from error
        return cls.from_dict(data)


def _entry(item: object) -> PublicKeyEntry:
    if not isinstance(item, dict) or not isinstance(item.get("public_key"), str):
        raise KeyringInvalid("every key needs a public_key (PEM)")
    try:
        public = ECC.import_key(item["public_key"])
    except (ValueError, IndexError, TypeError) as error:
        raise KeyringInvalid(f"key {item.get('key_id')} is not a public key") from error
    if public.curve != ALGORITHM or public.has_private():
        raise KeyringInvalid(f"key {item.get('key_id')} is not an Ed25519 public key")
    key_id = key_id_of(public)
    if item.get("key_id", key_id) != key_id:
        # The id is the key's hash; a keyring naming another id is mistaken or forged.
        raise KeyringInvalid(f"key {item.get('key_id')} is really key {key_id}")
    return PublicKeyEntry(
        key_id=key_id,
        public_pem=str(public.export_key(format="PEM")),
        created_at=item.get("created_at"),
        retired_at=item.get("retired_at"),
    )


# --- verifying a release offline -----------------------------------------------------


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"check": self.name, "ok": self.ok, "message": self.message}


@dataclass
class VerificationReport:
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    def add(self, name: str, ok: bool, message: str) -> bool:
        self.checks.append(Check(name, ok, message))
        return ok


@dataclass(frozen=True)
class OutputFile:
    """A downloaded output to check: its bytes, where it came from, and (for a CSV
    file) which certified output it claims to be, when the caller says so."""

    label: str
    data: bytes
    name: str | None = None


def certificate_from(data: object) -> dict[str, Any]:
    """The certificate in a file: the certificate itself or a result download holding it."""
    if isinstance(data, dict) and isinstance(data.get("certificate"), dict):
        data = data["certificate"]
    if not isinstance(data, dict) or not {"document", "signature", "key_id"} <= set(data):
        raise SignatureInvalid("the file holds no release certificate")
    return data


def verify_release(
    certificate: Mapping[str, Any],
    keyring: PublicKeyring,
    outputs: Sequence[OutputFile] = (),
    *,
    code: bytes | None = None,
) -> VerificationReport:
    """Check a certificate, and the given outputs and code, against the published keyring."""
    report = VerificationReport()
    document = certificate.get("document")
    if (
        not isinstance(document, dict)
        or certificate.get("algorithm", ALGORITHM) != ALGORITHM
        # The same key signs audit checkpoints: one of those is no release.
        or document.get("type") not in RELEASE_TYPES
    ):
        report.add("certificate", False, "not an Ed25519 release certificate")
        return report
    key_id = str(certificate.get("key_id"))
    entry = keyring.keys.get(key_id)
    if not report.add(
        "key",
        entry is not None,
        f"key {key_id} is in the published keyring"
        if entry is not None
        else f"unknown key {key_id}: it is not in the published keyring",
    ):
        return report
    assert entry is not None
    try:
        verify_certificate(certificate, entry.public_pem)
    except SignatureInvalid as error:
        report.add("signature", False, f"signature invalid: {error}")
        return report
    report.add("signature", True, f"Ed25519 signature by key {key_id} verifies")
    report.add("key validity", *_key_was_current(entry, document.get("released_at")))
    report.add("isolation", True, _isolation_stated(document))
    if code is not None:
        same = sha256_bytes(code) == document.get("code_sha256")
        report.add(
            "code",
            same,
            "the code is what ran"
            if same
            else "code hash mismatch: this is not the code the job ran",
        )
    for output in outputs:
        for name, ok, message in _check_output(document, output):
            report.add(name if name == "privacy" else f"output {name}", ok, message)
    return report


def _isolation_stated(document: Mapping[str, Any]) -> str:
    """What the certificate says ran the job (a fact to read, not a check that fails)."""
    if "runtime" not in document:
        return "not stated (a certificate from before runtimes were recorded)"
    runtime, image = document.get("runtime"), document.get("image_digest")
    if runtime is None:
        return "the development runner: a local process, no container, no gVisor"
    wall = "gVisor" if runtime == "runsc" else "no gVisor"
    return f"ran under {runtime} ({wall}) in image {image}"


def _key_was_current(entry: PublicKeyEntry, released_at: object) -> tuple[bool, str]:
    """Whether the key was the signing key at the certificate's own time."""
    try:
        at = _when(released_at)
        start = _when(entry.created_at) if entry.created_at else None
        end = _when(entry.retired_at) if entry.retired_at else None
    except ValueError:
        return False, "the certificate or the keyring holds a time that cannot be read"
    if start is not None and at < start - KEY_TIME_GRACE:
        return False, f"released at {released_at}, before key {entry.key_id} existed"
    if end is not None and at > end + KEY_TIME_GRACE:
        return False, f"released at {released_at}, after key {entry.key_id} was retired ({end})"
    state = f"retired {entry.retired_at}" if entry.retired_at else "current"
    return True, f"key {entry.key_id} was in use at {released_at} ({state} now)"


def _when(value: object) -> dt.datetime:
    if not isinstance(value, str):
        raise ValueError("not a time")
    moment = dt.datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _check_output(document: Mapping[str, Any], output: OutputFile) -> list[tuple[str, bool, str]]:
    certified = {o["name"]: o for o in document.get("outputs", []) if isinstance(o, dict)}
    parsed = _json_of(output.data)
    if isinstance(parsed, dict) and isinstance(parsed.get("tables"), list):
        return _check_download(document, certified, parsed, output.label)
    if isinstance(parsed, dict) and {"name", "columns", "rows"} <= set(parsed):
        return [_check_table(certified, parsed, output.label)]
    return [_check_csv(certified, output)]


def _check_download(
    document: Mapping[str, Any],
    certified: Mapping[str, Any],
    download: dict[str, Any],
    label: str,
) -> list[tuple[str, bool, str]]:
    """A whole JSON result download: every table certified, every certified table there."""
    tables = [t for t in download["tables"] if isinstance(t, dict)]
    if not certified:  # a v1 certificate: one hash over all tables
        ok = sha256_json(tables) == document.get("outputs_sha256")
        return [
            (
                "tables",
                ok,
                f"{label}: the tables {'match' if ok else 'do not match'} "
                "the certificate's outputs_sha256",
            )
        ]
    results = [_check_table(certified, table, label) for table in tables]
    present = {t.get("name") for t in tables}
    results += [
        (name, False, f"{label} lacks the certified output {name}")
        for name in certified
        if name not in present
    ]
    if "privacy" in download:
        same = download["privacy"] == document.get("privacy")
        results.append(
            (
                "privacy",
                same,
                f"{label}: the privacy spent "
                f"{'matches' if same else 'differs from'} the certificate",
            )
        )
    return results


def _check_table(
    certified: Mapping[str, Any], table: dict[str, Any], label: str
) -> tuple[str, bool, str]:
    name = str(table.get("name"))
    expected = certified.get(name)
    if expected is None:
        return name, False, f"{label}: output {name} is not in the certificate"
    actual = sha256_json(table)
    if actual != expected.get("sha256"):
        return (
            name,
            False,
            f"{label}: output hash mismatch for output {name} (the table was changed)",
        )
    return name, True, f"{label}: table {name} matches its certified SHA-256"


def _check_csv(certified: Mapping[str, Any], output: OutputFile) -> tuple[str, bool, str]:
    name = output.name or _csv_name(certified, output.label)
    if name is None:
        return (
            output.label,
            False,
            f"cannot tell which output {output.label} is; give it as NAME=FILE "
            f"(certified outputs: {', '.join(certified) or 'none'})",
        )
    expected = certified.get(name)
    if expected is None:
        return name, False, f"{output.label}: output {name} is not in the certificate"
    if sha256_bytes(output.data) != expected.get("csv_sha256"):
        return (
            name,
            False,
            (
                f"{output.label}: output hash mismatch for output {name} "
                "(the CSV bytes differ from the certified download)"
            ),
        )
    return name, True, f"{output.label}: CSV of {name} matches its certified SHA-256"


def _csv_name(certified: Mapping[str, Any], label: str) -> str | None:
    if len(certified) == 1:
        return next(iter(certified))
    stem = Path(label).name.split(".", 1)[0]
    return stem if stem in certified else None


def _json_of(data: bytes) -> object:
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None


def output_entries(
    tables: Iterable[Mapping[str, Any]], csv_bytes: Mapping[str, bytes]
) -> list[dict[str, Any]]:
    """What a certificate records of each output table: its canonical hash (the JSON
    download, whatever its spacing and key order) and the hash of its CSV download."""
    return [
        {
            "name": table["name"],
            "sha256": sha256_json(table),
            "csv_sha256": sha256_bytes(csv_bytes[table["name"]]),
            "columns": list(table.get("columns", [])),
            "rows": len(table.get("rows", [])),
        }
        for table in tables
    ]
