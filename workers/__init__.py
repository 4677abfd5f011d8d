"""Celery workers (gpu, cpu, webhooks). Arrive with the service milestone (issue 3)."""
