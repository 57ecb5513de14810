"""The layers of README "Architecture", checked by import-linter (contracts in pyproject.toml),
and no module reaching into another's private names."""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_imports_run_one_way_down() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run([str(lint), "--no-cache"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


def test_every_timeline_format_has_one_parser() -> None:
    from tracehouse.core.frames import TIMELINE_FORMATS
    from tracehouse.ingest.pipeline import PARSERS

    assert tuple(PARSERS) == TIMELINE_FORMATS


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # its parent is a module, not a package: ``name`` is an attribute
        return False


def _private_reaches(path: Path, package: str) -> list[str]:
    """Where the module at ``path`` (in ``package``) uses another module's ``_private`` name: by
    ``from tracehouse.x import _name``, as ``module._name`` on a tracehouse module it imported,
    or by patching it (``setattr(module, "_name", ...)``, monkeypatch's too).  A package's own
    private submodule (``ingest/_kineto_scan``, the C extension) may be imported inside that
    package."""
    tree = ast.parse(path.read_text())
    modules: set[str] = set()  # the local names bound to tracehouse modules
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tracehouse"):
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                if _is_module(full):
                    modules.add(alias.asname or alias.name)
                if alias.name.startswith("_") and not (_is_module(full) and node.module == package):
                    found.append(f"{path.relative_to(REPO)}:{node.lineno} imports {full}")
        elif isinstance(node, ast.Import):
            modules.update(a.asname for a in node.names if a.name.startswith("tracehouse") and a.asname)
    found += [
        f"{path.relative_to(REPO)}:{node.lineno} uses {node.value.id}.{node.attr}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id in modules
        and node.attr.startswith("_")
        and not node.attr.startswith("__")
    ]
    found += [
        f"{path.relative_to(REPO)}:{node.lineno} patches {node.args[0].id}.{node.args[1].value}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and (getattr(node.func, "id", None) == "setattr" or getattr(node.func, "attr", None) == "setattr")
        and len(node.args) >= 2
        and isinstance(node.args[0], ast.Name)
        and node.args[0].id in modules
        and isinstance(node.args[1], ast.Constant)
        and str(node.args[1].value).startswith("_")
    ]
    return found


def test_no_module_reaches_into_another_modules_private_names() -> None:
    """The tests, benchmarks and scripts too: what they need of a module is part of its public face."""
    package_dir = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    found = []
    for root_package, folder in [*package_dir.items(), ("tests", "tests"), ("bench", "bench"), ("scripts", "scripts")]:
        for path in sorted((REPO / folder).rglob("*.py")):
            package = ".".join([root_package, *path.relative_to(REPO / folder).parent.parts])
            found += _private_reaches(path, package)
    assert not found, "\n".join(found)
