"""Dockerfile, docker-compose.yml, deploy/nginx.conf and requirements/runtime.txt agree with the app.

Command, port, health check, CUTOUT_* names (each a real setting with a valid value), the uid the
image runs as, the one-shot jobs, pinned images, the packages the image installs (the service's
whole import closure, nothing of tesswcs's plotting stack) and the Python version it needs. None of
these needs Docker; tests/app/test_docker.py builds and runs the image where Docker runs.
"""

from __future__ import annotations

import ast
import json
import re
import shlex
import shutil
import subprocess
import sys
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
    from app.main import create_app
    from app.settings import Settings

    app = create_app(Settings())
    return {getattr(r, "path", None) for r in app.routes} | {
        path for path in app.openapi()["paths"]
    }


def _known_env_names() -> set[str]:
    """CUTOUT_* names the app reads: Settings fields (the S3 ones by their CUTOUT_S3_<FIELD> names),
    plus those the CLI reads from the environment."""
    import dataclasses

    from app.settings import Settings
    from core.storage.s3 import S3Config

    names = {f"CUTOUT_{name.upper()}" for name in Settings.model_fields if name != "s3"}
    names |= {f"CUTOUT_S3_{f.name.upper()}" for f in dataclasses.fields(S3Config)}
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

    env = _cutout_env(dockerfile["env"])
    settings = _settings_from_env({k: v for k, v in env.items() if k in _known_env_names()})
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


#: the service replicas of docker-compose.yml, all behind the "nginx" service
REPLICAS = ["cutout-1", "cutout-2"]


def _mount_target(volume: str) -> str:
    """The container path of a short-syntax volume (``src:/target[:ro]``)."""
    return volume.split(":")[1]


@pytest.mark.parametrize("name", REPLICAS)
def test_compose_cutout_service(compose, dockerfile, name):
    from app.cli import build_parser

    svc = compose["services"][name]
    assert svc["command"] == ["cutout", "serve"]
    build_parser().parse_args(svc["command"][1:])
    env = {k: str(v) for k, v in svc["environment"].items()}
    unknown = set(_cutout_env(env)) - _known_env_names()
    assert not unknown, f"docker-compose.yml sets CUTOUT_* names the app does not read: {sorted(unknown)}"
    settings = _settings_from_env({k: v for k, v in _cutout_env(env).items() if k in _known_env_names()})
    assert settings.host == "0.0.0.0"
    # the port the replica serves on is the one its container exposes (to nginx; no host port)
    [container_port] = (int(p) for p in svc["expose"])
    assert container_port == settings.port and settings.port in dockerfile["expose"]
    assert "ports" not in svc, "replicas are reached through nginx only"
    # the cube list parses, and every s3:// location has an endpoint to go to
    assert settings.cube_dirs and all(isinstance(d, str) for d in settings.cube_dirs)
    if any(d.startswith("s3://") for d in settings.cube_dirs):
        assert settings.s3.endpoint_url
        s3_host = settings.s3.endpoint_url.split("//", 1)[1].split(":", 1)[0]
        assert s3_host in compose["services"], f"no compose service named {s3_host}"
    # what it serves is on a volume the demo job fills
    mounts = {_mount_target(v) for v in svc.get("volumes", [])}
    assert any(d in mounts for d in settings.cube_dirs)
    demo_mounts = {_mount_target(v) for v in compose["services"]["demo-cube"]["volumes"]}
    assert mounts & demo_mounts


def test_compose_replicas_are_one_definition(compose):
    """Same image, command and settings (stateless replicas differ only by name)."""
    services = compose["services"]
    assert [n for n, s in services.items() if s.get("command") == ["cutout", "serve"]] == REPLICAS
    first, *others = (dict(services[n]) for n in REPLICAS)
    assert all(other == first for other in others)
    assert first.get("build") and first.get("image")
    assert services["demo-cube"]["image"] == first["image"]  # built once, used by the job and replicas


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
        if not check or check.get("disable"):
            continue
        text = " ".join(check["test"]) if isinstance(check["test"], list) else check["test"]
        for path in re.findall(r"https?://[^/'\"\s]+(/[A-Za-z0-9_./-]*)", text):
            assert path in service_routes


def _settings_from_env(env: dict[str, str]):
    """Settings built from the CUTOUT_* variables of ``env`` (raises when a value does not validate)."""
    from app.settings import Settings

    return Settings(**{k[len("CUTOUT_"):].lower(): str(v) for k, v in _cutout_env(env).items()})


