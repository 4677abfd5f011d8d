"""Request and response bodies, the response headers they come with, and the webhook payloads
(``shared.webhooks.delivery``) documented in the OpenAPI ``webhooks`` section."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.audits.spec import AuditSpec, DatasetFormat
from shared.jobs.options import SingleDefenseOptions
from shared.robust_models.spec import RobustifySpec
from shared.smoothing.types import Consensus, ImageNoiseSpace, RefusalVote, SmoothConfig, Timings

JobStatus = Literal["queued", "running", "succeeded", "abstained", "failed", "cancelled"]
AuditStatus = Literal["queued", "running", "reporting", "succeeded", "failed", "cancelled"]


class ProblemError(BaseModel):
    location: str = Field(description="where, dotted: query.limit, body.defense.sigmas.0")
    detail: str


class Problem(BaseModel):
    """RFC 9457 problem details: every error this API returns."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    instance: str | None = Field(
        None, description="this occurrence: the request's path, or urn:uuid:… (a 500's id in the server's log)"
    )
    errors: list[ProblemError] | None = Field(None, description="request validation (422): each problem")


HEADERS: dict[str, dict[str, Any]] = {
    "Location": {"description": "the resource's URL", "schema": {"type": "string"}},
    "Retry-After": {"description": "seconds to wait before polling (or retrying)", "schema": {"type": "integer"}},
    "Idempotent-Replayed": {
        "description": "`true` when this answers an earlier request with the same Idempotency-Key",
        "schema": {"type": "string", "enum": ["true"]},
    },
}


def answer(description: str, *headers: str) -> dict[str, Any]:
    """An OpenAPI success response with the headers it may carry."""
    return {"description": description, "headers": {name: HEADERS[name] for name in headers}}


