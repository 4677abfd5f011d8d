"""The import rules that keep the layout honest (DESIGN.md §3), read from the source's import
statements — function-level (lazy) imports included:

- nothing under ``shared/`` imports ``api`` or ``workers``;
- the libraries (``smoothing``, ``attacks``, ``reports``, ``benchmarks``, ``backends``) import no
  platform or service module: only each other and the pure media decoding (``shared.media.decode``);
- only ``workers/celery_app.py`` imports Celery (``shared/pipeline.py`` says what runs next without it);
- the API reaches the queue through ``create_app(settings)``: no broker is built at import.

That the API process never imports torch is checked in ``tests/api/test_api.py``.
"""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIBRARIES = ("smoothing", "attacks", "reports", "benchmarks", "backends", "robustify")
LIBRARY_MAY_IMPORT = tuple(f"shared.{name}" for name in LIBRARIES) + ("shared.media.decode",)


def imports_of(path: Path, root: Path = ROOT) -> set[str]:
    """Every module a file imports (absolute names; relative imports resolved to their package)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = ".".join(path.relative_to(root).with_suffix("").parts[:-1])
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + [base]).strip(".")
            out.add(base)
    return out


def files(*folders: str) -> list[Path]:
    return [p for folder in folders for p in (ROOT / folder).rglob("*.py")]


def violations(paths: list[Path], allowed) -> list[str]:
    return sorted(f"{p.relative_to(ROOT)} imports {m}" for p in paths for m in imports_of(p) if not allowed(p, m))


def under(module: str, *prefixes: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def test_shared_imports_neither_api_nor_workers():
    assert violations(files("shared"), lambda p, m: not under(m, "api", "workers")) == []


def test_libraries_import_no_platform_or_service_module():
    libraries = files(*(f"shared/{name}" for name in LIBRARIES))
    allowed = lambda p, m: not under(m, "shared", "api", "workers") or under(m, *LIBRARY_MAY_IMPORT)  # noqa: E731
    assert violations(libraries, allowed) == []


def test_only_the_celery_app_module_imports_celery():
    celery_app = ROOT / "workers" / "celery_app.py"
    allowed = lambda p, m: p == celery_app or not under(m, "celery", "kombu", "celery_batches")  # noqa: E731
    assert violations(files("shared", "api", "workers"), allowed) == []


def test_the_rules_see_lazy_and_relative_imports(tmp_path):
    probe = tmp_path / "shared" / "smoothing" / "probe.py"
    probe.parent.mkdir(parents=True)
    probe.write_text("def f():\n    from shared.config import Settings\n    from ..db import get_engine\n")
    assert {"shared.config", "shared.db"} <= imports_of(probe, root=tmp_path)


def test_the_api_queue_comes_from_create_app_settings_and_nothing_builds_a_broker_at_import():
    """Routes reach the queue through ``app.state.queue`` made from the settings given to
    ``create_app``; importing the API (or the Celery module) builds no worker app."""
    code = (
        "import api.main, workers.celery_app as w; from shared.config import Settings; "
        "built_at_import = w.worker_app.cache_info().currsize; "
        "app = api.main.create_app(Settings(redis_url='redis://127.0.0.1:1/5')); "
        "print(app.state.queue.app.conf.broker_url, built_at_import, w.worker_app.cache_info().currsize)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["redis://127.0.0.1:1/5", "0", "0"]
