"""Schemathesis over the whole API, as ``schemathesis run`` does it (explicit examples, coverage of
boundary and invalid values, fuzzing, stateful sequences along the document's links), against the
app on the real stack, with its default checks: no 500, statuses, content types, headers and bodies
as the OpenAPI document says, invalid data refused, valid data accepted, authentication enforced,
undeclared methods answered 405 with the right ``Allow``. Bounded: a few examples per operation,
deterministic (the same cases every run)."""

import pytest
import schemathesis
from schemathesis.config import SchemathesisConfig
from schemathesis.engine import Status, events, from_schema

from api.main import create_app

ADMIN_TOKEN = "admin-token-for-schemathesis"
# Operations whose valid input is more than a JSON Schema can say: uploaded bytes that must be an
# image, audio or archive, a model or archive the deployment must know, a webhook host that must be
# public, and the list cursors, opaque tokens only the API makes. Schema-valid data they refuse is
# a 422 with the reason (every other check, and this one elsewhere, stays as schemathesis has it).
CONTENT_CHECKED = [
    "submit_job",
    "upload_media",
    "upload_dataset",
    "submit_audit",
    "submit_robust_model",
    "create_webhook_endpoint",
    "list_jobs",
    "list_audits",
    "list_datasets",
    "list_robust_models",
]


def config(api_key: str) -> SchemathesisConfig:
    return SchemathesisConfig.from_dict(
        {
            "headers": {"Authorization": f"Bearer {api_key}"},
            "generation": {
                "max-examples": 10,
                "deterministic": True,
                "no-shrink": True,
            },  # a failure: reported as found
            "operations": [
                {
                    "include-operation-id": CONTENT_CHECKED,
                    "checks": {
                        "positive_data_acceptance": {"expected-statuses": ["2xx", "401", "404", "409", "422", "429"]}
                    },
                },
                {"include-path-regex": "^/v1/admin", "headers": {"Authorization": f"Bearer {ADMIN_TOKEN}"}},
            ],
        }
    )


def failures(event: events.EngineEvent) -> list[str]:
    """What one engine event reports wrong (nothing for a success)."""
    if isinstance(event, events.ScenarioFinished) and event.status in (Status.FAILURE, Status.ERROR):
        found = [
            f"{event.recorder.label} [{event.phase.value}]: {check.failure_info.failure.title}\n"
            f"{check.failure_info.code_sample}"
            for checks in event.recorder.checks.values()
            for check in checks
            if check.failure_info is not None
        ]
        return found or [f"{event.recorder.label} [{event.phase.value}]: {event.status.value}"]
    if isinstance(event, events.NonFatalError | events.FatalError):
        return [f"{getattr(event, 'label', 'engine')}: {getattr(event, 'info', getattr(event, 'exception', ''))}"]
    return []


@pytest.mark.slow
def test_schemathesis_finds_no_failure(settings, keys):
    # no rate limits (the auth checks send many bad keys), an admin token (the admin routes exist)
    open_settings = {"rate_limit": "", "rate_limit_unauthenticated": "", "admin_token": ADMIN_TOKEN}
    app = create_app(settings.model_copy(update=open_settings))
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=config(keys["alpha"]))
    found = [f for event in from_schema(schema).execute() for f in failures(event)]
    assert not found, "\n\n".join(dict.fromkeys(found))
