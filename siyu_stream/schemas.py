"""Compiled validators built from the JSON Schemas in `topics/` (the single source of truth).

The schemas ship inside the wheel as `siyu_stream/topics`; in a source checkout they
are read from the repository's `topics/` directory.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import fastjsonschema
import orjson

_ID_PREFIX = "https://siyu-stream.dev/topics/"

SCHEMA_OF_TYPE = {"order": "siyu.orders", "chat": "siyu.chats", "join": "siyu.joins"}
"""The schema of each input type. Schemas are named after the default topic names; the
topic names themselves come from the topology (their prefix is a setting)."""
DEADLETTER_SCHEMA = "siyu.deadletter"

Validator = Callable[[Any], Any]


def topics_dir() -> Path:
    """Where the schema files are: inside the installed package, else the source tree."""
    packaged = Path(str(resources.files("siyu_stream"))) / "topics"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "topics"


@cache
def load_schema(name: str) -> dict[str, Any]:
    """The schema of topic `name` (e.g. `siyu.orders`) or shared part (`envelope`)."""
    path = topics_dir() / f"{name}.schema.json"
    schema: dict[str, Any] = orjson.loads(path.read_bytes())
    return schema


def _resolve(uri: str) -> dict[str, Any]:
    # $ref between our files uses their $id; map it back to the local file, never the network
    if not uri.startswith(_ID_PREFIX) or not uri.endswith(".schema.json"):
        msg = f"schema reference outside topics/: {uri}"
        raise ValueError(msg)
    return load_schema(uri[len(_ID_PREFIX) : -len(".schema.json")])


@cache
def validator(name: str) -> Validator:
    """A compiled validator for topic `name`; raises JsonSchemaValueException on failure."""
    compiled: Validator = fastjsonschema.compile(
        load_schema(name), handlers={"https": _resolve}, use_default=False
    )
    return compiled
