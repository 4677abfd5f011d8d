"""The one settings class. Nothing else in the project reads the environment."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

ASSETS = Path(__file__).resolve().parent / "assets"
DEMO_MODEL = ASSETS / "demo-llava"
DEMO_IMAGE = ASSETS / "demo.png"


class Settings(BaseSettings):
    """Read from ``SMOOTHGUARD_*`` environment variables (or a ``.env`` file)."""

    model_config = SettingsConfigDict(env_prefix="SMOOTHGUARD_", env_file=".env", extra="ignore")

    model: str = str(DEMO_MODEL)
    embedder: str = "sentence-transformers:all-MiniLM-L6-v2"
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    dtype: str = "auto"  # auto (bf16 on CUDA, fp32 elsewhere) | float32 | bfloat16 | float16
    max_batch_size: int = 32  # candidates per generate() call; a round is chunked only by this
    hf_offline: bool = True  # never reach a model hub at run time
    database_url: str = "postgresql://postgres@127.0.0.1:5432/smoothguard"
    redis_url: str = "redis://127.0.0.1:6379/0"  # Celery broker
    s3_endpoint: str = "127.0.0.1:9000"  # host:port of any S3 server
    s3_access_key: str = "smoothguard-dev"
    s3_secret_key: str = "smoothguard-dev-secret"
    s3_bucket: str = "smoothguard"
    s3_secure: bool = False
    max_upload_bytes: int = 20 * 2**20
    max_image_pixels: int = 4096 * 4096
    max_audio_seconds: float = 60.0
    max_num_samples: int = 256  # noisy candidates per job (the adaptive budget)
    max_new_tokens: int = 1024
    known_models: str = ""  # comma-separated extra model ids/paths the API accepts besides the default


@lru_cache
def get_settings() -> Settings:
    return Settings()
