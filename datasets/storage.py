"""Datasets encrypted at rest (AES-256-GCM), decrypted only in memory.

Layout of one dataset under the store's root::

    <name>/key.json             the dataset's data key, wrapped by a master key (named by id)
    <name>/manifest.json        tables, row counts, version; MAC'd with the data key
    <name>/<table>.parquet.enc  nonce | tag | AES-GCM(Parquet bytes)

Each dataset has its own random data key, so rotating the master key means
re-wrapping small key files (:meth:`DatasetStore.rewrap_all`), not
re-encrypting data. The store reads through a :class:`MasterKeyring`: the
current master key wraps, and older keys still in the ring unwrap, so every
dataset stays readable while a rotation is half done. A table file's
associated data names its dataset, table and version, so files cannot be
swapped between datasets, tables or versions without failing authentication.
The version is the SHA-256 over the plaintext Parquet bytes of all tables.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import hmac
import io
import json
import os
import re
import secrets
import shutil
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from Crypto.Cipher import AES

from datasets.errors import StorageError

KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
FORMAT = "sandbox-dataset/1"
KEY_FILE = "key.json"
MANIFEST_FILE = "manifest.json"
TABLE_SUFFIX = ".parquet.enc"

_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_TABLE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


def master_key_id(key: bytes) -> str:
    """A public name for a master key: a keyed hash, so it reveals nothing of the key."""
    return hmac.new(key, b"sandbox master key id", hashlib.sha256).hexdigest()[:16]


@dataclass(frozen=True)
class MasterKeyring:
    """The master key that wraps new data keys, and older ones still accepted to unwrap.

    ``retired`` names keys whose material is gone, so a refusal can say why.
    """

    current: bytes
    accepted: tuple[bytes, ...] = ()
    retired: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        for key in (self.current, *self.accepted):
            if not isinstance(key, bytes) or len(key) != KEY_BYTES:
                raise StorageError(f"a master key must be exactly {KEY_BYTES} bytes")

    @property
    def current_id(self) -> str:
        return master_key_id(self.current)

    def key(self, key_id: str) -> bytes | None:
        return next((k for k in (self.current, *self.accepted) if master_key_id(k) == key_id), None)

    @property
    def keys(self) -> tuple[bytes, ...]:
        return (self.current, *self.accepted)


MasterKeys = bytes | MasterKeyring | Callable[[], MasterKeyring]


class DatasetStore:
    """Encrypted datasets under ``root``.

    ``master_keys`` is one 32-byte master key, a :class:`MasterKeyring`, or a
    function returning the ring; a function is asked again on every use, so a
    rotation made by another process takes effect here without a restart.
    """

    def __init__(self, root: Path, master_keys: MasterKeys) -> None:
        self.root = Path(root)
        if callable(master_keys):
            self._keyring = master_keys
            return
        ring = master_keys if isinstance(master_keys, MasterKeyring) else _single(master_keys)
        self._keyring = lambda: ring

    # --- writing ---------------------------------------------------------------------

    def write(self, name: str, tables: Mapping[str, pd.DataFrame]) -> str:
        """Store ``tables`` as dataset ``name`` (replacing an older one) and return its version."""
        _check_name(name)
        if not tables:
            raise StorageError(f"dataset {name!r} needs at least one table")
        plain = {table: _to_parquet(table, frame) for table, frame in tables.items()}
        for table in plain:
            _check_table(table)
        version = _version(plain)
        data_key = secrets.token_bytes(KEY_BYTES)
        manifest: dict[str, Any] = {
            "format": FORMAT,
            "name": name,
            "version": version,
            "tables": {table: len(frame) for table, frame in tables.items()},
        }
        manifest["mac"] = _manifest_mac(data_key, manifest)

        self.root.mkdir(parents=True, exist_ok=True)
        staging = self.root / f".staging-{name}-{secrets.token_hex(6)}"
        staging.mkdir(mode=0o700)
        try:
            for table, data in plain.items():
                sealed = _seal(data_key, data, _table_aad(name, table, version))
                _write_private(staging / f"{table}{TABLE_SUFFIX}", sealed)
            _write_private(staging / MANIFEST_FILE, _dump(manifest))
            # Under the lock a rotation cannot retire the key this one is wrapped with
            # between the wrapping and the dataset's appearance.
            with self.key_lock():
                _write_private(staging / KEY_FILE, _dump(self._wrap_key(name, data_key)))
                self._replace(name, staging)
        finally:
            if staging.exists():
                shutil.rmtree(staging)
        return version

    def _replace(self, name: str, staging: Path) -> None:
        target = self._folder(name)
        if not target.exists():
            staging.rename(target)
            return
        retired = self.root / f".retired-{name}-{secrets.token_hex(6)}"
        target.rename(retired)
        staging.rename(target)
        shutil.rmtree(retired)

    # --- reading ---------------------------------------------------------------------

    def exists(self, name: str) -> bool:
        return bool(_NAME.match(name)) and (self._folder(name) / MANIFEST_FILE).is_file()

    def version(self, name: str) -> str:
        return str(self._manifest(name)[1]["version"])

    def tables(self, name: str) -> list[str]:
        return list(self._manifest(name)[1]["tables"])

    def row_counts(self, name: str) -> dict[str, int]:
        return {table: int(rows) for table, rows in self._manifest(name)[1]["tables"].items()}

    def read_table(self, name: str, table: str) -> pd.DataFrame:
        """One table, decrypted and checked in memory."""
        data_key, manifest = self._manifest(name)
        if table not in manifest["tables"]:
            raise StorageError(f"dataset {name!r} has no table {table!r}")
        path = self._folder(name) / f"{table}{TABLE_SUFFIX}"
        try:
            sealed = path.read_bytes()
        except OSError as error:
            raise StorageError(f"table {table!r} of dataset {name!r} cannot be read") from error
        aad = _table_aad(name, table, manifest["version"])
        plain = _open(data_key, sealed, aad, what=f"table {table!r} of dataset {name!r}")
        try:
            frame = pq.read_table(pa.BufferReader(plain)).to_pandas()
        except (pa.ArrowException, ValueError) as error:  # authenticated, so a writer bug
            raise StorageError(f"table {table!r} of dataset {name!r} is not valid") from error
        if len(frame) != manifest["tables"][table]:
            raise StorageError(f"table {table!r} of dataset {name!r} has the wrong row count")
        return frame

    def _folder(self, name: str) -> Path:
        return self.root / name

    def _manifest(self, name: str) -> tuple[bytes, dict[str, Any]]:
        """The dataset's data key and its manifest, after checking the manifest's MAC."""
        _check_name(name)
        folder = self._folder(name)
        if not (folder / MANIFEST_FILE).is_file():
            raise StorageError(f"there is no dataset {name!r}")
        data_key = self._unwrap_key(name, _load(folder / KEY_FILE, name))
        manifest = _load(folder / MANIFEST_FILE, name)
        mac = manifest.pop("mac", None)
        expected = _manifest_mac(data_key, manifest)
        if not isinstance(mac, str) or not hmac.compare_digest(mac, expected):
            raise StorageError(f"the manifest of dataset {name!r} fails authentication")
        if manifest.get("format") != FORMAT or manifest.get("name") != name:
            raise StorageError(f"dataset {name!r} has an unknown format")
        return data_key, manifest

    # --- data keys -------------------------------------------------------------------

    def keyring(self) -> MasterKeyring:
        """The master keys as they are now."""
        return self._keyring()

    def names(self) -> list[str]:
        """Every dataset in the store."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if self.exists(p.name))

    def wrapping_key_id(self, name: str) -> str | None:
        """The id of the master key that wraps the dataset's data key (None: an older file)."""
        _check_name(name)
        found = _load(self._folder(name) / KEY_FILE, name).get("master_key_id")
        return found if isinstance(found, str) else None

    @contextmanager
    def key_lock(self) -> Iterator[None]:
        """Held while a data key is wrapped and published, and while keys are re-wrapped.

        An advisory lock on the store's folder itself (no lock file to leave
        behind): it orders the processes of this host, and of hosts whose shared
        file system honours ``flock``.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def rewrap_all(self) -> dict[str, str]:
        """Wrap every dataset's data key under the current master key; data files stay.

        Each key file is replaced atomically, so a reader sees the old wrapping or
        the new one, and the ring holds the keys for both. Returns each dataset's
        master key id before the re-wrap.
        """
        before: dict[str, str] = {}
        with self.key_lock():
            ring = self._keyring()
            for name in self.names():
                folder = self._folder(name)
                record = _load(folder / KEY_FILE, name)
                data_key = self._unwrap_key(name, record, ring)
                before[name] = str(record.get("master_key_id") or "unnamed")
                if record.get("master_key_id") == ring.current_id:
                    continue
                _replace_private(folder / KEY_FILE, _dump(self._wrap_key(name, data_key, ring)))
        return before

    def seal_key(self, label: str, key: bytes) -> dict[str, str]:
        """Wrap a key of something else kept under the master key (an import's staging
        key, labelled ``staging:<id>``); :meth:`open_key` unwraps it."""
        return self._wrap_key(label, key)

    def open_key(self, label: str, record: dict[str, Any]) -> bytes:
        return self._unwrap_key(label, record)

    def destroy(self, name: str) -> None:
        """Destroy a dataset: its data key first (from then on nothing of it can be
        decrypted, wherever a copy of its files went), then its files."""
        _check_name(name)
        folder = self._folder(name)
        if not folder.exists():
            return
        with self.key_lock():
            key_file = folder / KEY_FILE
            if key_file.exists():
                size = key_file.stat().st_size
                with key_file.open("r+b") as handle:
                    handle.write(secrets.token_bytes(size))
                    handle.flush()
                    os.fsync(handle.fileno())
                key_file.unlink()
            shutil.rmtree(folder)

    def _wrap_key(
        self, name: str, data_key: bytes, ring: MasterKeyring | None = None
    ) -> dict[str, str]:
        ring = ring or self._keyring()
        sealed = _seal(ring.current, data_key, _key_aad(name))
        return {
            "format": FORMAT,
            "algorithm": "AES-256-GCM",
            "master_key_id": ring.current_id,
            "wrapped_key": _b64(sealed),
        }

    def _unwrap_key(
        self, name: str, record: dict[str, Any], ring: MasterKeyring | None = None
    ) -> bytes:
        ring = ring or self._keyring()
        try:
            sealed = base64.b64decode(record["wrapped_key"], validate=True)
        except (KeyError, TypeError, ValueError) as error:
            raise StorageError(f"the key file of dataset {name!r} is damaged") from error
        key_id = record.get("master_key_id")
        if key_id is None:
            candidates = ring.keys  # written before keys had ids: try each one held
        else:
            key = ring.key(str(key_id))
            if key is None:
                why = "was retired" if key_id in ring.retired else "is not held here"
                raise StorageError(
                    f"the key of dataset {name!r} is wrapped under master key {key_id}, "
                    f"which {why} (wrong master key?)"
                )
            candidates = (key,)
        for key in candidates:
            try:
                data_key = _open(key, sealed, _key_aad(name), what="")
            except StorageError:
                continue
            if len(data_key) != KEY_BYTES:
                raise StorageError(f"the key file of dataset {name!r} is damaged")
            return data_key
        raise StorageError(
            f"the key of dataset {name!r} fails authentication: "
            "it was altered or the master key is wrong (wrong master key?)"
        )


def _single(key: bytes) -> MasterKeyring:
    if not isinstance(key, bytes) or len(key) != KEY_BYTES:
        raise StorageError(f"the master key must be exactly {KEY_BYTES} bytes")
    return MasterKeyring(key)


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not _NAME.match(name):
        raise StorageError(
            f"{name!r} is not a dataset name (lower-case letters, digits, '_' and '-')"
        )


def _check_table(table: str) -> None:
    if not isinstance(table, str) or not _TABLE.match(table):
        raise StorageError(f"{table!r} is not a table name (lower-case letters, digits and '_')")


def _to_parquet(table: str, frame: pd.DataFrame) -> bytes:
    sink = io.BytesIO()
    try:
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), sink, compression="zstd")
    except (pa.ArrowException, ValueError, TypeError) as error:
        raise StorageError(f"table {table!r} cannot be stored as Parquet: {error}") from error
    return sink.getvalue()


def _version(plain: Mapping[str, bytes]) -> str:
    digest = hashlib.sha256()
    for table in sorted(plain):
        # Length-prefixed, so different splits of the same bytes cannot collide.
        for part in (table.encode(), plain[table]):
            digest.update(len(part).to_bytes(8, "big"))
            digest.update(part)
    return digest.hexdigest()


def _table_aad(name: str, table: str, version: str) -> bytes:
    return f"{FORMAT}|table|{name}|{table}|{version}".encode()


def _key_aad(name: str) -> bytes:
    return f"{FORMAT}|key|{name}".encode()


def _seal(key: bytes, plain: bytes, aad: bytes) -> bytes:
    nonce = secrets.token_bytes(NONCE_BYTES)
    cipher = AES.new(key, AES.MODE_GCM, nonce=nonce, mac_len=TAG_BYTES)
    cipher.update(aad)
    ciphertext, tag = cipher.encrypt_and_digest(plain)
    return nonce + tag + ciphertext


def _open(key: bytes, sealed: bytes, aad: bytes, *, what: str) -> bytes:
    if len(sealed) < NONCE_BYTES + TAG_BYTES:
        raise StorageError(f"{what} is truncated")
    nonce = sealed[:NONCE_BYTES]
    tag = sealed[NONCE_BYTES : NONCE_BYTES + TAG_BYTES]
    cipher = AES.new(key, AES.MODE_GCM, nonce=nonce, mac_len=TAG_BYTES)
    cipher.update(aad)
    try:
        return cipher.decrypt_and_verify(sealed[NONCE_BYTES + TAG_BYTES :], tag)
    except ValueError as error:
        raise StorageError(
            f"{what} fails authentication: it was altered or the key is wrong"
        ) from (error)


def _manifest_mac(data_key: bytes, manifest: Mapping[str, Any]) -> str:
    body = {k: v for k, v in manifest.items() if k != "mac"}
    canonical = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hmac.new(data_key, b"manifest|" + canonical.encode(), hashlib.sha256).hexdigest()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _dump(record: Mapping[str, Any]) -> bytes:
    return json.dumps(record, indent=2, ensure_ascii=False).encode() + b"\n"


def _load(path: Path, name: str) -> dict[str, Any]:
    try:
        record = json.loads(path.read_bytes())
    except (OSError, ValueError) as error:
        raise StorageError(f"{path.name} of dataset {name!r} is missing or damaged") from error
    if not isinstance(record, dict):
        raise StorageError(f"{path.name} of dataset {name!r} is damaged")
    return record


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _replace_private(path: Path, data: bytes) -> None:
    """Replace ``path`` atomically with a new 0600 file holding ``data``."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}")
    try:
        _write_private(temporary, data)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # the rename itself survives a crash
    finally:
        os.close(directory)
