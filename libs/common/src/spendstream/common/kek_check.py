"""Before anything starts: can the configured KEK unwrap every workspace's data key?

A server whose KEK is not the one that wrapped the key sets can neither accept nor read a single batch of those
workspaces. It is refused at start (`up`, `run X`, each service's entrypoint, and their `--check`), with one
line per workspace naming the KEK's id and the workspace, instead of failing request by request. The check
replays `ingest.datakeys.v1` and writes nothing: no KEK is created, no topic, no consumer group.
"""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError
from cryptography.exceptions import InvalidTag

from spendstream.common import crypto
from spendstream.common.kafka import CompactedTable
from spendstream.common.settings import BaseServiceSettings, ConfigurationError
from spendstream.common.topics import DATA_KEYS, topic_name

# Beyond this many workspaces the lines say how many more: the cause is one KEK, not each workspace.
MAX_LINES = 20


async def kek_problems(settings: BaseServiceSettings) -> list[str]:
    """One line per workspace whose data key the configured KEK cannot unwrap (or one line saying there is no
    KEK while key sets exist); empty when every key set unwraps. Raises ConfigurationError when the topic
    cannot be read."""
    versions = await _replay(settings)
    if not versions:
        return []
    topic = topic_name(DATA_KEYS, settings.topic_prefix)
    if not settings.kek_exists():
        wrapped_by = ", ".join(sorted({v.kek_id for v in versions}))
        workspaces = len({v.workspace_id for v in versions})
        return [
            f"no KEK at {settings.kek_path()} (SPENDSTREAM_DATA_DIR) nor in SPENDSTREAM_KEK, but {workspaces} "
            f"workspace key set(s) on {topic} are wrapped by KEK {wrapped_by}: configure that KEK "
            "(a new one would unwrap none of them)"
        ]
    kek = settings.kek_bytes()  # it exists: reading it creates nothing
    kek_id, source = settings.kek_identity(), settings.kek_source()
    # One line per workspace, naming the KEK of its first version that does not unwrap.
    failing: dict[str, str] = {}
    for version in sorted(versions, key=lambda v: (v.workspace_id, v.version)):
        if version.workspace_id not in failing and not unwraps(version, kek):
            failing[version.workspace_id] = version.kek_id
    lines = [
        f"KEK {kek_id} ({source}) cannot unwrap the data key of workspace {workspace_id} (wrapped by KEK {wrapped_by})"
        for workspace_id, wrapped_by in sorted(failing.items())[:MAX_LINES]
    ]
    if len(failing) > MAX_LINES:
        lines.append(f"KEK {kek_id} cannot unwrap the data keys of {len(failing) - MAX_LINES} more workspace(s)")
    return lines


def verify_kek(settings: BaseServiceSettings) -> None:
    """Raise ConfigurationError, one line per problem, unless the KEK unwraps every workspace's data key."""
    problems = asyncio.run(kek_problems(settings))
    if problems:
        raise ConfigurationError("\n".join(problems))


def unwraps(version: crypto.DataKeyVersion, kek: bytes) -> bool:
    """Whether `kek` unwraps this data-key version."""
    try:
        crypto.unwrap_version(version, kek)
    except InvalidTag:
        return False
    return True


async def _replay(settings: BaseServiceSettings) -> list[crypto.DataKeyVersion]:
    """Every data-key version on the topic, in either record layout (one record per version, or a whole set)."""
    topic = topic_name(DATA_KEYS, settings.topic_prefix)
    try:
        probe = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers, group_id=None)
        await probe.start()
        try:
            exists = topic in await probe.topics()
        finally:
            await probe.stop()
        if not exists:  # a first start: no workspace yet, nothing to unwrap
            return []
        table: CompactedTable[crypto.DataKeyRecord] = CompactedTable(settings, DATA_KEYS)
        await table.start()
        try:
            records = table.values()
        finally:
            await table.stop()
        return [v for r in records for v in (crypto.versions_of(r) if isinstance(r, crypto.WrappedKeySet) else [r])]
    except (KafkaError, OSError, TimeoutError) as exc:
        raise ConfigurationError(
            f"cannot read {topic} from SPENDSTREAM_KAFKA_BOOTSTRAP_SERVERS to check the KEK ({type(exc).__name__})"
        ) from None
