"""deploy/grafana/smoothguard.json: valid dashboard JSON whose queries name only metrics the code exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "smoothguard.json"
# Where the metric families are declared: the workers' registry and the API's /metrics.
EXPORTERS = (ROOT / "shared" / "observability" / "metrics.py", ROOT / "api" / "routes" / "ops.py")
SERIES_SUFFIXES = ("_bucket", "_count", "_sum", "_total")
# What the dashboard must show (issue 13): each of these families in some panel.
SHOWN = {
    "smoothguard_task_seconds",
    "smoothguard_rounds",
    "smoothguard_generations",
    "smoothguard_generated_tokens",
    "smoothguard_queue_wait_seconds",
    "smoothguard_queue_depth",
    "smoothguard_gpu_memory_bytes",
    "smoothguard_http_request_seconds",
}


def declared_families() -> set[str]:
    names = set()
    for path in EXPORTERS:
        names |= set(re.findall(r"\"(smoothguard_[a-z_]+)\"", path.read_text()))
    return names


def family(series: str) -> str:
    for suffix in SERIES_SUFFIXES:
        if series.endswith(suffix):
            return series.removesuffix(suffix)
    return series


def test_dashboard_queries_name_exported_metrics():
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"] and dashboard["panels"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    used = set()
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            used |= {family(s) for s in re.findall(r"\bsmoothguard_[a-z_]+", target["expr"])}
    declared = declared_families()
    assert used - declared == set(), f"the dashboard queries metrics no exporter declares: {used - declared}"
    assert used >= SHOWN, f"not shown: {SHOWN - used}"
