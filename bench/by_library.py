"""Instructions per event by shared library, from two callgrind runs of one command.

    python bench/by_library.py SHORT.out LONG.out EVENTS

SHORT and LONG are callgrind outputs of the same command over a stream's first lines and
over more of them; EVENTS is how many more. Each function's own instructions (its calls
left out) are summed by the library that holds it, and the difference between the runs is
divided by EVENTS, so start-up and imports cancel out. `bench/instructions.sh ...
by-library` runs it: compiled, the share outside the compiled extension is what a
compiler of the same Python cannot remove (docs/design.md §7).
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path

_NAMED = re.compile(r"\((\d+)\)(?: (.*))?")


def _label(path: str) -> str:
    # mypyc names its shared library by a hash of the modules it holds
    return "siyu_stream, compiled" if "__mypyc." in path else Path(path).name


def own_instructions(path: Path) -> Counter[str]:
    """Instructions spent in each library's own code ("ob=" of callgrind's format)."""
    objects: dict[str, str] = {}
    total: Counter[str] = Counter()
    library = "?"
    after_call = False  # the next cost line is a call's inclusive cost: not own work
    with path.open() as lines:
        for line in lines:
            if line[:1].isdigit() or line[:1] in "+-*":
                if after_call:
                    after_call = False
                else:
                    total[library] += int(line.split()[1])
            elif line.startswith(("ob=", "cob=")):
                found = _NAMED.match(line.split("=", 1)[1].strip())
                if found is None:
                    continue
                number, name = found.groups()
                if name is not None:
                    objects[number] = _label(name)
                if line.startswith("ob="):
                    library = objects.get(number, "?")
            elif line.startswith("calls="):
                after_call = True
    return total


def main(argv: list[str]) -> None:
    if len(argv) != 3:
        sys.exit(__doc__)
    short, long = own_instructions(Path(argv[0])), own_instructions(Path(argv[1]))
    per_event = {name: (long[name] - short[name]) / int(argv[2]) for name in long | short}
    whole = sum(per_event.values())
    print(f"{whole:>9,.0f}  100.0 %  all")
    for name, count in sorted(per_event.items(), key=lambda item: -item[1]):
        if count >= whole / 1000:
            print(f"{count:>9,.0f}  {100 * count / whole:5.1f} %  {name}")


if __name__ == "__main__":
    main(sys.argv[1:])
