"""render(): the three files, CSV/JSON round trips and escaping of untrusted text (no browser)."""

import csv
import io
import json

import pytest

from shared.reports import render, summarize
from shared.reports.interactive import SCRIPT_HASH
from shared.reports.render import CSP, FIELDS, attack_text, verdict_line
from tests.reports.rows import AUDIT, HOSTILE_ANSWER, media_for, realistic_rows


@pytest.fixture(scope="module")
def rows():
    return realistic_rows()


@pytest.fixture(scope="module")
def files(rows):
    return render(AUDIT, rows, summarize(rows), media_for(rows))


def test_files(files):
    assert set(files) == {"report.json", "items.csv", "items.jsonl", "report.html"}
    assert all(isinstance(body, bytes) for body in files.values())


def test_csv_round_trip(files, rows):
    text = files["items.csv"].decode("utf-8")
    assert text.startswith(",".join(FIELDS) + "\r\n")
    parsed = list(csv.DictReader(io.StringIO(text, newline="")))
    assert len(parsed) == len(rows)
    assert parsed[1]["answer"] == HOSTILE_ANSWER and parsed[2]["prompt"] == rows[2]["prompt"]
    assert parsed[0]["sigma"] == "" and parsed[1]["sigma"] == "0.05"


def test_json_round_trip(files, rows):
    document = json.loads(files["report.json"])
    assert document["audit"] == AUDIT
    assert document["items"] == [{k: v for k, v in r.items() if k != "candidates"} for r in rows]
    assert document["summary"] == json.loads(json.dumps(summarize(rows)))


def test_jsonl_one_line_per_row(files, rows):
    lines = files["items.jsonl"].decode("utf-8").splitlines()
    assert len(lines) == len(rows) and [json.loads(line) for line in lines] == rows
    defended = json.loads(lines[1])
    assert len(defended["candidates"]) == 11 and sum(c["selected"] for c in defended["candidates"]) == 1


def test_html_escapes_untrusted_text(files):
    html = files["report.html"].decode("utf-8")
    assert html.count("<script") == 2  # the data block and the one hash-pinned script
    assert f"script-src '{SCRIPT_HASH}'" in CSP and CSP in html
    assert "<script>alert(1)" not in html and "\\u003cscript\\u003ealert(1)" in html
    assert "<img" not in html and "javascript:" not in html  # the hostile samples_url is not linked
    assert "/v1/" not in html  # no link a reader without a key could not open
    assert "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")  # nothing external to load


def test_no_row_cap():
    rows = realistic_rows(n_items=40)  # 600 rows, all in the data block
    html = render(AUDIT, rows, summarize(rows))["report.html"].decode("utf-8")
    assert "Every row (item × variant × σ): 600" in html and html.count('["q0') + html.count(',"q0') >= 40


def test_readable_settings_and_verdict(files):
    html = files["report.html"].decode("utf-8")
    assert "pgd: L2 ε = 0.25, 40 steps" in html and "step_size=" not in html
    assert "synthetic shapes set (seed 0, 8 images)" in html and "torch 2.5.1" in html
    assert "10 noisy + the clean input = 11 candidates per answer" in html
    assert attack_text({"name": "pgd", "norm": "linf", "eps": 16 / 255, "steps": 10, "targeted": False}) == (
        "pgd: L∞ ε = 0.06275 (16/255), 10 steps, untargeted"
    )
    assert "not met" not in html and "inconclusive" in html
    assert verdict_line({"attacks": [], "headline": []}).startswith("No attack")


def test_run_metadata_names_where_the_candidates_were_generated(files):
    html = files["report.html"].decode("utf-8")
    assert (
        "<dt>Generated on 1</dt><dd>cuda:0 NVIDIA H100 80GB HBM3 · bfloat16 · revision a272c74b6d2c8a2e4bd5c7d1c5e2f0a1b3c4d5e6"
        " · torch 2.5.1 · transformers 5.0.0 · gpu-worker-0 · 30 jobs</dd>" in html
    )
    assert "<dt>Generated on 2</dt><dd>cpu · float32 · torch 2.5.1 · transformers 5.0.0 · laptop · 1 job</dd>" in html


def test_renders_an_audit_without_attacks_or_scores():
    rows = [r for r in realistic_rows(n_items=4) if r["variant"] == "clean"]
    for r in rows:
        r["correct"], r["score"] = None, 0.5  # open items: a judge score, no right answer
    html = render(AUDIT, rows, summarize(rows))["report.html"].decode("utf-8")
    assert "<h1>No attack in this audit: robustness not judged</h1>" in html
    assert "clean judge score" in html and "Clean judge score: the judge" in html
