"""Offline replay: JSONL files through the engine, in the live worker's merge order, in one
process or several (`--jobs`)."""
