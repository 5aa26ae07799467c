"""Keys at rest: the master keyring that wraps each dataset's data key, and the
keyring of release signing keys.

Master keys come from ``SANDBOX_MASTER_KEY`` (32 bytes, base64; older
instances used 64 hex digits, still accepted), with older keys still accepted
during a rotation in ``SANDBOX_MASTER_KEY_OLD`` (comma-separated); or, when
that is unset, from a key file (``SANDBOX_MASTER_KEY_FILE``, default
``<instance>/master-keys.json``, created 0600 on first use and refused when
other users may read it)::

    {"format": "sandbox-master-keys/1", "current": ID,
     "keys": [{"id": ID, "key": BASE64 | null, "created_at": ..., "retired_at": ...}]}

A rotation (:func:`sandbox.integrity.rotation.rotate_master_key`) makes a new
key current while the old one stays accepted, re-wraps every dataset's data
key (data files are not touched), then retires the old key: its material is
erased from the file, so a data key still wrapped under it is refused from
then on. Readers ask for the
ring on every use, so no process needs a restart at any step.

Release signing keys: ``<instance>/release-keys.json`` is the public keyring
(key id → public PEM, created and retired times) that verifiers download; the
current private key is ``<instance>/release-keys/<id>.pem`` (0600). A rotation
retires the current key (its private file is deleted, its public key stays
published) so certificates it signed still verify.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import fcntl
import json
import os
import re
import secrets
import stat
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datasets.storage import KEY_BYTES, MasterKeyring, master_key_id
from sandbox.config import Settings, create_secret_file_once
from sandbox.errors import ConfigurationError, SandboxError
from sandbox.integrity.signing import KEYRING_FORMAT, PublicKeyEntry, PublicKeyring, ReleaseKey

MASTER_KEY_ENV = "SANDBOX_MASTER_KEY"
OLD_MASTER_KEYS_ENV = "SANDBOX_MASTER_KEY_OLD"
MASTER_FORMAT = "sandbox-master-keys/1"
RELEASE_KEYRING = "release-keys.json"
RELEASE_PRIVATE_DIR = "release-keys"
LEGACY_RELEASE_KEY = "release_ed25519.pem"


class KeyManagementError(SandboxError):
    """A key operation that would leave data unreadable or a key exposed is refused."""

    code = "keys"
    status = 409


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


# --- files that hold keys -------------------------------------------------------------


def check_private_file(path: Path) -> None:
    """Refuse a key file that other users may read or write (like ssh does)."""
    info = path.lstat()
    if not stat.S_ISREG(info.st_mode):
        raise ConfigurationError(f"{path} must be a regular file, not a link or a folder")
    if info.st_mode & 0o077:
        raise ConfigurationError(
            f"{path} is open to other users (mode {stat.S_IMODE(info.st_mode):o}); "
            f"a key file must be private: chmod 600 {path}"
        )


def replace_file(path: Path, content: str, *, mode: int = 0o600) -> None:
    """Replace ``path`` atomically: readers see the old content or the new, never half."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, mode)  # whatever the umask took away
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock between the processes that change a keyring."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def decode_master_key(text: str, *, source: str) -> bytes:
    text = text.strip()
    if re.fullmatch(r"[0-9a-fA-F]{64}", text):
        return bytes.fromhex(text)  # how older instances wrote it
    try:
        key = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as error:
        raise ConfigurationError(f"{source} is not base64") from error
    if len(key) != KEY_BYTES:
        raise ConfigurationError(f"{source} must hold {KEY_BYTES} bytes in base64, not {len(key)}")
    return key


def new_master_key() -> str:
    return base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()


# --- the master keyring ---------------------------------------------------------------


