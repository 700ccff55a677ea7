"""`python -m siyu_stream.cli`: the same as the `siyu-stream` command."""

import sys

from siyu_stream.cli import main

sys.exit(main())
