"""Load an instrumented build of the Kineto scanner (``scripts/fuzz.sh build-asan|build-fuzz``)
in place of the installed one, before anything imports ``kineto_pieces`` (which holds the
scanner ``kineto_native`` and ``kineto_stream`` use).

Used as a pytest plugin (``pytest -p tests.fuzz.instrumented``) and by the fuzz harness; the
build to load is named by ``TRACEHOUSE_KINETO_SCAN_SO``.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

ENV = "TRACEHOUSE_KINETO_SCAN_SO"
MODULE = "tracehouse.ingest._kineto_scan"


def load(path: Path) -> ModuleType:
    if "tracehouse.ingest.kineto_pieces" in sys.modules:
        raise RuntimeError("kineto_pieces was imported before the instrumented scanner was loaded")
    spec = importlib.util.spec_from_file_location(MODULE, path)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"not an extension module: {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    # ``from tracehouse.ingest import _kineto_scan`` finds it here: the package has no such
    # attribute yet, since nothing has imported the installed build.
    sys.modules[MODULE] = module
    from tracehouse.ingest import kineto_pieces

    # The whole point: the scan under test must be the instrumented one.
    assert kineto_pieces.SCANNER is module, "the installed scanner was loaded instead"
    return module


def load_from_env() -> ModuleType:
    path = os.environ.get(ENV)
    if not path:
        raise RuntimeError(f"{ENV} names no instrumented build (see scripts/fuzz.sh)")
    return load(Path(path))


# Imported as a pytest plugin, or by the harness: the build is in place before any test runs.
SCANNER: ModuleType | None = load_from_env() if os.environ.get(ENV) else None
