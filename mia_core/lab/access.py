"""Which server folders the app may read: an allow-list, checked before a path is touched.

The app runs on a server that others can reach; a path typed into the Target or Data page is a
path on that server. Only paths inside the allowed roots are read:

    MIA_ALLOWED_ROOTS   folders separated by ``os.pathsep`` (":" on Linux); when unset: the
                        project folder, the result store and the current working folder.

A path is resolved first (``..`` and symlinks followed, without requiring it to exist) and then
compared with the roots, so ``<root>/../etc`` and a symlink out of a root are refused. A refusal
never says whether the path exists. The CLI is not restricted: it runs as its user, with that
user's rights.
"""

from __future__ import annotations

import os
from pathlib import Path

from mia_core.paths import REPO_DIR

ENV_VAR = "MIA_ALLOWED_ROOTS"


class AccessDenied(ValueError):
    """A path outside the allowed roots (the message does not say whether it exists)."""


def allowed_roots() -> list[Path]:
    """The resolved allowed roots: ``$MIA_ALLOWED_ROOTS`` or the project, the store and the current folder."""
    raw = os.environ.get(ENV_VAR, "")
    if raw.strip():
        roots = [Path(p).expanduser() for p in raw.split(os.pathsep) if p.strip()]
    else:
        from mia_core.lab.runs import default_store_dir

        roots = [REPO_DIR, default_store_dir(), Path.cwd()]
    out: list[Path] = []
    for root in roots:
        resolved = root.resolve()
        if resolved not in out:
            out.append(resolved)
    return out


def check_allowed(raw: str | Path, what: str = "path") -> Path:
    """The resolved path when it lies inside an allowed root; else AccessDenied.

    Relative paths are taken from the current folder. Nothing about the path is revealed:
    the message is the same whether it exists or not.
    """
    text = str(raw).strip()
    if not text:
        raise AccessDenied(f"no {what} given")
    path = Path(text).expanduser()
    resolved = (path if path.is_absolute() else Path.cwd() / path).resolve()
    for root in allowed_roots():
        if resolved == root or root in resolved.parents:
            return resolved
    roots = ", ".join(str(r) for r in allowed_roots())
    raise AccessDenied(
        f"the {what} {text!r} is outside the folders this app may read ({roots}); "
        f"the server's {ENV_VAR} setting lists them"
    )


def check_data_spec(spec: str) -> str:
    """A ``--data`` value the app may read: a built-in name, or a path inside the roots (a split
    manifest's own source too). Returns the spec with the path resolved."""
    from mia_core.data.sources import DIGITS_SOURCE, UPLOAD_SOURCE

    if spec in ("default", DIGITS_SOURCE):
        return spec
    path = check_allowed(spec, "data path")
    if path.suffix.lower() == ".json" and path.is_file():
        import json

        try:
            source = json.loads(path.read_text()).get("source", "")
        except (ValueError, AttributeError, OSError):
            source = ""  # resolve_data reports the bad manifest itself
        if isinstance(source, str) and source and source not in (DIGITS_SOURCE, UPLOAD_SOURCE):
            base = Path(source).expanduser()
            check_allowed(
                base if base.is_absolute() or not (path.parent / base).exists() else path.parent / base,
                "data source named in the manifest",
            )
    return str(path)
