"""`smoothguard up` and `smoothguard demo` (the README's main job) as a user runs them: real
processes, real services, Ctrl-C."""

import os
import re
import signal
import subprocess
import sys
import time

import httpx

from shared.config import DEMO_IMAGE
from shared.launcher import Stack
from shared.stack import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMOOTHGUARD_")}
    return env | {"SMOOTHGUARD_DEVICE": "cpu", "PYTHONUNBUFFERED": "1"} | extra


def test_up_serves_jobs_and_ctrl_c_stops_everything(tmp_path):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "shared.cli", "up", "--data-dir", str(tmp_path), "--port",
                             str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
                            env=clean_env())  # fmt: skip
    lines = []
    try:
        deadline = time.monotonic() + 120
        while not any("dev API key" in line for line in lines):
            assert time.monotonic() < deadline and proc.poll() is None, "".join(lines[-30:])
            lines.append(proc.stdout.readline())
        key = re.search(r"dev API key: (sg_\S+)", "".join(lines)).group(1)
        api = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {key}"})
        assert api.get("/readyz").json()["status"] == "ready"
        job = api.post(
            "/v1/jobs", files={"file": DEMO_IMAGE.read_bytes()}, data={"prompt": "What colour is the circle?"}
        )
        assert job.status_code == 202
        while (body := api.get(f"/v1/jobs/{job.json()['id']}").json())["finished_at"] is None:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert body["answer"] == "red"
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=90)
    assert proc.returncode == 0, out[-3000:]
    assert "stopping" in out
    pids = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True).stdout.split()
    assert pids == [], "processes of the stack outlived Ctrl-C"  # servers and children all gone
    assert not (tmp_path / "postgres" / "data" / "postmaster.pid").exists()
    for name in ("api", "gpu", "cpu", "webhooks"):
        assert (tmp_path / "logs" / f"{name}.log").stat().st_size > 0


def test_demo_is_the_main_job(tmp_path):
    out = subprocess.run([sys.executable, "-m", "shared.cli", "demo", "--data-dir", str(tmp_path)], cwd=ROOT,
                         env=clean_env(), capture_output=True, text=True, timeout=300)  # fmt: skip
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "→ answer 'red'" in out.stdout and "signature VERIFIED" in out.stdout
    assert re.search(r"POST /v1/jobs → 202", out.stdout)


def test_the_launcher_uses_services_named_by_the_environment(stack, tmp_path):
    external = {k: v for k, v in stack.env.items()}
    reused = Stack(tmp_path, environ=clean_env(**external)).start()
    try:
        assert reused.servers == [] and reused.env["SMOOTHGUARD_DATABASE_URL"] == external["SMOOTHGUARD_DATABASE_URL"]
        assert reused.settings().redis_url == stack.env["SMOOTHGUARD_REDIS_URL"]
    finally:
        reused.stop()
