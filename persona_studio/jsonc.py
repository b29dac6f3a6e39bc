"""Read JSONC/JSON5 with pyjson5, and find the line each key path sits on.

pyjson5 gives values but no positions, and users need "settings.jsonc:14" in an error,
so a small scanner walks the text once and records the line of every key path. It also finds
duplicate keys, which pyjson5 (like json) silently resolves to the last one: a settings file
that says `seed` twice is a mistake to report, not to guess at.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from persona_studio.errors import UserError

Path_ = tuple[str | int, ...]


class JsoncError(UserError, ValueError):
    """A syntax error, with the file and line it points at."""


Duplicate = tuple[Path_, int, int]  # key path, line of its first and of its second occurrence


def loads(text: str, source: str = "<string>", *, unique_keys: bool = False) -> Any:
    """Parse `text`; with `unique_keys`, a key given twice in one object is an error naming
    both lines."""
    import pyjson5

    try:
        value = pyjson5.decode(text)
    except pyjson5.Json5Exception as exc:
        raise JsoncError(f"{source}:{_error_line(text, exc)}: syntax error: {_short(exc)}") from None
    if unique_keys:
        dups = scan(text)[1]
        if dups:
            path, first, second = dups[0]
            raise JsoncError(f"{source}:{second}: {dotted(path)}: duplicate key (first given on line {first})")
    return value


def dotted(path: Path_) -> str:
    """('a', 'b', 0, 'c') -> 'a.b[0].c'."""
    return ".".join(str(p) if isinstance(p, str) else f"[{p}]" for p in path).replace(".[", "[") or "(top level)"


def load(path: Path) -> tuple[Any, dict[Path_, int]]:
    """Parse `path`; return the value and a map key-path -> 1-based line."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise JsoncError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    return loads(text, str(path)), key_lines(text)


def _short(exc: Exception) -> str:
    msg = str(exc.args[0]) if exc.args else str(exc)
    return msg.split("\n")[0]


def _error_line(text: str, exc: Exception) -> int:
    # pyjson5 messages carry "near N" (a character offset); fall back to the last line.
    m = re.search(r"near (\d+)", str(exc))
    if m:
        return text.count("\n", 0, min(int(m.group(1)), len(text))) + 1
    return text.count("\n") + 1


_IDENT = re.compile(r"[A-Za-z_$][\w$]*")


def key_lines(text: str) -> dict[Path_, int]:
    """Best-effort map from key path (('train_sft_args', 'lora_rank'), …) to its line.

    The scanner understands strings, comments, objects and arrays; anything else is skipped.
    It never raises: a path it cannot place simply has no entry.
    """
    return scan(text)[0]


def scan(text: str) -> tuple[dict[Path_, int], list[Duplicate]]:
    """`key_lines`, and the keys given twice in one object, in text order."""
    lines: dict[Path_, int] = {}
    dups: list[Duplicate] = []
    stack: list[list[Any]] = []  # frames: [kind, path, pending_key or index, {key: line} of an object]
    i, n, line = 0, len(text), 1
    path: Path_ = ()
    last_string: str | None = None
    last_string_line = 1
    while i < n:
        c = text[i]
        if c == "\n":
            line += 1
            i += 1
        elif c in " \t\r":
            i += 1
        elif text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            line += text.count("\n", i, j)
            i = j
        elif c in "\"'":
            j = i + 1
            buf = []
            while j < n and text[j] != c:
                if text[j] == "\\" and j + 1 < n:
                    buf.append(text[j + 1])
                    j += 2
                    continue
                if text[j] == "\n":
                    line += 1
                buf.append(text[j])
                j += 1
            last_string, last_string_line = "".join(buf), line
            i = j + 1
        elif c == ":":
            if stack and stack[-1][0] == "obj" and last_string is not None:
                key_path = stack[-1][1] + (last_string,)
                seen = stack[-1][3]
                if last_string in seen:
                    dups.append((key_path, seen[last_string], last_string_line))
                else:
                    seen[last_string] = last_string_line
                    lines[key_path] = last_string_line
                stack[-1][2] = last_string
            last_string = None
            i += 1
        elif c in "{[":
            parent = stack[-1] if stack else None
            if parent is None:
                path = ()
            elif parent[0] == "obj":
                path = parent[1] + ((parent[2],) if parent[2] is not None else ())
            else:
                path = parent[1] + (parent[2],)
            if path and path not in lines:
                lines[path] = line
            stack.append(["obj" if c == "{" else "arr", path, None if c == "{" else 0, {}])
            last_string = None
            i += 1
        elif c in "}]":
            if stack:
                stack.pop()
            last_string = None
            i += 1
        elif c == ",":
            if stack and stack[-1][0] == "arr":
                stack[-1][2] += 1
                lines.setdefault(stack[-1][1] + (stack[-1][2],), line)
            last_string = None
            i += 1
        else:
            m = _IDENT.match(text, i)
            if m:
                last_string, last_string_line = m.group(0), line
                i = m.end()
            else:
                last_string = None
                i += 1
    return lines, dups


def line_of(lines: dict[Path_, int], path: Path_) -> int | None:
    """The line of `path`, or of its nearest ancestor that has one."""
    while path:
        if path in lines:
            return lines[path]
        path = path[:-1]
    return None
