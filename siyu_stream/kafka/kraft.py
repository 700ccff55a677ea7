"""What a launched Kafka node is configured with, and what its clients are told.

Every node is broker and controller (KRaft combined mode) on 127.0.0.1, with a static quorum
of all nodes. The settings below differ from Kafka's defaults only to fit one machine with
few cores: replication capped by the node count, fast group and fencing timeouts for fault
tests, fewer internal partitions. Inter-broker traffic uses the PLAINTEXT loopback listener,
so the SASL_SSL listener needs no broker user: only the client user, whose SCRAM
credentials are made at format time and whose PLAIN password is in the listener's config.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple

from siyu_stream.kafka import tls
from siyu_stream.settings import KafkaConnection

SCRAM_MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256")
SASL_MECHANISMS = (*SCRAM_MECHANISMS, "PLAIN")
"""What the SASL_SSL listener accepts: what managed services offer (client.json: the first)."""
SASL_USER = "siyu"
# Every JVM logs to a file in its node's dir: server.log, or format.log for the format tool.
# log4j's own shutdown hook would stop the logging while Kafka's shutdown still runs: a node
# that hangs in its shutdown would leave no record of where.
LOG4J = """\
shutdownHook = disable
appender.file.type = File
appender.file.name = file
appender.file.fileName = ${sys:kafka.logs.dir}/${sys:siyu.kafka.log:-server.log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
"""


class Ports(NamedTuple):
    client: int  # PLAINTEXT, also inter-broker
    controller: int
    sasl: int  # SASL_SSL, listened on only with sasl
    ssl: int = 0  # SSL asking for a client certificate (mutual TLS), also only with sasl


def node_properties(
    node_id: int,
    ports: Ports,
    *,
    voters: str,
    nodes: int,
    log_dir: Path,
    certs: tls.Certificates | None,
    password: str = "",
) -> dict[str, str]:
    """server.properties of node `node_id`; `certs` add the SASL_SSL listener, where the
    client user logs in with `password`, and the mutual-TLS listener, which takes clients
    with a certificate the CA signed."""
    replicas = min(nodes, 3)
    min_isr = max(1, replicas - 1)  # 1 node: 1; 3 nodes: 2, so that one node may fail
    listeners = [f"PLAINTEXT://127.0.0.1:{ports.client}"]
    if certs is not None:
        listeners += [f"SASL_SSL://127.0.0.1:{ports.sasl}", f"SSL://127.0.0.1:{ports.ssl}"]
    props = {
        "process.roles": "broker,controller",
        "node.id": str(node_id),
        "controller.quorum.voters": voters,
        "controller.listener.names": "CONTROLLER",
        "listeners": ",".join([*listeners, f"CONTROLLER://127.0.0.1:{ports.controller}"]),
        "advertised.listeners": ",".join(listeners),
        # listener name -> security protocol; the controllers talk plaintext on loopback
        "listener.security.protocol.map": (
            "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL,SSL:SSL"
        ),
        "inter.broker.listener.name": "PLAINTEXT",
        "log.dirs": str(log_dir),
        "default.replication.factor": str(replicas),
        "min.insync.replicas": str(min_isr),
        "offsets.topic.replication.factor": str(replicas),
        "transaction.state.log.replication.factor": str(replicas),
        "transaction.state.log.min.isr": str(min_isr),
        "share.coordinator.state.topic.replication.factor": str(replicas),
        "share.coordinator.state.topic.min.isr": str(min_isr),
        # fewer internal partitions than the default 50: the first group or transaction
        # creates them all, which is most of its first-use latency
        "offsets.topic.num.partitions": "10",
        "transaction.state.log.num.partitions": "10",
        # tests: no wait for more members, and members that may be evicted fast
        "group.initial.rebalance.delay.ms": "0",
        "group.min.session.timeout.ms": "1000",
        # a killed node is fenced (its partitions move) after 4 s instead of 9 s
        "broker.heartbeat.interval.ms": "1000",
        "broker.session.timeout.ms": "4000",
    }
    if certs is not None:
        prefix, mutual = "listener.name.sasl_ssl.", "listener.name.ssl."
        scram = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
        plain = "org.apache.kafka.common.security.plain.PlainLoginModule required"
        # the server side of SCRAM needs the login module, without credentials (they are
        # in the metadata); PLAIN's lists the users with their passwords
        jaas = dict.fromkeys(SCRAM_MECHANISMS, scram)
        jaas["PLAIN"] = f'{plain} user_{SASL_USER}="{password}";'
        props |= {
            "sasl.enabled.mechanisms": ",".join(jaas),
            **{f"{prefix}{m.lower()}.sasl.jaas.config": config for m, config in jaas.items()},
            f"{prefix}ssl.keystore.type": "PEM",
            f"{prefix}ssl.keystore.location": str(certs.keystore),
            f"{mutual}ssl.keystore.type": "PEM",
            f"{mutual}ssl.keystore.location": str(certs.keystore),
            f"{mutual}ssl.truststore.type": "PEM",
            f"{mutual}ssl.truststore.location": str(certs.ca),
            f"{mutual}ssl.client.auth": "required",
        }
    return props


def write_properties(path: Path, props: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{key}={value}\n" for key, value in props.items()))


def write_client_file(
    path: Path,
    bootstrap: str,
    secured: tuple[str, str] | None,
    password: str,
    certs: tls.Certificates,
) -> None:
    """client.json: the PLAINTEXT bootstrap and, on a secured launch (`secured`: the
    SASL_SSL and the mutual-TLS bootstraps), what a SCRAM and a mutual-TLS client need."""
    client: dict[str, Any] = {"bootstrap": bootstrap}
    if secured is not None:
        client["sasl"] = {
            "bootstrap": secured[0],
            "security_protocol": "SASL_SSL",
            "mechanism": SASL_MECHANISMS[0],
            "username": SASL_USER,
            "password": password,
            "ca_file": str(certs.ca),
        }
        client["ssl"] = {
            "bootstrap": secured[1],
            "security_protocol": "SSL",
            "ca_file": str(certs.ca),
            "cert_file": str(certs.client_cert),
            "key_file": str(certs.client_key),
        }
    path.write_text(json.dumps(client, indent=2) + "\n")
    path.chmod(0o600)  # it holds a password


def sasl_connection(client_file: Path) -> KafkaConnection:
    """How a client reaches the SASL_SSL listener, from client.json."""
    sasl = json.loads(client_file.read_text())["sasl"]
    return KafkaConnection(
        sasl["bootstrap"],
        "SASL_SSL",
        sasl["mechanism"],
        sasl["username"],
        sasl["password"],
        ssl_cafile=Path(sasl["ca_file"]),
    )


def ssl_connection(client_file: Path) -> KafkaConnection:
    """How a client reaches the mutual-TLS listener, from client.json."""
    mutual = json.loads(client_file.read_text())["ssl"]
    return KafkaConnection(
        mutual["bootstrap"],
        "SSL",
        ssl_cafile=Path(mutual["ca_file"]),
        ssl_certfile=Path(mutual["cert_file"]),
        ssl_keyfile=Path(mutual["key_file"]),
    )
