"""Who may do what: small pure functions over plain data, named like sentences.

Every action in ``sandbox`` asks one of these before it changes or shows
anything; no role list is written anywhere else. They take a *person* (anything
with an ``id`` and a ``role``: a ``sandbox.models.User`` row or a plain
:class:`Actor`) and the few facts the decision needs (who owns the dataset, whose
job it is), and answer True or False. They fail closed: a dataset nobody is
recorded as owning is governed by admins alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol


class Role(StrEnum):
    OWNER = "owner"
    ANALYST = "analyst"
    AUDITOR = "auditor"
    ORGANIZER = "organizer"  # runs contests: tracks, registrations, final boards
    ADMIN = "admin"


class Person(Protocol):
    @property
    def id(self) -> int: ...

    @property
    def username(self) -> str: ...

    @property
    def role(self) -> str: ...


@dataclass(frozen=True)
class Actor:
    """Who is acting, as the portal and the CLI know them: no database row needed."""

    id: int
    username: str
    role: str


# --- users and the instance ---------------------------------------------------------------


def user_is_admin(user: Person) -> bool:
    return user.role == Role.ADMIN


def user_may_read_audit(user: Person) -> bool:
    """The audit log and its chain check: auditors and admins."""
    return user.role in (Role.AUDITOR, Role.ADMIN)


def user_may_manage_token(user: Person, *, token_user_id: int) -> bool:
    """See and revoke an API token: the person it was issued to, or an admin."""
    return user.id == token_user_id or user_is_admin(user)


def user_may_list_tokens_of_others(user: Person) -> bool:
    """Everyone's API tokens (never the tokens themselves): admins."""
    return user_is_admin(user)


def user_may_unlock_accounts(user: Person) -> bool:
    """End an account's lock after too many failed logins: admins."""
    return user_is_admin(user)


def user_may_set_password_of(user: Person, *, user_id: int) -> bool:
    """Change a password: its own user, or an admin (who resets a forgotten one)."""
    return user.id == user_id or user_is_admin(user)


# --- data owners: their own datasets only ------------------------------------------------


def user_owns_dataset(user: Person, *, owner_id: int | None) -> bool:
    return user.role == Role.OWNER and owner_id is not None and user.id == owner_id


def user_may_govern_dataset(user: Person, *, owner_id: int | None) -> bool:
    """Grant, revoke, decide access requests, change consent, policy and settings of a
    dataset: its owner, or an admin. Never another owner."""
    return user_owns_dataset(user, owner_id=owner_id) or user_is_admin(user)


def user_may_set_review_quorum(user: Person, *, owner_id: int | None) -> bool:
    """How many distinct auditors approve the dataset's held outputs (and those the sandbox
    could not verify): its owner alone. Not an admin: lowering the second auditor for an
    unverified output is the owner's call about their own data."""
    return user_owns_dataset(user, owner_id=owner_id)


def user_may_bring_datasets(user: Person) -> bool:
    """Import a new dataset (and so become its owner): data owners; admins for them."""
    return user.role in (Role.OWNER, Role.ADMIN)


def user_may_handle_import(user: Person, *, owner_id: int) -> bool:
    """An import's staged tables and profile: its owner alone, until it is published.

    Not even an admin: what is staged is raw data that no one else has been shown.
    """
    return user.id == owner_id and user_may_bring_datasets(user)


def user_may_list_grants(user: Person) -> bool:
    """Owners see the grants on their own datasets, admins every grant."""
    return user.role in (Role.OWNER, Role.ADMIN)


def user_may_receive_grant(user: Person) -> bool:
    """Analysts, and organizers: a contest track's data is the view under the owner's
    grant to its organizer (the teams never hold a grant of their own)."""
    return user.role in (Role.ANALYST, Role.ORGANIZER)


# --- contests -----------------------------------------------------------------------------


def user_may_organize_contests(user: Person) -> bool:
    """Create contests and tracks, approve registrations, publish final boards."""
    return user.role in (Role.ORGANIZER, Role.ADMIN)


def user_runs_contest(user: Person, organizer_id: int) -> bool:
    """Run this contest (its queue, reruns, disqualifications, final board): the organizer
    who created it, or an admin."""
    return user.role == Role.ADMIN or (user.role == Role.ORGANIZER and user.id == organizer_id)


def user_may_compete(user: Person) -> bool:
    """Register for a contest and join a team: analysts (contest teams are researchers)."""
    return user.role == Role.ANALYST


# --- analysts ------------------------------------------------------------------------------


def user_may_submit_jobs(user: Person) -> bool:
    return user.role == Role.ANALYST


def user_may_request_access(user: Person) -> bool:
    return user.role == Role.ANALYST


def user_may_list_access_requests(user: Person) -> bool:
    """Analysts see their own requests; owners those on their datasets; admins all."""
    return user.role in (Role.ANALYST, Role.OWNER, Role.ADMIN)


def user_may_see_access_request(user: Person, *, analyst_id: int, owner_id: int | None) -> bool:
    return (
        user.id == analyst_id
        and user.role == Role.ANALYST
        or user_may_govern_dataset(user, owner_id=owner_id)
    )


def user_may_see_job(user: Person, *, analyst_id: int) -> bool:
    """A job's status: its analyst, and auditors and admins (who never read its result)."""
    return user.id == analyst_id or user.role in (Role.AUDITOR, Role.ADMIN)


def user_may_read_result(user: Person, *, analyst_id: int) -> bool:
    """A released result: the analyst who ran the job, nobody else."""
    return user.role == Role.ANALYST and user.id == analyst_id


def user_may_object_to_review(user: Person, *, analyst_id: int) -> bool:
    return user_may_read_result(user, analyst_id=analyst_id)


def user_may_read_budgets(user: Person) -> bool:
    return user.role == Role.ANALYST


# --- auditors ------------------------------------------------------------------------------


def user_may_read_held_outputs(user: Person) -> bool:
    """The review queue and a held output: auditors and admins, never the analyst."""
    return user.role in (Role.AUDITOR, Role.ADMIN)


def user_may_review_jobs(user: Person) -> bool:
    return user.role == Role.AUDITOR


def user_may_review_job(user: Person, *, analyst_id: int) -> bool:
    """An auditor decides on anybody's held output but their own."""
    return user_may_review_jobs(user) and user.id != analyst_id


def user_may_read_job_log(user: Person) -> bool:
    """What a job printed, its code and its analyst's name: auditors and admins only;
    analysts never see a log (it may hold values from the data)."""
    return user.role in (Role.AUDITOR, Role.ADMIN)