def problems(**codes: str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for error codes, documented as ``application/problem+json``."""
    schema = {"$ref": "#/components/schemas/Problem"}
    return {
        int(code.lstrip("_")): {"description": why, "content": {"application/problem+json": {"schema": schema}}}
        for code, why in codes.items()
    }


COMMON_PROBLEMS = problems(
    _400="malformed body",
    _401="missing or invalid API key",
    _404="no such resource for this tenant",
    _422="invalid input (each problem in errors[])",
    _429="rate limit or quota used up (Retry-After)",
    _500="an unforeseen error (its instance is the id in the server's log)",
    _503="a backing service is unavailable (Retry-After)",
)


PRINTABLE: dict[str, Any] = {"pattern": r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$"}  # no control characters


class JobOptions(SingleDefenseOptions):
    """A defense job's options: the multipart form fields, or the JSON body beside ``media_id``.
    The defense's fields, bounds and defaults (the paper's) are ``shared.jobs.options``. Limits
    that depend on the deployment (``num_samples``, ``max_new_tokens``, ``model``) are checked
    against the settings on submit."""

    prompt: str = Field(min_length=1, max_length=4000, json_schema_extra=PRINTABLE)
    model: str | None = Field(
        None, description="a known model id; default: the service's model", json_schema_extra=PRINTABLE
    )
    callback_url: str | None = Field(
        None, max_length=2000, description="a webhook endpoint registered first", json_schema_extra=PRINTABLE
    )

    @field_validator("prompt", "model", "callback_url")
    @classmethod
    def _printable(cls, value: str | None) -> str | None:
        """NUL and other control characters (tab and newlines aside) are refused, not stored."""
        if value is not None and any(ord(c) < 32 and c not in "\t\n\r" or ord(c) == 127 for c in value):
            raise ValueError("must not contain control characters")
        return value


class JobForm(JobOptions):
    """``POST /v1/jobs`` as multipart: the file and the options as form fields."""

    file: bytes = Field(json_schema_extra={"format": "binary"}, description="an image or an audio file")


class JobCreate(JobOptions):
    """``POST /v1/jobs`` as JSON: media uploaded first with ``POST /v1/media``."""

    media_id: UUID


class MediaPublic(BaseModel):
    id: UUID
    sha256: str
    content_type: str
    modality: Literal["image", "audio"]
    size_bytes: int
    created_at: datetime
    url: str = Field(description="presigned download link (expires)")


class GeneratedOn(BaseModel):
    """Where a job's candidates were generated: the GPU worker's generator as it was loaded."""

    device: str = Field(description='the device as torch sees it: "cpu", or "cuda:<index> <GPU name>"')
    dtype: str = Field(description='the weights\' dtype, e.g. "bfloat16"')
    revision: str | None = Field(
        description="the checkpoint's commit (the hub snapshot's, else the pinned revision); null for a local folder"
    )
    torch: str = Field(description="torch version")
    transformers: str = Field(description="transformers version")
    host: str = Field(description="the GPU worker's hostname")


class JobPublic(BaseModel):
    id: UUID
    status: JobStatus
    model: str
    prompt: str
    params: SmoothConfig = Field(description="the defense's settings (every field, defaults filled in)")
    media_id: UUID
    callback_url: str | None = None
    idempotency_key: str | None = None
    answer: str | None = None
    abstained: bool | None = None
    consensus: Consensus | None = None
    stop_reason: str | None = None
    samples_spent: int | None = None
    rounds_done: int
    timings: Timings | None = Field(None, description="generation / embedding / clustering ms")
    refusal: RefusalVote | None = Field(
        None, description="the refuse/comply vote over the noisy candidates: count, bounds, threshold, radius"
    )
    error: str | None = None
    created_at: datetime
    started_at: datetime | None = None
    generated_at: datetime | None = None
    generated_on: list[GeneratedOn] | None = Field(
        None, description="every distinct place its rounds were generated, in order of first use; null before any"
    )
    aggregated_at: datetime | None = None
    finished_at: datetime | None = None
    links: dict[str, str]


class JobPage(BaseModel):
    items: list[JobPublic]
    next_cursor: str | None = Field(None, description="pass as ?cursor= for the next page; null on the last")


class WebhookCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = Field(min_length=10, max_length=2000, pattern=r"^https?://[^/\s]+", description="http(s) URL")

    @field_validator("url")
    @classmethod
    def _parses(cls, value: str) -> str:
        """A URL the standard library cannot split (``https://x]y``, ``http://h::``) is invalid input, not a 500."""
        try:
            parts = urlsplit(value)
            if not parts.hostname:
                raise ValueError("the URL names no host")
            _ = parts.port  # a port that is not a number raises
        except ValueError as exc:
            raise ValueError(f"not a URL: {exc}") from exc
        return value


class WebhookPublic(BaseModel):
    id: UUID
    url: str
    enabled: bool
    disabled_reason: str | None = None
    created_at: datetime
    secret: str | None = Field(None, description="whsec_… — shown only when created or rotated")


class WebhookEventPublic(BaseModel):
    """A job's or audit's webhook and its schedule; its attempts are the job's (audit's) deliveries."""

    id: UUID
    job_id: UUID | None = None
    audit_id: UUID | None = None
    state: Literal["pending", "delivered", "exhausted", "failed", "skipped"] = Field(
        description="pending (next attempt due at next_attempt_at), delivered, exhausted (every scheduled "
        "attempt failed), failed (the receiver refused it: a 4xx, 410, or a refused/malformed URL), skipped "
        "(endpoint disabled or deleted); redeliver with POST /v1/webhooks/events/{id}/redeliver"
    )
    attempts: int = Field(description="the number of the last attempt claimed, every series counted")
    next_attempt_at: datetime | None = None
    created_at: datetime
    updated_at: datetime | None = None


class DeliveryPublic(BaseModel):
    id: UUID
    endpoint_id: UUID
    message_id: str
    attempt: int
    attempted_at: datetime
    status_code: int | None
    latency_ms: float | None
    error: str | None
    job_id: UUID | None = None
    audit_id: UUID | None = None


class AuditProgress(BaseModel):
    done: int = Field(description="items finished (attacked, every defense job ended)")
    total: int
    attacked: int = Field(description="items whose attacks ran")
    jobs_done: int
    jobs_total: int
    fraction: float = Field(description="attacks + defense jobs done, of all of them")
    eta_s: float | None = Field(None, description="seconds left at the rate so far")


Interval = Annotated[list[float], Field(min_length=2, max_length=2)]  # a 95 % Wilson interval [low, high]
GoalVerdict = Literal["met", "missed", "inconclusive"]


class Extensible(BaseModel):
    """A response part the server may add fields to: they come along (old clients keep working)."""

    model_config = ConfigDict(extra="allow")


class GroupStats(Extensible):
    """One variant × σ of the audit (``shared.reports.summary.group_stats``); non-empty ones only."""

    variant: str = Field(description="clean, or the attack's variant (its label)")
    sigma: float | None = Field(description="the defense's σ; null: the undefended model")
    n: int = Field(description="rows (items) in the group")
    accuracy: float | None = Field(description="share answered correctly; null where no item is scored so")
    accuracy_ci: Interval | None = Field(None, description="accuracy's 95 % Wilson interval [low, high]")
    asr: float | None = Field(description="attack success rate over the eligible items; null for clean")
    asr_ci: Interval | None = Field(None, description="asr's 95 % Wilson interval [low, high]")
    committed_asr: float | None = Field(description="attack succeeded and the defense did not abstain")
    committed_asr_ci: Interval | None = Field(None, description="committed_asr's 95 % Wilson interval [low, high]")
    eligible: int | None = Field(description="rows whose item is eligible (ASR's denominator); null for clean")
    abstain_rate: float | None = Field(description="share abstained; null for the undefended model")
    mean_consensus_share: float | None = Field(description="mean share of the noisy answers in the chosen cluster")
    mean_samples_spent: float = Field(description="noisy samples per row")
    total_samples_spent: int = Field(description="noisy samples of the group")
    mean_score: float | None = Field(description="mean judge score, where the judge scores (open items)")


class HeadlineRow(Extensible):
    """The undefended model, then each σ (``shared.reports.summary.headline``): per-attack maps
    are keyed by the attack's variant (``summary.attacks``)."""

    sigma: float | None = Field(description="the defense's σ; null: the undefended model")
    label: str = Field(description="undefended, or σ as text")
    clean_n: int = Field(description="clean rows at this σ")
    clean_accuracy: float | None = Field(description="clean accuracy; null where no item is scored so")
    clean_accuracy_ci: Interval | None = Field(None, description="clean_accuracy's 95 % Wilson interval [low, high]")
    clean_score: float | None = Field(description="mean judge score of the clean rows (open items)")
    asr: dict[str, float | None] = Field(description="per attack: attack success rate over the eligible items")
    asr_ci: dict[str, Interval | None] | None = Field(None, description="per attack: asr's 95 % Wilson interval")
    committed_asr: dict[str, float | None] = Field(
        description="per attack: the attack succeeded and the defense did not abstain"
    )
    committed_asr_ci: dict[str, Interval | None] | None = Field(
        None, description="per attack: committed_asr's 95 % interval"
    )
    abstain_rate: float | None = Field(description="share abstained over every variant; null when undefended")
    abstain_rate_ci: Interval | None = Field(None, description="abstain_rate's 95 % Wilson interval")
    mean_samples_spent: float | None = Field(description="noisy samples per clean row")
    over_refusal: float | None = Field(description="share of the benign clean items whose answer refuses")
    over_refusal_ci: Interval | None = Field(None, description="over_refusal's 95 % Wilson interval")
    utility_retention: float | None = Field(description="clean accuracy (or score) over the undefended one")
    meets_goal: bool | None = Field(description="the goal on the point estimates; null when undefended or unknown")
    goal: GoalVerdict | None = Field(
        None, description="the goal decided on the 95 % intervals; null when undefended or it cannot be checked"
    )


class ConsensusCounts(Extensible):
    sigma: float = Field(description="the defense's σ")
    counts: list[int] = Field(description="rows per bin of consensus share (the bins: consensus.edges)")


class ConsensusHistogram(Extensible):
    edges: list[float] = Field(description="bin edges over [0, 1]")
    by_sigma: list[ConsensusCounts] = Field(description="per σ, the rows' consensus shares binned")


class CategoryStats(Extensible):
    """category × variant × σ (non-empty cells only)."""

    category: str = Field(description="the item's category")
    variant: str = Field(description="clean, or the attack's variant")
    sigma: float | None = Field(description="the defense's σ; null: the undefended model")
    n: int = Field(description="rows in the cell")
    accuracy: float | None = Field(description="share answered correctly")
    accuracy_ci: Interval | None = Field(None, description="accuracy's 95 % Wilson interval")
    asr: float | None = Field(description="attack success rate over the eligible items; null for clean")
    asr_ci: Interval | None = Field(None, description="asr's 95 % Wilson interval")


class PopeScores(Extensible):
    """POPE's scores over the yes/no items of one variant × σ (``yes`` the positive class)."""

    variant: str = Field(description="clean, or the attack's variant")
    sigma: float | None = Field(description="the defense's σ; null: the undefended model")
    accuracy: float = Field(description="POPE accuracy")
    precision: float = Field(description="POPE precision (0.0 over an empty denominator)")
    recall: float = Field(description="POPE recall")
    f1: float = Field(description="POPE F1")
    yes_ratio: float = Field(description="share of answers parsed as yes")
    n: int = Field(description="yes/no items scored")


class CertifiedPoint(Extensible):
    radius: float = Field(description="L2 radius, noise-space units")
    accuracy: float = Field(description="share certified with the right class at a radius ≥ this")


class CertifiedAccuracy(Extensible):
    """Cohen et al.'s certified accuracy at one σ, over the clean rows whose job certified."""

    sigma: float = Field(description="the defense's σ")
    n: int = Field(description="clean rows whose job certified (abstained ones included)")
    max_radius: float | None = Field(description="the largest radius the estimation draws can certify")
    abstain_rate: float = Field(description="share of those that abstained")
    points: list[CertifiedPoint] = Field(description="per radius of certification.radii up to max_radius")


class CertificateCoverage(Extensible):
    """One attack × σ: how many certificates cover the attack's perturbation."""

    variant: str = Field(description="the attack's variant")
    sigma: float = Field(description="the defense's σ")
    norm: Literal["linf", "l2"] = Field(description="the attack's threat model")
    eps: float = Field(description="the attack's ε, [0, 1] pixel units")
    n: int = Field(description="rows whose job certified")
    certified: int = Field(description="rows certified (not abstained)")
    covered: int = Field(description="certificates whose radius covers the perturbation")
    covered_wrong: int = Field(description="covered rows that commit a wrong class")
    covered_wrong_clean_too: int = Field(description="of those, the clean image certified the same wrong class")
    mean_perturbation_l2: float | None = Field(description="mean ‖δ‖₂, [0, 1] pixel units")
    mean_certified_radius: float | None = Field(description="mean certified L2 radius, noise-space units")


class Certification(Extensible):
    """Certificates against threat models (``shared.reports.certification``); empty tables when the
    audit did not certify."""

    radii: list[float] = Field(description="the certified-accuracy radius grid (L2, noise-space units)")
    accuracy: list[CertifiedAccuracy] = Field(description="certified accuracy per σ")
    coverage: list[CertificateCoverage] = Field(description="coverage per attack × σ")
    covered_wrong: int = Field(description="committed wrong answers whose certificate covers their perturbation")
    covered_wrong_clean_too: int = Field(description="of those, the ones the clean image's certificate predicts")


class SigmaCost(Extensible):
    sigma: float | None = Field(description="the defense's σ; null: the undefended model")
    rows: int = Field(description="rows at this σ")
    samples: int = Field(description="noisy samples spent")
    generation_s: float | None = Field(description="generation seconds; null where no row records it")


class AuditSummary(Extensible):
    """The report's headline numbers (``shared.reports.summary``); fields the report adds later
    come along."""

    n_rows: int = Field(description="item × variant × σ rows")
    n_items: int = Field(description="items audited")
    n_eligible: int = Field(description="items answered correctly when clean: the ones ASR is counted over")
    has_safety: bool = Field(description="the set has safety items (judged by refusal)")
    sigmas: list[float] = Field(description="the defended σ, ascending")
    attacks: list[str] = Field(description="the attacks' variants, the keys of the headline's per-attack maps")
    goal_attacks: list[str] = Field(description="the attacks the goal judges (the L2 ones, when there are any)")
    groups: list[GroupStats] = Field(description="per variant × σ: counts, rates, samples spent")
    headline: list[HeadlineRow] = Field(description="the undefended model, then per σ: the rates, the goal")
    consensus: ConsensusHistogram = Field(description="consensus shares binned, per σ")
    categories: list[CategoryStats] = Field(description="per category × variant × σ")
    pope: list[PopeScores] = Field(description="POPE's scores per variant × σ; empty without yes/no items")
    certification: Certification = Field(description="certified accuracy and coverage of the perturbations")
    cost: list[SigmaCost] = Field(
        default_factory=list, description="per σ (undefended first): rows, samples, generation time"
    )


class UniversalStats(Extensible):
    """The universal adversarial image's attack (``shared.audits.attack.universal_image``)."""

    loss: float = Field(description="the attack's final loss over its prompts")
    linf: float = Field(description="‖δ‖∞, [0, 1] pixel units")
    l2: float = Field(description="‖δ‖₂, [0, 1] pixel units")
    steps: int = Field(description="optimisation steps run")
    attack_ms: float = Field(description="the attack's wall time")
    prompts: int = Field(description="prompts the image was optimised over")


class AuditPublic(BaseModel):
    id: UUID
    status: AuditStatus
    model: str
    spec: AuditSpec
    callback_url: str | None = None
    progress: AuditProgress
    summary: AuditSummary | None = Field(None, description="the report's headline numbers, when finished")
    universal: UniversalStats | None = Field(None, description="the universal image's attack, once it is made")
    error: str | None = None
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    links: dict[str, str]


class AuditPage(BaseModel):
    items: list[AuditPublic]
    next_cursor: str | None = None


class DatasetPublic(BaseModel):
    id: UUID
    sha256: str = Field(description="the archive's sha256: name it as dataset.archive (with this format) in an audit")
    format: DatasetFormat
    status: Literal["validating", "ready", "invalid"] = Field(description="audits accept ready datasets only")
    items: int | None = Field(None, description="the set's items, once ready")
    size_bytes: int
    error: str | None = Field(None, description="why it is invalid")
    created_at: datetime
    checked_at: datetime | None = None
    links: dict[str, str]


class DatasetPage(BaseModel):
    items: list[DatasetPublic]
    next_cursor: str | None = None


class RobustModelProgress(BaseModel):
    steps: int = Field(description="training steps done (this attempt)")
    max_steps: int | None = Field(None, description="the step cap, when one was set")
    minutes_cap: float
    loss: float | None = Field(None, description="mean feature MSE of the last progress interval")
    fraction: float | None = Field(None, description="steps / max_steps, when a step cap was set")


class RobustModelFile(BaseModel):
    name: str
    bytes: int
    sha256: str
    link: str = Field(description="GET it (Bearer auth) to download the file")


SigmaKind = Literal["sqrt_uniform", "uniform", "fixed"]  # shared.robustify.inputs.SigmaKind (torch there)


def _absent_if_none(value: Any) -> bool:
    return value is None


class SigmaScheduleRecord(Extensible):
    sigma_max: float = Field(description="σ_max, noise_space units")
    kind: SigmaKind = Field(description="σ per image: σ_max·√U, σ_max·U, or σ_max")
    clean_fraction: float = Field(description="share of the images trained without noise")


class LossSummary(Extensible):
    """The feature MSE over the run; every field is absent when no step ran."""

    first: float | None = Field(None, exclude_if=_absent_if_none, description="the first step's loss")
    last: float | None = Field(None, exclude_if=_absent_if_none, description="the last step's loss")
    min: float | None = Field(None, exclude_if=_absent_if_none, description="the lowest step loss")
    first_50_mean: float | None = Field(None, exclude_if=_absent_if_none, description="mean of the first 50 steps")
    last_50_mean: float | None = Field(None, exclude_if=_absent_if_none, description="mean of the last 50 steps")
    curve: list[tuple[int, float]] | None = Field(
        None, exclude_if=_absent_if_none, description="about 20 points: [last step of a chunk, its mean loss]"
    )


class TrainingRecord(Extensible):
    """What a robustify run did (``shared.robustify.distil.TrainingRecord`` and the source model's
    validation): σ in ``noise_space`` units."""

    model_type: str = Field(description="the model's architecture (config model_type)")
    trained_modules: list[str] = Field(description="the modules trained (vision tower, projector)")
    trainable_parameters: int = Field(description="parameters trained")
    frozen_parameters: int = Field(description="parameters left as they were (the language model)")
    noise_space: ImageNoiseSpace = Field(description="where the training noise went")
    sigma: SigmaScheduleRecord = Field(description="the σ schedule trained on")
    seed: int = Field(description="the seed of every random draw")
    lr: float = Field(description="AdamW learning rate")
    batch: int = Field(description="noisy images per step")
    warmup: int = Field(description="linear warm-up steps")
    weight_decay: float = Field(description="AdamW weight decay")
    cosine: bool = Field(description="the learning rate decayed on a cosine to the step cap")
    images: int = Field(description="training images")
    steps: int = Field(description="steps trained")
    minutes: float = Field(description="wall-clock minutes of training")
    stopped_by: Literal["steps", "minutes"] = Field(description="the cap that ended training")
    loss: LossSummary = Field(description="the training loss: first, last, lowest, a curve")
    validation: list[dict[str, float]] = Field(
        description="the student's validation runs: step, and accuracy under noise as val_accuracy_sigma_<σ>"
    )
    source_validation: dict[str, float] = Field(
        description="the source model's accuracy on the same questions, val_accuracy_sigma_<σ>; empty without them"
    )
    versions: dict[str, str] = Field(description="library versions that trained it (torch, transformers)")


class RobustModelPublic(BaseModel):
    id: UUID
    status: Literal["queued", "training", "succeeded", "failed", "cancelled"]
    source_model: str
    spec: RobustifySpec
    attempt: int = Field(description="training attempts (a run restarts from its seed when a worker was lost)")
    progress: RobustModelProgress
    record: TrainingRecord | None = Field(
        None, description="the training record, when succeeded: σ schedule, steps, loss curve, accuracy under noise"
    )
    files: list[RobustModelFile] = Field(default_factory=list, description="the checkpoint, when succeeded")
    error: str | None = None
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    links: dict[str, str]


class RobustModelPage(BaseModel):
    items: list[RobustModelPublic]
    next_cursor: str | None = None


class JobCompletedData(BaseModel):
    job_id: UUID
    status: JobStatus
    answer: str | None
    abstained: bool | None
    url: str = Field(description="GET it (Bearer auth) for the whole job")


class JobCompleted(BaseModel):
    """Sent to the job's ``callback_url`` when it ends (Standard Webhooks: ``webhook-id``,
    ``webhook-timestamp``, ``webhook-signature`` headers, signed with the endpoint's ``whsec_`` secret)."""

    type: Literal["job.completed"]
    timestamp: datetime
    data: JobCompletedData


class AuditCompletedData(BaseModel):
    audit_id: UUID
    status: AuditStatus
    done: int
    total: int
    url: str = Field(description="GET it (Bearer auth) for the whole audit")
    report: str | None = Field(description="the HTML report's URL, when there is one")


class AuditCompleted(BaseModel):
    """Sent to the audit's ``callback_url`` when it ends (signed like ``job.completed``)."""

    type: Literal["audit.completed"]
    timestamp: datetime
    data: AuditCompletedData
