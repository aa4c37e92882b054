"""What the deployment files must agree with, read from the code itself: each service's settings class (its
environment variables, port and consumer group) and the topic registry."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic_settings import BaseSettings

from spendstream.alerts.settings import AlertsSettings
from spendstream.common.settings import BaseServiceSettings
from spendstream.connectors.settings import ConnectorsSettings
from spendstream.console.settings import ConsoleSettings
from spendstream.ingest.settings import IngestSettings
from spendstream.people.settings import PeopleSettings
from spendstream.retention.settings import RetentionSettings
from spendstream.rollup.settings import RollupSettings

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "deploy" / "schemas"
KUSTOMIZE = ROOT / ".stack" / "tools" / "bin" / "kustomize"


@dataclass(frozen=True)
class Deployable:
    name: str
    settings: type[BaseServiceSettings]

    @property
    def port(self) -> int:
        return int(self.settings.model_fields["http_port"].default)

    @property
    def group_id(self) -> str | None:
        field = self.settings.model_fields.get("group_id")
        return None if field is None else str(field.default)

    @property
    def package(self) -> str:
        return f"spendstream-{self.name}"


SERVICES = (
    Deployable("ingest", IngestSettings),
    Deployable("rollup", RollupSettings),
    Deployable("alerts", AlertsSettings),
    Deployable("retention", RetentionSettings),
    Deployable("connectors", ConnectorsSettings),
    Deployable("people", PeopleSettings),
    Deployable("console", ConsoleSettings),
)


def env_names(settings: type[BaseSettings]) -> set[str]:
    """The environment variables a settings class reads."""
    prefix = str(settings.model_config.get("env_prefix", ""))
    return {f"{prefix}{name}".upper() for name in settings.model_fields}


def readme_variables() -> set[str]:
    """The `SPENDSTREAM_*` variables the README's configuration table documents."""
    text = (ROOT / "README.md").read_text()
    table = text.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"`(SPENDSTREAM_[A-Z_]+)`", table))


def load_yaml_documents(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def kustomize_build(overlay: str) -> list[dict[str, Any]]:
    """Render an overlay with the real kustomize binary that `make test` (deploy/tools.sh) pins."""
    binary = str(KUSTOMIZE) if KUSTOMIZE.exists() else shutil.which("kustomize")
    assert binary, "kustomize is missing: run `make deploy-tools` (deploy/tools.sh builds the pinned version)"
    done = subprocess.run(
        [binary, "build", str(ROOT / "deploy" / "k8s" / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return load_yaml_documents(done.stdout)


def interpolate_compose(value: str) -> str:
    """Compose's `${VAR:-default}` becomes the default, `${VAR:?error}` a placeholder (the variable is required)."""
    value = re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", value)
    return re.sub(r"\$\{[A-Z_]+:\?[^}]*\}", "required-value", value)


def expand_k8s(value: str, defined: dict[str, str]) -> str:
    """Kubernetes' `$(VAR)` references to variables defined earlier in the container's environment."""
    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: defined.get(m.group(1), m.group(0)), value)
