"""console's configuration: the shared base on its own port."""

from __future__ import annotations

from pydantic import Field

from spendstream.common.settings import BaseServiceSettings


class ConsoleSettings(BaseServiceSettings):
    http_port: int = Field(default=8087, ge=1, le=65535)