@dataclass(frozen=True)
class MasterKeyFile:
    """The instance's master keyring file (used when SANDBOX_MASTER_KEY is not set)."""

    path: Path
    # An older instance kept its one master key in secrets.json; it is adopted.
    legacy_secrets: Path | None = None

    @property
    def _lock(self) -> Path:
        return self.path.with_name(f".{self.path.name}.lock")

    def load(self) -> MasterKeyring:
        if not self.path.exists():
            self._create()
        data = self._read()
        keys = {entry["id"]: entry for entry in data["keys"]}
        current = keys.get(data["current"], {}).get("key")
        if not current:
            raise ConfigurationError(f"{self.path} names no usable current master key")
        return MasterKeyring(
            current=self._decode(current),
            accepted=tuple(
                self._decode(e["key"])
                for i, e in keys.items()
                if e.get("key") and i != data["current"]
            ),
            retired=frozenset(i for i, e in keys.items() if not e.get("key")),
        )

    def entries(self) -> list[dict[str, Any]]:
        """The keys without their material: id, state, times."""
        data = self._read()
        return [
            {
                "id": e["id"],
                "state": "current"
                if e["id"] == data["current"]
                else ("accepted" if e.get("key") else "retired"),
                "created_at": e.get("created_at"),
                "retired_at": e.get("retired_at"),
            }
            for e in data["keys"]
        ]

    def add_current(self) -> tuple[str, str]:
        """A new current key; the one it replaces stays accepted. Returns (old, new) ids."""
        with file_lock(self._lock):
            data = self._read()
            key = new_master_key()
            key_id = master_key_id(self._decode(key))
            old = data["current"]
            data["keys"].append(
                {"id": key_id, "key": key, "created_at": _now(), "retired_at": None}
            )
            data["current"] = key_id
            replace_file(self.path, json.dumps(data, indent=2))
            return old, key_id

    def retire(self, key_ids: set[str]) -> list[str]:
        """Erase the material of these keys (never the current one)."""
        with file_lock(self._lock):
            data = self._read()
            if data["current"] in key_ids:
                raise KeyManagementError("the current master key cannot be retired")
            retired = []
            for entry in data["keys"]:
                if entry["id"] in key_ids and entry.get("key"):
                    entry["key"], entry["retired_at"] = None, _now()
                    retired.append(entry["id"])
            replace_file(self.path, json.dumps(data, indent=2))
        self._forget_legacy_copy(set(retired))
        return retired

    def _create(self) -> None:
        key = self._legacy_key() or new_master_key()
        data = {
            "format": MASTER_FORMAT,
            "current": master_key_id(self._decode(key)),
            "keys": [
                {
                    "id": master_key_id(self._decode(key)),
                    "key": key,
                    "created_at": _now(),
                    "retired_at": None,
                }
            ],
        }
        create_secret_file_once(self.path, json.dumps(data, indent=2))

    def _read(self) -> dict[str, Any]:
        check_private_file(self.path)
        return _read_keyring_file(self.path, MASTER_FORMAT)

    def _decode(self, text: str) -> bytes:
        return decode_master_key(text, source=f"a key in {self.path}")

    def _legacy_key(self) -> str | None:
        if self.legacy_secrets is None or not self.legacy_secrets.exists():
            return None
        value = json.loads(self.legacy_secrets.read_text()).get("master_key")
        if not value:
            return None
        return base64.b64encode(decode_master_key(value, source="secrets.json")).decode()

    def _forget_legacy_copy(self, retired: set[str]) -> None:
        """A retired key must not live on in the older secrets file."""
        legacy = self._legacy_key()
        if legacy is None or master_key_id(self._decode(legacy)) not in retired:
            return
        assert self.legacy_secrets is not None
        values = json.loads(self.legacy_secrets.read_text())
        values.pop("master_key", None)
        replace_file(self.legacy_secrets, json.dumps(values))


def env_keyring(env: Mapping[str, str]) -> MasterKeyring:
    current = decode_master_key(env[MASTER_KEY_ENV], source=MASTER_KEY_ENV)
    old = [part for part in env.get(OLD_MASTER_KEYS_ENV, "").split(",") if part.strip()]
    return MasterKeyring(
        current=current,
        accepted=tuple(decode_master_key(part, source=OLD_MASTER_KEYS_ENV) for part in old),
    )


def master_key_file(settings: Settings) -> MasterKeyFile:
    return MasterKeyFile(settings.master_key_path, settings.instance / "secrets.json")