def _check_compose_settings(services: dict) -> None:
    """Every CUTOUT_* variable of every service is a Settings field, and its value validates."""
    fields = _known_env_names()
    for name, svc in services.items():
        env = svc.get("environment") or {}
        if isinstance(env, list):  # the KEY=value list form
            env = dict(item.split("=", 1) for item in env)
        unknown = set(_cutout_env(env)) - fields
        assert not unknown, f"service {name} sets CUTOUT_* names that are not settings: {sorted(unknown)}"
        _settings_from_env(env)  # pydantic raises on a value the service would refuse at start


def test_compose_cutout_variables_are_settings(compose):
    _check_compose_settings(compose["services"])
    # and the check can fail: a misspelt name, a bad value
    with pytest.raises(AssertionError, match="CUTOUT_CUBE_DIR"):
        _check_compose_settings({"x": {"environment": {"CUTOUT_CUBE_DIR": "/data"}}})
    with pytest.raises(ValueError, match="port"):
        _check_compose_settings({"x": {"environment": {"CUTOUT_PORT": "eighty"}}})


def _compose_command() -> list[str] | None:
    """``docker compose`` (v2 plugin) or ``docker-compose`` (v1), whichever runs here, else None."""
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True, timeout=60,
                               check=False)
        if probe.returncode == 0:
            return ["docker", "compose"]
    return [shutil.which("docker-compose")] if shutil.which("docker-compose") else None


def test_docker_compose_config_against_the_settings():
    """``docker compose config`` (the file as Compose resolves it: anchors, merges, variables) is valid,
    and its CUTOUT_* variables are settings with valid values. Needs no Docker daemon."""
    command = _compose_command()
    if command is None:
        pytest.skip("neither 'docker compose' nor 'docker-compose' is installed")
    result = subprocess.run([*command, "-f", str(COMPOSE), "config"], capture_output=True, text=True,
                            timeout=120, check=False, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    resolved = yaml.safe_load(result.stdout)["services"]
    assert set(resolved) == set(yaml.safe_load(COMPOSE.read_text())["services"])
    _check_compose_settings(resolved)
    for name in REPLICAS:
        assert _settings_from_env(resolved[name]["environment"]).index == "s3://tess-cubes/index.sqlite"


#: services that run once and exit (other services wait for them to complete)
ONE_SHOT = ["s3-init", "demo-cube", "index"]


def test_compose_one_shot_jobs_have_no_health_check(compose):
    services = compose["services"]
    waited_for = {dep for svc in services.values() for dep, cond in _depends(svc).items()
                  if cond == "service_completed_successfully"}
    assert waited_for <= set(ONE_SHOT)
    for name in ONE_SHOT:
        svc = services[name]
        assert svc.get("restart") == "no"
        # the image's HEALTHCHECK would call a finished job, or a long index build, "unhealthy"
        assert svc.get("healthcheck") == {"disable": True}, name
    for name in REPLICAS:  # the long-running replicas keep the image's check
        assert "healthcheck" not in services[name]


def _depends(svc: dict) -> dict[str, str | None]:
    """depends_on as {service: condition} (the list form has no condition)."""
    deps = svc.get("depends_on") or {}
    if isinstance(deps, list):
        return dict.fromkeys(deps)
    return {name: (spec or {}).get("condition") for name, spec in deps.items()}


def test_compose_images_are_pinned_and_maintained(compose):
    for name, svc in compose["services"].items():
        image = svc.get("image")
        assert image, f"{name} names no image"
        if svc.get("build"):
            continue  # built here
        repo, _, tag = image.rpartition(":")
        assert repo and tag and tag != "latest" and "/" not in tag, f"{name}: {image} is not pinned"
        # MinIO's community images are no longer published or maintained (README, "Deploying")
        assert not repo.startswith(("minio/", "quay.io/minio/")), f"{name}: {image}"
    # the service image's base is a build argument that defaults to a Python 3.11 image
    [build] = {json.dumps(svc["build"], sort_keys=True) for svc in compose["services"].values() if svc.get("build")}
    assert "PYTHON_BASE" in json.loads(build)["args"]


# --- the image: uid, base, build context ---


def _stages(text: str) -> list[list[tuple[str, str]]]:
    """The Dockerfile's stages, each the list of its instructions from its FROM on."""
    stages: list[list[tuple[str, str]]] = []
    for word, args in _instructions(text):
        if word == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((word, args))
    return stages


def test_dockerfile_base_is_a_build_argument():
    text = DOCKERFILE.read_text()
    args = [a for w, a in _instructions(text) if w == "ARG"]
    assert any(a.startswith("PYTHON_BASE=python:3.11") for a in args)
    stages = _stages(text)
    names = {a.split()[-1] for w, a in (s[0] for s in stages) if " AS " in a.upper()}
    for stage in stages:
        base = stage[0][1].split()[0]
        assert base in ("${PYTHON_BASE}", "$PYTHON_BASE") or base in names, f"FROM {base}"
    final = stages[-1]
    assert final[0][1].split()[0] == "${PYTHON_BASE}"  # the image is the base plus what we copy in
    # the service runs as a numeric non-root uid in group 0 (OpenShift, Kubernetes runAsNonRoot)
    [user] = [a for w, a in final if w == "USER"]
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) != 0 and gid == "0"
    run = " ".join(a for w, a in final if w == "RUN")
    for folder in ("/srv/work", "/srv/demo-data", "/data"):
        assert folder in run.split("chmod -R g=u", 1)[1], f"{folder} is not made group-writable"


