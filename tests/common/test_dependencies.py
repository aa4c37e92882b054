"""spendstream.common is contracts only: it imports with no database client importable.

tests/deploy checks the same against an environment installed with common's dependencies alone; this one runs
in the development environment, where redis and clickhouse_connect are installed, by hiding them.
"""

from __future__ import annotations

import subprocess
import sys

HIDDEN = ("redis", "clickhouse_connect", "chdb")

_PROBE = f"""
import importlib, importlib.abc, pkgutil, sys

class Hide(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {HIDDEN!r}:
            raise ModuleNotFoundError(f"{{name}} is hidden", name=name)
        return None

sys.meta_path.insert(0, Hide())
import spendstream.common as package
for info in pkgutil.walk_packages(package.__path__, "spendstream.common."):
    importlib.import_module(info.name)
print(sorted(m for m in sys.modules if m.split(".")[0] in {HIDDEN!r}))
"""


def test_every_common_module_imports_with_no_database_client() -> None:
    run = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"


def test_the_probe_does_hide_them() -> None:
    probe = _PROBE.replace(
        "import spendstream.common as package", "import redis.asyncio\nimport spendstream.common as package"
    )
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode != 0
    assert "ModuleNotFoundError: redis is hidden" in run.stderr
