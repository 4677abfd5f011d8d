"""The HTML report in headless Chromium: no console errors, no dialogs, plots present, hostile text inert."""

import shutil

import pytest
from playwright import sync_api  # the dev extra; the browser: Debian's, installed by `make install`

from shared.reports import render, summarize
from tests.reports.rows import AUDIT, HOSTILE_ANSWER, realistic_rows

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


@pytest.fixture(scope="module")
def report_file(tmp_path_factory):
    rows = realistic_rows()
    path = tmp_path_factory.mktemp("report") / "report.html"
    path.write_bytes(render(AUDIT, rows, summarize(rows))["report.html"])
    return path


def test_report_in_chromium(report_file):
    errors, dialogs, requests = [], [], []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
            page.on("request", lambda request: requests.append(request.url))
            page.goto(report_file.as_uri(), wait_until="load")
            assert AUDIT["id"] in page.title()
            svgs = page.locator("svg.chart")
            assert svgs.count() >= 3
            assert all((svgs.nth(i).bounding_box() or {"width": 0})["width"] > 100 for i in range(svgs.count()))
            assert HOSTILE_ANSWER in page.inner_text("body")
            assert page.locator("script").count() == 0 and page.locator("img").count() == 0
        finally:
            browser.close()
    assert errors == [] and dialogs == []
    assert requests == [report_file.as_uri()]  # self-contained: nothing else is fetched
