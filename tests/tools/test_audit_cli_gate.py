"""CI gating and the audit command's output, pure: verdicts per σ × attack, the exit code, JUnit
XML, an audit with no attacks never "met", progress that suits a log file, a sane ETA, the
GitHub Actions example's commands parse."""

import io
import re
import shlex
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml
from smoothguard_client import Audit

from shared.reports.summary import summarize
from shared.tools import audit_gate
from shared.tools.audit_cli import Progress, eta_s, progress_line
from shared.tools.audit_tables import table
from shared.tools.cli import build_parser
from tests.reports.rows import make_row, realistic_rows

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 12, 2, 12, tzinfo=UTC)


def audit(status="running", done=0, total=10, fraction=0.0, started=T0, **extra):
    progress = {"done": done, "total": total, "attacked": done, "jobs_done": 0, "jobs_total": 0, "fraction": fraction}
    return Audit.model_validate(
        {"id": "00000000-0000-0000-0000-00000000000a", "status": status, "model": "m", "spec": {}}
        | {"progress": progress, "created_at": T0, "started_at": started}
        | extra
    )


def clean_only_rows():
    """An audit with ``--attacks none``: clean rows, undefended and one σ, all correct."""
    return [
        make_row(item, "clean", sigma, label="yes", correct=True, abstained=None if sigma is None else False)
        for item in "abc"
        for sigma in (None, 0.1)
    ]


def test_one_case_per_sigma_and_attack_and_the_verdict_is_the_reports():
    summary = summarize(realistic_rows())
    gate = audit_gate.judge(summary)
    assert [(c.sigma, c.attack) for c in gate.cases] == [(s, a) for s in summary["sigmas"] for a in summary["attacks"]]
    judged = {c.sigma: c.verdict for c in gate.judged}
    assert judged == {row["sigma"]: row["goal"] for row in summary["headline"][1:]}  # one judged attack here
    assert {c.verdict for c in gate.cases if c.attack not in summary["goal_attacks"]} == {"reported"}
    assert not gate.passed and gate.line().startswith("goal: NOT MET")
    assert "committed ASR" in gate.cases[0].details and "[" in gate.cases[0].details  # numbers with intervals


def test_junit_has_a_testcase_per_sigma_and_attack_failing_when_not_met(tmp_path):
    summary = summarize(realistic_rows())
    record = audit("succeeded", started=T0, finished_at=T0 + timedelta(seconds=90)).model_dump(mode="json")
    path = audit_gate.write_junit(tmp_path / "junit.xml", record, audit_gate.judge(summary))
    root = ET.parse(path).getroot()
    cases = root.findall("testsuite/testcase")
    assert len(cases) == len(summary["sigmas"]) * len(summary["attacks"])
    failed = [c.get("name") for c in cases if c.find("failure") is not None]
    skipped = [c.get("name") for c in cases if c.find("skipped") is not None]
    assert len(failed) == len(summary["sigmas"]) and all(n.startswith("pgd at σ=") for n in failed)
    assert all(n.startswith("eot at σ=") for n in skipped)
    suite = root.find("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("time")) == (str(len(cases)), str(len(failed)), "90.0")
    allowed = audit_gate.junit(record, audit_gate.judge(summary, allow_inconclusive=True)).getroot()
    assert allowed.get("failures") == "0" and audit_gate.judge(summary, allow_inconclusive=True).passed


def test_an_audit_with_no_attacks_is_never_goal_met():
    summary = summarize(clean_only_rows())
    assert summary["attacks"] == []
    gate = audit_gate.judge(summary)
    assert gate.cases == [] and not gate.passed and "NOT JUDGED" in gate.line()
    text = table(summary, "pixel")
    assert "met" not in text.replace("not judged", "") and "not judged" in text.splitlines()[-1]
    record = audit("succeeded").model_dump(mode="json")
    (case,) = audit_gate.junit(record, gate).getroot().findall("testsuite/testcase")
    assert case.find("failure").get("type") == "NotJudged"


def test_a_failed_audit_is_one_errored_case():
    record = audit("failed", error="worker lost").model_dump(mode="json")
    (case,) = audit_gate.junit(record, None).getroot().findall("testsuite/testcase")
    assert case.find("error").text == "worker lost"


class Log(io.StringIO):
    def __init__(self, tty):
        super().__init__()
        self.tty = tty

    def isatty(self):
        return self.tty


def test_progress_in_a_log_file_is_a_few_lines_and_in_a_terminal_one_redrawn_line():
    log, term = Log(False), Log(True)
    for progress in (Progress(log), Progress(term)):
        for k in range(500):  # 500 looks at an audit of 100 items
            progress.update(audit(done=k // 5, total=100, fraction=k / 500))
        progress.update(audit("succeeded", done=100, total=100, fraction=1.0))
        progress.close()
    lines = log.getvalue().splitlines()
    assert 10 <= len(lines) <= 13 and "\r" not in log.getvalue() and "items 100/100" in lines[-1]
    assert term.getvalue().count("\n") == 1 and term.getvalue().count("\r") == 501


def test_the_eta_waits_for_the_first_item_then_follows_the_items_pace():
    now = T0 + timedelta(minutes=6)
    assert eta_s(audit(done=0, fraction=0.01), now) is None  # an early one was 12 h for a 1 h audit
    assert "ETA after the first item" in progress_line(audit(done=0, fraction=0.01), now)
    assert eta_s(audit(done=1, total=10, fraction=0.1), now) == 54 * 60
    assert "ETA ~54 min" in progress_line(audit(done=1, total=10, fraction=0.1), now)
    assert "ETA" not in progress_line(audit("succeeded", done=10, total=10, fraction=1.0), now)


def test_the_github_actions_example_runs_commands_that_parse():
    workflow = yaml.safe_load((ROOT / "docs" / "github-actions.yml").read_text())
    script = "\n".join(step.get("run", "") for job in workflow["jobs"].values() for step in job["steps"])
    commands = [line for line in script.replace("\\\n", " ").splitlines() if line.strip().startswith("smoothguard ")]
    assert any("--fail-on-goal" in c and "--junit" in c for c in commands)
    for command in commands:
        plain = re.sub(r'"\$\(.*?\)"|\$\{?\w+\}?', "ID", re.sub(r"\s*\|.*$", "", command))  # no pipe, no $(…)
        build_parser().parse_args(shlex.split(plain)[1:])


def test_no_key_is_a_clear_message_not_an_illegal_header(monkeypatch, capsys):
    from shared.config import get_settings
    from shared.tools.cli import main

    monkeypatch.delenv("SMOOTHGUARD_API_KEY", raising=False)
    get_settings.cache_clear()
    try:
        code = main(["audit", "--url", "http://127.0.0.1:9", "status", "00000000-0000-0000-0000-000000000000"])
    finally:
        get_settings.cache_clear()
    err = capsys.readouterr().err
    assert code == 2 and "no API key: pass --key or set SMOOTHGUARD_API_KEY" in err and "Illegal" not in err
