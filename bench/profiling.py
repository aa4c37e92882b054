"""Where the time goes: py-spy samples a service process while a measurement loads it.

The raw (collapsed-stack) profile lands in bench/results/profile-<name>.txt with a summary next to it: the
functions with the most samples on top of the stack (self time) and the heaviest call paths of our own code.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import sys
from collections import Counter
from collections.abc import Awaitable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from bench.harness import RESULTS

if TYPE_CHECKING:
    from bench.harness import Bench

T = TypeVar("T")
OUR_PACKAGES = frozenset({"common", "ingest", "rollup", "alerts", "retention", "cli"})
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^:()]*)(?::\d+)?\)$")


def _py_spy() -> str | None:
    here = Path(sys.executable).with_name("py-spy")
    return str(here) if here.exists() else shutil.which("py-spy")


async def profile_during(pid: int, name: str, work: Awaitable[T], bench: Bench, seconds: int = 15) -> T:
    """Await `work` while py-spy samples `pid` for up to `seconds`; the profile is a side product."""
    tool = _py_spy()
    if tool is None:
        return await work
    RESULTS.mkdir(parents=True, exist_ok=True)
    raw = RESULTS / f"profile-{name}.raw.txt"
    spy = await asyncio.create_subprocess_exec(
        tool,
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(seconds),
        "--rate",
        "97",
        "--format",
        "raw",
        "--output",
        str(raw),
        "--nonblocking",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    result = await work
    await spy.wait()
    if raw.exists():
        (RESULTS / f"profile-{name}.summary.txt").write_text(summarize(raw.read_text()))
    return result


def _parse(frame: str) -> tuple[str, str, bool]:
    """(function, short path, is ours) of one py-spy frame `func (path:line)`."""
    match = _FRAME.match(frame.strip())
    if not match:
        return frame.strip(), "?", False
    path = match["file"]  # py-spy already shortens paths to the package: `common/guard.py`, `redis/client.py`
    for marker in ("site-packages/", "/src/spendstream/", "/lib/python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return match["func"], path, path.split("/", 1)[0] in OUR_PACKAGES


def _package(path: str) -> str:
    head = path.split("/", 1)[0].removesuffix(".py")
    return head if "/" in path else path.removesuffix(".py")


def summarize(collapsed: str, top: int = 25) -> str:
    """Self time by package and by function, and inclusive time of our own functions, as shares of samples."""
    by_package: Counter[str] = Counter()
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_parse(f) for f in stack.split(";")]
        total += count
        func, path, ours = frames[-1]
        self_time[f"{func} ({path})"] += count
        by_package[("spendstream." if ours else "") + _package(path)] += count
        for name in {f"{f} ({p})" for f, p, o in frames if o}:
            inclusive[name] += count
    if not total:
        return "no samples\n"
    lines = [f"{total} samples", "", "self time by package:"]
    lines += [f"  {100 * n / total:5.1f}%  {p}" for p, n in by_package.most_common(top)]
    lines += ["", "self time by function:"]
    lines += [f"  {100 * n / total:5.1f}%  {f}" for f, n in self_time.most_common(top)]
    lines += ["", "inclusive time of spendstream functions:"]
    lines += [f"  {100 * n / total:5.1f}%  {f}" for f, n in inclusive.most_common(top)]
    return "\n".join(lines) + "\n"
