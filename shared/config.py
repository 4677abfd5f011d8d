"""The one settings class. Nothing else in the project reads the environment."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.backends.registry import DEFAULT_EMBEDDER

ASSETS = Path(__file__).resolve().parent / "assets"
DEMO_MODEL = ASSETS / "demo-llava"
DEMO_AUDIO_MODEL = ASSETS / "demo-qwen2-audio"
DEMO_IMAGE = ASSETS / "demo.png"
# refused in production: the development S3 keys of `smoothguard up`, MinIO's documented root
# default, and database passwords anyone would try first
DEV_SECRETS = frozenset({"smoothguard-dev", "smoothguard-dev-secret", "minioadmin"})
WEAK_PASSWORDS = frozenset({"", "postgres", "password", "smoothguard", "changeme", "secret", "admin"})
MIN_SECRET_CHARS = 8  # S3 secret key and database password in production (MinIO's own minimum)
MIN_ADMIN_TOKEN_CHARS = 24


class Settings(BaseSettings):
    """Read from ``SMOOTHGUARD_*`` environment variables (or a ``.env`` file)."""

    model_config = SettingsConfigDict(env_prefix="SMOOTHGUARD_", env_file=".env", extra="ignore")

    model: str = str(DEMO_MODEL)
    model_revision: str = ""  # hub revision (commit, tag, branch) of `model` that `pull-model` fetches and workers load
    embedder: str = DEFAULT_EMBEDDER
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    dtype: str = "auto"  # auto (bf16 on CUDA, fp32 elsewhere) | float32 | bfloat16 | float16
    torch_threads: int = 0  # torch/BLAS threads of a worker or `defend`; 0: all cores (`up` shares them out)
    max_batch_size: int = 64  # candidates per generate() call, rounds of several jobs together (lower it on small GPUs)
    compile_generator: bool = False  # static KV cache + torch.compile'd decoding, warmed up at GPU-worker start
    batch_buckets: str = "8,16,32,64,128"  # with compile_generator: batches padded to these sizes (≤ max_batch_size)
    batch_across_jobs: bool = True  # a round takes other jobs' waiting rounds (same model) into its generate
    batch_flush_ms: float = 0.0  # a round waits this long for company first (0: takes what waits already)
    vote_batch_jobs: int = 32  # a vote takes up to this many other jobs' waiting votes (one embedding pass)
    hf_offline: bool = True  # never reach a model hub at run time
    database_url: str = "postgresql://postgres@127.0.0.1:5432/smoothguard"
    redis_url: str = "redis://127.0.0.1:6379/0"  # Celery broker
    s3_endpoint: str = "127.0.0.1:9000"  # host:port of any S3 server
    s3_access_key: str = "smoothguard-dev"
    s3_secret_key: str = "smoothguard-dev-secret"
    s3_bucket: str = "smoothguard"
    s3_secure: bool = False
    s3_public_endpoint: str = (
        ""  # host:port callers use for presigned links, when not s3_endpoint (e.g. behind compose)
    )
    s3_region: str = "us-east-1"
    max_upload_bytes: int = 20 * 2**20
    max_image_pixels: int = 4096 * 4096
    max_image_side: int = 4096  # longest side in pixels, read from the header before decoding
    max_aspect_ratio: float = 20.0  # longest : shortest side
    max_noise_side: int = 1024  # pixel-space noise is drawn on the image area-downscaled to this longest side
    max_audio_seconds: float = 60.0
    max_audit_items: int = 5000  # items per audit (each fans out to variants × σ defense jobs)
    idempotency_key_ttl_s: float = 86400.0  # an Idempotency-Key is remembered this long; later it makes anew
    max_dataset_bytes: int = 512 * 2**20  # an uploaded benchmark archive
    # what a dataset archive may unpack to, counted while it is written (the headers' sizes are not trusted)
    max_dataset_extracted_bytes: int = 2 * 2**30  # all members together
    max_dataset_members: int = 100_000  # files and folders
    max_dataset_line_bytes: int = 2**20  # one line of a .json/.jsonl file
    max_dataset_json_bytes: int = 16 * 2**20  # one .json/.jsonl file (the loaders read it whole)
    max_robustify_minutes: float = 45.0  # a robustify run's training cap (below the broker's visibility timeout)
    max_num_samples: int = 256  # noisy candidates per job (the adaptive budget)
    max_new_tokens: int = 1024
    refusal_guard: str = ""  # a LlamaGuard-type model path/id: refusal-aware votes ask it about each keyword refusal
    known_models: str = ""  # comma-separated extra model ids/paths the API accepts besides the default
    public_url: str = "http://127.0.0.1:8000"  # how callers reach the API: links in webhooks, `smoothguard audit`
    api_key: str = ""  # the key `smoothguard audit` sends
    webhook_allowlist: str = ""  # comma-separated callback hosts allowed although private/loopback
    webhook_timeout_s: float = 10.0
    # delays before each retry after a webhook's first attempt (Standard Webhooks / Svix: 8 attempts over ~27 h)
    webhook_retry_schedule_s: str = "5,300,1800,7200,18000,36000,36000"
    webhook_jitter: float = 0.2  # each retry delay is scaled by a uniform factor in [1 - jitter, 1 + jitter]
    webhook_poll_s: float = 5.0  # how often the beat sends the webhook attempts that are due
    webhook_attempt_lease_s: float = 300.0  # a claimed attempt not made in this time is sent again (message lost)
    webhook_retry_after_cap_s: float = 86400.0  # a receiver's Retry-After pushes the next attempt at most this far
    broker_visibility_timeout_s: float = 3600.0  # an unacked task of a dead worker is redelivered after this
    sweep_interval_s: float = 15.0  # how often the sweeper looks for lost work (dead workers' claims, lost messages)
    stale_after_s: float = 900.0  # dispatched, unclaimed and untouched this long: its message was lost; re-sent
    worker_heartbeat_s: float = 5.0  # how often a worker writes that it is alive
    worker_timeout_s: float = 30.0  # a worker silent this long is dead: the sweeper re-sends what it had claimed
    tenant_max_dispatched: int = 8  # a tenant's jobs on each GPU lane at once; the rest wait in the database
    dispatch_interval_s: float = 2.0  # how often waiting jobs are dispatched when no finish or submit did it
    rate_limit: str = "600/minute"  # requests per API key, counted in Redis across API replicas ("" or "0": none)
    rate_limit_unauthenticated: str = "60/minute"  # per client address, requests without a valid key ("": none)
    max_jobs_in_flight: int = 10000  # a tenant's unfinished jobs (its audits' defense jobs aside); 0: no quota
    max_audits_in_flight: int = 4  # a tenant's unfinished audits; 0: no quota
    max_robust_models_in_flight: int = 2  # a tenant's unfinished robustify runs; 0: no quota
    admin_token: str = ""  # bearer token of the /v1/admin routes; unset: those routes answer 404
    environment: str = "local"  # local | production (production refuses the development and weak secrets at start)
    ready_file: str = ""  # a worker's readiness file, touched with each heartbeat ("": <tmp>/smoothguard-worker.ready)
    shutdown_grace_s: float = 25.0  # on SIGTERM a worker's running task may finish this long, then is handed back
    metrics_port: int = 0  # a worker serves its Prometheus metrics on this port (0: none)
    log_format: str = "text"  # text | json (one JSON object per line, with job/audit/tenant/task ids when known)
    otlp_endpoint: str = ""  # OTLP/HTTP collector base URL traces are exported to ("": no export)
    trace_file: str = ""  # spans appended here as JSON lines (tests, debugging; "": none)

    @model_validator(mode="after")
    def refuse_dev_secrets_in_production(self) -> Settings:
        if self.environment not in ("local", "production"):
            raise ValueError(f"environment must be local or production, not {self.environment!r}")
        if self.environment == "production" and (weak := self.weak_secrets()):
            raise ValueError("production refuses development or weak secrets: " + "; ".join(weak))
        return self

    def weak_secrets(self) -> list[str]:
        """What a production deployment must not run with, in words (nothing: all fine)."""
        password = urlsplit(self.database_url).password or ""
        weak = []
        if password.lower() in WEAK_PASSWORDS or len(password) < MIN_SECRET_CHARS:
            weak.append(f"the database URL's password is missing or weak (at least {MIN_SECRET_CHARS} characters)")
        if {self.s3_access_key, self.s3_secret_key} & DEV_SECRETS or len(self.s3_secret_key) < MIN_SECRET_CHARS:
            weak.append("the S3 access/secret key is a development default or shorter than 8 characters")
        if self.admin_token and len(self.admin_token) < MIN_ADMIN_TOKEN_CHARS:
            weak.append(f"the admin token is shorter than {MIN_ADMIN_TOKEN_CHARS} characters")
        return weak

    def model_ids(self) -> list[str]:
        """The models jobs may name: the default first, then ``known_models``."""
        extra = [m.strip() for m in self.known_models.split(",") if m.strip()]
        return list(dict.fromkeys([self.model, *extra]))

    def webhook_retry_delays(self) -> list[float]:
        """Seconds before each retry of a webhook (the first attempt is immediate; none: no retries)."""
        return [float(d) for d in self.webhook_retry_schedule_s.split(",") if d.strip()]

    def allowed_callback_hosts(self) -> frozenset[str]:
        return frozenset(h.strip() for h in self.webhook_allowlist.split(",") if h.strip())


@lru_cache
def get_settings() -> Settings:
    return Settings()
