"""Compiled validators built from the JSON Schemas in `topics/` (the single source of truth).

The schemas ship inside the wheel as `siyu_stream/topics`; in a source checkout they
are read from the repository's `topics/` directory.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Final, Literal, Union
from urllib.parse import urljoin

import fastjsonschema
import msgspec
import orjson

_ID_PREFIX: Final = "https://siyu-stream.dev/topics/"

SCHEMA_OF_TYPE: Final = {"order": "siyu.orders", "chat": "siyu.chats", "join": "siyu.joins"}
"""The schema of each input type. Schemas are named after the default topic names; the
topic names themselves come from the topology (their prefix is a setting)."""
DEADLETTER_SCHEMA: Final = "siyu.deadletter"

Validator = Callable[[Any], Any]


def topics_dir() -> Path:
    """Where the schema files are: inside the installed package, else the source tree."""
    packaged = Path(str(resources.files("siyu_stream"))) / "topics"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "topics"


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


# ---- typed decoding: msgspec structs built from the same schema files

_NUMBER_MAX: Final = 2**63 - 1
"""msgspec bounds fit in int64; a larger amount takes the slow path (orjson reads one past
2**64 as a float), which rejects it in its own words."""


_END: Final = re.compile(r"(?<!\\)\$")
"""An unescaped `$`: JSON Schema's end of input, which in Python's `re` would also match
before a final newline; `\\Z` is what the schema means (fastjsonschema does the same)."""


DEFERRED: Final = ("occurred_at", "amount")
"""Input fields whose `pattern` the msgspec decoder is built without: `events.decode`
checks them itself, at a fraction of the cost (msgspec calls Python's `re` for a pattern:
~5,000 instructions a field compiled, a tenth of an order's whole decoding)."""


def _anchored(pattern: str) -> str:
    return _END.sub(r"\\Z", pattern)


def _string(name: str, prop: dict[str, Any]) -> Any:
    meta = msgspec.Meta(
        min_length=prop.get("minLength"),
        max_length=prop.get("maxLength"),
        pattern=_anchored(prop["pattern"]) if "pattern" in prop and name not in DEFERRED else None,
    )
    return Annotated[str, meta]


@cache
def input_pattern(field: str) -> re.Pattern[str]:
    """The schema pattern of input field `field`, as `re` reads it (see DEFERRED)."""
    for name in SCHEMA_OF_TYPE.values():
        prop = _merged(name)[0].get(field, {})
        if "pattern" in prop:
            return re.compile(_anchored(prop["pattern"]))
    msg = f"no input schema has a pattern for {field!r}"
    raise ValueError(msg)


def _field_type(name: str, prop: dict[str, Any]) -> Any:
    """The msgspec type that accepts exactly what `prop` accepts (the subset of JSON
    Schema our topic schemas use; anything else is refused here, at import)."""
    if "enum" in prop:
        return Literal[tuple(prop["enum"])]
    kinds = prop["type"] if isinstance(prop["type"], list) else [prop["type"]]
    parts: list[Any] = []
    for kind in kinds:
        if kind == "string":
            parts.append(_string(name, prop))
        elif kind == "null":
            parts.append(None)
        elif kind == "number":  # integers are numbers too; bool is neither
            low = prop.get("minimum")
            parts.append(Annotated[int, msgspec.Meta(ge=low, le=_NUMBER_MAX)])
            parts.append(Annotated[float, msgspec.Meta(ge=low)])
        elif kind == "array" and prop.get("items") == {"type": "object"}:
            parts.append(Annotated[list[dict[str, Any]], msgspec.Meta(max_length=prop["maxItems"])])
        else:
            msg = f"schema property {name!r}: {prop} has no msgspec translation"
            raise ValueError(msg)
    return Union[tuple(parts)]  # noqa: UP007 - built at run time from a list


def _merged(name: str) -> tuple[dict[str, Any], list[str]]:
    """Properties and required fields of `name` with those of its allOf $refs."""
    schema = load_schema(name)
    properties: dict[str, Any] = {}
    required: list[str] = []
    for ref in schema.get("allOf", []):
        base = _resolve(urljoin(_ID_PREFIX, ref["$ref"]))
        properties.update(base["properties"])
        required += base["required"]
    properties.update(schema["properties"])
    required += schema["required"]
    return properties, required


@cache
def input_decoder() -> msgspec.json.Decoder[Any]:
    """One JSON decoder for every input type, tagged by `type`: it accepts what the
    schemas accept (tests/test_fuzz.py compares it with `validator` on arbitrary
    input); on a refusal the caller asks `validator` for the reason's wording."""
    structs = []
    for kind, name in SCHEMA_OF_TYPE.items():
        properties, required = _merged(name)
        fields: list[tuple[str, Any] | tuple[str, Any, Any]] = []
        for field, prop in properties.items():
            if field == "type":
                continue  # the tag
            kind_type = _field_type(field, prop)
            if field in required:
                fields.append((field, kind_type))
            else:
                fields.append((field, kind_type | msgspec.UnsetType, msgspec.UNSET))
        # gc=False: a struct decoded from JSON cannot hold a cycle, so the cycle collector
        # need not track the one made and dropped for every event
        structs.append(
            msgspec.defstruct(
                kind, fields, tag_field="type", tag=kind, kw_only=True, frozen=True, gc=False
            )
        )
    return msgspec.json.Decoder(Union[tuple(structs)])  # noqa: UP007 - built at run time


def build_input_decoders() -> None:
    """Build now what decoding input builds on first use: a process about to fork replay
    jobs calls this, so that they share one copy instead of each building its own."""
    input_decoder()
    for name in SCHEMA_OF_TYPE.values():
        validator(name)
    for field in DEFERRED:
        input_pattern(field)
