"""What a release certificate says: the document a release key signs.

It binds an output to who ran what on which data under which terms, what was
spent and which checks passed (docs/release-certificates.md). It is built here
from plain values; :mod:`sandbox.jobs.release` gathers them from the job and
signs the document in the release's transaction.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sandbox.integrity.signing import CERTIFICATE_TYPE, output_entries, sha256_json
from sandbox.models import Grant


@dataclass(frozen=True)
class CertifiedRelease:
    """What one release's certificate binds, as plain values.

    ``grant`` is the grant's :func:`grant_terms`, ``csv`` each output as the CSV
    download's bytes, ``rows_sketched`` how many of the output's rows the
    differencing checks keep a sketch of, ``runtime`` and ``image_digest`` what the
    job ran under (both None for the development runner).
    """

    job: str
    analyst: str
    dataset: str
    dataset_version: str
    grant: Mapping[str, Any]
    policy_version: str
    language: str
    mode: str
    code_sha256: str
    tables: list[dict[str, Any]]
    csv: Mapping[str, bytes]
    privacy: dict[str, Any]
    disclosure: dict[str, Any] | None
    rows_sketched: int
    reviewers: list[str]
    released_at: dt.datetime
    runtime: str | None = None
    image_digest: str | None = None


def certificate_document(release: CertifiedRelease) -> dict[str, Any]:
    """The certificate's document: what the release key signs."""
    return {
        "type": CERTIFICATE_TYPE,
        "job": release.job,
        "analyst": release.analyst,
        "dataset": release.dataset,
        "dataset_version": release.dataset_version,
        "grant": release.grant["id"],
        "grant_version": sha256_json(release.grant),
        "policy_version": release.policy_version,
        "language": release.language,
        "mode": release.mode,
        "code_sha256": release.code_sha256,
        # What computed the output: the engine runtime (runsc is gVisor) and the runner
        # image's ID; None, None: the development runner, no container at all.
        "runtime": release.runtime,
        "image_digest": release.image_digest,
        "outputs": output_entries(release.tables, release.csv),
        "outputs_sha256": sha256_json(release.tables),
        "privacy": release.privacy,
        "disclosure": release.disclosure,
        "checks": _passed_checks(release),
        "reviewers": release.reviewers,
        "released_at": release.released_at.isoformat(),
    }


def grant_terms(grant: Grant) -> dict[str, Any]:
    """What a grant allows, as a certificate's ``grant_version`` hashes it: its terms,
    never what has been spent, so every release under unchanged terms names one version."""
    return {
        "id": grant.id,
        "dataset": grant.dataset,
        "analyst_id": grant.analyst_id,
        "purpose": grant.purpose,
        "modes": sorted(grant.mode_list),
        "columns": sorted(grant.columns or []),
        "column_rules": dict(grant.column_rules or {}),
        "epsilon_total": grant.epsilon_total,
        "max_epsilon_per_job": grant.max_epsilon_per_job,
        "delta_total": grant.delta_total,
        "max_delta_per_job": grant.max_delta_per_job,
        "max_rows_per_person": grant.max_rows_per_person,
        "k_threshold": grant.k_threshold,
        "requires_consent": grant.requires_consent,
        "requires_review": grant.requires_review,
        "expires_at": _utc_iso(grant.expires_at),
        "revoked_at": _utc_iso(grant.revoked_at),
    }


def _utc_iso(moment: dt.datetime | None) -> str | None:
    if moment is None:
        return None
    # SQLite hands datetimes back naive; they were written in UTC.
    aware = moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
    return aware.astimezone(dt.UTC).isoformat()


def _passed_checks(release: CertifiedRelease) -> list[dict[str, Any]]:
    """The checks this output passed on its way out, as the certificate names them."""
    checks: list[dict[str, Any]] = [
        {"check": "grant.active", "expires_at": release.grant["expires_at"]},
        {"check": f"code.{release.language}_policy", "policy_version": release.policy_version},
    ]
    privacy, disclosure = release.privacy, release.disclosure
    if release.mode == "dp":
        noise = {key: privacy.get(key) for key in ("mechanism", "epsilon", "delta")}
        spent = privacy.get("epsilon_spent_now", privacy.get("epsilon"))
        checks.append({"check": "dp.noise", **noise})
        checks.append(
            {
                "check": "dp.budget_charged",
                "grant": release.grant["id"],
                "epsilon": spent,
                "cached_from": privacy.get("cached_from"),
            }
        )
    elif disclosure is not None:
        sql = release.language == "sql"
        rule = "disclosure.k_threshold" if sql else "disclosure.declared_outputs"
        checks.append({"check": rule, **disclosure})
        if release.rows_sketched:
            checks.append(
                {"check": "disclosure.differencing", "rows_sketched": release.rows_sketched}
            )
    if release.reviewers:
        checks.append({"check": "review.approved", "reviewers": release.reviewers})
    return checks
