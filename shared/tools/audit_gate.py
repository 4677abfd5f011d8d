"""CI gating on an audit: the goal judged per σ × attack — the report's own verdict, decided on the
95 % intervals (``shared.reports.summary.goal_verdict``) — one verdict for the audit, the exit
code, and JUnit XML with one test case per σ × attack.

The audit passes when every judged σ × attack is ``met``; ``inconclusive`` (too few items for the
intervals to decide) fails unless allowed. An audit with no attack to judge never passes: nothing
says its goal is met. Attacks the goal does not judge (L∞ beside L2 ones) are reported as skipped.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.reports import summary as goal

# the exit codes of `smoothguard audit submit|status` (2 — a usage or API error — is the CLI's)
EXIT_OK = 0  # the audit succeeded (and, with --fail-on-goal, met its goal at every σ × attack)
EXIT_AUDIT_FAILED = 1  # the audit failed or was cancelled
EXIT_GOAL = 3  # --fail-on-goal: the goal was missed, inconclusive, or could not be judged
EXIT_UNFINISHED = 4  # --fail-on-goal without --wait, or --timeout: the audit has not finished
PASSING = {"met"}


@dataclass(frozen=True)
class Case:
    """One σ × attack: ``verdict`` is met / missed / inconclusive / not judged / reported."""

    sigma: float
    attack: str
    verdict: str
    details: str

    @property
    def name(self) -> str:
        return f"{self.attack} at σ={self.sigma:g}"


def _pct(v: float | None, ci: list[float] | None = None) -> str:
    if v is None:
        return "–"
    return f"{100 * v:.1f}%" + (f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci else "")


def details(row: Mapping[str, Any], base: Mapping[str, Any], attack: str) -> str:
    """The three criteria with their numbers (and 95 % intervals where the summary has them)."""
    ci = lambda r, k: (r.get(f"{k}_ci") or {}).get(attack)  # noqa: E731
    undefended = base["asr"][attack]
    bound = lambda share: "–" if undefended is None else _pct(share * undefended)  # noqa: E731
    return (
        f"committed ASR {_pct(row['committed_asr'][attack], ci(row, 'committed_asr'))} "
        f"(goal ≤ ⅓ of the undefended ASR {_pct(undefended, ci(base, 'asr'))}: {bound(goal.GOAL_COMMITTED_SHARE)}); "
        f"ASR {_pct(row['asr'][attack], ci(row, 'asr'))} (goal ≤ ½: {bound(goal.GOAL_STRICT_SHARE)}); "
        f"clean accuracy {_pct(row['clean_accuracy'], row.get('clean_accuracy_ci'))} "
        f"(undefended {_pct(base['clean_accuracy'], base.get('clean_accuracy_ci'))}, at most 2 points lower)"
    )


def verdict(row: Mapping[str, Any], base: Mapping[str, Any], attack: str) -> str:
    """The report's verdict for one attack at the row's σ: on the intervals when the summary has
    them, else (an older summary) on the point estimates."""
    if "asr_ci" in row and hasattr(goal, "goal_verdict"):
        decided = goal.goal_verdict(row, base, [attack])
    else:
        decided = {True: "met", False: "missed", None: None}[goal.meets_goal(row, base, [attack])]
    return decided or "not judged"


def cases(summary: Mapping[str, Any]) -> list[Case]:
    """Every defended σ × attack of the audit, in the summary's order."""
    attacks = summary["attacks"]
    judged = set(summary.get("goal_attacks", attacks))
    base, *rows = summary["headline"]
    out = []
    for row in rows:
        for attack in attacks:
            if attack in judged:
                out.append(Case(row["sigma"], attack, verdict(row, base, attack), details(row, base, attack)))
            else:
                why = "outside the L2 threat model the goal judges: reported, not judged; " + details(row, base, attack)
                out.append(Case(row["sigma"], attack, "reported", why))
    return out


