"""docker-compose.yml, deploy/Dockerfile.*, deploy/prometheus.yml and .dockerignore, checked without Docker.

No Docker engine runs here, so the files are parsed and held against the code they start: every
``smoothguard ...`` command parses with ``shared.tools.cli.build_parser()``, every ``SMOOTHGUARD_*`` name is a
field of ``shared.config.Settings``, every ``python -c`` snippet compiles and its names import, one GPU per
gpu-worker service, required secrets without defaults, S3 not published, the MinIO setup script (run
here with a stand-in ``mc``) gives the app a key limited to its bucket, the images pin their dependencies.
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
import subprocess
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml
from packaging.requirements import Requirement

from shared.config import Settings
from shared.tools.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
PROMETHEUS = ROOT / "deploy" / "prometheus.yml"
S3_PUBLIC = ROOT / "deploy" / "compose.s3-public.yml"
CONSTRAINTS = ROOT / "deploy" / "constraints.txt"
DOCKERFILES = ("deploy/Dockerfile.api", "deploy/Dockerfile.cpu-worker", "deploy/Dockerfile.gpu-worker")

INFRA = {"postgres", "redis", "minio"}
GPU_WORKER = re.compile(r"gpu-worker-\d+")
APP_SERVICES = {"api", "gpu-worker-0", "cpu-worker", "webhook-worker", "sweeper"}  # long-running SmoothGuard processes
WORKERS = {"gpu-worker-0", "cpu-worker", "webhook-worker"}  # Celery workers: healthcheck and metrics
ONE_SHOTS = {"migrate", "minio-setup", "pull-model"}
# Compose refuses to start without these (``${VAR:?message}``); no default anywhere in the file.
REQUIRED_SECRETS = (
    "POSTGRES_PASSWORD",
    "MINIO_ROOT_USER",
    "MINIO_ROOT_PASSWORD",
    "SMOOTHGUARD_S3_ACCESS_KEY",
    "SMOOTHGUARD_S3_SECRET_KEY",
    "SMOOTHGUARD_MODEL_REVISION",
)
# An operator's .env, with made-up strong values (production Settings refuse weak ones).
DOT_ENV = {
    "POSTGRES_PASSWORD": "5d41402abc4b2a76b9719d91",
    "MINIO_ROOT_USER": "minio-root",
    "MINIO_ROOT_PASSWORD": "7d793037a0760186574b0282",
    "SMOOTHGUARD_S3_ACCESS_KEY": "smoothguard-app",
    "SMOOTHGUARD_S3_SECRET_KEY": "3c59dc048e8850243be8079a",
    "SMOOTHGUARD_MODEL_REVISION": "0123456789abcdef0123456789abcdef01234567",
}
ROUND_SECONDS = 120  # a generous round of a 7B model: one batched generate of max_new_tokens
# What a third-party image can execute (for healthchecks and commands); keyed by image name without tag.
IMAGE_EXECUTABLES = {
    "postgres": {"pg_isready", "psql", "postgres", "docker-entrypoint.sh"},
    "redis": {"redis-cli", "redis-server"},
    "quay.io/minio/minio": {"minio", "mc"},  # mc is bundled in the server image; curl is not
    "prom/prometheus": {"prometheus", "promtool"},
    "mher/flower": {"celery"},
}
OUR_EXECUTABLES = {"smoothguard", "python"}  # the console script and the interpreter, on PATH in all three images
SMOOTHGUARD_NAME = re.compile(r"\bSMOOTHGUARD_[A-Z0-9_]+")
VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")


# --- helpers -------------------------------------------------------------------------------------


def load_compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def services() -> dict[str, dict]:
    return load_compose()["services"]


def interpolate(value: str, env: dict[str, str] | None = None) -> str:
    """Compose's ``${VAR}``, ``${VAR:-default}``, ``${VAR-default}``, ``${VAR:?error}`` and ``$$``, against
    ``env`` (default: the operator's .env above)."""
    env = DOT_ENV if env is None else env

    def one(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1) or m.group(4)
        op, default = m.group(2), m.group(3)
        if op == ":-":
            return env.get(name) or default
        if op == "-":
            return env.get(name, default)
        if op in (":?", "?"):
            assert env.get(name) or (op == "?" and name in env), f"compose refuses to start: {default}"
            return env[name]
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
    assert set(svcs) >= INFRA | APP_SERVICES | ONE_SHOTS
    assert svcs["postgres"]["image"].startswith("postgres:")
    assert svcs["redis"]["image"].startswith("redis:")
    assert image_name_and_tag(svcs["minio"]["image"])[0].endswith("minio/minio")
    assert argv_of(svcs["minio"]["command"])[:2] == ["server", "/data"]
    assert "--console-address" in argv_of(svcs["minio"]["command"])


def test_every_smoothguard_name_is_a_settings_field():
    known = settings_env_names()
    for path in [COMPOSE, S3_PUBLIC, *(ROOT / d for d in DOCKERFILES), ROOT / "deploy" / "README.md"]:
        unknown = set(SMOOTHGUARD_NAME.findall(path.read_text())) - known
        assert not unknown, f"{path.relative_to(ROOT)} names settings that shared.config.Settings lacks: {unknown}"


def test_shared_environment_anchor_is_used_by_every_smoothguard_service():
    compose = load_compose()
    shared_env = compose["x-smoothguard-env"]
    for key in (
        "ENVIRONMENT",
        "DATABASE_URL",
        "REDIS_URL",
        "S3_ENDPOINT",
        "S3_ACCESS_KEY",
        "S3_SECRET_KEY",
        "S3_BUCKET",
        "PUBLIC_URL",
        "MODEL",
        "MODEL_REVISION",
    ):
        assert f"SMOOTHGUARD_{key}" in shared_env
    assert shared_env["SMOOTHGUARD_ENVIRONMENT"] == "production"
    for name, svc in compose["services"].items():
        if image_of(svc) in DOCKERFILES:
            env = environment(svc)
            assert {k: env.get(k) for k in shared_env} == {k: str(v) for k, v in shared_env.items()}, name


@pytest.mark.parametrize("name", sorted(APP_SERVICES | {"migrate", "pull-model"}))
def test_service_environment_validates_as_production_settings(name, monkeypatch):
    for key in list(os.environ):
        if key.startswith("SMOOTHGUARD_"):
            monkeypatch.delenv(key)
    for key, value in environment(services()[name]).items():
        if key.startswith("SMOOTHGUARD_"):
            monkeypatch.setenv(key, interpolate(value))
    settings = Settings(_env_file=None)  # raises on a value of the wrong type, or on a weak secret
    assert settings.environment == "production"
    assert settings.model_revision == DOT_ENV["SMOOTHGUARD_MODEL_REVISION"]
    if GPU_WORKER.fullmatch(name):
        assert settings.device == "cuda"
        assert settings.model == "llava-hf/llava-1.5-7b-hf"
        assert settings.hf_offline is True  # pull-model fetched the pinned revision before it started
    if name in WORKERS:
        assert settings.metrics_port == 9100
    if name == "cpu-worker":
        assert settings.device == "cpu"


def test_required_secrets_have_no_defaults():
    text = COMPOSE.read_text()
    for name in REQUIRED_SECRETS:
        uses = re.findall(r"\$\{" + name + r"(:?[-?]|\})", text)
        assert uses, f"{name} is not used"
        assert set(uses) == {":?"}, f"{name}: every use must be ${{{name}:?message}} (found {uses})"
        with pytest.raises(AssertionError, match="compose refuses to start"):
            interpolate("${" + name + ":?missing}", {k: v for k, v in DOT_ENV.items() if k != name})
    assert "smoothguard-secret" not in text and "smoothguard-dev" not in text


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
    raw_app, raw_minio, raw_setup = (environment(svcs[n]) for n in ("api", "minio", "minio-setup"))
    # The app is not MinIO's root: its key is the user minio-setup creates, the same expression on both sides.
    assert raw_setup["APP_ACCESS_KEY"] == raw_app["SMOOTHGUARD_S3_ACCESS_KEY"]
    assert raw_setup["APP_SECRET_KEY"] == raw_app["SMOOTHGUARD_S3_SECRET_KEY"]
    assert raw_setup["MINIO_ROOT_USER"] == raw_minio["MINIO_ROOT_USER"]
    assert raw_setup["MINIO_ROOT_PASSWORD"] == raw_minio["MINIO_ROOT_PASSWORD"]
    assert "MINIO_ROOT" not in raw_app["SMOOTHGUARD_S3_ACCESS_KEY"] + raw_app["SMOOTHGUARD_S3_SECRET_KEY"]
    assert interpolate(raw_setup["BUCKET"]) == app_env["SMOOTHGUARD_S3_BUCKET"]
    assert len(interpolate(raw_minio["MINIO_ROOT_PASSWORD"])) >= 8  # MinIO refuses shorter root passwords
    assert urlsplit(app_env["SMOOTHGUARD_PUBLIC_URL"]).port == 8000


def test_minio_setup_gives_the_app_a_key_limited_to_its_bucket(tmp_path):
    """The one-shot's script, run by sh with a stand-in ``mc`` that logs its arguments."""
    svc = services()["minio-setup"]
    assert svc["image"] == services()["minio"]["image"]  # mc ships in the server image
    assert svc["entrypoint"][0] == "/bin/sh"  # the image's own entrypoint would start a server
    assert svc.get("restart", "no") == "no"
    (tmp_path / "mc").write_text('#!/bin/sh\necho "$@" >> "$MC_LOG"\n')
    (tmp_path / "mc").chmod(0o755)
    env = {k: interpolate(v) for k, v in environment(svc).items()}
    script = interpolate(svc["command"][0])
    os.chdir(tmp_path)
    run_env = {"PATH": f"{tmp_path}:/usr/bin:/bin", "MC_LOG": str(tmp_path / "mc.log"), **env}
    subprocess.run(
        [*svc["entrypoint"], script.replace("/tmp/policy.json", str(tmp_path / "p.json"))], env=run_env, check=True
    )
    calls = [line.split() for line in (tmp_path / "mc.log").read_text().splitlines()]
    bucket, user = env["BUCKET"], env["APP_ACCESS_KEY"]
    assert ["mb", "--ignore-existing", f"root/{bucket}"] in calls
    assert ["admin", "user", "add", "root", user, env["APP_SECRET_KEY"]] in calls
    assert ["admin", "policy", "attach", "root", "smoothguard-app", "--user", user] in calls
    assert calls[-1] == ["ls", f"app/{bucket}"]  # checked with the app's own key
    policy = json.loads((tmp_path / "p.json").read_text())
    resources = {r for st in policy["Statement"] for r in st["Resource"]}
    assert resources == {f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"}
    actions = {a for st in policy["Statement"] for a in st["Action"]}
    assert actions == {  # objects and multipart uploads in the bucket; no bucket policy, deletion or admin
        "s3:GetBucketLocation",
        "s3:ListBucket",
        "s3:ListBucketMultipartUploads",
        "s3:GetObject",
        "s3:PutObject",
        "s3:DeleteObject",
        "s3:AbortMultipartUpload",
        "s3:ListMultipartUploadParts",
    }


def test_s3_and_infrastructure_are_not_published():
    for name, svc in services().items():
        for port in svc.get("ports", []):
            published = str(port).rsplit(":", 1)[0]
            assert not published.endswith("9000"), f"{name} publishes S3 by default"
            if name in INFRA or name in {"prometheus", "flower"}:
                assert published.startswith("127.0.0.1:"), f"{name}: {port} is published beyond loopback"
    override = yaml.safe_load(S3_PUBLIC.read_text())
    assert override == {"services": {"minio": {"ports": ["9000:9000"]}}}


def test_postgres_healthcheck_uses_tcp():
    argv = healthcheck_argv(services()["postgres"]["healthcheck"]["test"])
    assert argv[0] == "pg_isready" and argv[argv.index("-h") + 1] == "127.0.0.1"


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
        "pull-model": ["smoothguard", "pull-model"],
        "cpu-worker": ["smoothguard", "worker", "cpu", "audits"],
        "webhook-worker": ["smoothguard", "worker", "webhooks"],
        "sweeper": ["smoothguard", "worker", "beat"],
        **{name: ["smoothguard", "worker", "gpu"] for name in svcs if GPU_WORKER.fullmatch(name)},
    }
    for name, argv in expected.items():
        assert argv_of(svcs[name]["command"]) == argv, name
    api = argv_of(svcs["api"]["command"])
    assert api[:2] == ["smoothguard", "api"]
    args = parse_smoothguard(api, "api.command")
    assert (args.host, int(args.port)) == ("0.0.0.0", 8000)
    assert "8000:8000" in [str(p) for p in svcs["api"]["ports"]]
    assert "/healthz" in " ".join(healthcheck_argv(svcs["api"]["healthcheck"]["test"]))
    for name in WORKERS:
        assert healthcheck_argv(svcs[name]["healthcheck"]["test"]) == ["smoothguard", "healthcheck"], name
    # The sweeper re-enqueues lost jobs: two of them would race. Exactly one service runs beat, once.
    beats = [
        n
        for n, s in svcs.items()
        if argv_of(s.get("command", []))[:2] == ["smoothguard", "worker"]
        and {"beat", "--beat"} & set(argv_of(s["command"])[2:])
    ]
    assert beats == ["sweeper"]
    assert svcs["sweeper"]["deploy"]["replicas"] == 1


def gpu_devices(compose: dict) -> dict[str, list[str]]:
    """``{service: device_ids}`` of the gpu-worker-K services."""
    out = {}
    for name, svc in compose["services"].items():
        if GPU_WORKER.fullmatch(name):
            (device,) = svc["deploy"]["resources"]["reservations"]["devices"]
            assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"] and "count" not in device
            out[name] = device["device_ids"]
    return out


def with_documented_gpu_block() -> dict:
    """The compose file with its commented gpu-worker-1 example uncommented, as the header tells."""
    lines = COMPOSE.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("  # gpu-worker-1:"))
    end = next(i for i in range(start, len(lines)) if not lines[i].startswith("  #"))
    block = [line.replace("  # ", "  ", 1).replace("  #   ", "    ", 1) for line in lines[start:end]]
    return yaml.safe_load("\n".join(lines[:start] + block + lines[end:]))


