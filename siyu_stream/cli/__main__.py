"""`python -m siyu_stream.cli`: the same as the `siyu-stream` command."""

from siyu_stream.cli import entry

entry()
