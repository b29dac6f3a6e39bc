"""Find a persona's adapter, and export it as a directory, a .zip or a .tar.gz.

The export is the whole version directory (weights, adapter_config.json, train_spec.json), so
what leaves the studio can be loaded by peft or served by vLLM and still says how it was made.
Archives hold one top-level folder `<persona>-<version>/`, the usual shape of a release archive.
"""

from __future__ import annotations

import os
import shutil
import stat
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from persona_studio import adapters
from persona_studio.export.files import ExportError, staged_dir, staged_file
from persona_studio.workspace import Workspace, WorkspaceError, check_persona_id

ARCHIVE_SUFFIXES = (".zip", ".tar.gz", ".tgz")


@dataclass
class AdapterRef:
    persona_id: str
    version: str
    path: Path
    config: dict


def resolve_adapter(ws: Workspace, persona_id: str, version: str | None = None) -> AdapterRef:
    """The persona's current (or given) adapter, checked to be a loadable LoRA directory."""
    try:
        check_persona_id(persona_id)
    except WorkspaceError as exc:
        raise ExportError(str(exc)) from None
    if not (ws.persona_dir(persona_id) / "persona.jsonc").exists():
        raise ExportError(f"persona '{persona_id}': no such persona in {ws.personas_dir}")
    if version is None:
        version = adapters.current_version(ws, persona_id)
        if version is None:
            raise ExportError(
                f"persona '{persona_id}': has no trained adapter yet (train one with "
                f"`persona-studio train --persona {persona_id}`)"
            )
    else:
        if version.isdigit():
            version = f"v{int(version):04d}"
        have = adapters.versions(ws, persona_id)
        if version not in have:
            listed = ", ".join(have) or "none"
            raise ExportError(f"persona '{persona_id}': no adapter version {version!r} (have: {listed})")
    path = adapters.adapters_dir(ws, persona_id) / version
    return AdapterRef(persona_id, version, path, read_adapter_config(path))


def read_adapter_config(path: Path) -> dict:
    try:
        return adapters.read_config(path)
    except adapters.AdapterError as exc:
        raise ExportError(str(exc)) from None


def archive_kind(out: Path) -> str:
    """'zip', 'tar.gz' or 'dir', from the output's name."""
    name = out.name.lower()
    if name.endswith(".zip"):
        return "zip"
    if name.endswith((".tar.gz", ".tgz")):
        return "tar.gz"
    return "dir"


def _files(src: Path) -> tuple[list[Path], list[str]]:
    """(regular files to export, names skipped). Symlinks are never followed nor exported: a
    link planted in a shared or copied workspace (to ~/.ssh/id_rsa, /etc/passwd) must not ride
    out in an archive. Hidden files are temp leftovers of atomic writes, never part of an adapter."""
    files: list[Path] = []
    skipped: list[str] = []
    for root, dirs, names in os.walk(src, followlinks=False):
        here = Path(root)
        for d in list(dirs):
            if d.startswith("."):
                dirs.remove(d)
            elif (here / d).is_symlink():
                dirs.remove(d)
                skipped.append((here / d).relative_to(src).as_posix())
        for name in names:
            path = here / name
            if name.startswith("."):
                continue
            if stat.S_ISREG(path.lstat().st_mode):
                files.append(path)
            else:
                skipped.append(path.relative_to(src).as_posix())
    return sorted(files), sorted(skipped)


def _check_inside(ws: Workspace, ref: AdapterRef) -> None:
    # The version directory itself may be the planted link (adapters/alice/v0001 -> /etc).
    home = adapters.adapters_dir(ws, ref.persona_id)
    if ref.path.is_symlink() or not ref.path.resolve().is_relative_to(home.resolve()):
        raise ExportError(f"{ref.path}: is a link out of {home} (refused: only files inside the adapter are exported)")


def export_adapter(
    ws: Workspace, persona_id: str, out: str | Path, version: str | None = None, *, force: bool = False
) -> dict:
    """Copy the adapter to `out` (directory, .zip or .tar.gz by suffix); returns a summary."""
    ref = resolve_adapter(ws, persona_id, version)
    out = Path(out).expanduser()
    kind = archive_kind(out)
    _check_inside(ws, ref)
    files, skipped = _files(ref.path)
    top = f"{ref.persona_id}-{ref.version}"
    if kind == "dir":
        with staged_dir(out, force=force) as tmp:
            for f in files:
                dest = tmp / f.relative_to(ref.path)
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(f, dest)
    elif kind == "zip":
        with staged_file(out, force=force) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
            for f in files:
                zf.write(f, f"{top}/{f.relative_to(ref.path).as_posix()}")
    else:
        with staged_file(out, force=force) as tmp, tarfile.open(tmp, "w:gz") as tf:
            for f in files:
                tf.add(f, f"{top}/{f.relative_to(ref.path).as_posix()}", recursive=False)
    return {
        "persona": ref.persona_id,
        "version": ref.version,
        "rank": ref.config["r"],
        "format": kind,
        "files": [f.relative_to(ref.path).as_posix() for f in files],
        "skipped": skipped,  # links and other non-regular files, left out
        "out": str(out),
    }
