"""render(): the three files, CSV/JSON round trips and escaping of untrusted text (no browser)."""

import csv
import io
import json

import pytest

from shared.reports import render, summarize
from shared.reports.render import FIELDS
from tests.reports.rows import AUDIT, HOSTILE_ANSWER, realistic_rows


@pytest.fixture(scope="module")
def rows():
    return realistic_rows()


@pytest.fixture(scope="module")
def files(rows):
    return render(AUDIT, rows, summarize(rows))


def test_files(files):
    assert set(files) == {"report.json", "items.csv", "report.html"}
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
    assert document["audit"] == AUDIT and document["items"] == rows
    assert document["summary"] == json.loads(json.dumps(summarize(rows)))


def test_html_escapes_untrusted_text(files):
    html = files["report.html"].decode("utf-8")
    assert "<script" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<img" not in html and "javascript:" not in html  # the hostile samples_url is not linked
    assert 'href="https://sg.example/v1/jobs/q000/samples"' in html
    assert "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")  # nothing external to load


def test_items_table_is_capped():
    rows = realistic_rows(n_items=40)  # 600 rows
    html = render(AUDIT, rows, summarize(rows))["report.html"].decode("utf-8")
    assert "Showing 500 of 600 rows" in html
