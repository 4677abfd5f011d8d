"""Start-up: the command line's help loads no model library, and the stack's torch workers share
the machine's cores instead of each taking all of them."""

import subprocess
import sys

from shared.tools.launcher import THREAD_VARIABLES, TORCH_PROCESSES, Stack, thread_environment, thread_share

HEAVY = ("torch", "transformers", "sentence_transformers", "sklearn", "scipy", "celery", "sqlalchemy")

HELP_SCRIPT = f"""
import sys
from shared.tools.cli import main
for argv in (["--help"], ["defend", "--help"], ["worker", "--help"]):
    try:
        main(argv)
    except SystemExit:
        pass
print("loaded:", sorted(m for m in {HEAVY!r} if m in sys.modules))
"""


def test_help_imports_no_model_library():
    out = subprocess.run([sys.executable, "-c", HELP_SCRIPT], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "--local" in out.stdout  # the defend help was printed
    assert out.stdout.splitlines()[-1] == "loaded: []"


def test_the_torch_processes_share_the_cores():
    assert [thread_share(cores) for cores in (1, 2, 3, 16)] == [1, 1, 1, 8]
    assert thread_environment(0) == {}
    assert thread_environment(3) == dict.fromkeys(THREAD_VARIABLES, "3")


def test_the_stack_gives_its_torch_workers_their_share(tmp_path):
    stack = Stack(tmp_path, environ={"PATH": "/bin"})
    share = str(thread_share())
    for name in TORCH_PROCESSES:
        assert stack.child_environment(name, {})["SMOOTHGUARD_TORCH_THREADS"] == share
        assert stack.child_environment(name, {"SMOOTHGUARD_TORCH_THREADS": "0"})["SMOOTHGUARD_TORCH_THREADS"] == share
        assert stack.child_environment(name, {"SMOOTHGUARD_TORCH_THREADS": "3"})["SMOOTHGUARD_TORCH_THREADS"] == "3"
    assert "SMOOTHGUARD_TORCH_THREADS" not in stack.child_environment("api", {})
    assert "SMOOTHGUARD_TORCH_THREADS" not in stack.child_environment("webhooks", {})


def test_defend_names_an_api_that_is_not_there(capsys, monkeypatch):
    from shared.config import DEMO_IMAGE, get_settings
    from shared.tools.cli import main
    from shared.tools.servers import free_port

    monkeypatch.delenv("SMOOTHGUARD_API_KEY", raising=False)
    get_settings.cache_clear()
    argv = ["defend", str(DEMO_IMAGE), "--prompt", "Is there a circle?", "--url", f"http://127.0.0.1:{free_port()}"]
    assert main(argv) == 2
    assert "--url needs an API key" in capsys.readouterr().err
    assert main([*argv, "--key", "sg_x"]) == 2
    assert "is not ready" in capsys.readouterr().err