def test_dockerignore_admits_only_what_the_dockerfile_copies():
    """The build context is an allow-list: everything the Dockerfile COPYs from it, nothing else (no
    .git, .venv, build/, *.egg-info, test-artifacts/)."""
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    assert patterns[0] == "**"
    admitted = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    copied = set()
    for word, args in _instructions(DOCKERFILE.read_text()):
        if word == "COPY" and not args.startswith("--from"):
            copied |= {src.rstrip("/") for src in args.split()[:-1] if not src.startswith("--")}
    assert copied == admitted
    assert "**/*.egg-info" in patterns and "**/__pycache__" in patterns


# --- what the image installs (requirements/runtime.txt) and the Python it needs ---

RUNTIME = ROOT / "requirements" / "runtime.txt"


def _runtime_tools():
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import runtime_requirements
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    return runtime_requirements


def _runtime_pins() -> dict[str, str]:
    from packaging.utils import canonicalize_name

    return {canonicalize_name(line.split("==")[0]): line.split("==")[1]
            for line in RUNTIME.read_text().splitlines() if "==" in line and not line.startswith("#")}


def test_runtime_requirements_are_current():
    """requirements/runtime.txt is what scripts/runtime_requirements.py makes of pyproject.toml and the
    constraints (re-run it after changing either), pinned at the constraints' versions."""
    tools = _runtime_tools()
    assert RUNTIME.read_text() == tools.runtime_text(), "stale: run python scripts/runtime_requirements.py"
    pins = _runtime_pins()
    constraints = tools.pinned_versions()
    assert all(constraints[name] == version for name, version in pins.items())
    assert "tesswcs" in pins  # for its data files
    assert not {"matplotlib", "pandas", "astroquery"} & set(pins)  # its plotting stack is not installed
    # the closure walk follows extras and stops at data-only packages
    closure = tools.runtime_closure(["dask[distributed]", "tesswcs"])
    assert "distributed" in closure and "tornado" in closure and "pandas" not in closure


