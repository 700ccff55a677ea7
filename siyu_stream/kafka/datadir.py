"""What the Kafka launcher keeps in its data dir besides the nodes' own dirs.

- launcher.lock: held (flock) while any node may run, so a second launcher on the same
  data dir fails at once, before it rewrites the running nodes' configs and client.json
  (its JVMs would only fail later, on Kafka's own log dir lock).
- cluster.json: the cluster id, node count, SASL and the SCRAM password chosen at format
  time. Written once every node is formatted: without it the dir is formatted afresh.
- client.json: what clients need (see `kraft.write_client_file`), written at every start
  because the ports are picked anew.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import uuid
from pathlib import Path
from secrets import token_urlsafe
from typing import IO, Any

from siyu_stream.core.errors import BrokerError

CLIENT_FILE = "client.json"
STATE_FILE = "cluster.json"
LOCK_FILE = "launcher.lock"


def lock(data_dir: Path) -> IO[str]:
    """Take the data dir's launcher lock; closing the returned file releases it."""
    data_dir.mkdir(parents=True, exist_ok=True)
    handle = (data_dir / LOCK_FILE).open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        handle.seek(0)
        owner = handle.read().strip() or "unknown"
        handle.close()
        msg = f"{data_dir} is in use by another Kafka launcher (pid {owner})"
        raise BrokerError(msg) from exc
    handle.truncate(0)
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def read_state(data_dir: Path, nodes: int, sasl: bool) -> dict[str, Any] | None:
    """cluster.json if the dir was formatted; BrokerError if for another shape of cluster."""
    path = data_dir / STATE_FILE
    if not path.exists():
        return None
    state: dict[str, Any] = json.loads(path.read_text())
    if state["nodes"] != nodes or state["sasl"] != sasl:
        msg = (
            f"{data_dir} holds a cluster of {state['nodes']} node(s), sasl {state['sasl']}; "
            f"asked for {nodes}, sasl {sasl}: use another data dir or remove it"
        )
        raise BrokerError(msg)
    return state


def new_state(nodes: int, sasl: bool) -> dict[str, Any]:
    # 16 random bytes in URL-safe base64, as `kafka-storage random-uuid` prints them.
    cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    state: dict[str, Any] = {"cluster_id": cluster_id, "nodes": nodes, "sasl": sasl}
    if sasl:
        state["password"] = token_urlsafe(18)  # no , ] = : the --add-scram syntax is flat
    return state


def write_state(data_dir: Path, state: dict[str, Any]) -> None:
    path = data_dir / STATE_FILE
    path.write_text(json.dumps(state, indent=2) + "\n")
    path.chmod(0o600)  # it holds the SCRAM password
