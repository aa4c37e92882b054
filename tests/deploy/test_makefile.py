"""The README's two commands: `make up` fetches nothing only the deploy checks need; `make test` gets it."""

from __future__ import annotations

import subprocess

import pytest

from tests.deploy.deployables import ROOT


def _recipe(target: str) -> str:
    """Every command `make TARGET` would run, prerequisites included (dry run: nothing is executed)."""
    done = subprocess.run(["make", "-n", target], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True)
    return done.stdout


def test_make_up_does_not_fetch_deploy_tools() -> None:
    recipe = _recipe("up")
    assert "scripts/up.sh" in recipe and "uv sync" in recipe
    assert "deploy/tools.sh" not in recipe


@pytest.mark.parametrize("target", ["test", "test-long", "pytest"])
def test_every_target_that_runs_the_deploy_checks_fetches_deploy_tools(target: str) -> None:
    recipe = _recipe(target)
    # Before pytest runs: tests/deploy renders the overlays with the pinned kustomize.
    assert "deploy/tools.sh" in recipe
    assert recipe.index("deploy/tools.sh") < recipe.index("pytest")


def test_make_up_builds_the_console_assets_without_a_browser() -> None:
    recipe = _recipe("up")
    assert "scripts/console-assets.sh" in recipe
    assert recipe.index("scripts/console-assets.sh") < recipe.index("scripts/up.sh")
    assert "--browser" not in recipe


@pytest.mark.parametrize("target", ["test", "test-long", "pytest"])
def test_every_target_that_runs_the_browser_tests_installs_chromium_first(target: str) -> None:
    recipe = _recipe(target)
    assert "scripts/console-assets.sh --browser" in recipe
    assert recipe.index("scripts/console-assets.sh --browser") < recipe.index("pytest")
