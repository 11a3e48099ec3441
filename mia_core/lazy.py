"""Thread-safe access to diffusers classes.

diffusers resolves its classes lazily on first attribute access, and that machinery is not
thread-safe: two threads asking for ``UNet2DModel`` at once can make one fail with "cannot import
name". The app loads models on a loader thread while the worker thread trains or attacks, so every
diffusers class in ``mia_core`` is fetched through :func:`diffusers_class`, under one lock.
"""

from __future__ import annotations

import importlib
import threading
from typing import Any

_LOCK = threading.Lock()


def diffusers_class(name: str) -> Any:
    """``diffusers.<name>`` (e.g. "UNet2DModel"), resolved under a process-wide lock."""
    with _LOCK:
        return getattr(importlib.import_module("diffusers"), name)
