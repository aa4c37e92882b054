"""console's wiring table.

| in                                      | out / owns                                                  |
|-----------------------------------------|-------------------------------------------------------------|
| GET / and the page paths (pages.PAGES)  | the one HTML shell; the browser calls the services' /v1 API |
| GET /assets/{name}                      | the console's scripts, styles and the npm-built libraries   |

Nothing is proxied: in the monolith the API shares the console's origin; split, an ingress routes /v1/* to the
services and the rest here (docs/operations.md).
"""

from __future__ import annotations

from spendstream.common.service import Service
from spendstream.console.assets import Assets
from spendstream.console.pages import build_router
from spendstream.console.settings import ConsoleSettings


def create_service(settings: ConsoleSettings) -> Service:
    del settings  # nothing to configure beyond the shared base (port, logs)
    return Service("console", routers=[build_router(Assets.load())])
