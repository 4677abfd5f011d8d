import base64
import hashlib
import hmac
import random

import pytest

from shared.errors import Invalid
from shared.webhooks.policy import MAX_ATTEMPTS, check_url, classify
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
    rng = random.Random(0)
    assert classify(200, 0, rng).delivered
    assert classify(None, 0, rng).retry and classify(503, 0, rng).retry
    assert not classify(400, 0, rng).retry and not classify(404, 0, rng).retry
    gone = classify(410, 0, rng)
    assert gone.disable and not gone.retry
    assert classify(429, 0, rng, retry_after="120").delay_s >= 120
    assert not classify(500, MAX_ATTEMPTS - 1, rng).retry
    delays = [classify(500, a, random.Random(a)).delay_s for a in range(5)]
    assert all(0 <= d <= 2.0 * 2**a for a, d in enumerate(delays))


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
