"""Observation beside the processing: stats, the operator timeline, the read-only worker
view, the Prometheus exporter and the HTTP API. Nothing here is state or output."""
