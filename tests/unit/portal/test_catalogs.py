"""The catalogs hold every word the pages and the findings use, in both languages.

Extraction is pybabel's own (``babel.cfg`` through babel's extraction API), so a
word missing here is a word ``make translations`` would add with an empty text.
"""

from __future__ import annotations

import ast
import io
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.mofile import read_mo, write_mo
from babel.messages.pofile import read_po
from flask import Flask, session

from datasets.health_manifest import HEALTH
from datasets.manifest import ColumnClass, Masking
from policies.decision import Finding
from policies.output_checks import RULE_ORDER
from policies.permissions import Role
from portal import i18n
from portal.i18n_extract import finding_messages
from sandbox.errors import PolicyRejected
from sandbox.jobs.planning import JobRequest, plan_job
from sandbox.models import JobStatus, ReviewKind
from tests.unit.policies.rule_examples import EXAMPLES

ROOT = Path(__file__).resolve().parents[3]
TRANSLATIONS = ROOT / "portal" / "translations"
# Babel reads zh_CN as zh_Hans_CN and looks for that folder (ckan/ckan#4413).
LOCALES = {"zh": "zh_Hans_CN", "en": "en"}
PLACEHOLDER = re.compile(r"%\((\w+)\)")

# Findings beyond the rule examples, to word every kind of phrase at least once.
MORE_JOBS = [
    ("masked", "sql", "SELECT COUNT(*) FROM visits; SELECT COUNT(*) FROM labs"),
    ("masked", "sql", "SELECT COUNT(*) FROM visits WHERE"),
    ("masked", "sql", "SELECT x.y.z, COUNT(*) FROM visits GROUP BY 1"),
    ("dp", "sql", "SELECT DISTINCT department FROM visits"),
    ("dp", "sql", "SELECT department, MAX(cost) FROM visits GROUP BY department"),
    ("masked", "python", "import os.path"),
    ("masked", "python", "from numpy import ctypeslib"),
    ("masked", "python", "import pandas as pd\npd.read_pickle('x')"),
    ("masked", "python", "import sandbox_job\nsandbox_job._secret"),
    ("masked", "python", "x = object()\ngetattr(x, '_private')"),
    ("masked", "python", "import pandas as pd\npd.DataFrame().query('__import__(1)')"),
    ("masked", "python", "import numpy as np\nnp.load('f', allow_pickle=True)"),
    ("masked", "python", "open = 1"),
    ("masked", "python", "from math import *"),
    ("masked", "python", "from . import x"),
    ("masked", "python", "import _thread"),
    ("masked", "python", "import requests_html"),
    ("masked", "python", "def f(x: 'eval(1)'): pass"),
    ("masked", "python", "x = '__class__'"),
    ("masked", "python", "f = (lambda: 1)\nf.__code__"),
    ("masked", "python", "import operator\noperator.attrgetter(name)"),
]


def _catalog(language: str) -> Catalog:
    path = TRANSLATIONS / LOCALES[language] / "LC_MESSAGES" / "messages.po"
    with path.open("rb") as handle:
        return read_po(handle)


def _extracted() -> dict[str, set[str]]:
    """Every msgid pybabel extracts, with the files that use it."""
    with (ROOT / "babel.cfg").open() as config:
        method_map, options_map = parse_mapping_cfg(config)
    found: dict[str, set[str]] = {}
    for filename, _, message, _, _ in extract_from_dir(str(ROOT), method_map, options_map):
        message_id = message if isinstance(message, str) else message[0]
        found.setdefault(message_id, set()).add(filename)
    return found


def _source_templates() -> dict[str, set[str]]:
    """Each finding message id written in policies/ and sandbox/, with its English templates."""
    templates: dict[str, set[str]] = {}
    for package in ("policies", "sandbox"):
        for path in sorted((ROOT / package).rglob("*.py")):
            for found in finding_messages(ast.parse(path.read_text(encoding="utf-8"))):
                templates.setdefault(found.message_id, set()).add(found.template)
    return templates


def _placeholders(text: str) -> set[str]:
    return set(PLACEHOLDER.findall(text))


class _AnyValue(dict[str, Any]):
    def __missing__(self, key: str) -> int:
        return 1


@pytest.fixture(scope="module")
def catalogs() -> dict[str, Catalog]:
    return {language: _catalog(language) for language in LOCALES}


@pytest.fixture(scope="module")
def extracted() -> dict[str, set[str]]:
    return _extracted()


@pytest.fixture(scope="module")
def portal_app() -> Flask:
    """Just Flask-Babel over the portal's catalogs: no sandbox, no database."""
    app = Flask("portal", root_path=str(ROOT / "portal"))
    app.config["SECRET_KEY"] = "test"
    i18n.init_app(app)
    return app


def _words(catalog: Catalog) -> dict[str, str]:
    return {str(m.id): str(m.string) for m in catalog if m.id}


