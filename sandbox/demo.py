"""Setting an instance up: schema migrations, the demo dataset, demo users and grants."""

from __future__ import annotations

import json
import secrets

from sqlalchemy import select

from datasets.checks import check_one_row_per_person
from datasets.health import generate_health
from datasets.health_manifest import HEALTH
from policies.permissions import Role
from sandbox.access import grants, users
from sandbox.access.consent import seed_consent
from sandbox.context import Sandbox
from sandbox.dp import marginals
from sandbox.integrity import audit
from sandbox.models import DatasetRecord, Grant

DEMO_USERS = (
    ("owner", Role.OWNER, "数据提供方 Data owner"),
    ("analyst", Role.ANALYST, "研究人员 Analyst"),
    ("analyst2", Role.ANALYST, "参赛队伍 Contest team"),
    ("auditor", Role.AUDITOR, "审核员 Auditor"),
    ("admin", Role.ADMIN, "管理员 Admin"),
)


def store_dataset(sandbox: Sandbox, *, patients: int, seed: int, owner: str) -> str:
    tables = generate_health(patients, seed=seed)
    check_one_row_per_person(tables, HEALTH)
    version = sandbox.store.write("health", tables)
    with sandbox.tx() as session:
        owner_user = users.user_by_name(session, owner)
        if owner_user is None:
            raise ValueError(f"There is no user {owner}; create the owner first.")
        record = session.scalar(select(DatasetRecord).where(DatasetRecord.name == "health"))
        counts = {name: len(frame) for name, frame in tables.items()}
        if record is None:
            session.add(
                DatasetRecord(
                    name="health", version=version, owner_id=owner_user.id, row_counts=counts
                )
            )
        else:
            record.version, record.row_counts = version, counts
        audit.append(
            session,
            actor=owner,
            action="dataset.stored",
            subject="health",
            details={"version": version, "rows": counts, "seed": seed},
        )
        # The generated consent flag is where each person's consent record starts.
        seed_consent(session, dataset="health", patients=tables["patients"], by=owner)
        # Mock rows come from DP marginals of this version, paid from the owner's ε.
        marginals.refresh_marginals(sandbox.settings.instance, "health", version, tables, HEALTH)
        audit.append(
            session,
            actor=owner,
            action="mock.marginals",
            subject="health",
            details={"version": version, "epsilon": marginals.OWNER_EPSILON},
        )
    return version


def ensure_demo_users(sandbox: Sandbox) -> dict[str, str]:
    """Create the demo users once; their passwords live in the instance folder (0600)."""
    path = sandbox.settings.instance / "demo-credentials.json"
    stored: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    with sandbox.tx() as session:
        for username, role, display in DEMO_USERS:
            if users.user_by_name(session, username) is not None:
                continue
            password = stored.get(username) or secrets.token_urlsafe(9)
            users.create_user(
                session,
                username=username,
                password=password,
                role=role,
                by="setup",
                display_name=display,
            )
            stored[username] = password
    path.write_text(json.dumps(stored, indent=2))
    path.chmod(0o600)
    return stored


def ensure_demo_grants(sandbox: Sandbox) -> None:
    with sandbox.tx() as session:
        owner = users.user_by_name(session, "owner")
        assert owner is not None
        for name in ("analyst", "analyst2"):
            analyst = users.user_by_name(session, name)
            assert analyst is not None
            has = session.scalar(select(Grant).where(Grant.analyst_id == analyst.id))
            if has is None:
                grants.add_grant(
                    session,
                    by=owner,
                    dataset="health",
                    analyst=analyst,
                    terms=grants.GrantTerms(delta_total=1e-4),
                )
