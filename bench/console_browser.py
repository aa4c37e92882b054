"""Is each console page usable within a second (issue 24)? Real Chromium against a running spendstream over a
large workspace.

`python -m bench.console_browser [--events N] [--days D] [--rounds R] [--smoke] [--json PATH]`
(defaults: 10,000,000 events over 30 days, 10 rounds; `--smoke`: 20,000 events, 2 rounds)

The workspace is seeded as `bench.console` seeds it (its `prefill`: the rollup rows of N events straight into
`usage_daily`) in a chDB directory, by a child process that exits before spendstream opens the directory (one
process per chDB path). Then `spendstream up` (the monolith: the six services and the console on one port) serves
that directory, two budgets exist (one for the workspace, one for a feature), and an owner signs in in Debian's
Chromium (Playwright) by the operator's one-time link (`spendstream member add`).

Usable: the console's shell marks `<main>` with `data-ready="true"` (and drops `aria-busy`) once the page's render
promise resolved and its view replaced the previous one: every call the page makes on opening has answered and
its tables, figures, charts (drawn without animation) and controls are in the DOM. No control is disabled while
a page loads. "Usable" is the first frame after that mark (requestAnimationFrame, then a task: the frame with
the page has been produced). Two ways in, per page and round:

- by URL: `page.goto(/<page>)`, a full document load (HTML, the ES modules from the browser's cache after the
  first round, `/v1/me`, the page's calls); times are from the navigation's start (performance.timeOrigin). Also
  DOMContentLoaded and the Largest Contentful Paint as the browser reports them.
- from the menu: a click on the page's link in the navigation while another page is shown; times are from the
  click.

"its data" is when the last `/v1/...` answer of that navigation ended (Resource Timing): the rest of "usable" is
the browser's parsing, rendering and painting. One round of every page is run first and shown as "first" (cold
browser cache and engine caches); the R rounds after it give p50/p95.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from playwright.async_api import Browser, ConsoleMessage, Page, async_playwright

from bench.console import prefill
from bench.harness import Bench, ServiceProcess, free_port
from bench.stats import percentile
from spendstream.console.pages import NAVIGATION
from spendstream.people.bootstrap import add_member
from spendstream.people.settings import PeopleSettings
from spendstream.rollup.clickhouse import clickhouse_client
from spendstream.rollup.schema import migrate
from spendstream.rollup.settings import RollupSettings

CHROMIUM = "/usr/bin/chromium"
DATABASE = "bench_console"
TARGET_MS = 1000.0

# Injected before the console's own scripts (through the DevTools protocol, so the CSP does not apply): records
# when <main> becomes ready and the first frame after it, and the Largest Contentful Paint.
MARKS = """
(() => {
  const marks = { ready: null, usable: null, lcp: null };
  window.__usable = marks;
  try {
    new PerformanceObserver((list) => {
      for (const entry of list.getEntries()) marks.lcp = entry.startTime;
    }).observe({ type: "largest-contentful-paint", buffered: true });
  } catch {}
  const watch = () => {
    const main = document.getElementById("main");
    if (!main) return false;
    new MutationObserver(() => {
      if (main.dataset.ready === "true" && marks.ready === null) {
        marks.ready = performance.now();
        requestAnimationFrame(() => setTimeout(() => { marks.usable = performance.now(); }, 0));
      }
    }).observe(main, { attributes: true, attributeFilter: ["data-ready"] });
    return true;
  };
  if (!watch()) document.addEventListener("DOMContentLoaded", watch);
})();
"""

# After a full load: the marks relative to the navigation's start, and when its last API answer ended.
LOADED = """() => {
  const nav = performance.getEntriesByType("navigation")[0];
  const api = performance.getEntriesByType("resource").filter((e) => new URL(e.name).pathname.startsWith("/v1/"));
  return { ready: window.__usable.ready, usable: window.__usable.usable, lcp: window.__usable.lcp,
           dcl: nav ? nav.domContentLoadedEventEnd : null,
           data: api.length ? Math.max(...api.map((e) => e.responseEnd)) : null };
}"""

# A click on the page's link; the marks relative to the click.
CLICKED = """async (name) => {
  const marks = window.__usable;
  marks.ready = null;
  marks.usable = null;
  performance.clearResourceTimings();
  const link = document.querySelector(`#nav a[data-page="${name}"]`);
  const start = performance.now();
  link.click();
  while (marks.usable === null) await new Promise((resolve) => setTimeout(resolve, 5));
  const api = performance.getEntriesByType("resource").filter((e) => new URL(e.name).pathname.startsWith("/v1/"));
  return { ready: marks.ready - start, usable: marks.usable - start,
           data: api.length ? Math.max(...api.map((e) => e.responseEnd)) - start : null };
}"""

USABLE = "window.__usable && window.__usable.usable !== null"

# Text of an error the page shows instead of (part of) its data; empty forms' message slots do not count.
SHOWN_ERRORS = """() => [...document.querySelectorAll("main .error")]
  .map((e) => e.textContent.trim()).filter((t) => t.length > 0)"""


def seed(url: str, database: str, workspace_id: str, events: int, days: int) -> tuple[float, int]:
    """The schema, then bench.console's rows; run in a child process so that the chDB path is free after it."""
    defaults = RollupSettings.model_fields
    migrate(
        clickhouse_client(url),
        database,
        int(defaults["retention_months"].default),
        int(defaults["audit_retention_months"].default),
    )
    return prefill(url, database, workspace_id, events, days)