def test_one_gpu_worker_service_per_device():
    for compose in (load_compose(), with_documented_gpu_block()):
        devices = gpu_devices(compose)
        assert devices, "no gpu-worker-K service"
        for name, ids in devices.items():
            assert ids == [name.rsplit("-", 1)[1]], f"{name} reserves {ids}"
    assert set(gpu_devices(with_documented_gpu_block())) == {"gpu-worker-0", "gpu-worker-1"}
    assert "--scale gpu-worker" not in COMPOSE.read_text() + (ROOT / "deploy" / "README.md").read_text()


def test_gpu_workers_load_the_pulled_model_offline():
    svcs = services()
    pull = svcs["pull-model"]
    assert environment(pull)["HF_TOKEN"] == "${HF_TOKEN:-}"
    assert pull.get("restart", "no") == "no" and "deploy" not in pull  # no GPU for a download
    for name in gpu_devices(load_compose()):
        svc = svcs[name]
        assert image_of(svc) == image_of(pull) == "deploy/Dockerfile.gpu-worker"
        assert svc["depends_on"]["pull-model"]["condition"] == "service_completed_successfully"
        env = environment(svc)
        assert env["SMOOTHGUARD_HF_OFFLINE"] == "true"
        assert env["HF_HOME"] == environment(pull)["HF_HOME"]
        assert set(svc["volumes"]) == set(pull["volumes"]) == {f"hf-cache:{env['HF_HOME']}"}
        grace = svc["stop_grace_period"]
        stop_s = int(grace.rstrip("ms")) * (60 if grace.endswith("m") else 1)
        shutdown_s = float(env["SMOOTHGUARD_SHUTDOWN_GRACE_S"])  # how long the worker lets its round finish
        assert ROUND_SECONDS <= shutdown_s < stop_s, "a round finishes, then the task is handed back before SIGKILL"


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
        for one_shot in ("migrate", "minio-setup"):
            assert svcs[name]["depends_on"][one_shot]["condition"] == "service_completed_successfully", name
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