def master_keyring_source(
    settings: Settings, env: Mapping[str, str] | None = None
) -> Callable[[], MasterKeyring]:
    """What the dataset store asks for its master keys (again on every use)."""
    env = os.environ if env is None else env
    if env.get(MASTER_KEY_ENV):
        ring = env_keyring(env)  # checked now: a bad key is a start-up error
        return lambda: ring
    return master_key_file(settings).load


# --- release signing keys --------------------------------------------------------------


class SigningKeys:
    """The instance's release signing keys: the current private key and the public ring."""

    def __init__(self, instance: Path) -> None:
        self.instance = instance
        self.keyring_path = instance / RELEASE_KEYRING
        self.private_dir = instance / RELEASE_PRIVATE_DIR
        self._lock = instance / f".{RELEASE_KEYRING}.lock"
        self._cached: ReleaseKey | None = None

    def current(self) -> ReleaseKey:
        """The key that signs now (read again each time: a rotation elsewhere takes effect)."""
        for _ in range(3):  # a rotation may delete the file between reading the ring and it
            key_id = self._read()["current"]
            cached = self._cached
            if cached is not None and cached.key_id == key_id:
                return cached
            path = self.private_dir / f"{key_id}.pem"
            try:
                check_private_file(path)
                key = ReleaseKey.from_pem(path.read_text())
            except FileNotFoundError:
                continue
            if key.key_id != key_id:
                raise ConfigurationError(f"{path} does not hold key {key_id}")
            self._cached = key
            return key
        raise ConfigurationError(
            f"the current release key's private file is missing in {self.private_dir}"
        )

    def public_keyring(self) -> PublicKeyring:
        data = self._read()
        return PublicKeyring(
            {
                e["key_id"]: PublicKeyEntry(
                    e["key_id"], e["public_key"], e.get("created_at"), e.get("retired_at")
                )
                for e in data["keys"]
            },
            current=data["current"],
        )

    def rotate(self) -> tuple[str, str]:
        """Make a new key current; the old one is retired (its private file deleted)."""
        with file_lock(self._lock):
            data = self._read()
            old = data["current"]
            key = ReleaseKey.generate()
            create_secret_file_once(self.private_dir / f"{key.key_id}.pem", key.private_pem)
            now = _now()
            for entry in data["keys"]:
                if entry["key_id"] == old:
                    entry["retired_at"] = now
            data["keys"].append(_public_entry(key, now))
            data["current"] = key.key_id
            replace_file(self.keyring_path, json.dumps(data, indent=2), mode=0o644)
            for path in self.private_dir.glob("*.pem"):
                if path.stem != key.key_id:
                    path.unlink()
        return old, key.key_id

    def _read(self) -> dict[str, Any]:
        if not self.keyring_path.exists():
            self._create()
        return _read_keyring_file(self.keyring_path, KEYRING_FORMAT)

    def _create(self) -> None:
        with file_lock(self._lock):
            if self.keyring_path.exists():
                return  # another process made it while this one waited
            legacy = self.instance / LEGACY_RELEASE_KEY
            key = (
                ReleaseKey.from_pem(legacy.read_text())
                if legacy.exists()
                else ReleaseKey.generate()
            )
            self.private_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            create_secret_file_once(self.private_dir / f"{key.key_id}.pem", key.private_pem)
            data = {
                "format": KEYRING_FORMAT,
                "algorithm": "Ed25519",
                "current": key.key_id,
                "keys": [_public_entry(key, _now())],
            }
            replace_file(self.keyring_path, json.dumps(data, indent=2), mode=0o644)
            legacy.unlink(missing_ok=True)  # adopted: one copy of a private key, not two


def _public_entry(key: ReleaseKey, created_at: str) -> dict[str, Any]:
    return PublicKeyEntry(key.key_id, key.public_pem, created_at, None).to_dict()


def _read_keyring_file(path: Path, format_name: str) -> dict[str, Any]:
    """A keyring file's JSON, refused with its path named unless it is of ``format_name``."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ConfigurationError(f"{path} cannot be read: {error}") from error
    if not isinstance(data, dict) or data.get("format") != format_name:
        raise ConfigurationError(f"{path} is not a {format_name} file")
    return data