@dataclass
class Samples:
    """One page's figures (ms): the first round apart, the rounds after it in lists."""

    first: dict[str, float | None] = field(default_factory=dict)
    rounds: dict[str, list[float]] = field(default_factory=dict)

    def add(self, marks: dict[str, Any], counted: bool) -> None:
        if not counted:
            self.first = {k: (float(v) if v is not None else None) for k, v in marks.items()}
            return
        for key, value in marks.items():
            if value is not None:
                self.rounds.setdefault(key, []).append(float(value))

    def p(self, key: str, q: float) -> float:
        return percentile(self.rounds.get(key, []), q)


async def until(page: Page, condition: str, timeout_ms: int = 60_000) -> None:
    """Wait in the page until `condition` (a JS expression) holds. Not Playwright's wait_for_function: it evaluates
    strings, which the console's CSP (no 'unsafe-eval') refuses."""
    await page.evaluate(
        f"""async () => {{
          const end = performance.now() + {timeout_ms};
          while (!({condition})) {{
            if (performance.now() > end) throw new Error("timed out waiting for: " + {json.dumps(condition)});
            await new Promise((resolve) => setTimeout(resolve, 5));
          }}
        }}"""
    )


async def sign_in(page: Page, people: PeopleSettings, workspace_id: str) -> None:
    """The operator's one-time link, followed in the browser (it sets the session cookie and opens "/")."""
    for _ in range(60):  # until the monolith's people service has replayed the new member
        added = await add_member(people, workspace_id, "owner@example.com", "owner")
        assert added.link is not None
        await page.goto(added.link)
        await until(page, "document.querySelector(\"main[data-ready='true']\") || location.pathname === '/signin'")
        if await page.locator("#nav").is_visible():
            return
        await asyncio.sleep(1)
    raise RuntimeError("the owner could not sign in by the one-time link")


async def add_budgets(url: str, admin_key: str) -> None:
    """One budget for the workspace, one for a feature (the Overview reads the feature's spend with one more call)."""
    budgets = [
        {"name": "Workspace", "amount_usd": "250000", "thresholds": [50, 80, 100]},
        {"name": "feature-7", "amount_usd": "5000", "scope": {"tag": "feature", "value": "feature-7"}},
    ]
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {admin_key}"}) as client:
        for budget in budgets:
            for _ in range(120):  # until alerts has replayed the new key
                answer = await client.post("/v1/budgets", json=budget)
                if answer.status_code == 201:
                    break
                await asyncio.sleep(0.5)
            else:
                raise RuntimeError(f"POST /v1/budgets answered {answer.status_code}: {answer.text[:300]}")


async def browse(browser: Browser, url: str, people: PeopleSettings, workspace_id: str, rounds: int) -> Any:
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    await context.add_init_script(script=MARKS)
    page = await context.new_page()
    problems: list[str] = []

    def console(message: ConsoleMessage) -> None:
        if message.type == "error":
            problems.append(f"console: {message.text}")

    page.on("console", console)
    page.on("pageerror", lambda exc: problems.append(f"uncaught: {exc}"))
    by_url = {name: Samples() for name in NAVIGATION}
    by_menu = {name: Samples() for name in NAVIGATION}
    try:
        await sign_in(page, people, workspace_id)
        names = list(NAVIGATION)
        for r in range(rounds + 1):
            for name in names:
                await page.goto(f"{url}/{name}", wait_until="commit")
                await until(page, USABLE)
                by_url[name].add(await page.evaluate(LOADED), counted=r > 0)
                problems.extend(f"{name}: {text}" for text in await page.evaluate(SHOWN_ERRORS))
            for i, name in enumerate(names):
                # From the page before it in the menu (the last page for the first one), never from itself.
                if not page.url.endswith(f"/{names[i - 1]}"):
                    await page.goto(f"{url}/{names[i - 1]}")
                    await until(page, USABLE)
                by_menu[name].add(await page.evaluate(CLICKED, name), counted=r > 0)
                problems.extend(f"{name}: {text}" for text in await page.evaluate(SHOWN_ERRORS))
        # The figures are of a real workspace: the Overview's month shows the seeded spend.
        await page.goto(f"{url}/overview")
        await page.wait_for_selector("main[data-ready='true']")
        requests = await page.locator("[data-figure='total-requests']").inner_text()
    finally:
        await context.close()
    return by_url, by_menu, problems, requests


