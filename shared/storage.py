"""Media in any S3 endpoint (MinIO, SeaweedFS, AWS) through the ``minio`` client.

Objects are content-addressed — ``media/<tenant>/<sha256>`` — so the same bytes uploaded twice
by a tenant are stored once."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterable, Iterator
from datetime import timedelta

import urllib3
from minio import Minio
from minio.error import S3Error

from shared.config import Settings


def media_key(tenant_id: str, sha256: str) -> str:
    return f"media/{tenant_id}/{sha256}"


def http() -> urllib3.PoolManager:
    """Short connect timeouts and one quick retry (the client's default retries a refused
    connection 5 times, ~6 s, per call): an S3 outage becomes a fault the task wrapper retries with
    its own backoff, and the API's 503, at once."""
    retry = urllib3.Retry(total=1, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504])
    return urllib3.PoolManager(timeout=urllib3.Timeout(connect=3.0, read=120.0), retries=retry, maxsize=10)


class ObjectStore:
    def __init__(
        self,
        endpoint: str,
        access_key: str,
        secret_key: str,
        bucket: str,
        *,
        secure: bool = False,
        public_endpoint: str = "",
        region: str = "us-east-1",
    ):
        self.client = Minio(
            endpoint, access_key=access_key, secret_key=secret_key, secure=secure, region=region, http_client=http()
        )
        # presigned links are signed for the host callers use (signing is local: no request is made)
        self.public = Minio(
            public_endpoint or endpoint, access_key=access_key, secret_key=secret_key, secure=secure, region=region
        )
        self.bucket = bucket

    @classmethod
    def from_settings(cls, s: Settings) -> ObjectStore:
        return cls(
            s.s3_endpoint,
            s.s3_access_key,
            s.s3_secret_key,
            s.s3_bucket,
            secure=s.s3_secure,
            public_endpoint=s.s3_public_endpoint,
            region=s.s3_region,
        )

    def ensure_bucket(self) -> None:
        if not self.client.bucket_exists(self.bucket):
            self.client.make_bucket(self.bucket)

    def exists(self, key: str) -> bool:
        try:
            self.client.stat_object(self.bucket, key)
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchObject", "NotFound"):
                return False
            raise
        return True

    @staticmethod
    def sha256(data: bytes) -> str:
        return hashlib.sha256(data).hexdigest()

    def put_media(self, tenant_id: str, data: bytes, content_type: str) -> tuple[str, str]:
        """Store ``data`` once per tenant and content; returns ``(object key, sha256)``."""
        sha = self.sha256(data)
        key = media_key(tenant_id, sha)
        if not self.exists(key):
            self.client.put_object(self.bucket, key, io.BytesIO(data), len(data), content_type=content_type)
        return key, sha

    def put(self, key: str, data: bytes, content_type: str) -> None:
        self.client.put_object(self.bucket, key, io.BytesIO(data), len(data), content_type=content_type)

    def get(self, key: str) -> bytes:
        response = self.client.get_object(self.bucket, key)
        try:
            return response.read()
        finally:
            response.close()
            response.release_conn()

    def put_file(self, key: str, path: str, content_type: str = "application/octet-stream") -> None:
        """Upload a file from disk (multipart for large ones: never read whole into memory)."""
        self.client.fput_object(self.bucket, key, path, content_type=content_type)

    def stream(self, key: str, chunk_bytes: int = 2**20) -> Iterator[bytes]:
        """An object's bytes in chunks (a multi-GB checkpoint file never sits in memory)."""
        response = self.client.get_object(self.bucket, key)
        try:
            yield from response.stream(chunk_bytes)
        finally:
            response.close()
            response.release_conn()

    def remove(self, keys: Iterable[str]) -> None:
        for key in keys:
            self.client.remove_object(self.bucket, key)

    def presigned_url(self, key: str, expires: timedelta = timedelta(hours=1)) -> str:
        return self.public.presigned_get_object(self.bucket, key, expires=expires)
