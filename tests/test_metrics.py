"""The exporter's latency histograms, kept as plain bucket counts (`metrics.Latencies`),
show what prometheus-client's own `Histogram` would for the same values."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Histogram, generate_latest

from siyu_stream.observe.metrics import EVENT_TIME_BUCKETS, LATENCY_BUCKETS, Exporter


def _samples(registry: CollectorRegistry, name: str) -> list[str]:
    text = generate_latest(registry).decode()
    return [
        line
        for line in text.splitlines()
        if line.startswith(name) and not line.startswith(f"{name}_created")
    ]


def test_latency_histograms_match_prometheus_client() -> None:
    now = 1_000_000
    # on a bound (le: counted in it), between bounds, zero, beyond every bound, and a
    # timestamp after `now` (a clock step: counted as 0)
    ages_ms = [5, 6, 0, 10, 99, 100, 2_500, 59_999, 60_000, 75_000, 10_000_000, -3]
    latencies = [(now - age, now - 2 * age) for age in ages_ms]
    exporter = Exporter()
    exporter.observe_committed(latencies[:5], now)
    exporter.observe_committed(latencies[5:], now)  # counts add up over batches

    reference = CollectorRegistry()
    processing = Histogram(
        "siyu_processing_latency_seconds", "p", buckets=LATENCY_BUCKETS, registry=reference
    )
    event_time = Histogram(
        "siyu_event_time_latency_seconds", "e", buckets=EVENT_TIME_BUCKETS, registry=reference
    )
    for appended, occurred in latencies:
        processing.observe(max(0, now - appended) / 1000)
        event_time.observe(max(0, now - occurred) / 1000)

    for name in ("siyu_processing_latency_seconds", "siyu_event_time_latency_seconds"):
        mine = _samples(exporter.registry, name)
        assert mine == _samples(reference, name)
        assert any('le="+Inf"} 12.0' in line for line in mine)
