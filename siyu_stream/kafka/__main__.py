"""`python -m siyu_stream.kafka java|warm-up`: the Makefile's hooks into the launcher.

`java` prints the Java (>= 17) the launcher would use and exits 1 when there is none, so
`make` fetches the Kafka jars only where they can run. `warm-up` starts and stops one node
in a scratch dir, which leaves the JVM class archive behind (see `jvm`); a no-op once it
exists.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from siyu_stream.core.errors import BrokerError
from siyu_stream.kafka.apache import KafkaCluster
from siyu_stream.kafka.jvm import find_java, locate


def main(argv: list[str]) -> int:
    if argv == ["java"]:
        found = find_java()
        if found is None:
            return 1
        print(found[0])
        return 0
    if argv == ["warm-up"]:
        archive = locate().archive
        if archive.exists():
            print(f"kafka warm-up: {archive.name} already there")
            return 0
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="siyu-kafka-warm-up-") as scratch:
            cluster = KafkaCluster(Path(scratch))
            cluster.start()
            cluster.stop()  # the JVM writes the archive as it exits
        print(f"kafka warm-up: {archive.name} written in {time.monotonic() - started:.1f} s")
        return 0
    print("usage: python -m siyu_stream.kafka java|warm-up", file=sys.stderr)
    return 2


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except BrokerError as exc:
        print(f"siyu_stream.kafka: {exc}", file=sys.stderr)
        sys.exit(2)
