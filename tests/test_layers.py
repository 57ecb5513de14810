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


def _private(name: object) -> bool:
    return isinstance(name, str) and name.startswith("_") and not name.startswith("__")


def _dotted(node: ast.expr) -> str | None:
    """``a.b.c`` for a chain of a name and attributes, else None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    return ".".join([node.id, *reversed(parts)]) if isinstance(node, ast.Name) else None


def _imports(tree: ast.Module, package: str, where: str) -> tuple[set[str], list[str]]:
    """The local names bound to tracehouse modules (``tracehouse`` itself after a plain
    ``import tracehouse.x``), and the private names imported from another module."""
    modules: set[str] = set()
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tracehouse"):
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                if _is_module(full):
                    modules.add(alias.asname or alias.name)
                if _private(alias.name) and not (_is_module(full) and node.module == package):
                    found.append(f"{where}:{node.lineno} imports {full}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("tracehouse"):
                    modules.add(alias.asname or alias.name.split(".")[0])
    return modules, found


def _patched(node: ast.Call, modules: set[str]) -> str | None:
    """The private name a ``setattr`` / ``delattr`` / ``getattr`` / ``hasattr`` call (monkeypatch's
    included) or a ``mock.patch`` / ``patch.object`` reaches: ``(module, "_name")``, or
    ``("tracehouse.x._name", ...)``."""
    called = getattr(node.func, "id", getattr(node.func, "attr", None))
    if called not in {"setattr", "delattr", "getattr", "hasattr", "patch", "object"}:
        return None
    first = node.args[0] if node.args else None
    if isinstance(first, ast.Constant) and isinstance(first.value, str) and first.value.startswith("tracehouse."):
        return first.value if any(_private(part) for part in first.value.split(".")) else None
    chain = _dotted(first) if isinstance(first, ast.expr) else None
    if chain is None or chain.split(".")[0] not in modules or len(node.args) < 2:
        return None
    name = node.args[1]
    return f"{chain}.{name.value}" if isinstance(name, ast.Constant) and _private(name.value) else None


def _private_reaches(path: Path, package: str) -> list[str]:
    """Where the module at ``path`` (in ``package``) uses another module's ``_private`` name: by
    ``from tracehouse.x import _name``, as ``module._name`` (or ``tracehouse.x._name``) on a
    tracehouse module it imported, or by patching or reading it through ``setattr`` and its
    kin, monkeypatch's included.  A package's own private submodule (``ingest/_kineto_scan``,
    the C extension) may be imported inside that package."""
    tree = ast.parse(path.read_text())
    where = str(path.relative_to(REPO)) if path.is_relative_to(REPO) else path.name
    modules, found = _imports(tree, package, where)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            chain = _dotted(node.value)
            if chain is not None and chain.split(".")[0] in modules:
                found.append(f"{where}:{node.lineno} uses {chain}.{node.attr}")
        elif isinstance(node, ast.Call) and (reached := _patched(node, modules)) is not None:
            found.append(f"{where}:{node.lineno} patches {reached}")
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


def test_the_private_name_check_sees_each_way_of_reaching_in(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import tracehouse.ingest.kineto\n"
        "from tracehouse import ingest\n"
        "from tracehouse.ingest import kineto\n"
        "from tracehouse.ingest.kineto import _decode_whole\n"
        "def t(monkeypatch):\n"
        "    monkeypatch.setattr(kineto, '_a', None)\n"
        "    monkeypatch.setattr('tracehouse.ingest.kineto._b', None)\n"
        "    monkeypatch.delattr(kineto, '_c')\n"
        "    getattr(kineto, '_d')\n"
        "    tracehouse.ingest.kineto._e\n"
        "    ingest.kineto._f\n"
        "    kineto._g\n"
        "    setattr(kineto, '__doc__', 'public')\n"
        "    monkeypatch.setattr(kineto, 'CHUNK_BYTES', 1)\n"
        "    kineto.CHUNK_BYTES, kineto.__name__\n"
        "    mock.patch('tracehouse.ingest.kineto._h'), mock.patch.object(kineto, '_i')\n"
        "from tracehouse import __name__ as public\n"
    )
    found = _private_reaches(probe, "tests")
    reached = sorted(line.rsplit(".", 1)[-1] for line in found)
    assert reached == ["_a", "_b", "_c", "_d", "_decode_whole", "_e", "_f", "_g", "_h", "_i"], found
