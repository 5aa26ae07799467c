"""Every piece of honest analysis code the project documents passes the Python checker:
the README's and docs' Python jobs and submissions (fenced ```python blocks and the jobs in
their JSON bodies), the helper's own docstring, the rules page's accepted examples, the
contest's baselines and the benchmarks' jobs. A guard rail that refused them would teach
analysts that the documented way is wrong."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

from policies.python_check import check_python, check_submission
from tests.unit.policies.rule_examples import EXAMPLES

ROOT = Path(__file__).resolve().parents[3]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
# Python blocks that import the project's own packages run beside it, not in a runner:
# an organizer's metric module, the API client. Every other block is analysts' code.
NOT_JOBS = re.compile(r"^(from|import) (sandbox|portal|policies|runners|datasets)\b", re.MULTILINE)
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
JSON_CODE = re.compile(r'"code":\s*("(?:[^"\\]|\\.)*")')


def _is_submission(code: str) -> bool:
    return bool(re.search(r"^def fit\(", code, re.MULTILINE))


def documented_examples() -> list[tuple[str, str]]:
    """(where, code) of every documented piece of honest analysis code."""
    examples = _documents_examples()
    harness = ROOT / "runners" / "harness" / "sandbox_job.py"
    docstring = ast.get_docstring(ast.parse(harness.read_text(encoding="utf-8"))) or ""
    block = docstring.partition("::\n\n")[2].partition("\n\n")[0]
    examples.append(("runners/harness/sandbox_job.py docstring", _dedent(block)))
    examples += [
        (f"rule_examples {e.rule}", e.accepted) for e in EXAMPLES if e.language == "python"
    ]
    for baseline in sorted((ROOT / "sandbox" / "contest" / "baselines").glob("*.py")):
        examples.append((baseline.relative_to(ROOT).as_posix(), baseline.read_text("utf-8")))
    for bench in sorted((ROOT / "bench").glob("*.py")):
        for node in ast.walk(ast.parse(bench.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and str(node.value).startswith("import sandbox_job"):
                where = f"{bench.relative_to(ROOT).as_posix()} line {node.lineno}"
                examples.append((where, str(node.value)))
    return examples


def _documents_examples() -> list[tuple[str, str]]:
    """The README's and docs' Python blocks that are jobs, and jobs in their JSON bodies."""
    examples: list[tuple[str, str]] = []
    for document in DOCUMENTS:
        name = document.relative_to(ROOT).as_posix()
        for number, fence in enumerate(FENCE.finditer(document.read_text(encoding="utf-8"))):
            language, body = fence.group(1), fence.group(2)
            if language == "python" and not NOT_JOBS.search(body):
                examples.append((f"{name} block {number}", body))
            for literal in JSON_CODE.findall(body):
                code = json.loads(literal, strict=False)  # shell quoting keeps newlines
                if "sandbox_job" in code:
                    examples.append((f"{name} block {number} (JSON)", code))
    return examples


def _dedent(block: str) -> str:
    lines = block.splitlines()
    indent = min((len(line) - len(line.lstrip()) for line in lines if line.strip()), default=0)
    return "\n".join(line[indent:] for line in lines) + "\n"


EXAMPLES_DOCUMENTED = documented_examples()


def test_documented_examples_are_found_in_every_source() -> None:
    sources = {where.split(" ")[0] for where, _ in EXAMPLES_DOCUMENTED}

    assert {
        "README.md",
        "docs/contest.md",
        "docs/disclosure-control.md",
        "runners/harness/sandbox_job.py",
        "rule_examples",
        "sandbox/contest/baselines/readmission.py",
        "bench/job_latency.py",
        "bench/throughput.py",
    } <= sources
    assert len(EXAMPLES_DOCUMENTED) >= 15


@pytest.mark.parametrize(("where", "code"), EXAMPLES_DOCUMENTED, ids=lambda v: str(v)[:60])
def test_documented_example_passes_the_checker(where: str, code: str) -> None:
    decision = check_submission(code) if _is_submission(code) else check_python(code)

    assert decision.allowed, (where, [f.to_dict() for f in decision.findings])
