"""The real OpenID provider the single sign-on tests run against (tests/oidc_provider: the certified npm package
`oidc-provider`), and a browser that signs in at it by posting its login and consent forms.

`npm ci` installs the provider's locked packages once (node_modules is kept); the provider listens on a free
127.0.0.1 port. Accounts are named by their login: "verified:<e-mail>" or "unverified:<e-mail>".
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx

PROVIDER_DIR = Path(__file__).resolve().parents[1] / "oidc_provider"
REDIRECT_URL = "http://spendstream.test/v1/auth/oidc/callback"
CLIENTS = {
    # client id: (secret, token endpoint authentication)
    "spendstream-basic": ("basic-secret-4f9d2c7a1e", "client_secret_basic"),
    "spendstream-post": ("post-secret-8b3e6f0d5c", "client_secret_post"),
    "other-app": ("other-secret-2a7c9e4b1f", "client_secret_basic"),
}
_FORM = re.compile(r'<form[^>]*action="([^"]+)"[^>]*method="post"', re.IGNORECASE)
_PROMPT = re.compile(r'name="prompt" value="([a-z]+)"')


@dataclass(frozen=True)
class Provider:
    issuer: str


def install() -> None:
    """`npm ci` from the lock file, once: a complete node_modules is kept between runs."""
    if (PROVIDER_DIR / "node_modules" / ".package-lock.json").exists():
        return
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm (Node.js 20+) is needed to run the OpenID provider of the single sign-on tests")
    subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=PROVIDER_DIR, check=True)


@contextmanager
def running(work_dir: Path, redirect_urls: Sequence[str] = ()) -> Iterator[Provider]:
    """The provider as a process of its own, stopped at the end; its clients accept REDIRECT_URL and
    `redirect_urls` (a real server's callback, for a real browser)."""
    install()
    config = work_dir / "oidc-provider.json"
    config.write_text(
        json.dumps(
            {
                "clients": [
                    {
                        "client_id": client_id,
                        "client_secret": secret,
                        "token_endpoint_auth_method": method,
                        "redirect_uris": [REDIRECT_URL, *redirect_urls],
                        "grant_types": ["authorization_code"],
                        "response_types": ["code"],
                    }
                    for client_id, (secret, method) in CLIENTS.items()
                ]
            }
        )
    )
    log = (work_dir / "oidc-provider.log").open("w")
    node = shutil.which("node") or "node"
    process = subprocess.Popen(
        [node, str(PROVIDER_DIR / "provider.mjs"), str(config)],
        cwd=PROVIDER_DIR,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line:
            raise RuntimeError(f"the OpenID provider did not start: {(work_dir / 'oidc-provider.log').read_text()}")
        yield Provider(issuer=json.loads(line)["issuer"])
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()
        log.close()


async def sign_in_at_provider(authorization_url: str, login: str, *, abort: bool = False) -> str:
    """Play the browser at the provider: follow its redirects, post its login form (any password) and its
    consent form; return the URL it finally sends the browser to (the relying party's callback, with the code).

    `abort` leaves at the login form by the provider's own abort link (the provider answers access_denied)."""
    async with httpx.AsyncClient(timeout=10.0) as browser:
        response = await browser.get(authorization_url)
        for _ in range(10):
            if response.is_redirect:
                location = urljoin(str(response.url), response.headers["location"])
                if location.startswith(REDIRECT_URL):
                    return location
                response = await browser.get(location)
                continue
            assert response.status_code == 200, response.text
            form, prompt = _FORM.search(response.text), _PROMPT.search(response.text)
            assert form is not None and prompt is not None, "the provider showed no sign-in or consent form"
            action = urljoin(str(response.url), form.group(1))
            if abort:
                response = await browser.get(f"{action.rstrip('/')}/abort")
                continue
            fields = {"prompt": prompt.group(1)}
            if prompt.group(1) == "login":
                fields |= {"login": login, "password": "any password"}
            response = await browser.post(action, data=fields)
        raise AssertionError("the provider never sent the browser back to the callback")


def query_of(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
