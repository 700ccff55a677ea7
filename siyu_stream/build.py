"""Which build of the rule core runs: "compiled" (mypyc) or "interpreted".

The compiled build is the same typed Python compiled to C extension modules by mypyc
(`hatch_build.py` lists the modules; a wheel built where a C compiler exists carries
them, `make compiled` builds one). Without a compiler, in an editable install, or with
SIYU_BUILD=interpreted (see `siyu_stream/__init__.py`), the Python source runs; both
builds write the same bytes (tests/test_builds.py).
"""

from __future__ import annotations

import importlib.machinery

from siyu_stream.core import step


def build() -> str:
    """ "compiled" when the rule core was loaded from a compiled extension module."""
    loader = getattr(step, "__loader__", None)
    compiled = isinstance(loader, importlib.machinery.ExtensionFileLoader)
    return "compiled" if compiled else "interpreted"
