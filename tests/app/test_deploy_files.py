"""Dockerfile and docker-compose.yml agree with the app: command, port, health check, CUTOUT_* names."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "docker-compose.yml"


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        word, _, args = full.partition(" ")
        out.append((word.upper(), args.strip()))
    return out


def _env_pairs(args: str) -> dict[str, str]:
    parts = shlex.split(args)
    if parts and "=" not in parts[0]:  # legacy "ENV KEY value"
        return {parts[0]: " ".join(parts[1:])}
    return dict(p.split("=", 1) for p in parts)


@pytest.fixture(scope="module")
def dockerfile() -> dict:
    ins = _instructions(DOCKERFILE.read_text())
    env: dict[str, str] = {}
    for word, args in ins:
        if word == "ENV":
            env.update(_env_pairs(args))
    [cmd] = [json.loads(a) for w, a in ins if w == "CMD"]
    [health] = [a for w, a in ins if w == "HEALTHCHECK"]
    expose = [int(p.split("/")[0]) for w, a in ins if w == "EXPOSE" for p in a.split()]
    return {"instructions": ins, "env": env, "cmd": cmd, "healthcheck": health, "expose": expose}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def service_routes() -> set[str]:
    from app import observability, web
    from app.main import create_app
    from app.settings import Settings

    def install(app):
        observability.install(app)
        web.install(app)

    app = create_app(Settings(), install=install)
    return {getattr(r, "path", None) for r in app.routes} | {
        path for path in app.openapi()["paths"]
    }


def _known_env_names() -> set[str]:
    """CUTOUT_* names the app reads: Settings fields, plus those the CLI reads from the environment."""
    from app.settings import Settings

    names = {f"CUTOUT_{name.upper()}" for name in Settings.model_fields}
    cli_source = (ROOT / "app" / "cli.py").read_text()
    names |= set(re.findall(r"""environ(?:\.get)?\(\s*["'](CUTOUT_[A-Z0-9_]+)["']""", cli_source))
    return names


def _cutout_env(mapping: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in mapping.items() if k.startswith("CUTOUT_")}


def test_dockerfile_runs_cutout_serve(dockerfile):
    from app.cli import build_parser

    assert dockerfile["cmd"] == ["cutout", "serve"]
    args = build_parser().parse_args(dockerfile["cmd"][1:])
    assert args.command == "serve"
    assert "cutout = \"app.cli:main\"" in (ROOT / "pyproject.toml").read_text()  # the console script


def test_dockerfile_port_and_bind_address(dockerfile):
    from app.settings import Settings

    env = _cutout_env(dockerfile["env"])
    settings = Settings(**{k[len("CUTOUT_"):].lower(): v for k, v in env.items()
                           if k[len("CUTOUT_"):].lower() in Settings.model_fields})
    assert settings.host == "0.0.0.0"  # reachable from outside the container
    assert dockerfile["expose"] == [settings.port]


def test_dockerfile_env_names_exist(dockerfile):
    unknown = set(_cutout_env(dockerfile["env"])) - _known_env_names()
    assert not unknown, f"Dockerfile sets CUTOUT_* names the app does not read: {sorted(unknown)}"


def test_dockerfile_healthcheck_hits_a_real_route(dockerfile, service_routes):
    health = dockerfile["healthcheck"]
    assert "CMD" in health
    paths = re.findall(r"""['"](/[A-Za-z0-9_./-]*)['"]""", health)
    assert paths == ["/health"]
    assert "/health" in service_routes
    assert "CUTOUT_PORT" in health  # follows the configured port


def test_compose_cutout_service(compose, dockerfile):
    from app.cli import build_parser
    from app.settings import Settings

    svc = compose["services"]["cutout"]
    assert svc["command"] == ["cutout", "serve"]
    build_parser().parse_args(svc["command"][1:])
    env = {k: str(v) for k, v in svc["environment"].items()}
    unknown = set(_cutout_env(env)) - _known_env_names()
    assert not unknown, f"docker-compose.yml sets CUTOUT_* names the app does not read: {sorted(unknown)}"
    settings = Settings(**{k[len("CUTOUT_"):].lower(): v for k, v in _cutout_env(env).items()
                           if k[len("CUTOUT_"):].lower() in Settings.model_fields})
    assert settings.host == "0.0.0.0"
    _host_port, container_port = (int(p) for p in svc["ports"][0].split(":"))
    assert container_port == settings.port and settings.port in dockerfile["expose"]
    # the cube list parses, and every s3:// location has an endpoint to go to
    assert settings.cube_dirs and all(isinstance(d, str) for d in settings.cube_dirs)
    if any(d.startswith("s3://") for d in settings.cube_dirs):
        assert settings.s3_endpoint_url
        s3_host = settings.s3_endpoint_url.split("//", 1)[1].split(":", 1)[0]
        assert s3_host in compose["services"], f"no compose service named {s3_host}"
    # what it serves is on a volume the demo job fills
    mounts = {v.split(":", 1)[1] for v in svc.get("volumes", [])}
    assert any(d in mounts for d in settings.cube_dirs)


def test_compose_one_shot_jobs_are_valid_commands(compose):
    from app.cli import build_parser

    for name, svc in compose["services"].items():
        command = svc.get("command")
        if svc.get("build") and isinstance(command, list) and command[:1] == ["cutout"]:
            build_parser().parse_args(command[1:])  # exits (SystemExit) on a bad command line
        for dep in (svc.get("depends_on") or {}):
            assert dep in compose["services"], f"{name} depends on unknown service {dep}"


def test_compose_healthcheck_if_any_hits_a_real_route(compose, service_routes):
    for svc in compose["services"].values():
        check = svc.get("healthcheck")
        if not check:
            continue
        text = " ".join(check["test"]) if isinstance(check["test"], list) else check["test"]
        for path in re.findall(r"https?://[^/'\"\s]+(/[A-Za-z0-9_./-]*)", text):
            assert path in service_routes
