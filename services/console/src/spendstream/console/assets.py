"""The console's static files, read once at start: a fixed set served from memory with a content hash as ETag.

Only files under the package's `static/` directory with a known type are served, so no path from a request
ever reaches the file system.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

STATIC = Path(__file__).parent / "static"
TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
# What the page cannot work without: the build (services/console/web, `npm ci && npm run build`) makes them.
REQUIRED = ("index.html", "js/app.js", "vendor/chart.umd.js")


class AssetsMissing(RuntimeError):
    """The npm-built libraries are absent: run the set-up (`make install`) or build services/console/web."""


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    media_type: str
    etag: str


class Assets:
    """Every servable file by its path relative to `static/` (e.g. `js/app.js`)."""

    def __init__(self, files: dict[str, Asset]) -> None:
        self.files = files

    @classmethod
    def load(cls, root: Path = STATIC) -> Assets:
        files: dict[str, Asset] = {}
        for path in sorted(root.rglob("*")):
            media = TYPES.get(path.suffix)
            if media is None or not path.is_file():
                continue
            body = path.read_bytes()
            etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
            files[path.relative_to(root).as_posix()] = Asset(body, media, etag)
        missing = [name for name in REQUIRED if name not in files]
        if missing:
            raise AssetsMissing(
                f"the console's assets are missing ({', '.join(missing)}): run `make install` "
                "(npm ci and the build in services/console/web)"
            )
        return cls(files)

    def get(self, name: str) -> Asset | None:
        return self.files.get(name)
