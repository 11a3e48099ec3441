"""The views' room: the engine and the lab never import the views, and the views never import torch.

Read from the source (``ast``), so the test fails the day someone adds such an import anywhere in a
module, not only at its top.
"""

from __future__ import annotations

import ast
from pathlib import Path

import mia_core

ROOT = Path(mia_core.__file__).parent


def _imports(path: Path) -> set[str]:
    """Absolute names of every module the file imports (relative imports resolved against mia_core)."""
    package = ".".join(("mia_core",) + path.relative_to(ROOT).parent.parts)
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            out.add(base)
            out.update(f"{base}.{alias.name}" for alias in node.names)
    return out


def _modules(*parts: str) -> list[Path]:
    return sorted(p for part in parts for p in (ROOT / part).rglob("*.py")) if parts else []


def test_engine_and_lab_never_import_views():
    engine = [p for p in ROOT.glob("*.py") if p.name not in ("cli.py", "__init__.py")] + _modules("attacks", "data")
    for path in engine + _modules("lab"):
        bad = {m for m in _imports(path) if m == "mia_core.views" or m.startswith("mia_core.views.")}
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"
    assert engine and any(p.name == "sampling.py" for p in engine)


def test_engine_never_imports_lab():
    engine = [p for p in ROOT.glob("*.py") if p.name not in ("cli.py", "__init__.py")] + _modules("attacks", "data")
    for path in engine:
        bad = {m for m in _imports(path) if m == "mia_core.lab" or m.startswith("mia_core.lab.")}
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_views_never_import_torch_or_streamlit():
    views = _modules("views")
    assert len(views) >= 10
    for path in views:
        bad = {m for m in _imports(path) if m.split(".")[0] in ("torch", "streamlit", "diffusers")}
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"
