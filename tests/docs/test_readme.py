"""The README's walkthroughs run as written. Each shell block marked ``<!-- readme-test: NAME -->``
is extracted; the ``up`` block starts the stack with the launcher users run (``smoothguard up``,
offline), the ``walkthrough`` block runs against it as a user pastes it. The only substitutions:
``up`` gets a temporary ``--data-dir``, the API's and the receiver's ports are free ones, ``sg_…``
is the key ``up`` printed, and ``.venv/bin/`` this interpreter's ``bin/``. The audits section's
``audit`` block runs against the same stack, in a folder of its own."""

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shared.tools.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
MARKED = re.compile(r"<!-- readme-test: (\S+) -->\n```bash\n(.*?)\n```", re.S)
API_PORT, HOOK_PORT = "8000", "9000"  # what the README's blocks use


def readme_blocks() -> dict[str, str]:
    return dict(MARKED.findall(README.read_text()))


def localize(script: str, api_port: int, hook_port: int, key: str = "") -> str:
    """The block with free ports, the key ``up`` printed, and this environment's ``bin/``."""
    script = script.replace(f"127.0.0.1:{API_PORT}", f"127.0.0.1:{api_port}")
    script = script.replace(f"127.0.0.1:{HOOK_PORT}", f"127.0.0.1:{hook_port}")
    script = script.replace(f"--port {HOOK_PORT}", f"--port {hook_port}")
    script = script.replace("KEY=sg_…", f"KEY={key}")
    return script.replace(".venv/bin/", f"{Path(sys.executable).parent}/")


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMOOTHGUARD_")}
    return env | {"SMOOTHGUARD_DEVICE": "cpu", "PYTHONUNBUFFERED": "1"}


def test_the_readme_walkthrough_defines_what_it_uses_and_stays_offline():
    blocks = readme_blocks()
    assert {"up", "walkthrough", "audit", "robust"} <= set(blocks)
    walkthrough = blocks["walkthrough"]
    assigned = set(re.findall(r"^([A-Z_]+)=", walkthrough, re.M))
    used = set(re.findall(r"\$\{?([A-Z_]+)", walkthrough))
    assert used <= assigned, f"used but never set: {used - assigned}"
    assert "example.com" not in README.read_text()
    assert "SMOOTHGUARD_WEBHOOK_ALLOWLIST=127.0.0.1" in blocks["up"]
    assert "smoothguard receiver" in walkthrough


def test_the_readme_points_at_no_file_outside_the_repository():
    text = README.read_text()
    assert not re.search(r"[`(]\.\./", text), "a path outside the repository"
    for link in re.findall(r"\]\((?!https?://|#)([^)]+)\)", text):
        assert (ROOT / link).exists(), link


def run_audit_block(block: str, api_port: int, hook_port: int, key: str, folder: Path) -> None:
    """The audits section's block, in a folder of its own (it writes report.html and my-set/ where it runs)."""
    folder.mkdir()
    audit = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", localize(block, api_port, hook_port, key)],
        cwd=folder, env=clean_env(), capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    out = audit.stdout + audit.stderr
    assert audit.returncode == 0, out[-3000:]
    assert out.count("undefended") >= 2, out[-3000:]  # both audits' tables
    assert "<svg" in (folder / "report.html").read_text() and (folder / "my-set" / "questions.jsonl").exists()


def run_robust_block(block: str, api_port: int, hook_port: int, key: str) -> None:
    """The robust-models block: a short robustify run over REST, polled until it ends."""
    run = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", localize(block, api_port, hook_port, key)],
        cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-3000:]
    final = json.loads(out.strip().splitlines()[-1])
    assert final["status"] == "succeeded", out[-3000:]
    assert final["record"]["steps"] == 20 and {f["name"] for f in final["files"]} >= {"config.json"}, final


def kill_group(pid: int) -> None:
    """SIGKILL what is left of a session this test started (nothing, when all went well)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def wait_for_banner(log: Path, proc: subprocess.Popen, timeout: float) -> str:
    """What ``up`` printed once its closing line is there."""
    deadline = time.monotonic() + timeout
    while "Ctrl-C stops everything\n" + "=" * 72 not in (text := log.read_text()):
        assert proc.poll() is None and time.monotonic() < deadline, text[-3000:]
        time.sleep(0.2)
    return text


@pytest.mark.slow
@pytest.mark.integration
def test_the_readme_up_walkthrough_runs_as_written(tmp_path):
    blocks, api_port, hook_port = readme_blocks(), free_port(), free_port()
    up_script = localize(blocks["up"], api_port, hook_port)
    up_script = up_script.replace(
        "smoothguard up", f"smoothguard up --data-dir {tmp_path / 'data'} --port {api_port}", 1
    )
    up_log = tmp_path / "up.log"
    with up_log.open("wb") as out:
        up = subprocess.Popen(
            ["bash", "-c", up_script], cwd=ROOT, env=clean_env(), stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        printed = wait_for_banner(up_log, up, timeout=120)
        key = re.search(r"dev API key: (sg_\S+)", printed).group(1)
        banner = printed[printed.index("SmoothGuard is up") :]
        assert f"http://127.0.0.1:{api_port}" in banner and "|" not in banner  # the URL and key, no worker lines
        assert len(printed.splitlines()) < 20, printed  # no Celery banners above it either (they are in the logs)
        walk = subprocess.Popen(
            ["bash", "-e", "-o", "pipefail", "-c", localize(blocks["walkthrough"], api_port, hook_port, key)],
            cwd=ROOT, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True,
        )  # fmt: skip
        try:
            out, _ = walk.communicate(timeout=90)
        finally:
            kill_group(walk.pid)  # the background receiver too, where the block stopped before its `wait`
        assert walk.returncode == 0, out[-3000:]
        assert re.search(r"^msg_\S+ job\.completed signature VERIFIED; data: .*\"answer\": \"red\"", out, re.M), out
        assert '"status":"succeeded"' in out and '"selected":true' in out  # the job, then its samples
        run_audit_block(blocks["audit"], api_port, hook_port, key, tmp_path / "audit")
        run_robust_block(blocks["robust"], api_port, hook_port, key)
    finally:
        up.send_signal(signal.SIGTERM)
        try:
            up.wait(timeout=90)
        finally:
            kill_group(up.pid)
    assert up.returncode == 0, up_log.read_text()[-3000:]
