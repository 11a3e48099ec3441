"""Thread-safe access to diffusers classes, and one lock for building models.

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

#: Held while a model is constructed. Building a diffusers model draws its initial weights from
#: torch's global generator (even when weights are loaded over them right after); training seeds
#: that generator and builds its model under this lock, so a model loading on another thread
#: cannot interleave its draws and change the seeded initial weights.
MODEL_BUILD_LOCK = threading.RLock()


def diffusers_class(name: str) -> Any:
    """``diffusers.<name>`` (e.g. "UNet2DModel"), resolved under a process-wide lock."""
    with _LOCK:
        return getattr(importlib.import_module("diffusers"), name)
