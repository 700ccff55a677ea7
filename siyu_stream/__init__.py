"""siyu-stream: customer-lifecycle rules for private-domain (私域) commerce, on Kafka.

Where the install compiled the hot modules (mypyc, see `siyu_stream.build`), the
environment variable SIYU_BUILD=interpreted makes this process import the Python source
of every module instead: the same code, uncompiled, for comparing the two builds.
"""

import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

__version__ = "0.1.0"


class _SourceFinder(importlib.abc.MetaPathFinder):
    """Finds `siyu_stream.*` modules as .py files only, never a compiled extension."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if not fullname.startswith(__name__ + ".") or path is None:
            return None
        leaf = fullname.rpartition(".")[2]
        for directory in path:
            package = Path(directory, leaf)
            if (package / "__init__.py").is_file():
                return importlib.util.spec_from_file_location(
                    fullname, package / "__init__.py", submodule_search_locations=[str(package)]
                )
            if Path(directory, leaf + ".py").is_file():
                return importlib.util.spec_from_file_location(
                    fullname, Path(directory, leaf + ".py")
                )
        return None


if os.environ.get("SIYU_BUILD") == "interpreted":
    sys.meta_path.insert(0, _SourceFinder())
