"""The headless core must never import textual (and heavy libraries only lazily)."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import persona_studio


def core_modules() -> list[str]:
    names = []
    for info in pkgutil.walk_packages(persona_studio.__path__, "persona_studio."):
        if info.name.startswith("persona_studio.tui") or info.name.endswith("__main__"):
            continue
        names.append(info.name)
    return names


def test_core_never_imports_textual() -> None:
    mods = core_modules()
    assert "persona_studio.settings" in mods and len(mods) > 5
    code = "import importlib, sys\n" + "".join(f"importlib.import_module({m!r})\n" for m in mods)
    code += "print(sorted(m for m in ('textual',) if m in sys.modules))\n"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().splitlines()[-1] == "[]"


def test_importing_the_core_does_not_pull_heavy_libraries() -> None:
    light = ["persona_studio.cli", "persona_studio.settings", "persona_studio.workspace", "persona_studio.store"]
    code = "import importlib, sys\n" + "".join(f"importlib.import_module({m!r})\n" for m in light)
    code += "print(sorted(m for m in ('torch','transformers','peft','vllm','chromadb') if m in sys.modules))\n"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == "[]"
