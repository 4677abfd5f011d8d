"""compare(): two audits' rates σ by σ, clear changes on non-overlapping intervals; the text and HTML."""

from shared.reports import summarize
from shared.reports.compare import compare, compare_text
from shared.reports.render import comparison_page, render
from tests.reports.rows import AUDIT, realistic_rows


def test_compare_two_audits():
    before_rows, after_rows = realistic_rows(n_items=8), realistic_rows(n_items=40, seed=3)
    for row in after_rows:  # the later audit: the attack never succeeds against the defense
        if row["sigma"] is not None and row["variant"] != "clean":
            row["attack_success"] = False
    before, after = summarize(before_rows), summarize(after_rows)
    diff = compare(before, after)
    assert [level["label"] for level in diff["levels"]] == ["undefended", "0.05", "0.1", "0.15", "0.2"]
    rate = diff["levels"][1]["rates"]["ASR pgd"]
    assert rate["after"] == 0.0 and rate["change"] == -rate["before"]
    assert diff["levels"][0]["rates"]["ASR pgd"]["clear"] is None  # same undefended behaviour
    text = compare_text(diff, "A", "B")
    assert "before: A" in text and "ASR pgd, not abstained" in text and " pt" in text
    page = comparison_page({"id": "A", "summary": before}, {"id": "B", "summary": after})
    assert "<script" not in page and "Compared with audit A" in page
    html = render(AUDIT, after_rows, after, baseline={"id": "A", "summary": before})["report.html"].decode()
    assert "Compared with audit A" in html


def test_compare_notes_what_only_one_has():
    rows = realistic_rows(n_items=4)
    fewer = [r for r in rows if r["sigma"] in (None, 0.05) and r["variant"] != "eot"]
    diff = compare(summarize(rows), summarize(fewer))
    assert diff["only_before"] == ["0.1", "0.15", "0.2"] and diff["attacks_only_before"] == ["eot"]
    assert "attacks only before: eot" in compare_text(diff, "A", "B")


def test_cli_compare_prints_and_writes_the_page(tmp_path, capsys):
    from argparse import Namespace
    from types import SimpleNamespace

    from shared.tools.audit_cli import compare_audits

    rows = realistic_rows(n_items=4)
    audits = {"A": summarize(rows), "B": summarize(rows), "C": None}
    get = lambda i: SimpleNamespace(id=i, status="running" if audits[i] is None else "succeeded", summary=audits[i])  # noqa: E731
    sg = SimpleNamespace(audits=SimpleNamespace(get=get))
    out = tmp_path / "diff.html"
    assert compare_audits(sg, Namespace(before="A", after="B", out=out)) == 0
    assert "before: A" in capsys.readouterr().out and "Compared with audit A" in out.read_text()
    assert compare_audits(sg, Namespace(before="A", after="C", out=None)) != 0
    assert "audit C has no report" in capsys.readouterr().err