def _third_party_imports() -> dict[str, set[str]]:
    """Top-level modules imported anywhere in core/ and app/ that are neither stdlib nor the project's,
    each with the files importing it (every import statement, lazy ones inside functions included)."""
    found: dict[str, set[str]] = {}
    for path in [*(ROOT / "core").rglob("*.py"), *(ROOT / "app").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in {"core", "app", "__future__"}:
                    found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


#: imported only where their absence is handled (system.py reports astrocut's version if present)
OPTIONAL_IMPORTS = {"astrocut"}


def test_runtime_requirements_cover_every_import_of_the_service():
    """Each third-party module core/ and app/ import comes from a package the image installs; tesswcs
    is never imported (only its data files are read), since importing it needs matplotlib."""
    from importlib.metadata import packages_distributions

    from packaging.utils import canonicalize_name

    pins = _runtime_pins()
    providers = packages_distributions()
    imports = _third_party_imports()
    assert "tesswcs" not in imports, f"tesswcs is imported in {imports.get('tesswcs')}"
    assert {"numpy", "astropy", "fastapi", "distributed", "scipy"} <= set(imports)  # the scan sees imports
    missing = {}
    for module, files in imports.items():
        if module in OPTIONAL_IMPORTS:
            continue
        dists = {canonicalize_name(d) for d in providers.get(module, [])}
        if not dists & set(pins):
            missing[module] = sorted(files)
    assert not missing, f"imported but not in requirements/runtime.txt: {missing}"


def test_python_version_is_stated_consistently():
    """The constraints need Python 3.11.5 or later; pyproject.toml and the README say so."""
    import tomllib

    from packaging.specifiers import SpecifierSet

    with open(ROOT / "pyproject.toml", "rb") as f:
        spec = SpecifierSet(tomllib.load(f)["project"]["requires-python"])
    assert "3.11.5" in spec and "3.11.12" in spec and "3.11.4" not in spec and "3.11.2" not in spec
    readme = (ROOT / "README.md").read_text()
    assert "Python 3.11.5" in readme
    assert "Needs Python 3.11 " not in readme  # the old, looser wording


# --- nginx in front of the replicas (deploy/nginx.conf) ---

NGINX_CONF = ROOT / "deploy" / "nginx.conf"


def _nginx_tools():
    """tests/nginx.py (NginxBalancer, render_config, ...), importable from either sys.path layout."""
    try:
        from tests import nginx
    except ImportError:  # pragma: no cover - tests/ itself on sys.path
        import nginx
    return nginx


def _conf_text() -> str:
    """deploy/nginx.conf without its comments."""
    return "\n".join(line.split("#", 1)[0] for line in NGINX_CONF.read_text().splitlines())


def _block(opening: str) -> str:
    """The body of the first ``opening {...}`` block without nested blocks (e.g. "upstream cutout")."""
    return _conf_text().split(opening + " {", 1)[1].split("}", 1)[0]


def _directives(name: str, text: str | None = None) -> list[str]:
    """Arguments of every ``name ...;`` directive in ``text`` (default: all of deploy/nginx.conf)."""
    text = _conf_text() if text is None else text
    return [m.strip() for m in re.findall(rf"(?:^|[{{;\s]){re.escape(name)}\s+([^;{{]*);", text)]


def _seconds(value: str) -> float:
    """An nginx time ("5s", "2m", "130") in seconds."""
    number, unit = re.fullmatch(r"(\d+)(ms|s|m|h)?", value).groups()
    return int(number) * {"ms": 0.001, "s": 1, None: 1, "m": 60, "h": 3600}[unit]


def _size(value: str) -> int:
    """An nginx size ("100m", "1k", "512") in bytes."""
    number, unit = re.fullmatch(r"(\d+)([kKmMgG])?", value).groups()
    return int(number) * {None: 1, "k": 1024, "m": 1024**2, "g": 1024**3}[unit.lower() if unit else None]


def test_compose_nginx_fronts_the_replicas(compose):
    from app.settings import Settings

    svc = compose["services"]["nginx"]
    assert "./deploy/nginx.conf:/etc/nginx/nginx.conf:ro" in svc["volumes"]
    assert set(svc["depends_on"]) == set(REPLICAS)
    # nginx's upstream is exactly the replicas, on the port they serve on
    port = Settings(port=compose["services"][REPLICAS[0]]["environment"]["CUTOUT_PORT"]).port
    servers = [args.split()[0] for args in _directives("server", _block("upstream cutout"))]
    assert servers == [f"{name}:{port}" for name in REPLICAS]
    # the only published port of the service goes to nginx's listen port
    [listen] = _directives("listen")
    [published] = svc["ports"]
    assert published.split(":")[-1] == listen == "80"
    published_by = [n for n, s in compose["services"].items() if any(
        str(p).split(":")[0] == "8000" for p in s.get("ports", []))]
    assert published_by == ["nginx"]


def test_nginx_conf_rules():
    """The failover, health-check, streaming and slow-client rules the deployment relies on."""
    from app.settings import Settings

    defaults = Settings()
    # retries: the listed failures only, never non-idempotent requests (no "non_idempotent")
    assert _directives("proxy_next_upstream") == ["error timeout http_502 http_503 http_504"]
    assert _directives("proxy_next_upstream_tries") == ["2"]
    upstream = _block("upstream cutout")
    servers = _directives("server", upstream)
    assert len(servers) == 2
    for args in servers:  # passive health checks on every replica
        params = dict(p.split("=", 1) for p in args.split()[1:])
        assert int(params["max_fails"]) >= 1 and _seconds(params["fail_timeout"]) > 0
    assert _directives("zone", upstream)  # failure state shared by all worker processes
    assert int(_directives("keepalive", upstream)[0]) > 0
    assert _directives("proxy_http_version") == ["1.1"] and 'Connection ""' in _directives("proxy_set_header")
    [idle] = _directives("keepalive_timeout", upstream)
    assert _seconds(idle) < 5  # nginx drops idle upstream sockets before uvicorn does (5 s default)
    assert _directives("proxy_buffering") == ["off"]
    # a stopped replica's address leaves the network (connects hang): nginx must give up on it fast,
    # and take it out after few failures (tests/app/test_topology.py stops one)
    [connect] = _directives("proxy_connect_timeout")
    assert 0 < _seconds(connect) <= 1
    for args in servers:
        params = dict(p.split("=", 1) for p in args.split()[1:])
        assert int(params["max_fails"]) <= 3 and _seconds(params["fail_timeout"]) <= 10
    assert _size(_directives("client_max_body_size")[0]) == defaults.max_upload_bytes
    assert _seconds(_directives("proxy_read_timeout")[0]) >= defaults.request_timeout_s
    for name in ("client_header_timeout", "client_body_timeout"):
        assert 0 < _seconds(_directives(name)[0]) <= 10
    [client_idle] = _directives("keepalive_timeout", _conf_text().replace(upstream, ""))  # clients'
    assert 0 < _seconds(client_idle) <= 10
    assert "X-Upstream $upstream_addr always" in _directives("add_header")
    health = NGINX_CONF.read_text().split("location = /health {", 1)[1].split("}", 1)[0]
    assert "proxy_pass http://cutout;" in health


def test_nginx_conf_passes_nginx_t(tmp_path):
    """deploy/nginx.conf, upstream hosts swapped for 127.0.0.1 ports, is accepted by ``nginx -t``."""
    import subprocess

    tools = _nginx_tools()
    binary = tools.ensure_nginx()
    if binary is None:
        pytest.skip("nginx is not installed and scripts/install_nginx.sh could not install it")
    for sub in ("logs", "tmp"):
        (tmp_path / sub).mkdir()
    conf = tmp_path / "nginx.conf"
    text = tools.render_config(["127.0.0.1:18001", "127.0.0.1:18002"], tools.free_port(), tmp_path)
    assert "cutout-1" not in text and "server 127.0.0.1:18002 max_fails=" in text
    conf.write_text(text)
    cmd = [binary, "-t", "-p", str(tmp_path), "-c", str(conf), "-e", str(tmp_path / "e.log")]
    result = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr
    # and a broken rule is caught the same way (the check can fail)
    conf.write_text(text.replace("proxy_buffering off;", "proxy_buffering sideways;"))
    bad = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=30)
    assert bad.returncode != 0


