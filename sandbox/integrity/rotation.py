"""Rotating keys: operations on a running sandbox, each audited.

A master key rotation re-wraps every dataset's data key under a new master
key, then retires the old one; a signing key rotation makes a new release key
current while the old one's public key stays published
(:mod:`sandbox.integrity.keys` holds the keyrings themselves).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from datasets.storage import DatasetStore, master_key_id
from sandbox.context import Sandbox
from sandbox.integrity import audit
from sandbox.integrity.keys import (
    MASTER_KEY_ENV,
    OLD_MASTER_KEYS_ENV,
    KeyManagementError,
    MasterKeyFile,
    env_keyring,
    master_key_file,
)


@dataclass(frozen=True)
class MasterRotation:
    old: list[str]
    current: str
    datasets: dict[str, str] = field(default_factory=dict)  # name → key id it had before
    retired: list[str] = field(default_factory=list)
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "old": self.old,
            "current": self.current,
            "datasets": self.datasets,
            "retired": self.retired,
            "note": self.note,
        }


def rotate_master_key(
    sandbox: Sandbox, *, by: str, retire: bool = True, env: Mapping[str, str] | None = None
) -> MasterRotation:
    """Re-wrap every dataset's data key under a new master key, then retire the old one.

    With SANDBOX_MASTER_KEY set, the operator brings the new key: it is that
    variable, the old one is in SANDBOX_MASTER_KEY_OLD; this re-wraps under
    it, and retiring means taking the old key out of the environment.
    """
    env = os.environ if env is None else env
    store = sandbox.store
    if env.get(MASTER_KEY_ENV):
        ring = env_keyring(env)
        before = store.rewrap_all()
        rotation = MasterRotation(
            old=[master_key_id(k) for k in ring.accepted],
            current=ring.current_id,
            datasets=before,
            note=f"now remove {OLD_MASTER_KEYS_ENV} from every process's environment",
        )
    else:
        keyfile = master_key_file(sandbox.settings)
        keyfile.load()  # creates it (or adopts secrets.json's key) on a fresh instance
        old, new = keyfile.add_current()
        old_ids = [e["id"] for e in keyfile.entries() if e["state"] == "accepted"]
        before = store.rewrap_all()
        retired = _retire(keyfile, store, set(old_ids)) if retire else []
        rotation = MasterRotation(old=old_ids, current=new, datasets=before, retired=retired)
    details = {k: v for k, v in rotation.to_dict().items() if k != "note"}
    with sandbox.tx() as session:
        audit.append(
            session, actor=by, action="keys.master_rotated", subject="master-key", details=details
        )
    return rotation


def retire_master_keys(sandbox: Sandbox, *, by: str) -> list[str]:
    """Retire every master key but the current one, once no dataset needs them."""
    if os.environ.get(MASTER_KEY_ENV):
        raise KeyManagementError(
            f"the master key comes from {MASTER_KEY_ENV}: retire an old key by removing it "
            f"from {OLD_MASTER_KEYS_ENV}"
        )
    keyfile = master_key_file(sandbox.settings)
    old = {e["id"] for e in keyfile.entries() if e["state"] == "accepted"}
    retired = _retire(keyfile, sandbox.store, old)
    with sandbox.tx() as session:
        audit.append(
            session,
            actor=by,
            action="keys.master_retired",
            subject="master-key",
            details={"retired": retired},
        )
    return retired


def _retire(keyfile: MasterKeyFile, store: DatasetStore, key_ids: set[str]) -> list[str]:
    # Under the store's lock no dataset can be wrapped under an old key between
    # the check and the erasure.
    with store.key_lock():
        current = keyfile.load().current_id
        for name in store.names():
            wrapped = store.wrapping_key_id(name)
            if wrapped != current:
                raise KeyManagementError(
                    f"dataset {name} is still wrapped under master key {wrapped or 'unnamed'}; "
                    "run `sandbox keys rotate` (it re-wraps) before retiring"
                )
        return keyfile.retire(key_ids)


def rotate_signing_key(sandbox: Sandbox, *, by: str) -> tuple[str, str]:
    """A new release signing key; the old one's public key stays published."""
    old, new = sandbox.signing_keys.rotate()
    with sandbox.tx() as session:
        audit.append(
            session,
            actor=by,
            action="keys.signing_rotated",
            subject="release-key",
            details={"old": old, "current": new},
        )
    return old, new
