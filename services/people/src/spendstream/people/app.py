"""people's wiring table.

| in                                   | out / owns                                             |
|--------------------------------------|--------------------------------------------------------|
| /v1/members, /v1/invitations, /v1/me | people.members.v1 (ids and roles); e-mails, names and  |
| /v1/auth/* (sign-in, TOTP, OIDC)     |   credentials in its own Redis keys; sessions (Redis)  |
| every action                         | audit.records.v1                                       |
"""

from __future__ import annotations

from spendstream.common.kafka import make_broker
from spendstream.common.service import Service
from spendstream.people.settings import PeopleSettings


def create_service(settings: PeopleSettings) -> Service:
    broker = make_broker(settings, "people")
    service = Service("people", routers=[])
    service.on_start(broker.start)
    service.on_stop(broker.stop)
    return service
