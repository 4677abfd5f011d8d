"""docker-compose.yml, deploy/Dockerfile.*, deploy/prometheus.yml and .dockerignore, checked without Docker.

No Docker engine runs here, so the files are parsed and held against the code they start: every
``smoothguard ...`` command parses with ``shared.tools.cli.build_parser()``, every ``SMOOTHGUARD_*`` name is a
field of ``shared.config.Settings``, every ``python -c`` snippet compiles and its names import.
"""

from __future__ import annotations

import argparse
import ast
import fnmatch
import importlib
import json
import os
import re
import shlex
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from shared.config import Settings
from shared.tools.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
PROMETHEUS = ROOT / "deploy" / "prometheus.yml"
DOCKERFILES = ("deploy/Dockerfile.api", "deploy/Dockerfile.cpu-worker", "deploy/Dockerfile.gpu-worker")

INFRA = {"postgres", "redis", "minio"}
APP_SERVICES = {"api", "gpu-worker", "cpu-worker", "webhook-worker", "sweeper"}  # long-running SmoothGuard processes
# What a third-party image can execute (for healthchecks and commands); keyed by image name without tag.
IMAGE_EXECUTABLES = {
    "postgres": {"pg_isready", "psql", "postgres", "docker-entrypoint.sh"},
    "redis": {"redis-cli", "redis-server"},
    "quay.io/minio/minio": {"minio", "mc"},  # mc is bundled in the server image; curl is not
    "prom/prometheus": {"prometheus", "promtool"},
}
OUR_EXECUTABLES = {"smoothguard", "python"}  # the console script and the interpreter, on PATH in all three images
SMOOTHGUARD_NAME = re.compile(r"\bSMOOTHGUARD_[A-Z0-9_]+")
VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")


# --- helpers -------------------------------------------------------------------------------------


def load_compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def services() -> dict[str, dict]:
    return load_compose()["services"]


def interpolate(value: str, env: dict[str, str] | None = None) -> str:
    """Compose's ``${VAR}``, ``${VAR:-default}``, ``${VAR-default}`` and ``$$``, against ``env``."""
    env = env or {}

    def one(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1) or m.group(4)
        op, default = m.group(2), m.group(3)
        if op == ":-":
            return env.get(name) or default
        if op == "-":
            return env.get(name, default)
        return env.get(name, "")

    out = VAR.sub(one, value)
    assert "${" not in out, f"unsupported interpolation in {value!r}"
    return out


def environment(svc: dict) -> dict[str, str]:
    env = svc.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: "" if v is None else str(v).lower() if isinstance(v, bool) else str(v) for k, v in env.items()}


def argv_of(command: str | list) -> list[str]:
    return shlex.split(command) if isinstance(command, str) else [str(a) for a in command]


def parse_smoothguard(argv: list[str], where: str) -> argparse.Namespace:
    assert argv[0] == "smoothguard"
    try:
        return build_parser().parse_args(argv[1:])
    except SystemExit as exc:  # argparse rejects an unknown subcommand or flag by exiting
        pytest.fail(f"{where}: `{shlex.join(argv)}` is not a valid smoothguard command (exit {exc.code})")


def check_python_c(code: str, where: str) -> None:
    """Compile the snippet, import what it imports, and resolve every ``name.attr`` chain on those names."""
    tree = ast.parse(code, filename=where)
    compile(tree, where, "exec")
    names: dict[str, object] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                module = importlib.import_module(alias.name)
                top = alias.name.split(".")[0]
                names[alias.asname or top] = module if alias.asname else importlib.import_module(top)
        elif isinstance(node, ast.ImportFrom):
            assert node.module and node.level == 0, f"{where}: relative import"
            module = importlib.import_module(node.module)
            for alias in node.names:
                assert hasattr(module, alias.name), f"{where}: {node.module} has no {alias.name}"
                names[alias.asname or alias.name] = getattr(module, alias.name)

    def resolve(node: ast.expr) -> object:
        if isinstance(node, ast.Name):
            return names.get(node.id)
        if isinstance(node, ast.Attribute):
            base = resolve(node.value)
            if base is None:
                return None
            assert hasattr(base, node.attr), f"{where}: {ast.unparse(node.value)} has no attribute {node.attr}"
            return getattr(base, node.attr)
        return None

    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            resolve(node)


