"""Findings carry English text, a message id and plain params."""

from __future__ import annotations

import pytest

from policies.decision import Finding, Phrase


def test_finding_to_dict_keeps_english_and_adds_id_and_params() -> None:
    finding = Finding.of("sql.too_long", "Longer than %(limit)s characters.", limit=20)
    assert finding.to_dict() == {
        "rule": "sql.too_long",
        "message": "Longer than 20 characters.",
        "message_id": "sql.too_long",
        "params": {"limit": 20},
    }
    assert Finding("a.rule", "Text.").to_dict()["message_id"] == "a.rule"


def test_finding_phrase_params_are_stored_by_id() -> None:
    reason = Phrase("x.reason", "%(what)s is bad", what="eval")
    finding = Finding.of("x.rule", "Denied: %(reason)s.", message_id="x.denied", reason=reason)
    assert finding.message == "Denied: eval is bad."
    assert finding.message_id == "x.denied"
    assert finding.params == {"reason_id": "x.reason", "what": "eval"}
    assert (
        len(
            {
                finding,
                Finding.of("x.rule", "Denied: %(reason)s.", message_id="x.denied", reason=reason),
            }
        )
        == 1
    )


def test_finding_params_are_plain_and_never_end_in_id() -> None:
    with pytest.raises(ValueError):
        Phrase("x", "%(job_id)s", job_id="j1")
    with pytest.raises(TypeError):
        Phrase("x", "%(rows)s", rows=[1, 2])  # type: ignore[arg-type]
