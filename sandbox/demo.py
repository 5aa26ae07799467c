"""Setting an instance up: schema migrations, the demo dataset, demo users and grants."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path

import yaml
from sqlalchemy import select

from datasets.definition import dump_definition, parse_definition
from datasets.health import generate_health
from datasets.health_manifest import HEALTH
from datasets.manifest import Manifest
from policies.permissions import Role
from policies.policy_file import POLICY_DIR
from sandbox.access import grants, passwords, users
from sandbox.contest import contests, teams
from sandbox.contest.contests import TrackTerms
from sandbox.context import Sandbox
from sandbox.integrity import audit
from sandbox.models import Contest, DatasetRecord, Grant
from sandbox.owners import imports

DEMO_USERS = (
    ("owner", Role.OWNER, "数据提供方 Data owner"),
    ("analyst", Role.ANALYST, "研究人员 Analyst"),
    ("analyst2", Role.ANALYST, "参赛队伍 Contest team"),
    ("auditor", Role.AUDITOR, "审核员 Auditor"),
    ("organizer", Role.ORGANIZER, "赛事组织方 Contest organizer"),
    ("admin", Role.ADMIN, "管理员 Admin"),
)


def health_definition() -> tuple[Manifest, str]:
    """The health dataset's definition as its owner would write it: the manifest of the
    generated tables and the owner's policy file (``policies/files/health.yaml``)."""
    text = dump_definition(HEALTH, (POLICY_DIR / "health.yaml").read_text(encoding="utf-8"))
    return parse_definition(text, source="health definition")


def store_dataset(sandbox: Sandbox, *, patients: int, seed: int, owner: str) -> str:
    """Generate the synthetic health data and import it as the owner would their own:
    staged encrypted, profiled (every column proposed a class from its values), confirmed
    with the owner's definition, published as the next version."""
    tables = generate_health(patients, seed=seed)
    manifest, policy_text = health_definition()
    by = users.actor_named(sandbox, username=owner)
    with sandbox.tx() as session:
        exists = session.scalar(select(DatasetRecord.id).where(DatasetRecord.name == "health"))
    started = imports.start_import(
        sandbox, by=by, dataset="health", mode="replace" if exists else "new"
    )
    for name, frame in tables.items():
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        buffer.seek(0)
        imports.stage_upload(
            sandbox, by=by, import_id=started["id"], source=buffer, filename=f"{name}.parquet"
        )
    imports.profile_import(sandbox, by=by, import_id=started["id"])
    definition = yaml.safe_load(dump_definition(manifest, policy_text))
    imports.confirm_import(sandbox, by=by, import_id=started["id"], definition=definition)
    done = imports.publish_import(sandbox, by=by, import_id=started["id"])
    with sandbox.tx() as session:
        audit.append(
            session,
            actor=owner,
            action="dataset.generated",
            subject="health",
            details={"version": done["version"], "patients": patients, "seed": seed},
        )
    return str(done["version"])


def ensure_demo_users(sandbox: Sandbox) -> dict[str, str]:
    """Create the demo users once; their passwords live in the instance folder (0600)."""
    path = sandbox.settings.instance / "demo-credentials.json"
    stored: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    with sandbox.tx() as session:
        for username, role, display in DEMO_USERS:
            if users.user_by_name(session, username) is not None:
                continue
            password = stored.get(username, "")
            if passwords.password_problem(password, username=username) is not None:
                password = passwords.generated_password(username)  # an older demo's may fail it
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
        # The contest's tracks read the data under this grant (集中授权 by the owner);
        # the teams hold none and see only their scores.
        organizer = users.user_by_name(session, "organizer")
        assert organizer is not None
        if session.scalar(select(Grant.id).where(Grant.analyst_id == organizer.id)) is None:
            grants.add_grant(
                session,
                by=owner,
                dataset="health",
                analyst=organizer,
                terms=grants.GrantTerms(modes=("masked",), days=365),
            )


DEMO_CONTEST = "health-2026"
BASELINES = Path(__file__).parent / "contest" / "baselines"
DEMO_TRACKS = (
    TrackTerms(
        slug="readmission-30d",
        title="30天再入院预测",
        title_en="30-day readmission",
        dataset="health",
        task="binary",
        target="visits.readmitted_30d",
        metric="roc_auc",
        baseline=(BASELINES / "readmission.py").read_text(encoding="utf-8"),
    ),
    TrackTerms(
        slug="length-of-stay",
        title="住院天数预测",
        title_en="Length of stay",
        dataset="health",
        task="regression",
        target="visits.length_of_stay",
        metric="mae",
        baseline=(BASELINES / "length_of_stay.py").read_text(encoding="utf-8"),
    ),
    TrackTerms(
        slug="diagnosis-from-labs",
        title="由检验结果推断诊断",
        title_en="Diagnosis from lab results",
        dataset="health",
        task="multiclass",
        target="visits.icd10",
        metric="macro_f1",
        withheld=("visits.diagnosis", "visits.department"),
        baseline=(BASELINES / "diagnosis_from_labs.py").read_text(encoding="utf-8"),
    ),
)
# (team, its captain, the captain's real name and institution)
DEMO_TEAMS = (
    ("常青藤队 Team Ivy", "analyst", "张三", "常州市第一人民医院"),
    ("龙城数据队 Team Dragon City", "analyst2", "李四", "常州大学"),
)


def ensure_demo_contest(sandbox: Sandbox, *, enqueue: Callable[[str], None] | None = None) -> bool:
    """The demo contest once: three tracks on the health data with their baselines, read
    under the owner's grant to the organizer (:func:`ensure_demo_grants`); two approved
    teams; open. False if it was there already."""
    with sandbox.tx() as session:
        if session.scalar(select(Contest.id).where(Contest.slug == DEMO_CONTEST)):
            return False
    organizer = users.actor_named(sandbox, username="organizer")
    contests.create_contest(
        sandbox,
        by=organizer,
        slug=DEMO_CONTEST,
        title="2026 常州健康医疗大数据创新应用大赛",
        title_en="2026 Changzhou health-data innovation contest",
    )
    for terms in DEMO_TRACKS:
        contests.add_track(sandbox, by=organizer, contest=DEMO_CONTEST, terms=terms)
    for name, captain, real_name, institution in DEMO_TEAMS:
        by = users.actor_named(sandbox, username=captain)
        teams.register(
            sandbox, by=by, contest=DEMO_CONTEST, real_name=real_name, institution=institution
        )
        teams.decide_registration(
            sandbox, by=organizer, contest=DEMO_CONTEST, username=captain, approve=True
        )
        teams.create_team(sandbox, by=by, contest=DEMO_CONTEST, name=name)
    contests.set_phase(sandbox, by=organizer, contest=DEMO_CONTEST, phase="open", enqueue=enqueue)
    return True
