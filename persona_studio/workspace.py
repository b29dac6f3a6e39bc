"""Where things live in a workspace.

    DIR/settings.jsonc           typed settings (see settings.py)
    DIR/personas/<id>/           persona.jsonc card, lore/, adapters/<version>/, chats/
    DIR/.studio/studio.db        the SQLite store
    DIR/.studio/jobs/<id>/       training jobs (spec, metrics.jsonl, status, log)
    DIR/.studio/chroma/          the lore vector store
    DIR/.studio/exports/         merged models, datasets, cards
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from persona_studio import settings as settings_mod
from persona_studio.errors import UserError

PERSONA_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


class WorkspaceError(UserError, ValueError):
    """A one-line, user-facing error about the workspace itself."""


class NoWorkspace(WorkspaceError):
    """There is no workspace at `path` yet (no directory, or no settings.jsonc in it): one can be
    created there, unlike a workspace that exists but cannot be read."""

    def __init__(self, message: str, path: Path):
        super().__init__(message)
        self.path = path


@dataclass
class Workspace:
    root: Path
    settings: settings_mod.Settings

    @classmethod
    def open(cls, root: str | os.PathLike[str] | None = None) -> Workspace:
        path = Path(root if root is not None else os.getcwd()).expanduser()
        if not path.exists():
            raise NoWorkspace(f"{path}: workspace does not exist (create one with `persona-studio init {path}`)", path)
        if not path.is_dir():
            raise WorkspaceError(f"{path}: workspace is not a directory")
        if not os.access(path, os.R_OK | os.X_OK):
            raise WorkspaceError(f"{path}: workspace is not readable")
        cfg = path / "settings.jsonc"
        if not cfg.exists():
            raise NoWorkspace(
                f"{path}: no settings.jsonc here — not a workspace (create one with `persona-studio init {path}`)", path
            )
        return cls(path.resolve(), settings_mod.load(cfg))

    @classmethod
    def init(cls, root: str | os.PathLike[str]) -> Workspace:
        path = Path(root).expanduser()
        if (path / "settings.jsonc").exists():
            raise WorkspaceError(f"{path}: already a workspace (settings.jsonc exists)")
        if path.exists() and not path.is_dir():
            raise WorkspaceError(f"{path}: exists and is not a directory")
        path.mkdir(parents=True, exist_ok=True)
        (path / "personas").mkdir(exist_ok=True)
        atomic_write(path / "settings.jsonc", settings_mod.default_text())
        return cls.open(path)

    # -- locations -------------------------------------------------------------------------
    @property
    def settings_path(self) -> Path:
        return self.root / "settings.jsonc"

    @property
    def state_dir(self) -> Path:
        return self.root / ".studio"

    @property
    def db_path(self) -> Path:
        return self.state_dir / "studio.db"

    @property
    def jobs_dir(self) -> Path:
        return self.state_dir / "jobs"

    @property
    def chroma_dir(self) -> Path:
        return self.state_dir / "chroma"

    @property
    def exports_dir(self) -> Path:
        return self.state_dir / "exports"

    @property
    def personas_dir(self) -> Path:
        return self.root / "personas"

    def persona_dir(self, persona_id: str) -> Path:
        check_persona_id(persona_id)
        return self.personas_dir / persona_id

    def persona_ids(self) -> list[str]:
        if not self.personas_dir.is_dir():
            return []
        return sorted(
            p.name
            for p in self.personas_dir.iterdir()
            if p.is_dir() and PERSONA_ID.match(p.name) and (p / "persona.jsonc").exists()
        )

    def store(self):  # -> store.Store (imported lazily: keeps `workspace` import cheap)
        from persona_studio.store import Store

        return Store.open(self.db_path)


def check_persona_id(persona_id: str) -> str:
    if not PERSONA_ID.match(persona_id):
        raise WorkspaceError(
            f"persona id {persona_id!r}: use lowercase letters, digits, '-' and '_' (max 64 characters)"
        )
    return persona_id


def atomic_write(path: Path, data: str | bytes) -> None:
    """Write via a temp file + rename so a crash never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data.encode("utf-8") if isinstance(data, str) else data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
