"""The clinical risk management file (DCB0129) as data: the hazard log and its checks.

``docs/safety/hazard-log.json`` is the hazard log; ``docs/safety/hazard-log.schema.json``
its JSON Schema; ``docs/safety/hazard-log.md`` the human view generated from it, and
``docs/safety/safety-case.md`` holds generated sections (site policies, residual risks,
open hazards) between ``<!-- NAME:start -->`` / ``<!-- NAME:end -->`` markers. Why data:
a hazard log kept as a spreadsheet drifts from the code it is about; here CI fails when a
control names a test that does not exist, when a rule code of the card contract belongs
to no hazard, or when a rating does not follow from its severity and likelihood.

Test ids are found by reading the test files (``ast``) and the scenario files, never by
running pytest, so the check takes well under a second.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "CASE_FILE",
    "CONTROLLED_MAX_RATING",
    "LIKELIHOOD",
    "LOG_FILE",
    "MATRIX",
    "RATING_MEANING",
    "REPO_ROOT",
    "RULE_CODESYSTEM_FILE",
    "SCHEMA_FILE",
    "SEVERITY",
    "SafetyFile",
    "TESTED_CONTROL_TYPES",
    "TestIndex",
    "VIEW_FILE",
    "case_sections",
    "check_log",
    "collect_test_ids",
    "load_safety_file",
    "rating",
    "render_hazard_log",
]

REPO_ROOT = Path(__file__).resolve().parents[1]
LOG_FILE = "docs/safety/hazard-log.json"
SCHEMA_FILE = "docs/safety/hazard-log.schema.json"
VIEW_FILE = "docs/safety/hazard-log.md"
CASE_FILE = "docs/safety/safety-case.md"
RULE_CODESYSTEM_FILE = "fhir_profiles/CodeSystem-sact-cds-rule.json"

#: DCB0129 severity (consequence) categories, 1..5.
SEVERITY = ("Minor", "Significant", "Considerable", "Major", "Catastrophic")
#: DCB0129 likelihood categories, 1..5.
LIKELIHOOD = ("Very low", "Low", "Medium", "High", "Very high")

#: The DCB0129 clinical risk matrix: MATRIX[likelihood - 1][severity - 1] -> rating 1..5.
#: As published with the DCB0129 implementation guidance (reproduced in NHS England's
#: UK Core hazard log, "Risk Matrix"); it is not severity × likelihood arithmetic.
MATRIX: tuple[tuple[int, ...], ...] = (
    (1, 1, 2, 2, 3),  # very low
    (1, 2, 2, 3, 4),  # low
    (2, 2, 3, 3, 4),  # medium
    (2, 3, 3, 4, 5),  # high
    (3, 4, 4, 5, 5),  # very high
)

RATING_MEANING = {
    1: "Acceptable, no further action required.",
    2: "Acceptable where the cost of further reduction outweighs the benefits gained.",
    3: "Undesirable: eliminate or control to reduce it; acceptable only when further reduction is impractical.",
    4: "Mandatory elimination or control to reduce the risk to an acceptable level.",
    5: "Unacceptable.",
}

#: Control types whose evidence must be a test (an "information" or "process" control may be
#: evidenced by a document or by the deploying organisation, and may name no test).
TESTED_CONTROL_TYPES = frozenset({"design", "test"})
#: Highest residual rating a hazard may have and still be "controlled".
CONTROLLED_MAX_RATING = 3


def rating(severity: int, likelihood: int) -> int:
    """The DCB0129 risk rating of a severity and a likelihood (each 1..5)."""
    return MATRIX[likelihood - 1][severity - 1]


# ------------------------------------------------------------------ test ids


@dataclass
class TestIndex:
    """What pytest would collect, read statically: test functions by file and scenarios."""

    __test__ = False  # not a pytest class, whatever its name

    functions: dict[str, set[str]] = field(default_factory=dict)
    """``tests/test_x.py`` -> {``test_y``, ``TestC::test_y``}"""
    parametrized: dict[str, set[str]] = field(default_factory=dict)
    """the subset of ``functions`` decorated with ``pytest.mark.parametrize``"""
    scenarios: dict[str, str | None] = field(default_factory=dict)
    """``tests/scenarios/name.json`` -> its title (None: not a valid corpus scenario)"""

    def problem(self, test_id: str) -> str | None:
        """Why ``test_id`` is not a test this suite holds (None when it is)."""
        path, sep, rest = test_id.partition("::")
        if path.endswith(".json"):
            if path not in self.scenarios:
                return f"{test_id}: no scenario file {path}"
            title = self.scenarios[path]
            if title is None:
                return f"{test_id}: {path} is not a corpus scenario with expectations"
            if sep and rest != title:
                return f"{test_id}: the scenario's title is {title!r}"
            return None
        if not sep:
            return f"{test_id}: not a test id (tests/test_x.py::test_y)"
        if path not in self.functions:
            return f"{test_id}: no test file {path}"
        name, bracket, _ = rest.partition("[")
        if name not in self.functions[path]:
            return f"{test_id}: {path} has no test {name}"
        if bracket and name not in self.parametrized.get(path, set()):
            return f"{test_id}: {name} is not parametrized"
        return None


def _is_parametrized(node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    return any("parametrize" in ast.unparse(d) for d in node.decorator_list)


def collect_test_ids(root: Path) -> TestIndex:
    """Every test function under ``root/tests`` (by ``ast``) and every corpus scenario."""
    index = TestIndex()
    tests = root / "tests"
    for path in sorted(tests.rglob("test_*.py")):
        rel = path.relative_to(root).as_posix()
        names: set[str] = set()
        param: set[str] = set()
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except SyntaxError:
            continue
        for node in tree.body:
            members: list[tuple[str, ast.AST]] = []
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test"):
                members.append((node.name, node))
            elif isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
                members += [(f"{node.name}::{m.name}", m) for m in node.body
                            if isinstance(m, (ast.FunctionDef, ast.AsyncFunctionDef)) and m.name.startswith("test")]
            for name, fn in members:
                names.add(name)
                if _is_parametrized(fn):  # type: ignore[arg-type]
                    param.add(name)
        index.functions[rel] = names
        index.parametrized[rel] = param
    scenarios = tests / "scenarios"
    for path in sorted(scenarios.glob("*.json")) if scenarios.is_dir() else ():
        if path.name.startswith(("_", ".")):
            continue
        rel = path.relative_to(root).as_posix()
        try:
            header = json.loads(path.read_text(encoding="utf-8")).get("scenario") or {}
        except (ValueError, AttributeError):
            header = {}
        title = header.get("title") if isinstance(header, dict) else None
        index.scenarios[rel] = title if isinstance(title, str) and header.get("expect") else None
    return index


# ------------------------------------------------------------------ the file


@dataclass(frozen=True)
class SafetyFile:
    """The inputs of the check, read from one checkout (``root``)."""

    root: Path
    log: Any
    schema: Mapping[str, Any]
    rule_codes: tuple[str, ...]
    tests: TestIndex


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{path} does not exist") from None
    except ValueError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from None


def load_safety_file(root: Path = REPO_ROOT) -> SafetyFile:
    """Read the hazard log, its schema, the rule codes and the test ids of ``root``
    (ValueError naming the file when one cannot be read)."""
    codesystem = _read_json(root / RULE_CODESYSTEM_FILE)
    codes = tuple(c["code"] for c in codesystem.get("concept") or () if isinstance(c, dict) and "code" in c)
    return SafetyFile(root, _read_json(root / LOG_FILE), _read_json(root / SCHEMA_FILE), codes,
                      collect_test_ids(root))


def _schema_problems(log: Any, schema: Mapping[str, Any]) -> list[str]:
    from jsonschema import Draft202012Validator

    validator = Draft202012Validator(schema)
    out = []
    for error in sorted(validator.iter_errors(log), key=lambda e: list(e.absolute_path)):
        where = "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
        out.append(f"{LOG_FILE} at {where}: {error.message}")
    return out


def check_log(sf: SafetyFile) -> list[str]:
    """Every problem of the hazard log: schema, ids, ratings, status, tests, rule codes."""
    problems = _schema_problems(sf.log, sf.schema)
    if problems:
        return problems  # the checks below rely on the shape
    hazards = sf.log["hazards"]
    seen: set[str] = set()
    for n, hazard in enumerate(hazards, 1):
        hid = hazard["id"]
        expected = f"HAZ-{n:03d}"
        if hid != expected:
            problems.append(f"{hid}: hazard ids are stable and in order; expected {expected} here "
                            "(never renumber: a withdrawn hazard stays, with status 'withdrawn')")
        if hid in seen:
            problems.append(f"{hid}: listed twice")
        seen.add(hid)
        for which in ("initialRisk", "residualRisk"):
            risk = hazard[which]
            want = rating(risk["severity"], risk["likelihood"])
            if risk["rating"] != want:
                problems.append(f"{hid} {which}: rating {risk['rating']} does not follow from severity "
                                f"{risk['severity']} and likelihood {risk['likelihood']} (the matrix gives {want})")
        if hazard["residualRisk"]["rating"] > hazard["initialRisk"]["rating"]:
            problems.append(f"{hid}: the residual risk is higher than the initial risk")
        for c, control in enumerate(hazard["controls"], 1):
            for test_id in control["verifiedBy"]:
                why = sf.tests.problem(test_id)
                if why:
                    problems.append(f"{hid} control {c}: {why}")
        unverified = [c for c, control in enumerate(hazard["controls"], 1)
                      if control["type"] in TESTED_CONTROL_TYPES and not control["verifiedBy"]]
        if hazard["status"] == "controlled":
            if unverified:
                problems.append(f"{hid}: status 'controlled' but design/test control(s) "
                                f"{', '.join(map(str, unverified))} name no test that verifies them "
                                "(set status 'open' until they do)")
            if hazard["residualRisk"]["rating"] > CONTROLLED_MAX_RATING:
                problems.append(f"{hid}: status 'controlled' with a residual rating above "
                                f"{CONTROLLED_MAX_RATING} (unacceptable: it stays 'open')")
        for code in hazard["rules"]:
            if code not in sf.rule_codes:
                problems.append(f"{hid}: rule code {code!r} is not in {RULE_CODESYSTEM_FILE}")
    covered = {code for hazard in hazards if hazard["status"] != "withdrawn" for code in hazard["rules"]}
    for code in sf.rule_codes:
        if code not in covered:
            problems.append(f"rule code {code!r} ({RULE_CODESYSTEM_FILE}) belongs to no hazard")
    return problems


# ------------------------------------------------------------------ the views


def _md(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _risk(risk: Mapping[str, Any]) -> str:
    return (f"**{risk['rating']}** ({SEVERITY[risk['severity'] - 1].lower()} × "
            f"{LIKELIHOOD[risk['likelihood'] - 1].lower()})")


def _matrix_markdown() -> list[str]:
    lines = ["| likelihood ↓ / severity → | " + " | ".join(f"{n} {s}" for n, s in enumerate(SEVERITY, 1)) + " |",
             "|---|" + "---|" * len(SEVERITY)]
    for likelihood in range(len(LIKELIHOOD), 0, -1):
        cells = " | ".join(str(rating(s, likelihood)) for s in range(1, len(SEVERITY) + 1))
        lines.append(f"| {likelihood} {LIKELIHOOD[likelihood - 1]} | {cells} |")
    return lines


def _test_link(test_id: str) -> str:
    path = test_id.partition("::")[0]
    return f"[`{test_id}`](../../{path})"


def render_hazard_log(log: Mapping[str, Any], rule_codes: Iterable[str]) -> str:
    """``docs/safety/hazard-log.md``: the matrix, a summary table, every hazard in full and
    an index of rule codes to hazards."""
    hazards = log["hazards"]
    out = [
        "# Hazard log (DCB0129)",
        "",
        f"<!-- Generated by `cds-service safety` from {LOG_FILE}. Do not edit by hand: edit the JSON and run "
        "`cds-service safety`; CI runs `cds-service safety --check`. -->",
        "",
        f"The hazard log of the clinical risk management file of **sact-cds**. The data is `{LOG_FILE}` "
        f"(JSON Schema `{SCHEMA_FILE}`); this page is generated from it. The safety argument built on it is "
        "[safety-case.md](safety-case.md).",
        "",
        "## How a risk is rated",
        "",
        "Each hazard is rated twice: **initial** (as if the system had none of the controls listed) and "
        "**residual** (with the controls that are in place *and verified today*; a control that is planned "
        "or not yet verified by a test does not lower the residual rating). A rating follows from the "
        "hazard's **severity** (the worst credible harm) and its **likelihood** (that the harm follows) "
        "through the DCB0129 clinical risk matrix below. The rating is read from the matrix, not computed "
        "as a product: *major × low* is 3, *considerable × medium* is 3, *catastrophic × very low* is 3.",
        "",
        "Severity (DCB0129): 1 **minor** (minor injury, recovery expected in the short term; inconvenience), "
        "2 **significant** (minor injury not expected to recover in the short term; minor injuries to "
        "several patients), 3 **considerable** (severe injury or incapacity, recovery expected in the short "
        "term), 4 **major** (death or permanent incapacity of one patient; severe injury of several), "
        "5 **catastrophic** (death or permanent incapacity of several patients, e.g. an error in knowledge "
        "that every evaluation uses).",
        "",
        "Likelihood (DCB0129): 1 **very low** (negligible or nearly negligible possibility), 2 **low** "
        "(could occur, but in the great majority of occasions will not), 3 **medium** (possible), 4 **high** "
        "(not certain but very possible; expected in the majority of cases), 5 **very high** (certain or "
        "almost certain).",
        "",
        *_matrix_markdown(),
        "",
        "| rating | meaning |",
        "|---|---|",
        *(f"| {r} | {RATING_MEANING[r]} |" for r in sorted(RATING_MEANING, reverse=True)),
        "",
        "Status: **open** = a control is missing or not yet verified by a test, or the residual risk is not "
        "acceptable; **controlled** = every design and test control is verified by the tests named and the "
        f"residual rating is at most {CONTROLLED_MAX_RATING} (a rating of 3 still needs the clinical safety "
        "officer's acceptance that further reduction is impractical); **withdrawn** = no longer applies (kept, "
        "never renumbered). No hazard is *closed*: closing needs the clinical safety officer's sign-off "
        "([safety-case.md](safety-case.md)).",
        "",
        "Control types: **design** (the software prevents or reveals it), **test** (a test would catch a "
        "regression), **information** (the card, README or docs tell the user), **process** (the deploying "
        "organisation does it, DCB0160). `cds-service safety --check` fails if a test named under "
        "*verified by* does not exist, if a rule code of the card contract belongs to no hazard, or if a "
        "rating does not follow from the matrix.",
        "",
        "## Summary",
        "",
        f"{len(hazards)} hazards; "
        + ", ".join(f"{sum(h['status'] == s for h in hazards)} {s}" for s in ("open", "controlled", "withdrawn")
                    if any(h["status"] == s for h in hazards))
        + ".",
        "",
        "| id | hazard | initial | residual | status | rules |",
        "|---|---|---|---|---|---|",
    ]
    for h in hazards:
        rules = ", ".join(f"`{r}`" for r in h["rules"]) or "–"
        out.append(f"| [{h['id']}](#{h['id'].lower()}) | {_md(h['title'])} | {h['initialRisk']['rating']} | "
                   f"{h['residualRisk']['rating']} | {h['status']} | {rules} |")
    out += ["", "## Hazards", ""]
    for h in hazards:
        out += [f"### {h['id']}", "", f"**{_md(h['title'])}** — status **{h['status']}**", "",
                f"- **Cause:** {_md(h['cause'])}",
                f"- **Effect:** {_md(h['effect'])}",
                f"- **Harm:** {_md(h['harm'])}",
                f"- **Initial risk:** {_risk(h['initialRisk'])}"
                + (f". {_md(h['initialRisk']['rationale'])}" if h["initialRisk"].get("rationale") else ""),
                f"- **Residual risk:** {_risk(h['residualRisk'])}"
                + (f". {_md(h['residualRisk']['rationale'])}" if h["residualRisk"].get("rationale") else ""),
                f"- **Rules:** {', '.join(f'`{r}`' for r in h['rules']) or 'none (a property of the service)'}",
                "", "| # | control | type | verified by |", "|---|---|---|---|"]
        for n, c in enumerate(h["controls"], 1):
            if c["verifiedBy"]:
                verified = "<br>".join(_test_link(t) for t in c["verifiedBy"])
            elif c["type"] in TESTED_CONTROL_TYPES:
                verified = "**not yet verified by a test**"
            else:
                verified = "review (no automated test)"
            out.append(f"| {n} | {_md(c['description'])} | {c['type']} | {verified} |")
        out.append("")
    out += ["## Rule codes → hazards", "",
            f"Every code of the rule-topic CodeSystem (`{RULE_CODESYSTEM_FILE}`) belongs to at least one hazard.",
            "", "| rule code | hazards |", "|---|---|"]
    for code in rule_codes:
        ids = [h["id"] for h in hazards if code in h["rules"]]
        out.append(f"| `{code}` | {', '.join(f'[{i}](#{i.lower()})' for i in ids) or '**none**'} |")
    return "\n".join(out) + "\n"


def _residual_markdown(log: Mapping[str, Any]) -> str:
    rows = ["| hazard | residual | status | what remains |", "|---|---|---|---|"]
    for h in sorted(log["hazards"], key=lambda h: (-h["residualRisk"]["rating"], h["id"])):
        if h["status"] == "withdrawn":
            continue
        remains = h["residualRisk"].get("rationale") or ""
        rows.append(f"| [{h['id']}](hazard-log.md#{h['id'].lower()}) {_md(h['title'])} | "
                    f"{_risk(h['residualRisk'])} | {h['status']} | {_md(remains)} |")
    return "\n".join(rows)


def _open_markdown(log: Mapping[str, Any]) -> str:
    rows = []
    for h in log["hazards"]:
        if h["status"] != "open":
            continue
        missing = [c["description"] for c in h["controls"]
                   if c["type"] in TESTED_CONTROL_TYPES and not c["verifiedBy"]]
        why = "; ".join(_md(m).rstrip(".") for m in missing) or _md(h["residualRisk"].get("rationale", ""))
        rows.append(f"- [{h['id']}](hazard-log.md#{h['id'].lower()}) {_md(h['title'])}: {why}")
    return "\n".join(rows) or "- none"


def case_sections(log: Mapping[str, Any]) -> dict[str, str]:
    """The generated sections of ``safety-case.md`` that come from the hazard log, by marker
    name (the site-policy table comes from ``SitePolicy``, as in the README)."""
    return {"residual-risks": _residual_markdown(log), "open-hazards": _open_markdown(log)}
