"""The package's layers (pyproject's import-linter contract) hold, and a broken one is reported;
the import graph has no cycle (scripts/import_graph.py), lazy imports included."""
from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytest.importorskip("importlinter", reason="pip install -e '.[dev]'")


def lint_imports(cwd: Path, pythonpath: Path | None = None) -> subprocess.CompletedProcess:
    env = None
    if pythonpath is not None:
        import os

        env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    cmd = [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; "
                                 "sys.exit(lint_imports_command())", "--no-cache"]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def load_graph_script():
    spec = importlib.util.spec_from_file_location("import_graph", ROOT / "scripts" / "import_graph.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_layers_hold():
    proc = lint_imports(ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "1 kept, 0 broken" in proc.stdout


def test_an_import_that_breaks_a_layer_is_reported(tmp_path):
    """A copy of the package under another name (the installed one is found first under its own),
    where io (the lowest layer) imports cli inside a function: the contract reports that import."""
    copy = tmp_path / "src" / "dip_probe"
    shutil.copytree(ROOT / "dip_lightning", copy, ignore=shutil.ignore_patterns("__pycache__"))
    for path in copy.rglob("*.py"):
        path.write_text(path.read_text().replace("dip_lightning", "dip_probe"))
    (tmp_path / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text().replace(
        'root_package = "dip_lightning"', 'root_package = "dip_probe"').replace(
        'containers = ["dip_lightning"]', 'containers = ["dip_probe"]'))
    assert lint_imports(tmp_path, copy.parent).returncode == 0  # the copy as it is keeps the contract
    io = copy / "io.py"
    io.write_text(io.read_text() + "\n\ndef late():\n    from dip_probe import cli\n\n    return cli\n")
    proc = lint_imports(tmp_path, copy.parent)
    assert proc.returncode != 0
    assert "dip_probe.io is not allowed to import dip_probe.cli" in proc.stdout, proc.stdout[-3000:]


def test_the_import_graph_has_no_cycle():
    graph = load_graph_script()
    edges = graph.graph("dip_lightning")
    assert graph.cycles(edges) == []
    assert len(edges) > 50 and max(graph.levels(edges).values()) > 1
    assert graph.cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert graph.main([]) == 0  # docs/how-it-works.md's command
