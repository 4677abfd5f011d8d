"""HTTP API (FastAPI). Arrives with the service milestone (issue 3); see ../shared/DESIGN.md §3."""
