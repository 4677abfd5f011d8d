"""``smoothguard receiver``: the README's local webhook receiver prints each delivery and whether
its signature verifies, and stops after ``--count`` deliveries (exit 1 when one did not verify)."""

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx

from shared.tools.servers import free_port
from shared.webhooks.signing import headers, new_secret

ROOT = Path(__file__).resolve().parents[2]


def deliver(url: str, secret: str, msg_id: str) -> int:
    body = json.dumps({"type": "job.completed", "data": {"job_id": msg_id, "answer": "red"}}).encode()
    deadline = time.monotonic() + 30
    while True:
        try:
            return httpx.post(url, content=body, headers=headers([secret], msg_id, int(time.time()), body)).status_code
        except httpx.ConnectError:  # not listening yet
            assert time.monotonic() < deadline
            time.sleep(0.1)


def test_the_receiver_prints_each_delivery_and_its_signature_verdict():
    secret, port = new_secret(), free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "shared.tools.cli", "receiver", "--port", str(port), "--secret", secret, "--count", "2"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}/hook"
        assert deliver(url, secret, "msg_good") == 200
        assert deliver(url, new_secret(), "msg_forged") == 200
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 1  # one delivery did not verify
    assert f"listening on {url}" in err
    good, forged = out.splitlines()
    assert good == 'msg_good job.completed signature VERIFIED; data: {"job_id": "msg_good", "answer": "red"}'
    assert forged.startswith("msg_forged job.completed signature INVALID")