@dataclass(frozen=True)
class Gate:
    cases: list[Case]
    allow_inconclusive: bool = False

    @property
    def judged(self) -> list[Case]:
        return [c for c in self.cases if c.verdict != "reported"]

    def passes(self, case: Case) -> bool:
        return case.verdict in PASSING or (self.allow_inconclusive and case.verdict == "inconclusive")

    @property
    def passed(self) -> bool:
        return bool(self.judged) and all(self.passes(c) for c in self.judged)

    def line(self) -> str:
        """The verdict in one line: never "goal met" when nothing was judged."""
        if not self.judged:
            return "goal: NOT JUDGED — the audit ran no attack the goal judges"
        failing = [c for c in self.judged if not self.passes(c)]
        if not failing:
            soft = [c for c in self.judged if c.verdict == "inconclusive"]
            note = f" ({len(soft)} inconclusive, allowed)" if soft else ""
            return f"goal: MET at every σ × attack ({len(self.judged)} judged){note}"
        listed = ", ".join(f"{c.name} {c.verdict}" for c in failing)
        return f"goal: NOT MET — {len(failing)} of {len(self.judged)} σ × attack: {listed}"


def judge(summary: Mapping[str, Any], allow_inconclusive: bool = False) -> Gate:
    return Gate(cases(summary), allow_inconclusive)


def junit(audit: Mapping[str, Any], gate: Gate | None) -> ET.ElementTree:
    """JUnit XML: one test case per σ × attack (a failure when not met); a failed or cancelled audit
    is one errored case; an audit with nothing to judge one failed case."""
    suite = ET.Element("testsuite", name=f"smoothguard audit {audit['id']}")
    props = ET.SubElement(suite, "properties")
    for key in ("id", "model", "status"):
        ET.SubElement(props, "property", name=f"audit.{key}", value=str(audit.get(key)))
    if audit.get("links", {}).get("report_html"):
        ET.SubElement(props, "property", name="audit.report_html", value=audit["links"]["report_html"])
    if gate is None:
        case = ET.SubElement(suite, "testcase", classname="smoothguard.audit", name="audit")
        ET.SubElement(case, "error", message=f"audit {audit['status']}", type="AuditNotSucceeded").text = str(
            audit.get("error") or audit["status"]
        )
    elif not gate.judged:
        case = ET.SubElement(suite, "testcase", classname="smoothguard.audit", name="goal")
        ET.SubElement(case, "failure", message="not judged: the audit ran no attack the goal judges", type="NotJudged")
    if gate is not None:
        for c in gate.cases:
            _case(suite, c, gate)
    _count(suite, audit)
    root = ET.Element("testsuites", name="smoothguard audit")
    root.append(suite)
    for key in ("tests", "failures", "errors", "skipped", "time"):
        root.set(key, suite.get(key, "0"))
    ET.indent(root)
    return ET.ElementTree(root)


def _case(suite: ET.Element, c: Case, gate: Gate) -> None:
    """A met case passes; a failing one carries its numbers; reported or allowed-inconclusive: skipped."""
    case = ET.SubElement(suite, "testcase", classname="smoothguard.audit", name=c.name)
    if c.verdict == "reported" or (gate.passes(c) and c.verdict != "met"):
        note = c.details if c.verdict == "reported" else f"{c.verdict} (allowed): {c.details}"
        ET.SubElement(case, "skipped", message=note)
    elif not gate.passes(c):
        kind = "Goal" + c.verdict.title().replace(" ", "")
        ET.SubElement(case, "failure", message=f"goal {c.verdict} at σ={c.sigma:g}", type=kind).text = c.details
    ET.SubElement(case, "system-out").text = c.details


def _count(suite: ET.Element, audit: Mapping[str, Any]) -> None:
    cases = suite.findall("testcase")
    suite.set("tests", str(len(cases)))
    for kind, attr in (("failure", "failures"), ("error", "errors"), ("skipped", "skipped")):
        suite.set(attr, str(sum(c.find(kind) is not None for c in cases)))
    suite.set("time", f"{wall_s(audit):.1f}")


def wall_s(audit: Mapping[str, Any]) -> float:
    """The audit's wall time from its timestamps (ISO strings or datetimes); 0 when unknown."""
    from datetime import datetime

    started, finished = audit.get("started_at"), audit.get("finished_at")
    if not started or not finished:
        return 0.0
    parse = lambda t: t if isinstance(t, datetime) else datetime.fromisoformat(str(t))  # noqa: E731
    return max(0.0, (parse(finished) - parse(started)).total_seconds())


def write_junit(path: Path, audit: Mapping[str, Any], gate: Gate | None) -> Path:
    junit(audit, gate).write(path, encoding="utf-8", xml_declaration=True)
    return path
