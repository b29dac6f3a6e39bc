"""Where a persona's adapters live, and which version is current.

    personas/<id>/adapters/v0001/   adapter_model.safetensors, adapter_config.json, train_spec.json
    personas/<id>/adapters/CURRENT  one line: the current version's directory name

The pointer is a file (not a symlink) so it survives copies, zips and odd filesystems, and
it is replaced atomically, so an engine never sees half an update.
"""

from __future__ import annotations

import re
from pathlib import Path

from persona_studio.workspace import Workspace, atomic_write

_VERSION = re.compile(r"^v(\d{4,})$")


def adapters_dir(ws: Workspace, persona_id: str) -> Path:
    return ws.persona_dir(persona_id) / "adapters"


def versions(ws: Workspace, persona_id: str) -> list[str]:
    d = adapters_dir(ws, persona_id)
    if not d.is_dir():
        return []
    return sorted((p.name for p in d.iterdir() if p.is_dir() and _VERSION.match(p.name)), key=_num)


def _num(name: str) -> int:
    m = _VERSION.match(name)
    return int(m.group(1)) if m else -1


def new_version_dir(ws: Workspace, persona_id: str) -> Path:
    """Create and return the next version directory (v0001, v0002, …)."""
    existing = versions(ws, persona_id)
    n = _num(existing[-1]) + 1 if existing else 1
    path = adapters_dir(ws, persona_id) / f"v{n:04d}"
    path.mkdir(parents=True, exist_ok=False)
    return path


def set_current(ws: Workspace, persona_id: str, version: str) -> None:
    if version not in versions(ws, persona_id):
        raise ValueError(f"{persona_id}: no adapter version {version!r}")
    atomic_write(adapters_dir(ws, persona_id) / "CURRENT", version + "\n")


def current_version(ws: Workspace, persona_id: str) -> str | None:
    ptr = adapters_dir(ws, persona_id) / "CURRENT"
    if not ptr.exists():
        return None
    name = ptr.read_text(encoding="utf-8").strip()
    return name or None


def current(ws: Workspace, persona_id: str) -> Path | None:
    """The current adapter directory, or None when the persona has none (base model)."""
    name = current_version(ws, persona_id)
    return adapters_dir(ws, persona_id) / name if name else None
