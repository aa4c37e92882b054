"""Fixtures of the ingest tests: one running ingest service per module for the many read-only refusal checks."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from spendstream.ingest.app import create_service
from spendstream.ingest.settings import IngestSettings
from tests.support import Isolation, Stack, create_workspace, new_isolation, provision, serving


@dataclass(frozen=True)
class Running:
    iso: Isolation
    client: httpx.AsyncClient
    workspace: dict[str, Any]


@pytest.fixture(scope="module")
async def running(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Running]:
    """An ingest service with one `team` workspace, shared by the tests of a module (they must not mutate it)."""
    iso = new_isolation(stack, Path(tmp_path_factory.mktemp("ingest")))
    await provision(iso)
    workspace = await create_workspace(iso)
    async with serving([create_service(iso.settings(IngestSettings))]) as client:
        yield Running(iso, client, workspace)
