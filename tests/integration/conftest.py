"""Integration fixtures: no worker process outlives its test, whatever the test did; one
Apache Kafka node (`kafka`, and `broker` for the guarantee tests), one with a SASL_SSL
listener (`kafka_sasl`), each shared by the whole session, and a three-node cluster
(`cluster3`, and `cluster` for a test that kills or stops its nodes) for the fault suite
and the launcher's replication test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from live import WorkerProcess

from siyu_stream.kafka.apache import KafkaCluster


@pytest.fixture(autouse=True)
def _reap_workers() -> Iterator[None]:
    yield
    for worker in WorkerProcess.started:
        if worker.alive():
            worker.kill()
    WorkerProcess.started.clear()


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaCluster]:
    """One Apache Kafka 4 node (KRaft, RF 1, transactions on) for the whole session: a JVM
    start costs seconds, so tests share it and each uses topics and groups of its own.

    No Java >= 17 or no jars (`make kafka-jars`) is an error, not a skip: CI has both.
    """
    cluster = KafkaCluster(Path(tmp_path_factory.mktemp("kafka")))
    cluster.start()
    try:
        yield cluster
    finally:
        print(f"kafka logs: {cluster.data_dir}/node-*/server.log")
        cluster.stop()


@pytest.fixture
def broker(kafka: KafkaCluster) -> KafkaCluster:
    """The broker of a guarantee test: the session's Apache Kafka node. Tests use topics and
    groups of their own (tests/integration/live.py `settings_for`); one that restarts it
    restarts it for itself only, since tests run one at a time."""
    return kafka


@pytest.fixture(scope="session")
def cluster3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaCluster]:
    """Three Apache Kafka nodes (replication 3, min.insync.replicas 2) for the fault suite."""
    cluster = KafkaCluster(Path(tmp_path_factory.mktemp("kafka3")), nodes=3)
    cluster.start()
    try:
        yield cluster
    finally:
        print(f"kafka logs: {cluster.data_dir}/node-*/server.log")
        if killed := cluster.stop():  # the race of a whole-cluster stop: apache.py
            print(f"kafka nodes {killed} outlived the quorum: killed (node-*/stdout.log)")


@pytest.fixture
def cluster(cluster3: KafkaCluster) -> Iterator[KafkaCluster]:
    """The session's three-node cluster, every node running again after the test (one that
    kills or stops a node gives it back, whatever it did)."""
    yield cluster3
    for index, pid in enumerate(cluster3.node_pids):
        if pid is None:
            cluster3.start_node(index)


@pytest.fixture(scope="session")
def kafka_sasl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaCluster]:
    """One Apache Kafka node with a SASL_SSL listener (SCRAM-SHA-512, a CA made at start)
    beside PLAINTEXT; `sasl_connection` is how a client logs in. Shared like `kafka`."""
    with KafkaCluster(Path(tmp_path_factory.mktemp("kafka-sasl")), sasl=True) as cluster:
        yield cluster