def test_flower_in_the_monitoring_profile():
    flower = services()["flower"]
    assert flower["profiles"] == ["monitoring"]
    argv = argv_of(flower["command"])
    assert argv[0] == "celery" and "flower" in argv
    broker = next(a.split("=", 1)[1] for a in argv if a.startswith("--broker="))
    assert broker == interpolate(load_compose()["x-smoothguard-env"]["SMOOTHGUARD_REDIS_URL"])


# --- the Dockerfiles -------------------------------------------------------------------------------

SOURCE_DIRS = ("shared", "api", "workers", "migrations")


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
    project = [r for r in installs if re.search(r"pip install (--no-deps )?(-e )?['\"]?\.(\[[\w,]+\])?['\"]?(\s|$)", r)]
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


@pytest.mark.parametrize("path", DOCKERFILES)
def test_dependencies_are_a_layer_before_the_source(path):
    """pyproject.toml and the constraints are copied and installed before any source: a code change
    rebuilds only the layers after the source copy; the project itself goes in with ``--no-deps``."""
    instructions = dockerfile(path)
    deps_at = next(i for i, (ins, rest) in enumerate(instructions) if ins == "RUN" and "pip install -r" in rest)
    deps = instructions[deps_at][1]
    assert "-c deploy/constraints.txt" in deps, f"{path}: dependencies not installed with the constraints"
    copied_before = {s for ins, rest in instructions[:deps_at] if ins == "COPY" for s in shlex.split(rest)[:-1]}
    assert copied_before == {"pyproject.toml", "deploy/constraints.txt", "deploy/pyproject_deps.py"}, copied_before
    copied_after = {s for ins, rest in instructions[deps_at:] if ins == "COPY" for s in shlex.split(rest)[:-1]}
    assert set(SOURCE_DIRS) <= copied_after
    extras = re.search(r"pyproject_deps\.py\s*([\w ]*)>", deps).group(1).split()
    assert extras == ([] if path == "deploy/Dockerfile.api" else ["ml"]), f"{path}: {extras}"
    after = [rest for ins, rest in instructions[deps_at + 1 :] if ins == "RUN" and "pip install" in rest]
    assert after and all("--no-deps" in r for r in after), f"{path}: the source layers reinstall dependencies"


