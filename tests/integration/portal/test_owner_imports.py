"""Owners bring their own data through the HTTP API: stage, profile, confirm, publish,
version, retire; bad input refused with the rule and the place, nothing half-stored."""

from __future__ import annotations

import io
from typing import Any

import pytest
import yaml
from flask.testing import FlaskClient
from sqlalchemy import select

from sandbox.context import Sandbox
from sandbox.jobs.pipeline import run_job
from sandbox.models import AuditEntry, DatasetVersion, Grant, Job
from tests.clients import Bearer

RESIDENT_IDS = [
    "320402198001010013",
    "32040219750612003X",
    "320404199203150026",
    "320411196811230018",
]


def resident_id(i: int) -> str:
    """A valid 18-digit resident ID (check digit per GB 11643) for person i."""
    base = f"3204021980{(i % 12) + 1:02d}{(i % 28) + 1:02d}{i % 1000:03d}"
    weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    check = "10X98765432"[sum(int(d) * w for d, w in zip(base, weights, strict=True)) % 11]
    return base + check


def clinic_csv(persons: int = 240, *, encoding: str = "gbk", start: int = 0) -> bytes:
    lines = ["病人编号,科室,费用,col_3"]
    departments = ["内科", "外科", "儿科"]
    for i in range(start, start + persons):
        lines.append(f"P{i:05d},{departments[i % 3]},{100 + (i * 37) % 900}.5,{resident_id(i)}")
    return ("\n".join(lines) + "\n").encode(encoding)


def put_file(
    client: FlaskClient, headers: dict[str, str], import_id: str, body: bytes, filename: str
) -> Any:
    return client.put(
        f"/api/v1/imports/{import_id}/files?filename={filename}",
        data=body,
        headers={**headers, "Content-Type": "application/octet-stream"},
    )


def started(client: FlaskClient, headers: dict[str, str], dataset: str, mode: str = "new") -> str:
    answer = client.post(
        "/api/v1/imports", json={"dataset": dataset, "mode": mode}, headers=headers
    )
    assert answer.status_code == 201, answer.get_json()
    return str(answer.get_json()["id"])


def confirmed_definition(draft: dict[str, Any]) -> dict[str, Any]:
    """The owner's corrections of the draft: the person key, bounds and categories."""
    definition = yaml.safe_load(yaml.safe_dump(draft, allow_unicode=True))
    (table,) = definition["tables"].values()
    columns = table["columns"]
    by_source = {spec["source"]: (name, spec) for name, spec in columns.items()}
    person, spec = by_source["病人编号"]
    spec["class"] = "person_key"
    definition["privacy_unit"] = person
    _, department = by_source["科室"]
    department["class"] = "category"
    department["categories"] = ["内科", "外科", "儿科"]
    cost_name, cost = by_source["费用"]
    cost.update({"class": "sensitive", "type": "float", "bounds": [0, 2000]})
    definition["policy"] = {
        "k_threshold": 10,
        "columns": {
            f"clinic.{cost_name}": {
                "rule": ["aggregate_only"],
                "aggregates": ["COUNT", "SUM", "AVG"],
            }
        },
    }
    return definition


def publish_clinic(client: FlaskClient, headers: dict[str, str]) -> dict[str, Any]:
    import_id = started(client, headers, "clinic")
    staged = put_file(client, headers, import_id, clinic_csv(), "clinic.csv")
    assert staged.status_code == 200, staged.get_json()
    profiled = client.post(f"/api/v1/imports/{import_id}/profile", headers=headers).get_json()
    definition = confirmed_definition(profiled["draft"])
    answer = client.put(
        f"/api/v1/imports/{import_id}/definition", json={"definition": definition}, headers=headers
    )
    assert answer.status_code == 200, answer.get_json()
    published = client.post(f"/api/v1/imports/{import_id}/publish", headers=headers)
    assert published.status_code == 200, published.get_json()
    return {"import": import_id, "profile": profiled, **published.get_json()}


