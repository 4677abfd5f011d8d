"""The embedded services start, serve real clients, keep their data across a restart and stop."""

import time

import psycopg
import pytest
import redis

from shared.tools.servers import EmbeddedPostgres, EmbeddedRedis, EmbeddedS3, wait_for_port


def test_postgres_starts_persists_and_stops(tmp_path):
    pg = EmbeddedPostgres(tmp_path).start()
    try:
        with psycopg.connect(pg.url, autocommit=True) as con:
            con.execute("create table t (x int)")
            con.execute("insert into t values (42)")
    finally:
        pg.stop()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(pg.url, connect_timeout=2)
    pg.start()  # same data folder: no second initdb
    try:
        with psycopg.connect(pg.url) as con:
            assert con.execute("select x from t").fetchone() == (42,)
    finally:
        pg.stop()


def test_redis_starts_serves_and_stops(tmp_path):
    server = EmbeddedRedis(tmp_path).start()
    try:
        client = redis.Redis.from_url(server.url)
        client.set("k", "v")
        assert client.get("k") == b"v"
    finally:
        server.stop()
    assert server.process is not None and server.process.poll() is not None
    with pytest.raises(TimeoutError):
        wait_for_port(server.port, timeout=0.3)


def test_s3_server_enforces_credentials(tmp_path):
    import io

    from minio import Minio
    from minio.error import S3Error

    server = EmbeddedS3(tmp_path, "test-key", "test-secret-123").start()
    try:
        client = Minio(server.endpoint, access_key="test-key", secret_key="test-secret-123", secure=False)
        deadline = time.monotonic() + 20
        while True:  # the port opens before the filer behind it is ready
            try:
                client.make_bucket("media")
                break
            except (S3Error, OSError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        client.put_object("media", "t/x.bin", io.BytesIO(b"abc"), 3)
        assert client.get_object("media", "t/x.bin").read() == b"abc"
        wrong = Minio(server.endpoint, access_key="test-key", secret_key="nope", secure=False)
        with pytest.raises(S3Error, match="SignatureDoesNotMatch|AccessDenied|InvalidAccessKeyId"):
            wrong.get_object("media", "t/x.bin").read()
    finally:
        server.stop()
    assert server.process is not None and server.process.poll() is not None


def test_free_ports_are_distinct():
    from shared.tools.servers import free_ports

    ports = free_ports(64)
    assert len(set(ports)) == 64


def test_a_server_that_dies_on_start_is_reported_at_once(tmp_path):
    import subprocess

    from shared.tools.servers import free_port

    dead = subprocess.Popen(["false"])
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="exited"):
        wait_for_port(free_port(), timeout=20, process=dead)
    assert time.monotonic() - started < 5


def test_s3_server_retries_with_new_ports_when_one_was_taken(tmp_path, monkeypatch):
    """Another process grabs a port between choosing and binding: weed mini dies, the launcher
    starts it again on fresh ports instead of failing the stack."""
    import socket

    import shared.tools.servers as stack_module

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    real, calls = stack_module.free_ports, []

    def first_collides(count):
        ports = real(count)
        if count != len(EmbeddedS3.PORT_FLAGS):
            return ports
        calls.append(count)
        if len(calls) == 1:
            ports[EmbeddedS3.PORT_FLAGS.index("volume.port")] = taken.getsockname()[1]
        return ports

    monkeypatch.setattr(stack_module, "free_ports", first_collides)
    server = EmbeddedS3(tmp_path, "test-key", "test-secret-123").start()
    try:
        assert len(calls) == 2  # a second start, on new ports
        assert "volume.port" in (tmp_path / "s3" / "server.log").read_text()  # the first start named the taken port
        wait_for_port(server.port)
    finally:
        server.stop()
        taken.close()
