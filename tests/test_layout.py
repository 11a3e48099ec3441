"""The direction of imports between the rooms of mia_core (see CONTRIBUTING.md, "Layout").

    engine  mia_core/*.py (but cli.py), mia_core/attacks/, mia_core/data/: imports neither lab nor views
    lab     mia_core/lab/: running things (may import the engine, never views)
    views   mia_core/views/: what the pages draw; never runs a model (rule below)
    cli     mia_core/cli.py: the command line (may import everything in mia_core)
    pages   app.py, pages/: the Streamlit app (may import everything); nothing in mia_core imports
            streamlit or pages

Every import counts, at module level or inside a function, absolute or relative; only imports
under ``if TYPE_CHECKING:`` (annotations, never executed) are exempt. Checked on the source with
``ast``, nothing is imported.

"Views never run a model", as a checkable rule: a view module imports none of the modules that
build, load or run a model (:data:`MODEL_MODULES`), and from the modules that mix running with
plain data it imports only the data and metadata names in :data:`VIEW_ALLOWED_NAMES`.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "mia_core"

#: Modules that build, load or run a model (or train one): a view imports none of them.
MODEL_MODULES = (
    "torch",
    "diffusers",
    "opacus",
    "mia_core.lazy",
    "mia_core.target",
    "mia_core.sampling",
    "mia_core.lab.train",
    "mia_core.lab.experiment",
    "mia_core.lab.jobs",
)
_ATTACK_METADATA = {
    "REGISTRY",
    "DEFAULT_ATTACKS",
    "ACCESS_LEVELS",
    "DEFAULT_SWEEP",
    "AttackResult",
    "Attack",
    "access_label",
    "attacks_by_access",
    "Conditioning",  # a frozen value (mode, prompt, guidance): views say it in words
}
#: From these modules a view may import only the listed names (data, metadata, readers of stored files).
VIEW_ALLOWED_NAMES = {
    "mia_core.attacks": _ATTACK_METADATA,
    "mia_core.attacks.base": _ATTACK_METADATA,
    "mia_core.lab.runs": {"ResultStore", "RunKey", "JobState"},
    "mia_core.lab.study": {"Study", "load_study", "list_studies"},
}

#: Known offenders, each with the reason (strict: an XPASS means the fix has landed and the marker must go).
KNOWN: dict[tuple[str, str], str] = {}


def _python_files() -> list[Path]:
    # mia_core/app holds links to app.py and pages/ for the wheel: those are the app, not the package.
    return sorted(p for p in PACKAGE.rglob("*.py") if "app" not in p.relative_to(PACKAGE).parts[:1])


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _room(path: Path) -> str:
    rel = path.relative_to(PACKAGE).parts
    if rel[0] in ("lab", "views"):
        return rel[0]
    return "cli" if rel == ("cli.py",) else "engine"


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    """ids of the nodes inside ``if TYPE_CHECKING:`` blocks."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If):
            test = node.test
            name = test.id if isinstance(test, ast.Name) else test.attr if isinstance(test, ast.Attribute) else ""
            if name == "TYPE_CHECKING":
                skip.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    return skip


def imports_of(path: Path) -> list[tuple[str, str | None, int]]:
    """(module, imported name or None, line) for every executed import in ``path``; relative imports resolved."""
    tree = ast.parse(path.read_text(), filename=str(path))
    skip = _type_checking_nodes(tree)
    package = _module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    out = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            out += [(alias.name, None, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            for alias in node.names:
                out.append((module, alias.name, node.lineno))
                if node.module is None or alias.name != "*":  # `from . import x` may import a submodule
                    out.append((f"{module}.{alias.name}", None, node.lineno))
    return out


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def _violations(path: Path) -> list[str]:
    """One line per (source line, broken rule): "path:line imports module: rule"."""
    room, rel = _room(path), path.relative_to(ROOT)
    found: dict[tuple[int, str], str] = {}
    for module, name, line in imports_of(path):
        rules = []
        if _within(module, "streamlit") or _within(module, "pages"):
            rules.append("nothing in mia_core imports streamlit or the pages")
        if room == "engine" and (_within(module, "mia_core.lab") or _within(module, "mia_core.views")):
            rules.append("the engine imports neither lab nor views")
        if room == "lab" and _within(module, "mia_core.views"):
            rules.append("the lab never imports views (views draw what the lab computes)")
        if room == "views":
            if any(_within(module, m) for m in MODEL_MODULES):
                rules.append("a view never runs a model")
            allowed = VIEW_ALLOWED_NAMES.get(module)
            if allowed is not None and name is not None and name not in allowed:
                rules.append(f"a view imports only {sorted(allowed)} from {module}")
        for rule in rules:
            found.setdefault((line, rule), f"{rel}:{line} imports {module}{'.' + name if name else ''}: {rule}")
    return [found[k] for k in sorted(found)]


CASES = [(_room(p), str(p.relative_to(ROOT))) for p in _python_files()]


@pytest.mark.parametrize(
    "room,path",
    [
        pytest.param(r, p, marks=pytest.mark.xfail(strict=True, reason=KNOWN[(r, p)])) if (r, p) in KNOWN else (r, p)
        for r, p in CASES
    ],
)
def test_imports_follow_the_layout(room, path):
    assert _violations(ROOT / path) == []


def test_the_checker_sees_function_level_and_relative_imports(tmp_path, monkeypatch):
    """The rule catches what it must (so a passing layout test means something)."""
    fake = tmp_path / "mia_core"
    (fake / "attacks").mkdir(parents=True)
    (fake / "views").mkdir()
    (fake / "attacks" / "x.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from mia_core.lab.runs import Worker\n"  # exempt
        "def f():\n    from ..views import style\n    import streamlit\n"
    )
    (fake / "views" / "v.py").write_text(
        "from mia_core.attacks import REGISTRY, get_attack\n"
        "def g():\n    import torch.nn\n    from mia_core.lab.experiment import load_experiment\n"
    )
    monkeypatch.setitem(globals(), "ROOT", tmp_path)
    monkeypatch.setitem(globals(), "PACKAGE", fake)
    engine = _violations(fake / "attacks" / "x.py")
    assert [v.split(": ", 1)[1] for v in engine] == [
        "the engine imports neither lab nor views",
        "nothing in mia_core imports streamlit or the pages",
    ]
    assert "mia_core/attacks/x.py:5 imports mia_core.views" in engine[0]
    views = [v.split(": ", 1)[1] for v in _violations(fake / "views" / "v.py")]
    assert views.count("a view never runs a model") == 2
    assert any("a view imports only" in v for v in views)


def test_pages_and_app_do_not_reach_into_private_mia_core_modules():
    """Pages call mia_core's public names: no ``from mia_core.x import _private``."""
    bad = []
    for path in [ROOT / "app.py", *sorted((ROOT / "pages").glob("*.py"))]:
        for module, name, line in imports_of(path):
            if _within(module, "mia_core") and name is not None and name.startswith("_"):
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {module}.{name}")
    assert bad == []