def test_an_owner_imports_a_gbk_csv_whose_col_3_holds_resident_ids(
    client: FlaskClient, bearer: Bearer, sandbox_instance: Sandbox
) -> None:
    owner = bearer("owner")
    done = publish_clinic(client, owner)
    assert done["number"] == 1
    (table,) = done["profile"]["tables"]
    assert table["source"]["encoding"].lower() in ("gb18030", "gbk")
    proposals = {p["column"]: p for p in done["profile"]["profile"]["clinic"]["proposals"]}
    assert proposals["col_3"]["class"] == "direct_identifier"
    evidence = " ".join(e["text"] for e in proposals["col_3"]["evidence"])
    assert "resident" in evidence.lower()
    # No value of the data in what the proposal says.
    assert not any(rid in evidence for rid in RESIDENT_IDS)
    # Published: in the analysts' catalog, with its schema; the resident ids are not.
    listed = client.get("/api/v1/datasets", headers=bearer("analyst")).get_json()["datasets"]
    assert "clinic" in [d["name"] for d in listed]
    schema = client.get("/api/v1/datasets/clinic", headers=bearer("analyst")).get_json()
    (columns,) = [t["columns"] for t in schema["tables"]]
    assert [c["view_name"] for c in columns if c["class"] == "direct_identifier"] == [None]
    # The staging is gone once published.
    assert not (sandbox_instance.settings.instance / "staging" / done["import"]).exists()


def test_analyst_jobs_on_an_imported_dataset_are_released_and_name_its_version(
    client: FlaskClient, bearer: Bearer, sandbox_instance: Sandbox
) -> None:
    from sandbox.access import grants
    from sandbox.access.users import user_by_name
    from tests.factories import actor

    owner = bearer("owner")
    done = publish_clinic(client, owner)
    granting = actor(sandbox_instance, "owner")
    with sandbox_instance.tx() as session:
        analyst = user_by_name(session, "analyst")
        assert analyst is not None
        grants.add_grant(
            session,
            by=granting,
            dataset="clinic",
            analyst=analyst,
            terms=grants.GrantTerms(requires_consent=False),
        )
    from sandbox.jobs import submit
    from sandbox.jobs.planning import JobRequest

    cost = next(
        name
        for name, spec in done["profile"]["draft"]["tables"]["clinic"]["columns"].items()
        if spec["source"] == "费用"
    )
    department = next(
        name
        for name, spec in done["profile"]["draft"]["tables"]["clinic"]["columns"].items()
        if spec["source"] == "科室"
    )
    released = []
    python = (
        "import sandbox_job\n"
        "clinic = sandbox_job.table('clinic')\n"
        f"sandbox_job.magnitude_table('cost', clinic, by=['{department}'], value='{cost}')\n"
    )
    sql = f"SELECT {department}, COUNT(*) AS n, AVG({cost}) AS c FROM clinic GROUP BY {department}"
    for language, mode, epsilon, code in (
        ("sql", "masked", None, sql),
        ("sql", "dp", 0.5, sql),
        # The helper finds the owner's person column (not person_id) in the view.
        ("python", "masked", None, python),
    ):
        request = JobRequest(
            dataset="clinic", language=language, mode=mode, code=code, epsilon=epsilon
        )
        job = submit.submit_job(
            sandbox_instance,
            by=actor(sandbox_instance, "analyst"),
            request=request,
            enqueue=lambda _: None,
        )
        assert run_job(sandbox_instance, job.id) == "released"
        released.append(job.id)
    with sandbox_instance.tx() as session:
        for job_id in released:
            job = session.get_one(Job, job_id)
            assert job.dataset_version == done["version"]
            assert job.certificate is not None
            assert job.certificate["document"]["dataset_version"] == done["version"]


def test_a_new_version_keeps_the_grants_budget_and_append_adds_rows(
    client: FlaskClient, bearer: Bearer, sandbox_instance: Sandbox
) -> None:
    owner = bearer("owner")
    # The health dataset's next version, replacing its data with the same definition.
    with sandbox_instance.tx() as session:
        grant = session.scalars(select(Grant).where(Grant.dataset == "health")).first()
        assert grant is not None
        grant.epsilon_spent = 1.25
        grant_id = grant.id
    definition = client.get("/api/v1/datasets/health/definition", headers=owner)
    assert definition.status_code == 200
    text = definition.get_data(as_text=True)
    assert yaml.safe_load(text)["dataset"] == "health"
    # Append to the clinic: the same persons again break one row per person, and
    # nothing is published; 30 new persons make version 2.
    publish_clinic(client, owner)
    duplicate = append_clinic(client, owner, clinic_csv(30))
    assert duplicate["error"]["rule"] == "import.duplicate_person", duplicate
    published = append_clinic(client, owner, clinic_csv(30, start=240))
    assert published.get("number") == 2, published
    versions = client.get("/api/v1/datasets/clinic/versions", headers=owner).get_json()
    assert [v["number"] for v in versions["versions"]] == [2, 1]
    assert versions["versions"][0]["rows"] == {"clinic": 270}
    with sandbox_instance.tx() as session:
        assert session.get_one(Grant, grant_id).epsilon_spent == 1.25  # never reset


