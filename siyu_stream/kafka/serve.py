"""`siyu-stream broker`: which engine runs, and the Kafka engine's start, report, wait, stop."""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path

from siyu_stream.core.errors import BrokerError
from siyu_stream.kafka.apache import KafkaCluster
from siyu_stream.kafka.embedded import LocalBroker
from siyu_stream.kafka.jvm import find_java, jars_dir, kafka_version


def pick_engine(engine: str | None, *, nodes: int, sasl: bool) -> str:
    """`engine` as asked; by default Kafka where a Java >= 17 is found, else the embedded one."""
    if engine is None:
        engine = "kafka" if find_java() is not None else "embedded"
    if engine == "embedded" and (nodes != 1 or sasl):
        msg = "--nodes and --sasl need --engine kafka (noida-db is one node, plaintext)"
        raise BrokerError(msg)
    return engine


def local_broker(
    data_dir: Path, engine: str | None = None
) -> tuple[str, LocalBroker | KafkaCluster]:
    """The broker `make demo` runs: Apache Kafka where a Java >= 17 is found (one node, its
    data in `data_dir`/kafka), else the embedded noida-db; its name for the console."""
    if pick_engine(engine, nodes=1, sasl=False) == "kafka":
        return f"Apache Kafka {kafka_version(jars_dir())}", KafkaCluster(data_dir / "kafka")
    return "noida-db (embedded: no Java 17 found)", LocalBroker(data_dir / "broker")


def serve_kafka(data_dir: Path, port: int, *, nodes: int, sasl: bool) -> int:
    """Start Kafka, print its bootstrap address(es) on stdout, run until SIGINT or SIGTERM."""
    cluster = KafkaCluster(data_dir, nodes, sasl=sasl, port=port)
    cluster.start()
    print(cluster.bootstrap, flush=True)
    lines = [
        f"Apache Kafka {kafka_version(jars_dir())}: {nodes} node(s) ready in "
        f"{cluster.started_in or 0:.1f} s (data and node-*/server.log in {data_dir})",
        f"client settings: {cluster.client_file}",
    ]
    if sasl:
        lines.append(
            f"SASL_SSL (SCRAM-SHA-512, SCRAM-SHA-256, PLAIN) on {cluster.sasl_bootstrap}, "
            f"SSL with a client certificate on {cluster.ssl_bootstrap}: user, password, CA "
            f"and client certificate in {cluster.client_file}"
        )
    if nodes > 1:
        lines.append(f"topics replicated {min(nodes, 3)}x: export SIYU_REPLICATION={min(nodes, 3)}")
    lines.append("Ctrl-C stops it")
    print("\n".join(lines), file=sys.stderr, flush=True)
    until_stopped()
    killed = cluster.stop()
    if killed:
        which = ", ".join(map(str, killed))
        print(
            f"node(s) {which} still waited for a controlled-shutdown approval after the "
            "quorum stopped: killed; their logs are recovered at the next start",
            file=sys.stderr,
        )
    return 0


def until_stopped() -> None:
    """Block until SIGINT or SIGTERM: a local broker runs in the foreground until told."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
