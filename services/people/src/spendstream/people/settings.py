"""people's configuration: the shared base plus sign-in, invitations and single sign-on."""

from __future__ import annotations

from pydantic import Field

from spendstream.common.settings import BaseServiceSettings


class PeopleSettings(BaseServiceSettings):
    http_port: int = Field(default=8086, ge=1, le=65535)
