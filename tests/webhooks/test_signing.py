import base64
import hashlib
import hmac
import random
from datetime import UTC, datetime

import pytest

from shared.config import Settings
from shared.errors import Invalid
from shared.webhooks.policy import check_url, classify, retry_delay
from shared.webhooks.signing import headers, new_secret, sign, verify

BODY = b'{"type":"job.succeeded","job_id":"j1"}'


def test_signature_is_hmac_of_id_timestamp_body():
    secret = new_secret()
    key = base64.b64decode(secret.removeprefix("whsec_"))
    expected = base64.b64encode(hmac.new(key, b"msg_1.1700000000." + BODY, hashlib.sha256).digest()).decode()
    assert sign(secret, "msg_1", 1700000000, BODY) == "v1," + expected


def test_rotation_sends_both_signatures_and_either_secret_verifies():
    old, new = new_secret(), new_secret()
    h = headers([new, old], "msg_2", 1700000000, BODY)
    assert len(h["webhook-signature"].split()) == 2
    assert verify(old, h, BODY, now=1700000010) and verify(new, h, BODY, now=1700000010)
    assert not verify(new_secret(), h, BODY, now=1700000010)
    assert not verify(new, h, BODY + b" ", now=1700000010)
    assert not verify(new, h, BODY, now=1700000000 + 3600)  # stale timestamp


def test_retry_policy():
    assert classify(200).delivered
    assert classify(None).retry and classify(503).retry and classify(429).retry
    assert not classify(400).retry and not classify(404).retry
    gone = classify(410)
    assert gone.disable and not gone.retry
    assert classify(429, retry_after="120").retry_after_s == 120
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert classify(503, "Thu, 01 Jan 2026 00:02:00 GMT", now).retry_after_s == 120  # an HTTP date
    assert classify(503, "soon").retry_after_s is None


def test_retry_delays_follow_the_schedule_with_jitter():
    delays, rng = [5.0, 300.0, 1800.0], random.Random(0)
    for retry, step in enumerate(delays):
        drawn = [retry_delay(delays, retry, 0.2, rng) for _ in range(200)]
        assert 0.8 * step <= min(drawn) < 0.85 * step and 1.15 * step < max(drawn) <= 1.2 * step
    assert Settings().webhook_retry_delays() == [5, 300, 1800, 7200, 18000, 36000, 36000]  # Svix's, 8 attempts ~27 h
    assert Settings(webhook_retry_schedule_s="").webhook_retry_delays() == []  # no retries


def test_private_callback_urls_are_refused_unless_allowlisted():
    for url in ("http://127.0.0.1:9/hook", "http://10.1.2.3/x", "http://169.254.169.254/latest", "http://[::1]/x"):
        with pytest.raises(Invalid, match="non-public"):
            check_url(url)
    check_url("http://127.0.0.1:9/hook", allowlist={"127.0.0.1"})
    # shared address space, cloud metadata, protocol assignments, IPv6 that embeds loopback
    for url in (
        "http://100.64.0.7/x",
        "http://100.100.100.200/latest/meta-data",
        "http://192.0.0.192/opc",
        "http://[2002:7f00:1::]/x",
        "http://[::ffff:127.0.0.1]/x",
    ):
        with pytest.raises(Invalid, match="non-public"):
            check_url(url)
    for url in ("http://example.org/a\r\nX-Injected: 1", "http://exa mple.org/", "http://example.org/\x00"):
        with pytest.raises(Invalid, match="control characters"):
            check_url(url)
    with pytest.raises(Invalid, match="http"):
        check_url("ftp://example.org/x")
