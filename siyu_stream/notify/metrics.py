"""The notifier's Prometheus metrics, served on its own HTTP port (`[notify] metrics_port`).

Label values are bounded: sink names come from the config file, outcomes and retry
reasons are fixed sets, partitions are the topic's.
"""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

LATENCY_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 14400, 86400)


class NotifyMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.deliveries = Counter(
            "siyu_notify_deliveries",
            "Actions finished per sink: delivered, expired, dead, failed.",
            ["sink", "outcome"],
            registry=r,
        )
        self.attempts = Counter(
            "siyu_notify_attempts",
            "Requests to a sink, by how they ended (2xx, 429, 5xx, 4xx, "
            "timeout, network, errcode_45009, errcode, garbage).",
            ["sink", "result"],
            registry=r,
        )
        self.retries = Counter(
            "siyu_notify_retries",
            "Attempts scheduled again after a retriable answer.",
            ["sink", "reason"],
            registry=r,
        )
        self.deadletters = Counter(
            "siyu_notify_deadletters",
            "Records written to the notify dead-letter topic.",
            ["reason"],
            registry=r,
        )
        self.queue_depth = Gauge(
            "siyu_notify_queue_depth",
            "Actions due at a sink and not yet finished (waiting for "
            "a slot, in flight or backing off).",
            ["sink"],
            registry=r,
        )
        self.held = Gauge(
            "siyu_notify_held_messages", "Actions held until their not_before.", registry=r
        )
        self.oldest_held = Gauge(
            "siyu_notify_oldest_held_age_seconds",
            "How long the oldest held action has been held (0: none).",
            registry=r,
        )
        self.pending = Gauge(
            "siyu_notify_pending",
            "Uncommitted actions (held or in delivery) per partition.",
            ["topic", "partition"],
            registry=r,
        )
        self.paused = Gauge(
            "siyu_notify_partitions_paused",
            "Partitions paused because max_pending_per_partition is reached.",
            registry=r,
        )
        self.owned = Gauge(
            "siyu_notify_partitions_owned",
            "Action-topic partitions this notifier owns.",
            registry=r,
        )
        self.latency = Histogram(
            "siyu_notify_delivery_latency_seconds",
            "From when an action could first be delivered (not_before, else occurred_at) to "
            "its sink taking it.",
            ["sink"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )


def metric_names() -> set[str]:
    """Every name /metrics can show (with the counter and histogram series suffixes)."""
    names: set[str] = set()
    for family in NotifyMetrics().registry.collect():
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
        if family.type == "counter":
            names.add(family.name + "_total")
        if family.type == "histogram":
            names.update(family.name + s for s in ("_bucket", "_sum", "_count"))
    return names


async def serve(metrics: NotifyMetrics, host: str, port: int, alive: object) -> web.AppRunner:
    """/metrics and /healthz on `host:port`; `alive()` says whether the loop runs."""

    async def scrape(request: web.Request) -> web.Response:
        body = generate_latest(metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(request: web.Request) -> web.Response:
        ok = bool(alive() if callable(alive) else alive)
        return web.Response(status=200 if ok else 503, text="ok\n" if ok else "stopped\n")

    app = web.Application()
    app.router.add_get("/metrics", scrape)
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