def append_clinic(client: FlaskClient, owner: dict[str, str], body: bytes) -> dict[str, Any]:
    """Stage ``body`` into an append import and confirm it with the exported definition."""
    import_id = started(client, owner, "clinic", mode="append")
    assert put_file(client, owner, import_id, body, "more.csv").status_code == 200
    profiled = client.post(f"/api/v1/imports/{import_id}/profile", headers=owner).get_json()
    exported = client.get("/api/v1/datasets/clinic/definition", headers=owner)
    again = yaml.safe_load(exported.get_data(as_text=True))
    sources = _sources(profiled["draft"])
    for table in again["tables"].values():
        table["source"] = "more"
        for name, spec in table["columns"].items():
            spec["source"] = sources[name]
    answer = client.put(
        f"/api/v1/imports/{import_id}/definition", json={"definition": again}, headers=owner
    )
    assert answer.status_code == 200, answer.get_json()
    result: dict[str, Any] = client.post(
        f"/api/v1/imports/{import_id}/publish", headers=owner
    ).get_json()
    return result


def _sources(draft: dict[str, Any]) -> dict[str, str]:
    (table,) = draft["tables"].values()
    return {name: spec["source"] for name, spec in table["columns"].items()}


def test_retiring_destroys_the_data_key_ends_grants_and_is_audited(
    client: FlaskClient, bearer: Bearer, sandbox_instance: Sandbox
) -> None:
    owner = bearer("owner")
    refused = client.post("/api/v1/datasets/health/retire", json={"confirm": "x"}, headers=owner)
    assert refused.status_code == 400
    answer = client.post(
        "/api/v1/datasets/health/retire", json={"confirm": "health"}, headers=owner
    )
    assert answer.status_code == 200, answer.get_json()
    assert not (sandbox_instance.settings.datasets_dir / "health").exists()
    assert client.get("/api/v1/datasets/health", headers=bearer("analyst")).status_code == 404
    with sandbox_instance.tx() as session:
        assert all(g.revoked_at is not None for g in session.scalars(select(Grant)))
        entry = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "dataset.retired")
        ).one()
        assert entry.details["data_key"] == "destroyed"
    # A retired dataset takes no new version.
    again = client.post(
        "/api/v1/imports", json={"dataset": "health", "mode": "replace"}, headers=owner
    )
    assert again.status_code == 409 and again.get_json()["error"]["rule"] == "import.retired"


@pytest.mark.parametrize(
    ("body", "filename", "rule"),
    [
        (b"", "empty.csv", "import.empty"),
        (b"\xff\xfe\x00garbage\x81\x82\n\x80\x80,\x90", "bad.csv", "import.encoding"),
        ("病人编号,科室\nP1,内科,多余\n".encode(), "ragged.csv", "import.malformed_row"),
        (b"PK\x03\x04not really a workbook", "book.xlsx", "import.format"),
    ],
)
def test_bad_files_are_refused_with_the_rule_and_nothing_is_staged(
    client: FlaskClient, bearer: Bearer, body: bytes, filename: str, rule: str
) -> None:
    owner = bearer("owner")
    import_id = started(client, owner, "broken")
    answer = put_file(client, owner, import_id, body, filename)
    assert answer.status_code == 400, answer.get_json()
    error = answer.get_json()["error"]
    assert error["rule"] == rule, error
    assert filename in error["message"]
    assert client.get(f"/api/v1/imports/{import_id}", headers=owner).get_json()["tables"] == []


def test_a_file_over_the_cap_is_refused_while_it_streams(tmp_path: Any, bearer: Bearer) -> None:
    from tests.factories import make_app, make_sandbox

    small = make_sandbox(tmp_path / "small", max_import_bytes=1000)
    client = make_app(small).test_client()
    from tests.clients import request_token

    token = request_token(client, "owner", small.credentials["owner"])  # type: ignore[attr-defined]
    headers = {"Authorization": f"Bearer {token}"}
    import_id = started(client, headers, "big")
    answer = put_file(client, headers, import_id, clinic_csv(200), "big.csv")
    assert answer.status_code in (400, 413)
    if answer.status_code == 400:
        assert answer.get_json()["error"]["rule"] == "import.too_large"
    del bearer


