"""Before serving: is something already running where this process would run? One line saying what and where.

Two things cannot be shared: the HTTP port, and the embedded ClickHouse (chDB) under the data directory, which
locks `clickhouse/status` with flock for as long as a process has it open.
"""

from __future__ import annotations

import errno
import fcntl
import json
import socket
import urllib.request
from pathlib import Path

from spendstream.common.settings import BaseServiceSettings


def already_running(settings: BaseServiceSettings, embedded_clickhouse: bool = True) -> str | None:
    """What already holds the port (or, for a process that opens it, the embedded ClickHouse), in one line;
    None if both are free."""
    where = f"{settings.http_host}:{settings.http_port}"
    if _port_taken(settings.http_host, settings.http_port):
        if _is_spendstream(settings.http_host, settings.http_port):
            return f"spendstream is already running on http://{where}; stop it or set SPENDSTREAM_HTTP_PORT"
        return f"{where} is already in use by another program; set SPENDSTREAM_HTTP_PORT"
    if embedded_clickhouse and not settings.clickhouse_url and _locked(settings.data_dir / "clickhouse" / "status"):
        return (
            f"another spendstream is already running on the data directory {settings.data_dir.resolve()} "
            "(its embedded ClickHouse is locked); stop it or set SPENDSTREAM_DATA_DIR"
        )
    return None


def _port_taken(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        # As uvicorn binds: SO_REUSEADDR, so a port in TIME_WAIT is free, a listening one is not.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False


def _is_spendstream(host: str, port: int) -> bool:
    target = f"[{host}]" if ":" in host else host
    if host in ("0.0.0.0", "::"):
        target = "127.0.0.1" if host == "0.0.0.0" else "[::1]"
    try:
        with urllib.request.urlopen(f"http://{target}:{port}/healthz", timeout=2) as answer:
            return isinstance(json.loads(answer.read()), dict)
    except (OSError, ValueError):
        return False


def _locked(status: Path) -> bool:
    if not status.exists():
        return False
    with status.open("rb") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
    return False
