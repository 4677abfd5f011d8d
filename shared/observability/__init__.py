"""Observability: structured logs with the job's ids (``logs``), per-worker Prometheus metrics
(``metrics``) and OpenTelemetry traces from the API request to the webhook attempt (``tracing``).
Each is set up once per process, from ``Settings``, by the API's ``create_app`` and the worker's
Celery signals (``workers/celery_app.py``); none imports Celery or torch."""