def _ms(value: float | None) -> str:
    return "-" if value is None or value != value else f"{value:,.0f}"


def table(by_url: dict[str, Samples], by_menu: dict[str, Samples]) -> list[str]:
    lines = [
        "| page | by URL: usable p50 | p95 | its data p95 | DOMContentLoaded p50 | LCP p50 | first round "
        "| from the menu: usable p50 | p95 | its data p95 | p95 < 1 s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, label in NAVIGATION.items():
        u, m = by_url[name], by_menu[name]
        met = max(u.p("usable", 95), m.p("usable", 95)) < TARGET_MS
        lines.append(
            f"| {label} | {_ms(u.p('usable', 50))} | {_ms(u.p('usable', 95))} | {_ms(u.p('data', 95))} "
            f"| {_ms(u.p('dcl', 50))} | {_ms(u.p('lcp', 50))} | {_ms(u.first.get('usable'))} "
            f"| {_ms(m.p('usable', 50))} | {_ms(m.p('usable', 95))} | {_ms(m.p('data', 95))} "
            f"| {'yes' if met else '**no**'} |"
        )
    return lines


async def measure(events: int, days: int, rounds: int, workdir: Path) -> dict[str, Any]:
    bench = Bench(smoke=False, workdir=workdir)
    chdb = f"chdb://{workdir / 'clickhouse'}"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    monolith: ServiceProcess | None = None
    try:
        space = await bench.namespace("console", 1)
        workspace = space.workspaces[0]
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as child:
            prefill_s, seeded = await asyncio.get_running_loop().run_in_executor(
                child, seed, chdb, DATABASE, workspace.workspace_id, events, days
            )
        env = bench.env(
            space.prefix,
            port,
            SPENDSTREAM_CLICKHOUSE_URL=chdb,
            SPENDSTREAM_CLICKHOUSE_DATABASE=DATABASE,
            SPENDSTREAM_PUBLIC_URL=url,
        )
        monolith = ServiceProcess("monolith", env, workdir / "spendstream.log", command=("up",))
        started = time.monotonic()
        await monolith.start(timeout=300)
        startup_s = time.monotonic() - started
        await add_budgets(url, workspace.admin)
        people = PeopleSettings(
            kafka_bootstrap_servers=bench.kafka,
            redis_url=bench.redis,
            topic_prefix=space.prefix,
            redis_prefix=f"{bench.root_prefix}:",
            kek=bench.kek,
            data_dir=workdir / "data",
            http_port=port,
            public_url=url,
        )
        load_before = os.getloadavg()[0]
        began = datetime.now(UTC)
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            try:
                by_url, by_menu, problems, requests = await browse(browser, url, people, workspace.workspace_id, rounds)
            finally:
                await browser.close()
        load_after = os.getloadavg()[0]
    finally:
        if monolith is not None:
            await monolith.stop()
        await bench.cleanup()
    return {
        "events": seeded,
        "days": days,
        "rounds": rounds,
        "prefill_s": round(prefill_s, 1),
        "startup_s": round(startup_s, 1),
        "began": began.isoformat(timespec="seconds"),
        "load_average": [round(load_before, 2), round(load_after, 2)],
        "overview_requests_shown": requests,
        "problems": problems,
        "table": table(by_url, by_menu),
        "pages": {
            name: {
                "by_url": {k: {"p50": by_url[name].p(k, 50), "p95": by_url[name].p(k, 95)} for k in by_url[name].rounds}
                | {"first": by_url[name].first},
                "from_menu": {
                    k: {"p50": by_menu[name].p(k, 50), "p95": by_menu[name].p(k, 95)} for k in by_menu[name].rounds
                }
                | {"first": by_menu[name].first},
            }
            for name in NAVIGATION
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--smoke", action="store_true", help="20,000 events, 2 rounds (the test's size)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    events, rounds = (20_000, 2) if args.smoke else (args.events, args.rounds)
    if not Path(CHROMIUM).exists():
        parser.error("Debian's chromium is missing: `make browser` (scripts/console-assets.sh --browser)")
    workdir = Path(tempfile.mkdtemp(prefix="bench-console-browser-"))
    result = asyncio.run(measure(events, args.days, rounds, workdir))
    print(
        f"{result['events']:,} events over {args.days} days (seeded in {result['prefill_s']} s), spendstream up ready "
        f"in {result['startup_s']} s; {rounds} rounds after a first one, from {result['began']}, load average "
        f"{result['load_average'][0]} -> {result['load_average'][1]}; the Overview shows "
        f"{result['overview_requests_shown']} requests this month; times in ms"
    )
    print("\n".join(result["table"]))
    for problem in result["problems"]:
        print(f"PROBLEM {problem}")
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2))
    sys.stdout.flush()
    return 1 if result["problems"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
