"""Signed checkpoints of the audit chain's head.

The chain alone shows an edit, a deletion or a reordering inside it. It cannot
show its tail cut off, or a tail rewritten with fresh hashes, by someone who
can write the table: the shorter or rewritten chain is consistent. A
checkpoint is the head (sequence number, hash, time) signed with the
instance's release key (Ed25519), one JSON line each in
``<instance>/audit-checkpoints.jsonl``; ``verify`` compares the chain with
every checkpoint. A copy kept elsewhere (``sandbox audit checkpoint --out``)
survives someone who can also edit the instance folder.

When one is written: by ``sandbox audit checkpoint`` (run it from cron), and by
every ``sandbox audit verify`` that finds the chain intact, which signs the
head it has just verified (docs/adr/0003-signed-audit-checkpoints.md).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sandbox.integrity import audit
from sandbox.integrity.audit import ChainReport, Checkpoint
from sandbox.integrity.signing import ReleaseKey, SignatureInvalid, verify_certificate
from sandbox.models import utcnow

if TYPE_CHECKING:
    from sandbox.context import Sandbox

FILE_NAME = "audit-checkpoints.jsonl"
DOCUMENT_TYPE = "sandbox.audit-checkpoint/v1"
HASH = re.compile(r"[0-9a-f]{64}")


def default_file(sandbox: Sandbox) -> Path:
    return sandbox.settings.instance / FILE_NAME


def sign_head(key: ReleaseKey, *, seq: int, head: str) -> dict[str, Any]:
    """The signed document ``{type, seq, head, at}`` for a head of ``seq`` entries."""
    document = {"type": DOCUMENT_TYPE, "seq": seq, "head": head, "at": utcnow().isoformat()}
    return key.sign(document)


def append_checkpoint(path: Path, signed: dict[str, Any]) -> None:
    """Add one line to the checkpoint file and make sure it reached the disk."""
    line = _line(signed)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # O_APPEND: two writers never interleave inside one line.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass
class CheckpointFile:
    """The checkpoints read from one file: those that verify, and what was wrong with the rest."""

    checkpoints: list[Checkpoint] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def read_checkpoints(path: Path, public_keys: dict[str, str]) -> CheckpointFile:
    """Every checkpoint in ``path`` whose signature verifies under one of ``public_keys``.

    ``public_keys`` maps a key id to its public key (PEM). A line that does not
    parse or verify is a problem, never silently skipped: a forged checkpoint
    is as much a sign of tampering as a broken chain.
    """
    found = CheckpointFile()
    if not path.exists():
        return found
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                found.checkpoints.append(_checkpoint_of(json.loads(line), public_keys))
            except (ValueError, SignatureInvalid) as error:  # JSONDecodeError is a ValueError
                found.problems.append(f"{path.name} line {number}: {error}")
    return found


def _checkpoint_of(signed: object, public_keys: dict[str, str]) -> Checkpoint:
    if not isinstance(signed, dict) or not isinstance(signed.get("document"), dict):
        raise ValueError("not a signed checkpoint")
    public_pem = public_keys.get(str(signed.get("key_id")))
    if public_pem is None:
        raise SignatureInvalid(
            f"signed with a key this instance does not know ({signed.get('key_id')})"
        )
    verify_certificate(signed, public_pem)
    document = signed["document"]
    seq, head, at = document.get("seq"), document.get("head"), document.get("at")
    if (
        document.get("type") != DOCUMENT_TYPE
        or not isinstance(seq, int)
        or isinstance(seq, bool)
        or seq < 0
        or not isinstance(head, str)
        or not HASH.fullmatch(head)
        or not isinstance(at, str)
    ):
        raise ValueError("the signed document is not an audit checkpoint")
    return Checkpoint(seq=seq, head=head, at=at)


def trusted_keys(sandbox: Sandbox) -> dict[str, str]:
    """The public keys checkpoints may be signed with: every release key the instance
    has used, current or retired, so checkpoints stay verifiable across rotations."""
    ring = sandbox.signing_keys.public_keyring()
    return {key_id: entry.public_pem for key_id, entry in ring.keys.items()}


def verify_chain(
    sandbox: Sandbox, *, checkpoints_file: Path | None = None, checkpoint_after: bool = False
) -> ChainReport:
    """Recompute the chain and compare it with every signed checkpoint.

    With ``checkpoint_after``, an intact chain's verified head is signed and
    appended to the instance's checkpoint file.
    """
    path = checkpoints_file or default_file(sandbox)
    # Read before the chain: every checkpoint read was written after its entries
    # were committed, so the chain read next holds them. Read the other way
    # round, a checkpoint written meanwhile would look like a cut-off tail.
    read = read_checkpoints(path, trusted_keys(sandbox))
    with sandbox.tx() as session:
        report = audit.verify(session, checkpoints=read.checkpoints)
    if report.ok and read.problems:
        report = ChainReport(
            False, report.entries, report.head, None, "; ".join(read.problems), report.checkpoints
        )
    latest = max((c.seq for c in read.checkpoints), default=0)
    if checkpoint_after and report.ok and report.entries > latest:
        signed = sign_head(sandbox.release_key, seq=report.entries, head=report.head)
        append_checkpoint(default_file(sandbox), signed)
    return report


def write_checkpoint(sandbox: Sandbox, *, out: Path | None = None) -> dict[str, Any]:
    """Sign the current head into the instance's checkpoint file (and ``out``, if given)."""
    with sandbox.tx() as session:
        seq, head = audit.head(session)
    signed = sign_head(sandbox.release_key, seq=seq, head=head)
    append_checkpoint(default_file(sandbox), signed)
    if out is not None:
        # One line: a JSON file that --checkpoints reads as a checkpoint file too.
        out.write_text(_line(signed), encoding="utf-8")
    return signed


def _line(signed: dict[str, Any]) -> str:
    return json.dumps(signed, ensure_ascii=False, sort_keys=True) + "\n"
