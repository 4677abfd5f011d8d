"""Audit reports: tidy rows → summary dict → report.json, items.csv, report.html (pure library)."""

from shared.reports.render import render
from shared.reports.summary import summarize

__all__ = ["render", "summarize"]
