"""The one place the bootstrap builds Kafka clients from the settings.

Connection options (SASL, TLS) are added here only: every producer, consumer and admin
client of the bootstrap comes from `kafka_client`, so that they all reach the cluster
the same way (`siyu_stream/kafka/` builds its own, from the broker address).
"""

from __future__ import annotations

from typing import Any

from siyu_stream.settings import Settings


def kafka_client(settings: Settings, cls: Any, **options: Any) -> Any:
    """An aiokafka client of class `cls` (producer, consumer or admin), not started,
    connected as `settings` says, with `options` of its own."""
    return cls(bootstrap_servers=settings.broker, **options)
