"""`smoothguard up` and `smoothguard demo` (the README's main job) as a user runs them: real
processes, real services, Ctrl-C."""

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx

from shared.config import DEMO_IMAGE
from shared.tools.launcher import Stack, thread_share
from shared.tools.servers import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMOOTHGUARD_")}
    return env | {"SMOOTHGUARD_DEVICE": "cpu", "PYTHONUNBUFFERED": "1"} | extra


def test_up_serves_jobs_and_ctrl_c_stops_everything(tmp_path):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "shared.tools.cli", "up", "--data-dir", str(tmp_path), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
        env=clean_env(),
    )
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
        defend_through_the_stack(port, key)
        assert_torch_workers_share_the_cores(proc.pid)
        audit_cli(port, key, tmp_path)
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


def defend_through_the_stack(port, key):
    """``smoothguard defend`` with the stack's URL and a key: the job runs on the warm workers,
    the command never imports torch, and it prints what a local run prints."""
    env = clean_env(SMOOTHGUARD_PUBLIC_URL=f"http://127.0.0.1:{port}", SMOOTHGUARD_API_KEY=key)
    argv = ["defend", str(DEMO_IMAGE), "--prompt", "What colour is the circle?", "-n", "4", "--json"]
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "shared.tools.cli", *argv],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout)
    assert result["answer"] == "red" and result["embedder"].startswith("the service's")
    assert len(result["samples"]) == 5 and sum(c["size"] for c in result["clusters"]) == 5
    assert not re.search(r"\|\s+torch$", out.stderr, re.M), "defend through the stack imported torch"


