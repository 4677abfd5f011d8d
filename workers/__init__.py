"""Celery only: the app and its tasks (gpu, cpu, audits, webhooks), each a line that calls a domain step."""