def test_publishing_needs_every_column_confirmed_and_whole_keys(
    client: FlaskClient, bearer: Bearer
) -> None:
    owner = bearer("owner")
    import_id = started(client, owner, "clinic")
    body = clinic_csv(60).decode("gbk").replace("P00007,", ",").encode("gbk")
    assert put_file(client, owner, import_id, body, "clinic.csv").status_code == 200
    assert (
        client.post(f"/api/v1/imports/{import_id}/publish", headers=owner).get_json()["error"][
            "rule"
        ]
        == "import.unconfirmed"
    )
    profiled = client.post(f"/api/v1/imports/{import_id}/profile", headers=owner).get_json()
    definition = confirmed_definition(profiled["draft"])
    (table,) = definition["tables"].values()
    dropped = next(n for n, s in table["columns"].items() if s["source"] == "col_3")
    del table["columns"][dropped]
    answer = client.put(
        f"/api/v1/imports/{import_id}/definition", json={"definition": definition}, headers=owner
    )
    error = answer.get_json()["error"]
    assert answer.status_code == 400 and error["rule"] == "import.unconfirmed", error
    assert "col_3" in error["message"]
    # Excluding it on purpose confirms the import; the key with a hole then stops publishing.
    table["exclude"] = ["col_3"]
    answer = client.put(
        f"/api/v1/imports/{import_id}/definition", json={"definition": definition}, headers=owner
    )
    assert answer.status_code == 200, answer.get_json()
    refused = client.post(f"/api/v1/imports/{import_id}/publish", headers=owner).get_json()
    assert refused["error"]["rule"] == "import.key_null", refused
    assert "row 8" in refused["error"]["message"]


def test_a_second_owner_cannot_see_or_touch_the_first_owners_import_or_dataset(
    client: FlaskClient, bearer: Bearer, sandbox_instance: Sandbox
) -> None:
    from policies.permissions import Role
    from sandbox.access.users import create_user

    with sandbox_instance.tx() as session:
        create_user(
            session, username="owner2", password="second-owner-pw", role=Role.OWNER, by="setup"
        )
    from tests.clients import request_token

    other = {"Authorization": "Bearer " + request_token(client, "owner2", "second-owner-pw")}
    owner = bearer("owner")
    import_id = started(client, owner, "clinic")
    assert put_file(client, owner, import_id, clinic_csv(20), "c.csv").status_code == 200
    assert client.get(f"/api/v1/imports/{import_id}", headers=other).status_code == 404
    assert put_file(client, other, import_id, clinic_csv(20), "c.csv").status_code == 404
    assert client.post(f"/api/v1/imports/{import_id}/profile", headers=other).status_code == 404
    assert client.get("/api/v1/datasets/health/definition", headers=other).status_code == 403
    assert client.get("/api/v1/datasets/health/usage", headers=other).status_code == 403
    replace = client.post(
        "/api/v1/imports", json={"dataset": "health", "mode": "replace"}, headers=other
    )
    assert replace.status_code == 403
    retire = client.post(
        "/api/v1/datasets/health/retire", json={"confirm": "health"}, headers=other
    )
    assert retire.status_code == 403
    with sandbox_instance.tx() as session:
        refused = session.scalars(
            select(AuditEntry.action).where(
                AuditEntry.actor == "owner2", AuditEntry.action.like("%.refused")
            )
        ).all()
    assert {"dataset.export.refused", "dataset.usage.refused", "dataset.retire.refused"} <= set(
        refused
    )


def test_consent_registry_import_validates_every_row_then_merges(
    client: FlaskClient, bearer: Bearer, sandbox_instance: Sandbox
) -> None:
    from sandbox.access.consent import consenting_persons
    from tests.factories import health_tables

    owner = bearer("owner")
    persons = [str(p) for p in health_tables()["patients"]["person_id"].head(3)]

    def put(body: str, name: str = "consent.csv") -> Any:
        return client.put(
            f"/api/v1/datasets/health/consents?filename={name}",
            data=io.BytesIO(body.encode()),
            headers=owner,
        )

    bad = put(
        f"person_id,purpose,given_at\n{persons[0]},research,2026-01-01\nnobody,research,2026-01-01\n"
    )
    error = bad.get_json()["error"]
    assert bad.status_code == 400 and error["rule"] == "consent.person_unknown"
    assert (error["row"], error["column"]) == (3, "person_id")
    assert "nobody" not in error["message"]
    good = put(
        "person_id,purpose,given_at,withdrawn_at\n"
        f"{persons[0]},marketing,2026-01-01,\n{persons[1]},marketing,2026-01-01,2026-02-01\n"
    )
    assert good.status_code == 200, good.get_json()
    assert good.get_json()["given"] == 1
    with sandbox_instance.tx() as session:
        assert consenting_persons(session, dataset="health", purpose="marketing") == {persons[0]}
        assert session.scalars(
            select(AuditEntry).where(AuditEntry.action == "consent.imported")
        ).one()


