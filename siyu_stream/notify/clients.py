"""The one place the notifier's Kafka clients get their connection options.

Every consumer and producer of `siyu-stream notify` is built with `kafka_options`; the
worker's settings (`Settings.broker`, SIYU_BROKER) are the notifier's, so both always
talk to the same cluster. When the shared client options (SASL/TLS) land, this function
returns them instead, and nothing else in the package changes.
"""

from __future__ import annotations

from typing import Any

from siyu_stream.settings import Settings


def kafka_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for AIOKafkaConsumer / AIOKafkaProducer: where and how to connect."""
    return {"bootstrap_servers": settings.broker}
