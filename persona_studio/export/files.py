"""Writing an export so that nothing is ever half-written.

Everything is built in a hidden temp file or directory next to the destination (same
filesystem, so the final step is a rename) and only renamed into place once complete. A crash,
an error or Ctrl-C leaves the destination as it was.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from persona_studio.errors import UserError

# (what is happening, fraction done in 0..1) — the same shape the engines use.
Progress = Callable[[str, float], None]


class ExportError(UserError, ValueError):
    """A one-line reason why an export cannot be made."""


def no_progress(_msg: str, _frac: float) -> None:
    return None


def check_destination(out: Path, *, force: bool, want_dir: bool) -> None:
    """Refuse a destination that exists (unless `force`) or whose parent cannot hold it."""
    if out.exists() or out.is_symlink():
        if want_dir and out.is_dir() and not any(out.iterdir()):
            pass  # an empty directory is as good as none
        elif not force:
            raise ExportError(f"{out}: already exists (use --force to replace it)")
        elif want_dir != out.is_dir():
            kind = "a directory" if out.is_dir() else "a file"
            raise ExportError(f"{out}: exists and is {kind}; refusing to replace it even with --force")
    parent = out.parent
    for p in (parent, *parent.parents):
        if p.exists():
            if not p.is_dir():
                raise ExportError(f"{out}: {p} is not a directory")
            if not os.access(p, os.W_OK | os.X_OK):
                raise ExportError(f"{out}: {p} is not writable")
            break


def _make_parent(out: Path) -> None:
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"{out}: cannot create its directory ({exc.strerror or exc})") from None


def _put_in_place(tmp: Path, out: Path) -> None:
    """Rename `tmp` onto `out`; an existing `out` is moved aside first and removed after."""
    old: Path | None = None
    if out.is_dir() and not out.is_symlink():
        if any(out.iterdir()):
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
            os.replace(out, old / "x")
        else:
            out.rmdir()
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def staged_dir(out: Path, *, force: bool = False) -> Iterator[Path]:
    """Yield an empty temp directory; on success it becomes `out`, on error it vanishes."""
    out = Path(out)
    check_destination(out, force=force, want_dir=True)
    _make_parent(out)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial.", dir=out.parent))
    try:
        yield tmp
        _put_in_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextlib.contextmanager
def staged_file(out: Path, *, force: bool = False) -> Iterator[Path]:
    """Yield a temp file path (not yet created) that becomes `out` on success."""
    out = Path(out)
    check_destination(out, force=force, want_dir=False)
    _make_parent(out)
    fd, name = tempfile.mkstemp(prefix=f".{out.name}.partial.", dir=out.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:  # the bytes must be on disk before the rename publishes them
            os.fsync(fh.fileno())
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
