"""Datasets encrypted at rest (AES-256-GCM), decrypted only in memory.

Layout of one dataset under the store's root::

    <name>/key.json             the dataset's data key, wrapped by the master key
    <name>/manifest.json        tables, row counts, version; MAC'd with the data key
    <name>/<table>.parquet.enc  nonce | tag | AES-GCM(Parquet bytes)

Each dataset has its own random data key, so rotating the master key means
re-wrapping small key files, not re-encrypting data. A table file's
associated data names its dataset, table and version, so files cannot be
swapped between datasets, tables or versions without failing authentication.
The version is the SHA-256 over the plaintext Parquet bytes of all tables.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import os
import re
import secrets
import shutil
from collections.abc import Mapping
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


class DatasetStore:
    """Encrypted datasets under ``root``; ``master_key`` (32 bytes) wraps every data key."""

    def __init__(self, root: Path, master_key: bytes) -> None:
        if not isinstance(master_key, bytes) or len(master_key) != KEY_BYTES:
            raise StorageError(f"the master key must be exactly {KEY_BYTES} bytes")
        self.root = Path(root)
        self._master_key = master_key

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
            _write_private(staging / KEY_FILE, _dump(self._wrap_key(name, data_key)))
            for table, data in plain.items():
                sealed = _seal(data_key, data, _table_aad(name, table, version))
                _write_private(staging / f"{table}{TABLE_SUFFIX}", sealed)
            _write_private(staging / MANIFEST_FILE, _dump(manifest))
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

    def _wrap_key(self, name: str, data_key: bytes) -> dict[str, str]:
        sealed = _seal(self._master_key, data_key, _key_aad(name))
        return {"format": FORMAT, "algorithm": "AES-256-GCM", "wrapped_key": _b64(sealed)}

    def _unwrap_key(self, name: str, record: dict[str, Any]) -> bytes:
        try:
            sealed = base64.b64decode(record["wrapped_key"], validate=True)
        except (KeyError, TypeError, ValueError) as error:
            raise StorageError(f"the key file of dataset {name!r} is damaged") from error
        data_key = _open(
            self._master_key,
            sealed,
            _key_aad(name),
            what=f"the key of dataset {name!r} (wrong master key?)",
        )
        if len(data_key) != KEY_BYTES:
            raise StorageError(f"the key file of dataset {name!r} is damaged")
        return data_key


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
