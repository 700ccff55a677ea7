"""The Java side of the Kafka launcher: which `java`, which jars, and the JVM command line.

Start time is mostly the JVM loading and verifying Kafka's classes (~8,000 for a node).
Measured on 2 cores shared with other work, Java 17, Kafka 4.4.0, one node, 2-5 runs each:

| JVM flags                                        | first start (format + start) | restart    |
| ------------------------------------------------ | ---------------------------- | ---------- |
| the JVM's defaults (tiered C1 + C2, G1 GC)       | 8.5-12 s                     | 5.4-7.7 s  |
| C1 only (-XX:TieredStopAtLevel=1)                | 6.0-6.9 s                    | 4.3-4.9 s  |
| C1 only + the class-data-sharing archive (below) | 2.9-3.9 s                    | 1.8-2.8 s  |

The archive (AppCDS) is the classes as the JVM had parsed and verified them, dumped at the
exit of one Kafka run (-XX:ArchiveClassesAtExit) and mapped by every later JVM. It is only
valid for the same `java` build and the same jars, so its file name is a digest of both;
a missing archive is dumped by the next start's first node (its stop then takes ~5 s more).
`make kafka-jars` does one warm-up run so that tests and the CLI find it in place.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import NamedTuple

from siyu_stream.core.errors import BrokerError

LIB_ENV = "SIYU_KAFKA_LIB"
MIN_JAVA = 17  # Kafka 4.x brokers and tools are compiled for Java 17
# C1 only: a test or demo broker never runs long enough for C2's faster code to pay back
# its compile time on 2 cores. Serial GC: fewer GC threads competing for those cores.
FLAGS = ("-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-Djava.awt.headless=true")
_VERSION = re.compile(r'version "(\d+)(?:\.(\d+))?')


class Jvm(NamedTuple):
    java: Path
    lib: Path  # the Kafka jars
    version: str  # what `java -version` printed: part of the archive's identity

    @property
    def archive(self) -> Path:
        """Where the class-data-sharing archive for this java and these jars lives."""
        digest = hashlib.sha256(f"{self.java.resolve()}\n{self.version}".encode())
        for jar in sorted(self.lib.glob("*.jar")):
            digest.update(f"\n{jar.name} {jar.stat().st_size}".encode())
        return self.lib.parent / "cds" / f"kafka-{digest.hexdigest()[:16]}.jsa"

    def command(self, heap: str, properties: dict[str, str], dump: Path | None) -> list[str]:
        """`java` and its options up to the main class; `dump`: write the archive there."""
        argv = [str(self.java), f"-Xmx{heap}", *FLAGS]
        if dump is not None:
            argv.append(f"-XX:ArchiveClassesAtExit={dump}")
        elif self.archive.exists():
            argv.append(f"-XX:SharedArchiveFile={self.archive}")
        argv += [f"-D{key}={value}" for key, value in properties.items()]
        return [*argv, "-cp", f"{self.lib}/*"]


def _version(java: Path) -> str | None:
    try:
        result = subprocess.run(
            [str(java), "-version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stderr if result.returncode == 0 else None


def major(version: str) -> int | None:
    """The feature release in `java -version` output (8 for "1.8.0_392", 17 for "17.0.15")."""
    match = _VERSION.search(version)
    if match is None:
        return None
    first = int(match.group(1))
    return int(match.group(2) or 0) if first == 1 else first


def find_java() -> tuple[Path, str] | None:
    """A `java` of version >= 17 and its version text: $JAVA_HOME/bin/java, else PATH's."""
    candidates = []
    if home := os.environ.get("JAVA_HOME"):
        candidates.append(Path(home) / "bin" / "java")
    if found := shutil.which("java"):
        candidates.append(Path(found))
    for java in candidates:
        version = _version(java)
        feature = major(version) if version else None
        if version and feature is not None and feature >= MIN_JAVA:
            return java, version
    return None


def jars_dir() -> Path:
    """The Kafka jars: $SIYU_KAFKA_LIB; else .kafka/lib of the source tree this package
    runs from (an editable install), then of the working directory (a checkout whose
    wheel is installed elsewhere, e.g. the compiled build)."""
    named = os.environ.get(LIB_ENV)
    if named:
        places = [Path(named)]
    else:
        places = [Path(__file__).resolve().parents[2] / ".kafka" / "lib"]
        places.append(Path.cwd() / ".kafka" / "lib")
    for lib in places:
        if any(lib.glob("kafka_2.13-*.jar")):
            return lib
    looked = " nor ".join(str(lib) for lib in places)
    msg = f"no Kafka jars in {looked}: run `make kafka-jars` (or set {LIB_ENV})"
    raise BrokerError(msg)


def locate(java: Path | None = None, lib: Path | None = None) -> Jvm:
    """The JVM to run Kafka with; BrokerError naming what is missing."""
    if java is None:
        found = find_java()
        if found is None:
            msg = f"Kafka needs Java >= {MIN_JAVA}: set JAVA_HOME or put java on PATH"
            raise BrokerError(msg)
        java, version = found
    else:
        version = _version(java) or ""
    return Jvm(java, lib or jars_dir(), version)


def kafka_version(lib: Path) -> str:
    """The Kafka release whose jars are in `lib` ("4.4.0"), from the core jar's name."""
    for jar in lib.glob("kafka_2.13-*.jar"):
        return jar.stem.removeprefix("kafka_2.13-")
    return "unknown"