def test_catalogs_hold_every_extracted_word_translated(
    catalogs: dict[str, Catalog], extracted: dict[str, set[str]]
) -> None:
    assert len(extracted) > 300, "extraction found too little: is babel.cfg right?"
    for language, catalog in catalogs.items():
        words = _words(catalog)
        missing = sorted(set(extracted) - set(words))
        assert not missing, f"missing from {LOCALES[language]}: {missing} (make translations)"
        empty = sorted(k for k in extracted if not words[k].strip())
        assert not empty, f"untranslated in {LOCALES[language]}: {empty}"
        fuzzy = sorted(str(m.id) for m in catalog if m.id and m.fuzzy)
        assert not fuzzy, f"fuzzy in {LOCALES[language]} (not compiled): {fuzzy}"
        stale = sorted(set(words) - set(extracted))
        assert not stale, f"no longer used, in {LOCALES[language]}: {stale} (make translations)"


def test_catalogs_chinese_is_chinese(catalogs: dict[str, Catalog]) -> None:
    han = re.compile(r"[\u4e00-\u9fff]")
    english, chinese = _words(catalogs["en"]), _words(catalogs["zh"])
    # Only words that are a symbol or a code in both languages may stay as they are.
    untranslated = [k for k, v in chinese.items() if not han.search(v) and v == english[k]]
    assert untranslated == ["job.delta"], untranslated


def test_catalogs_templates_fill_the_same_fields(catalogs: dict[str, Catalog]) -> None:
    english, chinese = _words(catalogs["en"]), _words(catalogs["zh"])
    for key, text in english.items():
        assert _placeholders(chinese[key]) == _placeholders(text), key
        for words in (text, chinese[key]):
            words % _AnyValue()  # every % is a field or %%: Jinja's _() always formats


def test_catalogs_compiled_files_are_current(catalogs: dict[str, Catalog]) -> None:
    for language, catalog in catalogs.items():
        compiled = TRANSLATIONS / LOCALES[language] / "LC_MESSAGES" / "messages.mo"
        with compiled.open("rb") as handle:
            shipped = _words(read_mo(handle))
        fresh = io.BytesIO()
        write_mo(fresh, catalog)
        fresh.seek(0)
        assert shipped == _words(read_mo(fresh)), f"{compiled} is stale: make translations"


def test_catalogs_cover_words_chosen_at_run_time(extracted: dict[str, set[str]]) -> None:
    chosen: dict[str, Any] = {
        "status": JobStatus,
        "role": Role,
        "class": ColumnClass,
        "masking": Masking,
        "review.kind": ReviewKind,
        "rule": RULE_ORDER,
    }
    for prefix, values in chosen.items():
        for value in values:
            word = getattr(value, "value", value)
            assert f"{prefix}.{word}" in i18n.RUNTIME_WORDS, (prefix, value)
    assert set(i18n.RUNTIME_WORDS) | set(i18n.STATUS_WORDS.values()) <= set(extracted)


def test_catalogs_english_findings_are_the_source_templates(
    catalogs: dict[str, Catalog], extracted: dict[str, set[str]]
) -> None:
    templates = _source_templates()
    assert "sql.too_long" in templates and "python.reason.unpickling" in templates
    english = _words(catalogs["en"])
    for message_id, written in templates.items():
        assert len(written) == 1, f"{message_id} has two English templates: {written}"
        assert english[message_id] == next(iter(written)), message_id
        assert message_id in extracted


def _worded(app: Flask, language: str, finding: dict[str, Any]) -> str:
    # One request per language: Flask-Babel keeps a request's locale once chosen.
    with app.test_request_context():
        session["lang"] = language
        return i18n.finding_message(finding)


def _findings(mode: str, language: str, code: str) -> list[dict[str, Any]]:
    try:
        plan_job(HEALTH, JobRequest(HEALTH.name, language, mode, code, epsilon=1.0))
    except PolicyRejected as rejection:
        return list(rejection.details["findings"])
    return []


def _emitted() -> Iterator[dict[str, Any]]:
    for example in EXAMPLES:
        yield from _findings(example.mode, example.language, example.rejected)
    for mode, language, code in MORE_JOBS:
        found = _findings(mode, language, code)
        assert found, code
        yield from found


def test_catalogs_word_every_finding_the_checks_emit(
    portal_app: Flask, catalogs: dict[str, Catalog]
) -> None:
    english, chinese = _words(catalogs["en"]), _words(catalogs["zh"])
    seen = set()
    for finding in _emitted():
        seen.add(finding["message_id"])
        assert finding["message_id"] in english and finding["message_id"] in chinese, finding
        assert _worded(portal_app, "en", finding) == finding["message"]
        worded = _worded(portal_app, "zh", finding)
        assert worded != finding["message"], f"not worded in Chinese: {finding}"
    assert {"python.in_evaluated", "python.import_denied.within", "sql.parse.near"} <= seen


def test_finding_message_reads_english_when_the_catalog_cannot_word_it(
    portal_app: Flask,
) -> None:
    unknown = Finding("x.new_rule", "Something new.").to_dict()
    stored_before_ids = {"rule": "column.forbidden", "message": "Old text."}
    short_of_params = Finding("column.forbidden", "Text.", params={}).to_dict()
    assert _worded(portal_app, "zh", unknown) == "Something new."
    assert _worded(portal_app, "zh", stored_before_ids) == "Old text."
    assert _worded(portal_app, "zh", short_of_params) == "Text."
    assert _worded(portal_app, "zh", Finding("sql.star", "* ...").to_dict()).startswith("*")