def test_nginx_own_errors_use_the_service_error_shape(tmp_path):
    """What nginx answers by itself (no replica up; a body over the limit) is JSON with "msg"."""
    import http.client
    import json as jsonlib

    tools = _nginx_tools()
    if tools.ensure_nginx() is None:
        pytest.skip("nginx is not installed and scripts/install_nginx.sh could not install it")
    dead = [f"127.0.0.1:{tools.free_port()}", f"127.0.0.1:{tools.free_port()}"]  # nothing listens there
    with tools.NginxBalancer(dead, tmp_path / "prefix") as lb:
        conn = http.client.HTTPConnection("127.0.0.1", lb.port, timeout=10)
        conn.request("GET", "/tesscut/api/v0.1/sector?ra=1&dec=2", headers={"X-Request-ID": "rid-502"})
        resp = conn.getresponse()
        body = jsonlib.loads(resp.read())
        assert resp.status == 502 and resp.getheader("Content-Type") == "application/json"
        assert body["error"]["code"] == "bad_gateway" and body["msg"]
        assert body["error"]["request_id"] == "rid-502"  # the client's id, as the service would echo it
        assert [a.strip() for a in resp.getheader("X-Upstream").split(",")] == dead  # both tried
        # Content-Length over the limit: refused before any body byte is read
        conn = http.client.HTTPConnection("127.0.0.1", lb.port, timeout=10)
        conn.putrequest("POST", "/tesscut/api/v0.1/astrocut")
        conn.putheader("Content-Length", str(100 * 1024 * 1024 + 1))
        conn.endheaders()
        resp = conn.getresponse()
        body = jsonlib.loads(resp.read())
        assert resp.status == 413 and body["error"]["code"] == "too_large" and body["msg"]
        conn.close()
