"""Releasing a job's output: its certificate signed, the job moved to released.

The worker releases what needs no review; the reviews release what the
auditors approved. Both do it here, in their own transaction.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from sandbox.context import Sandbox
from sandbox.errors import Conflict
from sandbox.integrity.certificates import CertifiedRelease, certificate_document, grant_terms
from sandbox.jobs import released_rows
from sandbox.jobs.lifecycle import WORKER, move
from sandbox.jobs.tables import result_csv
from sandbox.models import Grant, Job, JobStatus, utcnow


def release(sandbox: Sandbox, session: Session, job: Job, *, reviewers: list[str]) -> None:
    """Sign the certificate and move the job to released, in the caller's transaction.

    The certificate (docs/release-certificates.md) binds the output to who ran
    what on which data under which terms, what was spent and which checks passed.
    """
    assert job.result is not None
    grant = session.get_one(Grant, job.grant_id)
    if not grant.is_active():
        # Fail closed: a review may come after the owner revoked the grant.
        raise Conflict("The grant was revoked or has expired; the output cannot be released.")
    key = sandbox.release_key  # read once: a rotation mid-release must not split the two
    released_at = utcnow()
    version = job.dataset_version or sandbox.store.version(job.dataset)
    job.dataset_version = version
    tables = job.result["tables"]
    csv = {t["name"]: result_csv(job.result, table=t["name"]).encode("utf-8") for t in tables}
    certified = CertifiedRelease(
        job=job.id,
        analyst=job.analyst.username,
        dataset=job.dataset,
        dataset_version=version,
        grant=grant_terms(grant),
        policy_version=job.policy_version,
        language=job.language,
        mode=job.mode,
        code_sha256=job.code_sha256,
        tables=tables,
        csv=csv,
        privacy=job.result["privacy"],
        disclosure=job.result["disclosure"],
        rows_sketched=len(job.disclosure_sketches or []),
        reviewers=reviewers,
        released_at=released_at,
        runtime=job.runtime,
        image_digest=job.image_digest,
    )
    document = certificate_document(certified)
    job.certificate = key.sign(document)
    job.finished_at = released_at
    details = {"outputs_sha256": document["outputs_sha256"], "key_id": key.key_id}
    actor = reviewers[-1] if reviewers else WORKER
    move(session, job, JobStatus.RELEASED, actor=actor, details=details)
    # From now on later releases under the grant are checked against this one's rows.
    released_rows.record(session, job)