def assert_torch_workers_share_the_cores(up_pid):
    """``up``'s GPU and CPU workers run with their share of the cores as their thread variables."""
    share = str(thread_share())
    children = subprocess.run(["pgrep", "-P", str(up_pid)], capture_output=True, text=True).stdout.split()
    threads = {}
    for pid in children:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        if b"workers" in argv and b"-Q" in argv:
            environ = dict(v.split(b"=", 1) for v in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0") if v)
            threads[argv[argv.index(b"-Q") + 1].decode()] = environ.get(b"OMP_NUM_THREADS", b"").decode()
    lanes = "gpu,gpu-audits"  # `worker gpu`: both GPU lanes, interactive first
    assert {q: threads.get(q) for q in (lanes, "cpu,audits")} == {lanes: share, "cpu,audits": share}


def audit_cli(port, key, tmp_path):
    """``smoothguard audit submit --wait`` then ``audit report`` against the running stack."""
    cli = [sys.executable, "-m", "shared.tools.cli", "audit", "--url", f"http://127.0.0.1:{port}", "--key", key]
    sub = subprocess.run(
        [
            *cli,
            "submit",
            "--count",
            "1",
            "--attacks",
            "pgd",
            "--steps",
            "2",
            "--sigmas",
            "0.1",
            "-n",
            "2",
            "--max-new-tokens",
            "4",
            "--wait",
        ],
        cwd=ROOT,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert sub.returncode == 0, sub.stdout[-2000:] + sub.stderr[-2000:]
    audit_id = sub.stdout.splitlines()[0]
    assert "items 2/2" in sub.stderr  # the progress bar reached the end
    assert re.search(r"^undefended\s", sub.stdout, re.M) and re.search(r"^σ=0.1\s", sub.stdout, re.M)
    csv_path = tmp_path / "audit.csv"
    rep = subprocess.run(
        [*cli, "report", audit_id, "--format", "csv", "--out", str(csv_path)],
        cwd=ROOT,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert rep.returncode == 0, rep.stderr
    assert (
        len(csv_path.read_text().strip().splitlines()) == 1 + 2 * 2 * 2
    )  # header + items × variants × (undefended, σ)
    bad = subprocess.run(
        [*cli, "status", str(uuid.uuid4())], cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=60
    )
    assert bad.returncode == 2 and "404" in bad.stderr


def test_demo_is_the_main_job(tmp_path):
    out_dir = tmp_path / "report"
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "shared.tools.cli",
            "demo",
            "--data-dir",
            str(tmp_path / "data"),
            "--images",
            "2",
            "--clips",
            "1",
            "--steps",
            "5",
            "--num-samples",
            "20",
            "--out",
            str(out_dir),
        ],
        cwd=ROOT,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert len(re.findall(r"POST /v1/audits → queued", out.stdout)) == 3  # the original, the robust, the audio model
    assert out.stdout.count("signature VERIFIED") == 3
    headers = [line for line in out.stdout.splitlines() if line.startswith("defense")]
    assert len(headers) == 3
    for header in headers[:2]:
        assert "clean acc" in header and "abstain" in header
        assert all(f"ASR {a} (not abstained)" in header for a in ("pgd-l2-0.5", "eot-l2-0.5", "pgd-linf-16"))
    audio = ("pgd-l2-0.1", "eot-l2-0.1", "pgd-l2-1", "eot-l2-1", "pgd-linf-0.02")
    assert all(f"ASR {a} (not abstained)" in headers[2] for a in audio)
    for sigma in ("0.25", "0.5"):
        assert len(re.findall(rf"^σ={sigma}\s", out.stdout, re.M)) == 2
    for sigma in ("0.05", "0.1"):
        assert len(re.findall(rf"^σ={sigma}\s", out.stdout, re.M)) == 1  # the audio audit's waveform σ
    assert out.stdout.count("Cohen et al., CIFAR-10") == 4  # σ = 0.25 and 0.5, per image model
    assert (
        len(
            re.findall(
                r"^committed wrong answers covered by a certificate: (0 of \d+ covered answers|"
                r"\d+ of \d+ covered answers \(.*; 0 contradicting a certificate\))$",
                out.stdout,
                re.M,
            )
        )
        == 3
    )
    assert "L∞ (outside what smoothing certifies)" in out.stdout
    assert "items 4/4" in out.stderr and "items 3/3" in out.stderr  # the progress bars (2 images, 1 clip)
    for model in ("original", "robust", "audio"):
        assert {p.name for p in (out_dir / model).iterdir()} == {"report.html", "report.json", "items.csv"}
    assert "<audio" in (out_dir / "audio" / "report.html").read_text()


def test_the_launcher_uses_services_named_by_the_environment(stack, tmp_path):
    external = {k: v for k, v in stack.env.items()}
    reused = Stack(tmp_path, environ=clean_env(**external)).start()
    try:
        assert reused.servers == [] and reused.env["SMOOTHGUARD_DATABASE_URL"] == external["SMOOTHGUARD_DATABASE_URL"]
        assert reused.settings().redis_url == stack.env["SMOOTHGUARD_REDIS_URL"]
    finally:
        reused.stop()


def api_log(data_dir: Path) -> str:
    log = data_dir / "logs" / "api.log"
    return log.read_text() if log.exists() else ""


def test_up_started_from_a_script_stops_everything_on_sigterm(tmp_path):
    """A script's ``smoothguard up &`` ignores SIGINT; SIGTERM must still stop every process."""
    for _ in range(3):  # a free port can be taken by another process before the API binds it: try another
        proc = subprocess.Popen(
            [sys.executable, "-m", "shared.tools.cli", "up", "--data-dir", str(tmp_path), "--port", str(free_port())],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=ROOT,
            env=clean_env(),
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
        )
        lines: list[str] = []
        deadline = time.monotonic() + 120
        while not any("waiting for the workers" in line for line in lines):  # SIGTERM while the models load
            if proc.poll() is not None and "Address already in use" in api_log(tmp_path):
                break
            assert time.monotonic() < deadline and proc.poll() is None, "".join(lines[-30:])
            lines.append(proc.stdout.readline())
        else:
            break
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=90)
    assert proc.returncode == 0 and "stopping" in out, out[-3000:]
    pids = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True).stdout.split()
    assert pids == [], "processes of the stack outlived SIGTERM"