def test_versions_are_recorded_with_their_definitions(
    client: FlaskClient, bearer: Bearer, sandbox_instance: Sandbox
) -> None:
    publish_clinic(client, bearer("owner"))
    with sandbox_instance.tx() as session:
        (row,) = session.scalars(select(DatasetVersion).where(DatasetVersion.dataset == "clinic"))
        assert row.number == 1 and row.published_by == "owner"
        assert "clinic" in row.definition["tables"]


def test_a_workbook_uploads_as_a_stream_each_sheet_a_table(
    client: FlaskClient, bearer: Bearer, sandbox_instance: Sandbox
) -> None:
    from openpyxl import Workbook

    workbook = Workbook()
    first = workbook.active
    assert first is not None
    first.title = "门诊"
    first.append(["病人编号", "科室"])
    for i in range(20):
        first.append([f"P{i:03d}", "内科"])
    second = workbook.create_sheet("住院")
    second.append(["病人编号", "天数"])
    second.append(["P001", 3])
    buffer = io.BytesIO()
    workbook.save(buffer)
    owner = bearer("owner")
    import_id = started(client, owner, "wards")
    answer = put_file(client, owner, import_id, buffer.getvalue(), "wards.xlsx")
    assert answer.status_code == 200, answer.get_json()
    tables = answer.get_json()["tables"]
    assert [t["rows"] for t in tables] == [20, 1]
    # A merged range is refused with the sheet and the range.
    second.merge_cells("A1:B1")
    merged = io.BytesIO()
    workbook.save(merged)
    refused = put_file(client, owner, import_id, merged.getvalue(), "merged.xlsx")
    error = refused.get_json()["error"]
    assert refused.status_code == 400 and error["rule"] == "import.merged_cells", error
    assert "A1:B1" in error["message"]


@pytest.mark.postgres
def test_a_postgresql_table_is_staged_and_its_password_is_kept_nowhere(
    client: FlaskClient, bearer: Bearer, sandbox_instance: Sandbox
) -> None:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from tests.services import fresh_postgres_database

    url = fresh_postgres_database()
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(
            text("CREATE TABLE outpatient (patient text, dept text, cost numeric(8,2))")
        )
        connection.execute(
            text(
                "INSERT INTO outpatient SELECT 'P' || i, '内科', i * 1.5 "
                "FROM generate_series(1, 50) i"
            )
        )
    engine.dispose()
    secret = "s3cret-pw-never-kept"
    with_password = make_url(url).set(password=secret).render_as_string(hide_password=False)
    owner = bearer("owner")
    import_id = started(client, owner, "his")
    answer = client.post(
        f"/api/v1/imports/{import_id}/connections",
        json={"url": with_password, "name": "outpatient", "table": "outpatient"},
        headers=owner,
    )
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json()["tables"][0]["rows"] == 50
    assert secret not in answer.get_data(as_text=True)
    unreachable = client.post(
        f"/api/v1/imports/{import_id}/connections",
        json={"url": f"postgresql://postgres:{secret}@127.0.0.1:1/x", "name": "t", "table": "t"},
        headers=owner,
    )
    assert unreachable.get_json()["error"]["rule"] == "import.unreachable"
    assert secret not in unreachable.get_data(as_text=True)
    refused = client.post(
        f"/api/v1/imports/{import_id}/connections",
        json={"url": with_password, "name": "q", "query": "SELECT no_such_column FROM outpatient"},
        headers=owner,
    )
    assert refused.get_json()["error"]["rule"] == "import.query_refused"
    with sandbox_instance.tx() as session:
        from sandbox.models import Import

        stored = session.get_one(Import, import_id)
        assert secret not in str(stored.tables)
        entries = session.scalars(select(AuditEntry)).all()
        assert all(secret not in str(e.details) for e in entries)