def constraint_pins() -> dict[str, str]:
    pins = {}
    for line in CONSTRAINTS.read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"constraints.txt: {line!r} is not name==version"
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    return pins


def test_constraints_pin_every_dependency_within_pyproject():
    """Every requirement of the base and the ml extra (torch aside: each image installs its own build)
    is pinned by deploy/constraints.txt to a version pyproject.toml allows: pip finds no conflict."""
    import sys

    sys.path.insert(0, str(ROOT / "deploy"))
    from pyproject_deps import requirements

    pins = constraint_pins()
    assert "torch" not in pins
    for line in requirements(ROOT / "pyproject.toml", ["ml"]):
        req = Requirement(line)
        if req.name == "torch":
            continue
        key = re.sub(r"[-_.]+", "-", req.name).lower()
        assert key in pins, f"deploy/constraints.txt does not pin {req.name} (make constraints)"
        assert req.specifier.contains(pins[key], prereleases=True), f"{req.name}=={pins[key]} is outside {req}"


def test_dockerignore_keeps_the_sources_and_drops_the_rest():
    patterns = dockerignore_patterns()
    for source in [*project_sources(), "deploy/constraints.txt", "deploy/pyproject_deps.py"]:
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


def test_prometheus_scrapes_the_api_and_every_worker():
    config = yaml.safe_load(PROMETHEUS.read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    targets = [t for job in jobs.values() for sc in job.get("static_configs", []) for t in sc["targets"]]
    assert "api:8000" in targets
    job = next(j for j in jobs.values() if any("api:8000" in sc["targets"] for sc in j.get("static_configs", [])))
    assert job.get("metrics_path", "/metrics") == "/metrics"
    looked_up = {
        (name, sd["port"]) for j in jobs.values() for sd in j.get("dns_sd_configs", []) for name in sd["names"]
    }
    assert looked_up == {(name, 9100) for name in WORKERS}, "each worker service's metrics port, every replica"
    mounts = services()["prometheus"]["volumes"]
    assert any(v.split(":")[0] == "./deploy/prometheus.yml" for v in mounts)


def test_the_api_serves_the_probed_paths():
    """The healthcheck's /healthz and the scrape's /metrics are routes of the app (whatever they answer here)."""
    from fastapi.testclient import TestClient

    from api.main import create_app

    client = TestClient(create_app(Settings(_env_file=None)), raise_server_exceptions=False)
    for path in ("/healthz", "/metrics"):
        assert client.get(path).status_code not in (404, 405), f"the API does not serve GET {path}"