def dockerfile(path: str) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` per logical line; comments dropped, continuations joined."""
    lines, current = [], ""
    for raw in (ROOT / path).read_text().splitlines():
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        current += stripped[:-1] + " " if stripped.endswith("\\") else stripped
        if not stripped.endswith("\\"):
            lines.append(current)
            current = ""
    assert not current, f"{path}: dangling line continuation"
    out = []
    for line in lines:
        instruction, _, args = line.partition(" ")
        out.append((instruction.upper(), args.strip()))
    return out


def dockerfile_argv(args: str) -> list[str]:
    return json.loads(args) if args.startswith("[") else shlex.split(args)


def base_images(path: str) -> list[str]:
    """The FROM images, ARG defaults substituted."""
    args: dict[str, str] = {}
    images = []
    for instruction, rest in dockerfile(path):
        if instruction == "ARG" and "=" in rest:
            name, _, default = rest.partition("=")
            args[name] = default
        elif instruction == "FROM":
            image = rest.split()[0]
            images.append(re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), image))
    return images


def dockerfile_env(path: str) -> dict[str, str]:
    env = {}
    for instruction, rest in dockerfile(path):
        if instruction == "ENV":
            for token in shlex.split(rest):
                key, _, value = token.partition("=")
                env[key] = value
    return env


def image_name_and_tag(image: str) -> tuple[str, str | None]:
    name, sep, tag = image.rpartition(":")
    if not sep or "/" in tag:  # no tag, or the colon belonged to a registry port
        return image, None
    return name, tag


def pinned(image: str) -> bool:
    """A tag, not ``latest``, that starts with a version (``16``, ``3.11-slim``, ``v3.5.0``, ``RELEASE.2025-...``)."""
    _, tag = image_name_and_tag(image)
    return tag is not None and re.match(r"^(v?\d+|RELEASE\.\d{4}-)", tag) is not None


def dockerignore_patterns() -> list[str]:
    path = ROOT / ".dockerignore"
    lines = [line.strip() for line in path.read_text().splitlines()]
    return [line.strip("/") for line in lines if line and not line.startswith("#")]


def dockerignored(rel: str, patterns: list[str]) -> bool:
    """Docker's rule, simplified: a pattern excludes what it matches and everything below it; ``**/`` any depth."""
    parts = rel.split("/")
    prefixes = ["/".join(parts[:j]) for j in range(1, len(parts) + 1)]
    runs = ["/".join(parts[i:j]) for i in range(len(parts)) for j in range(i + 1, len(parts) + 1)]
    for pattern in patterns:
        assert not pattern.startswith("!"), "exceptions in .dockerignore are not handled by this test"
        if pattern.startswith("**/"):
            if any(fnmatch.fnmatchcase(r, pattern[3:]) for r in runs):
                return True
        elif any(fnmatch.fnmatchcase(p, pattern) for p in prefixes):
            return True
    return False


def image_of(svc: dict) -> str:
    """``deploy/Dockerfile.x`` for a built service, else the image reference."""
    if "build" in svc:
        build = svc["build"]
        return build["dockerfile"] if isinstance(build, dict) else "Dockerfile"
    return svc["image"]


def healthcheck_argv(test: str | list) -> list[str]:
    if isinstance(test, str):
        return shlex.split(test)
    if test[0] == "CMD-SHELL":
        return shlex.split(test[1])
    assert test[0] == "CMD", f"healthcheck test must start with CMD or CMD-SHELL: {test}"
    return [str(a) for a in test[1:]]


def check_argv(argv: list[str], svc: dict, where: str) -> None:
    image = image_of(svc)
    if image in DOCKERFILES:
        assert argv[0] in OUR_EXECUTABLES, f"{where}: {argv[0]} is not in the SmoothGuard image"
        if argv[0] == "smoothguard":
            parse_smoothguard(argv, where)
        elif argv[:2] == ["python", "-c"]:
            check_python_c(argv[2], where)
        return
    allowed = IMAGE_EXECUTABLES.get(image_name_and_tag(image)[0])
    assert allowed is not None, f"{where}: no known executables for image {image}; add it to IMAGE_EXECUTABLES"
    assert argv[0] in allowed, f"{where}: {argv[0]} is not known to be in {image}"


def settings_env_names() -> set[str]:
    return {"SMOOTHGUARD_" + name.upper() for name in Settings.model_fields}


def project_sources() -> list[str]:
    """What a Dockerfile must copy for ``pip install -e .`` and ``smoothguard migrate`` to work."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = [p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]]
    return ["pyproject.toml", pyproject["project"]["readme"], "alembic.ini", "migrations", *packages]


def ml_torch_pin() -> str:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return next(r for r in pyproject["project"]["optional-dependencies"]["ml"] if r.startswith("torch=="))


# --- the compose file ------------------------------------------------------------------------------


def test_compose_has_the_services():
    svcs = services()
    assert INFRA | APP_SERVICES | {"migrate"} <= set(svcs)
    assert svcs["postgres"]["image"].startswith("postgres:")
    assert svcs["redis"]["image"].startswith("redis:")
    assert image_name_and_tag(svcs["minio"]["image"])[0].endswith("minio/minio")
    assert argv_of(svcs["minio"]["command"])[:2] == ["server", "/data"]
    assert "--console-address" in argv_of(svcs["minio"]["command"])


def test_every_smoothguard_name_is_a_settings_field():
    known = settings_env_names()
    for path in [COMPOSE, *(ROOT / d for d in DOCKERFILES), ROOT / "deploy" / "README.md"]:
        unknown = set(SMOOTHGUARD_NAME.findall(path.read_text())) - known
        assert not unknown, f"{path.relative_to(ROOT)} names settings that shared.config.Settings lacks: {unknown}"


def test_shared_environment_anchor_is_used_by_every_smoothguard_service():
    compose = load_compose()
    shared_env = compose["x-smoothguard-env"]
    for key in (
        "DATABASE_URL",
        "REDIS_URL",
        "S3_ENDPOINT",
        "S3_ACCESS_KEY",
        "S3_SECRET_KEY",
        "S3_BUCKET",
        "PUBLIC_URL",
    ):
        assert f"SMOOTHGUARD_{key}" in shared_env
    for name, svc in compose["services"].items():
        if image_of(svc) in DOCKERFILES:
            env = environment(svc)
            assert {k: env.get(k) for k in shared_env} == {k: str(v) for k, v in shared_env.items()}, name


@pytest.mark.parametrize("name", sorted(APP_SERVICES | {"migrate"}))
def test_service_environment_validates_as_settings(name, monkeypatch):
    for key in list(os.environ):
        if key.startswith("SMOOTHGUARD_"):
            monkeypatch.delenv(key)
    for key, value in environment(services()[name]).items():
        if key.startswith("SMOOTHGUARD_"):
            monkeypatch.setenv(key, interpolate(value))
    settings = Settings(_env_file=None)  # raises on a value of the wrong type
    if name == "gpu-worker":
        assert settings.device == "cuda"
        assert settings.model == "llava-hf/llava-1.5-7b-hf"
        assert settings.hf_offline is False  # the model is downloaded into the cache volume
    if name == "cpu-worker":
        assert settings.device == "cpu"


def test_connection_settings_match_the_infrastructure():
    svcs = services()
    app_env = {k: interpolate(v) for k, v in environment(svcs["api"]).items()}
    pg = {k: interpolate(v) for k, v in environment(svcs["postgres"]).items()}
    db = urlsplit(app_env["SMOOTHGUARD_DATABASE_URL"])
    assert (db.hostname, db.port or 5432, db.username, db.password, db.path.lstrip("/")) == (
        "postgres",
        5432,
        pg["POSTGRES_USER"],
        pg["POSTGRES_PASSWORD"],
        pg["POSTGRES_DB"],
    )
    assert urlsplit(app_env["SMOOTHGUARD_REDIS_URL"]).hostname == "redis"
    assert app_env["SMOOTHGUARD_S3_ENDPOINT"] == "minio:9000"
    raw_app, raw_minio = environment(svcs["api"]), environment(svcs["minio"])
    # The same expression on both sides, so they agree whatever the operator sets.
    assert raw_minio["MINIO_ROOT_USER"] == raw_app["SMOOTHGUARD_S3_ACCESS_KEY"]
    assert raw_minio["MINIO_ROOT_PASSWORD"] == raw_app["SMOOTHGUARD_S3_SECRET_KEY"]
    assert len(interpolate(raw_minio["MINIO_ROOT_PASSWORD"])) >= 8  # MinIO refuses shorter root passwords
    assert urlsplit(app_env["SMOOTHGUARD_PUBLIC_URL"]).port == 8000


def test_every_command_and_healthcheck_exists():
    for name, svc in services().items():
        # A third-party image's command is arguments to its entrypoint (`server /data`); ours have no
        # ENTRYPOINT (checked with the Dockerfiles), so their command is what runs.
        if "command" in svc and image_of(svc) in DOCKERFILES:
            check_argv(argv_of(svc["command"]), svc, f"{name}.command")
        if "healthcheck" in svc:
            check_argv(healthcheck_argv(svc["healthcheck"]["test"]), svc, f"{name}.healthcheck")


def test_smoothguard_processes_run_the_right_subcommands():
    svcs = services()
    expected = {
        "migrate": ["smoothguard", "migrate"],
        "gpu-worker": ["smoothguard", "worker", "gpu"],
        "cpu-worker": ["smoothguard", "worker", "cpu", "audits"],
        "webhook-worker": ["smoothguard", "worker", "webhooks"],
        "sweeper": ["smoothguard", "worker", "beat"],
    }
    for name, argv in expected.items():
        assert argv_of(svcs[name]["command"]) == argv, name
    api = argv_of(svcs["api"]["command"])
    assert api[:2] == ["smoothguard", "api"]
    args = parse_smoothguard(api, "api.command")
    assert (args.host, int(args.port)) == ("0.0.0.0", 8000)
    assert "8000:8000" in [str(p) for p in svcs["api"]["ports"]]
    assert "/healthz" in " ".join(healthcheck_argv(svcs["api"]["healthcheck"]["test"]))
    # The sweeper re-enqueues lost jobs: two of them would race. Exactly one service runs beat, once.
    beats = [
        n
        for n, s in svcs.items()
        if argv_of(s.get("command", []))[:2] == ["smoothguard", "worker"]
        and {"beat", "--beat"} & set(argv_of(s["command"])[2:])
    ]
    assert beats == ["sweeper"]
    assert svcs["sweeper"]["deploy"]["replicas"] == 1


def test_gpu_worker_requests_an_nvidia_gpu_and_caches_models():
    svc = services()["gpu-worker"]
    devices = svc["deploy"]["resources"]["reservations"]["devices"]
    assert any(
        d["driver"] == "nvidia" and "gpu" in d["capabilities"] and (d.get("count") in (1, "all") or d.get("device_ids"))
        for d in devices
    )
    assert image_of(svc) == "deploy/Dockerfile.gpu-worker"
    hf_home = environment(svc).get("HF_HOME") or dockerfile_env(image_of(svc))["HF_HOME"]
    named = {v.split(":")[1]: v.split(":")[0] for v in svc["volumes"] if not v.startswith((".", "/"))}
    assert hf_home in named, f"no named volume at HF_HOME={hf_home}"


def test_builds_point_at_existing_dockerfiles():
    for name, svc in services().items():
        if "build" in svc:
            build = svc["build"]
            assert isinstance(build, dict), f"{name}: give build a context and a dockerfile"
            context = ROOT / build.get("context", ".")
            assert (context / build["dockerfile"]).is_file(), name
            assert build["dockerfile"] in DOCKERFILES, name
            assert context.resolve() == ROOT, f"{name}: the build context is the repository root"


def test_depends_on_targets_and_conditions():
    svcs = services()
    graph = {}
    for name, svc in svcs.items():
        deps = svc.get("depends_on") or {}
        deps = {d: {"condition": "service_started"} for d in deps} if isinstance(deps, list) else deps
        graph[name] = set(deps)
        for target, spec in deps.items():
            assert target in svcs, f"{name} depends on unknown service {target}"
            condition = spec["condition"]
            if condition == "service_healthy":
                assert "healthcheck" in svcs[target], f"{name} waits for {target} to be healthy; it has no healthcheck"
            elif condition == "service_completed_successfully":
                assert svcs[target].get("restart", "no") == "no", f"{target} is waited on to exit; it must not restart"
    assert svcs["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in APP_SERVICES:
        assert svcs[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully", name
    # No cycles: compose would refuse to start.
    done: set[str] = set()
    while len(done) < len(graph):
        ready = {n for n, deps in graph.items() if n not in done and deps <= done}
        assert ready, f"dependency cycle among {set(graph) - done}"
        done |= ready


def test_images_are_pinned():
    for name, svc in services().items():
        if "build" not in svc:
            assert pinned(svc["image"]), f"{name}: pin {svc['image']} to a version"
    for path in DOCKERFILES:
        for image in base_images(path):
            assert pinned(image), f"{path}: pin FROM {image} to a version"


def test_named_volumes_are_declared():
    compose = load_compose()
    declared = set(compose.get("volumes") or {})
    for name, svc in compose["services"].items():
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith((".", "/")):
                assert (ROOT / source).exists(), f"{name}: bind mount {source} does not exist"
            else:
                assert source in declared, f"{name}: volume {source} is not declared"


# --- the Dockerfiles -------------------------------------------------------------------------------


@pytest.mark.parametrize("path", DOCKERFILES)
def test_dockerfile_builds_and_runs_smoothguard(path):
    instructions = dockerfile(path)
    kinds = [i for i, _ in instructions]
    assert kinds[0] in ("FROM", "ARG") and "FROM" in kinds
    patterns = dockerignore_patterns()
    copied = []
    for instruction, rest in instructions:
        if instruction in ("COPY", "ADD"):
            tokens = [t for t in shlex.split(rest) if not t.startswith("--")]
            for source in tokens[:-1]:
                assert (ROOT / source).exists(), f"{path}: COPY {source}: not in the repository"
                assert not dockerignored(source, patterns), f"{path}: COPY {source}: excluded by .dockerignore"
                copied.append(source)
    missing = set(project_sources()) - set(copied)
    assert not missing, f"{path} does not copy {missing}"
    installs = [rest for i, rest in instructions if i == "RUN" and "pip install" in rest]
    project = [r for r in installs if re.search(r"pip install (-e )?['\"]?\.(\[[\w,]+\])?['\"]?(\s|$)", r)]
    assert project, f"{path} does not pip install the project"
    user = [rest for i, rest in instructions if i == "USER"]
    assert user and user[-1] not in ("root", "0"), f"{path} must run as a non-root user"
    assert "ENTRYPOINT" not in kinds, f"{path}: compose commands replace CMD and are run as they are"
    cmds = [dockerfile_argv(rest) for i, rest in instructions if i == "CMD"]
    assert cmds, f"{path}: no CMD"
    assert cmds[-1][0] == "smoothguard", f"{path}: CMD does not run smoothguard"
    parse_smoothguard(cmds[-1], f"{path} CMD")
    torch_installs = [r for r in installs if "torch" in r]
    if path == "deploy/Dockerfile.api":
        assert not torch_installs and not re.search(r"\.\[", " ".join(project)), "the API image has no ML stack"
        return
    # Workers: the pinned torch from the right index first, then the project with the ml extra.
    assert any(ml_torch_pin() in r and "--index-url" in r for r in torch_installs), path
    assert installs.index(torch_installs[0]) < installs.index(project[-1])
    assert "ml" in re.search(r"\.\[([\w,]+)\]", project[-1]).group(1).split(",")
    cpu_index = any("/whl/cpu" in r for r in torch_installs)
    assert cpu_index == (path == "deploy/Dockerfile.cpu-worker"), f"{path}: wrong torch index"
    assert dockerfile_env(path).get("HF_HOME"), f"{path}: set HF_HOME (the model cache volume)"


def test_dockerignore_keeps_the_sources_and_drops_the_rest():
    patterns = dockerignore_patterns()
    for source in project_sources():
        top = ROOT / source
        files = [top] if top.is_file() else [p for p in top.rglob("*") if p.is_file()]
        for file in files:
            rel = file.relative_to(ROOT).as_posix()
            if "__pycache__" in rel.split("/") or rel.endswith(".pyc"):
                continue
            assert not dockerignored(rel, patterns), f".dockerignore drops {rel}, which the images need"
    for junk in (".git", ".venv", ".env", "tests/deploy/test_compose.py"):
        assert dockerignored(junk, patterns), f".dockerignore should exclude {junk}"


# --- Prometheus ------------------------------------------------------------------------------------


def test_prometheus_scrapes_the_api_metrics():
    config = yaml.safe_load(PROMETHEUS.read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    targets = [t for job in jobs.values() for sc in job.get("static_configs", []) for t in sc["targets"]]
    assert "api:8000" in targets
    job = next(j for j in jobs.values() if any("api:8000" in sc["targets"] for sc in j.get("static_configs", [])))
    assert job.get("metrics_path", "/metrics") == "/metrics"
    mounts = services()["prometheus"]["volumes"]
    assert any(v.split(":")[0] == "./deploy/prometheus.yml" for v in mounts)


def test_the_api_serves_the_probed_paths():
    """The healthcheck's /healthz and the scrape's /metrics are routes of the app (whatever they answer here)."""
    from fastapi.testclient import TestClient

    from api.main import create_app

    client = TestClient(create_app(Settings(_env_file=None)), raise_server_exceptions=False)
    for path in ("/healthz", "/metrics"):
        assert client.get(path).status_code not in (404, 405), f"the API does not serve GET {path}"
