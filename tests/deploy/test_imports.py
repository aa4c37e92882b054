"""Every workspace member imports only what it declares: its own dependencies, and those of the workspace members
it depends on (spendstream-common's for every service). A package that arrives only as someone else's
dependency (starlette through fastapi, redis through a sibling) is undeclared: the image of a member that does
not declare it may lack it, or lose it when the other side changes.

Read statically from the sources, so it covers modules no test imports; tests/deploy/test_dockerfiles.py proves
the same in a real environment, installed from the lock with only the member's dependencies.
"""

from __future__ import annotations

import ast
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.deploy.deployables import ROOT

MEMBERS = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["uv"]["workspace"]["members"]


@dataclass(frozen=True)
class Member:
    """A workspace member: its distribution name, its import package (`spendstream.<name>`, or a top-level one
    such as the client SDK's `spendstream_sdk`) and what it declares."""

    root: Path
    name: str
    package: str
    declares: frozenset[str]

    @classmethod
    def at(cls, root: Path) -> Member:
        project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
        namespace = root / "src" / "spendstream"
        if namespace.is_dir():
            (package,) = [f"spendstream.{p.name}" for p in namespace.iterdir() if (p / "__init__.py").exists()]
        else:
            (package,) = [p.name for p in (root / "src").iterdir() if (p / "__init__.py").exists()]
        declares = frozenset(canonicalize_name(Requirement(d).name) for d in project.get("dependencies", []))
        return cls(root, canonicalize_name(project["name"]), package, declares)


@cache
def members() -> dict[str, Member]:
    found = (Member.at(ROOT / m) for m in MEMBERS)
    return {m.name: m for m in found}


def allowed(member: Member, workspace: dict[str, Member]) -> tuple[set[str], set[str]]:
    """(distributions, import packages) the member may import: its own declarations and, through every
    workspace member it depends on, theirs."""
    distributions, packages, todo, seen = set(), {member.package}, [member], set()
    while todo:
        current = todo.pop()
        if current.name in seen:
            continue
        seen.add(current.name)
        for name in current.declares:
            if name in workspace:
                packages.add(workspace[name].package)
                todo.append(workspace[name])
            else:
                distributions.add(name)
    return distributions, packages


def _optional(node: ast.Try) -> bool:
    """`try: import x / except ImportError:` is an import the code does without."""
    for handler in node.handlers:
        names = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
        if any(isinstance(n, ast.Name) and n.id in {"ImportError", "ModuleNotFoundError"} for n in names):
            return True
    return False


def imports(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """(line, dotted module) of every absolute import the module needs, optional ones left out."""
    optional: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and _optional(node):
            optional |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    for node in ast.walk(tree):
        if id(node) in optional:
            continue
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module


@cache
def _providers() -> dict[str, frozenset[str]]:
    return {top: frozenset(canonicalize_name(d) for d in dists) for top, dists in packages_distributions().items()}


def undeclared(member: Member, workspace: dict[str, Member]) -> list[str]:
    """`path:line module` for every import the member does not declare."""
    distributions, packages = allowed(member, workspace)
    found = []
    for path in sorted((member.root / "src").rglob("*.py")):
        for line, module in imports(ast.parse(path.read_text(), str(path))):
            top = module.split(".")[0]
            if top in sys.stdlib_module_names or top == "__future__":
                continue
            if module == "spendstream" or top in {p.split(".")[0] for p in packages}:
                ok = module == "spendstream" or any(module == p or module.startswith(p + ".") for p in packages)
            else:
                ok = bool(_providers().get(top, frozenset()) & distributions)
            if not ok:
                found.append(f"{path.relative_to(member.root)}:{line} {module}")
    return found


@pytest.mark.parametrize("name", sorted(members()))
def test_a_member_imports_only_what_it_declares(name: str) -> None:
    assert undeclared(members()[name], members()) == []


def test_libs_common_depends_on_no_database_client() -> None:
    """Contracts only: Redis and ClickHouse clients belong to the services that open them."""
    common = members()["spendstream-common"]
    assert not common.declares & {"redis", "clickhouse-connect", "chdb"}


def _fake_member(root: Path, name: str, package: str, dependencies: list[str], source: str) -> Member:
    (root / "src" / "spendstream" / package).mkdir(parents=True)
    (root / "src" / "spendstream" / package / "__init__.py").write_text("")
    (root / "src" / "spendstream" / package / "mod.py").write_text(source)
    deps = ", ".join(f'"{d}"' for d in dependencies)
    (root / "pyproject.toml").write_text(f'[project]\nname = "{name}"\nversion = "0"\ndependencies = [{deps}]\n')
    return Member.at(root)


def test_the_check_reports_a_package_that_comes_only_through_another_one(tmp_path: Path) -> None:
    source = (
        "import json\nimport redis.asyncio\nfrom fastapi import Header\nfrom starlette.requests import Request\n"
        "from spendstream.lib import x\nfrom spendstream.other import y\n"
        "try:\n    import uvloop\nexcept ImportError:\n    uvloop = None\n"
    )
    lib = _fake_member(tmp_path / "lib", "fake-lib", "lib", ["fastapi>=0.1"], "")
    svc = _fake_member(tmp_path / "svc", "fake-svc", "svc", ["fake-lib", "httpx"], source)
    assert undeclared(svc, {m.name: m for m in (lib, svc)}) == [
        "src/spendstream/svc/mod.py:2 redis.asyncio",
        "src/spendstream/svc/mod.py:4 starlette.requests",
        "src/spendstream/svc/mod.py:6 spendstream.other",
    ]
