"""The HTML report in headless Chromium: no console errors, no dialogs, nothing fetched, hostile text
inert; the drill-down opens with its images and candidates, the table sorts, filters and pages."""

import shutil
import time

import pytest
from playwright import sync_api  # the dev extra; the browser: Debian's, installed by `make install`

from shared.reports import render, summarize
from shared.reports.render import report_html
from tests.reports.rows import AUDIT, HOSTILE_ANSWER, many_rows, media_for, realistic_rows

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# docs/report.png and docs/report-drilldown.png (the README's) are copies of these two screenshots
SHOTS = ("report.png", "report-drilldown.png")


@pytest.fixture(scope="module")
def report_file(tmp_path_factory):
    rows = realistic_rows(n_items=12)  # 180 rows: two pages
    path = tmp_path_factory.mktemp("report") / "report.html"
    path.write_bytes(render(AUDIT, rows, summarize(rows), media_for(rows))["report.html"])
    return path


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


def open_report(browser, path, problems):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.on("console", lambda msg: problems.append(msg.text) if msg.type in ("error", "warning") else None)
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.on("dialog", lambda dialog: (problems.append(dialog.message), dialog.dismiss()))
    page.on("request", lambda request: problems.append(request.url) if request.url != path.as_uri() else None)
    page.goto(path.as_uri(), wait_until="load")
    return page


def first_column(page, n=5):
    return [page.locator("#items-body tr").nth(i).locator("td").first.inner_text() for i in range(n)]


def test_report_in_chromium(browser, report_file, tmp_path):
    problems: list[str] = []
    page = open_report(browser, report_file, problems)
    assert AUDIT["id"] in page.title() and page.locator("h1").inner_text().startswith("Goal")
    svgs = page.locator("svg.chart")
    assert svgs.count() >= 3
    assert all((svgs.nth(i).bounding_box() or {"width": 0})["width"] > 100 for i in range(svgs.count()))
    assert page.locator("#items-body tr").count() == 100 and "of 180" in page.inner_text("#items-count")
    page.click("#page-next")
    assert page.locator("#items-body tr").count() == 80

    page.fill("#f-text", "<script>")  # the hostile answer is found as text, not run
    assert page.locator("#items-body tr").count() == 1 and HOSTILE_ANSWER in page.inner_text("#items-body")
    page.fill("#f-text", "")

    page.locator("th button.sort", has_text="item").click()
    page.locator("th button.sort", has_text="item").click()  # descending
    assert first_column(page) == sorted(first_column(page), reverse=True) and first_column(page)[0] == "q011"

    page.select_option("#f-variant", "pgd")
    page.select_option("#f-sigma", "0.1")
    page.locator("#items-body button.open").first.click()
    drill = page.locator("tr.drill details[open]")
    assert drill.count() == 1
    images = drill.locator("img")
    assert images.count() == 3  # clean, attacked, perturbation
    assert all(images.nth(i).evaluate("img => img.complete && img.naturalWidth > 0") for i in range(3))
    assert drill.locator("table.candidates tbody tr").count() == 11 and "★ selected" in drill.inner_text()
    assert "95% bounds" in drill.inner_text()
    drill.screenshot(path=str(tmp_path / SHOTS[1]))
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(tmp_path / SHOTS[0]))
    page.close()
    assert all((tmp_path / name).read_bytes().startswith(b"\x89PNG") for name in SHOTS)
    assert problems == []


@pytest.mark.slow
def test_large_report_opens(browser, tmp_path):
    """5,000 items (75,000 rows, images for the first 20 items): a page of rows shows; sorting works."""
    rows = many_rows(5000)
    path = tmp_path / "report.html"
    path.write_text(report_html(AUDIT, rows, summarize(rows), media_for(rows[:300])), encoding="utf-8")
    problems: list[str] = []
    started = time.monotonic()
    page = open_report(browser, path, problems)
    page.wait_for_selector("#items-body tr")
    opened = time.monotonic() - started
    assert "of 75000" in page.inner_text("#items-count")
    page.locator("th button.sort", has_text="consensus").click()
    assert page.locator("#items-body tr").count() == 100
    print(f"\n5,000-item report: {path.stat().st_size / 1e6:.1f} MB, opened in {opened:.2f} s")
    page.close()
    assert problems == []
