"""The pure rule core: events, rules, state, actions and the step that joins them.

`(state, event, clock) -> (state, actions)` and nothing else: no Kafka, wall clock,
logging or I/O. It imports only the standard library and its codecs (msgspec, orjson,
fastjsonschema); every other package builds on it.
"""
