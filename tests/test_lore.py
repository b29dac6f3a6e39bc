"""Lore: chunking, a real chromadb index with the packaged embedder, incremental re-indexing, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from persona_studio.errors import UserError
from persona_studio.persona.card import Persona, save_persona
from persona_studio.persona.chunking import chunk_text, windows
from persona_studio.persona.lore import SHARED, LoreStore
from persona_studio.workspace import Workspace

SHOP = """# The Willow Lane tea shop

Alice opens the shop at seven. Every morning she brews a pot of Tieguanyin oolong before the first customer.

## Cat
The shop cat is a grey tabby called Earl Grey who sleeps in the window.
"""
FAMILY = "Alice's grandmother taught her to bake lemon scones.\n\nHer brother Tom is a sailor on a cargo ship.\n"
GARAGE = "# Garage\n\nBob's garage smells of solder. He rebuilt a vacuum-tube radio from a scrapyard.\n"
WORLD = "# Harbourtown\n\nHarbourtown holds a lantern festival on the first full moon of autumn.\n"


def make_ws(tmp_path: Path) -> Workspace:
    ws = Workspace.init(tmp_path / "ws")
    book = {"entries": [{"keys": ["Pip", "parrot"], "content": "Pip is Alice's green parrot; he whistles sea shanties.",
                         "enabled": True, "insertion_order": 0, "extensions": {}}], "extensions": {}}
    save_persona(ws, Persona(id="alice", name="Alice", character_book=book))
    save_persona(ws, Persona(id="bob", name="Bob"))
    files = {
        "alice/lore/shop.md": SHOP,
        "alice/lore/family.txt": FAMILY,
        "alice/lore/facts.jsonl": json.dumps({"keys": ["bicycle"], "content": "Alice rides a red bicycle."}) + "\n",
        "bob/lore/garage.md": GARAGE,
        f"{SHARED}/lore/world.md": WORLD,
    }
    for rel, text in files.items():
        path = ws.personas_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return ws


def test_chunking_keeps_headings_and_bounds() -> None:
    chunks = chunk_text(SHOP, 120, 20)
    assert chunks[0].startswith("# The Willow Lane tea shop\n")
    assert any(c.startswith("## Cat\n") and "Earl Grey" in c for c in chunks)
    long = " ".join(f"Sentence number {i} is here." for i in range(40))
    pieces = windows(long, 100, 30)
    assert all(len(p) <= 100 for p in pieces) and len(pieces) > 5
    assert all(p.endswith(".") for p in pieces[:-1])  # cut at sentence ends
    # Neighbours overlap: each piece starts with text the previous one ended with.
    assert all(b.split(".")[0] in a for a, b in zip(pieces, pieces[1:], strict=False))


def test_query_finds_the_right_chunk_within_scope(tmp_path: Path) -> None:
    ws = make_ws(tmp_path)
    store = LoreStore(ws)
    report = store.index()
    assert (report.added, report.updated, report.removed, report.unchanged) == (6, 0, 0, 0)
    hits = store.query("alice", "What tea does she brew every morning?", k=3, max_distance=2.0, refresh=False)
    assert hits[0].source == "personas/alice/lore/shop.md" and "oolong" in hits[0].text
    assert hits == sorted(hits, key=lambda s: s.distance)
    parrot = store.query("alice", "tell me about the parrot", k=1, refresh=False)
    assert parrot[0].source.startswith("personas/alice/persona.jsonc#character_book") and "Pip" in parrot[0].text
    # Alice sees shared world lore, never Bob's own lore.
    festival = store.query("alice", "when is the lantern festival?", k=1, refresh=False)
    assert festival[0].source == "personas/_shared/lore/world.md"
    radio = store.query("alice", "vacuum-tube radio from a scrapyard", k=10, max_distance=2.0, refresh=False)
    assert radio and all("bob" not in s.source for s in radio)
    assert store.query("bob", "vacuum-tube radio", k=1, refresh=False)[0].source == "personas/bob/lore/garage.md"


def test_unrelated_query_returns_nothing_under_threshold(tmp_path: Path) -> None:
    ws = make_ws(tmp_path)
    store = LoreStore(ws)
    store.index()
    relevant = store.query("alice", "Alice's grandmother and the lemon scones", k=1, max_distance=0.7)
    assert relevant and relevant[0].distance < 0.7
    assert store.query("alice", "quarterly tax filing deadlines for corporations", max_distance=0.7) == []
    assert store.query("alice", "   ", k=3) == []


def test_reindex_touches_only_changed_files(tmp_path: Path) -> None:
    ws = make_ws(tmp_path)
    store = LoreStore(ws)
    store.index()
    col = store._col()
    before = set(col.get()["ids"])
    manifest = json.loads(store.manifest_path.read_text())["sources"]
    shop_ids = manifest["personas/alice/lore/shop.md"]["ids"]

    again = LoreStore(ws).index()
    assert (again.added, again.updated, again.removed, again.unchanged, again.chunks_added) == (0, 0, 0, 6, 0)

    (ws.personas_dir / "alice/lore/shop.md").write_text(SHOP.replace("oolong", "jasmine green tea"), encoding="utf-8")
    calls: list[tuple[int, int]] = []
    report = LoreStore(ws).index("alice", progress=lambda d, t: calls.append((d, t)))
    assert (report.added, report.updated, report.removed, report.unchanged) == (0, 1, 0, 4)
    assert report.chunks_removed == len(shop_ids) and report.chunks_added == len(shop_ids)
    assert calls and calls[-1] == (len(shop_ids), len(shop_ids))  # one tick per embedded chunk
    assert set(col.get()["ids"]) == before  # same ids, only shop.md's were rewritten
    hit = LoreStore(ws).query("alice", "What tea does she brew every morning?", k=1, refresh=False)
    assert "jasmine" in hit[0].text

    (ws.personas_dir / "alice/lore/family.txt").unlink()
    family_ids = manifest["personas/alice/lore/family.txt"]["ids"]
    gone = LoreStore(ws).index()
    assert (gone.removed, gone.chunks_removed, gone.unchanged) == (1, len(family_ids), 5)
    assert set(LoreStore(ws)._col().get()["ids"]) == before - set(family_ids)


def test_bad_lore_file_fails_before_touching_the_index(tmp_path: Path) -> None:
    ws = make_ws(tmp_path)
    store = LoreStore(ws)
    store.index()
    count = store._col().count()
    (ws.personas_dir / "alice/lore/shop.md").write_text("# changed\n\nnew text", encoding="utf-8")
    (ws.personas_dir / "alice/lore/more.jsonl").write_text('{"content": "ok"}\n{"content": oops}\n', encoding="utf-8")
    with pytest.raises(UserError, match=r"^personas/alice/lore/more.jsonl:2: not valid JSON"):
        LoreStore(ws).index()
    assert LoreStore(ws)._col().count() == count
    assert "oolong" in LoreStore(ws)._col().get(ids=["personas/alice/lore/shop.md@0"])["documents"][0]


def test_cli_import_card_indexes_book_and_query_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from persona_studio.cli import main
    from persona_studio.persona.card import read_card_file, to_card_v3, write_card_png

    ws = make_ws(tmp_path)
    card = to_card_v3(Persona(id="x", name="Captain Rowe", extensions={"my_tool": {"v": 1}}, character_book={
        "entries": [{"keys": ["Gull"], "content": "The Gull is Captain Rowe's two-masted schooner.", "enabled": True}],
    }))
    card_path = tmp_path / "rowe.png"
    write_card_png(card, card_path)
    w = ["-w", str(ws.root)]
    assert main(["persona", "import", str(card_path), "--json", *w]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["id"] == "captain-rowe" and summary["lore"]["added"] == 2  # its book + shared world lore
    assert main(["lore", "query", "--persona", "captain-rowe", "what ship does the captain sail?", "--json", *w]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert "schooner" in hits[0]["text"] and hits[0]["distance"] <= ws.settings.rag_args.max_distance
    assert main(["persona", "import", str(card_path), *w]) == 2
    assert "already exists" in capsys.readouterr().err
    out = tmp_path / "out.png"
    assert main(["export", "card", "--persona", "captain-rowe", "--format", "v3", "--png", "-o", str(out), *w]) == 0
    assert read_card_file(out)["data"]["extensions"]["my_tool"] == {"v": 1}
    assert main(["persona", "list", "--json", *w]) == 0
    assert [r["id"] for r in json.loads(capsys.readouterr().out.splitlines()[-1])] == ["alice", "bob", "captain-rowe"]
    assert main(["lore", "index", "--json", *w]) == 0
    assert json.loads(capsys.readouterr().out)["added"] == 5  # alice's 4 and bob's 1 were never indexed


def test_example_personas_lore(tmp_path: Path) -> None:
    import shutil

    repo = Path(__file__).resolve().parents[1]
    ws = Workspace.init(tmp_path / "ws")
    shutil.copytree(repo / "personas", ws.personas_dir, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("chats", "adapters"))
    store = LoreStore(ws)
    report = store.index()
    assert report.added >= 7 and report.chunks_added >= report.added
    tea = store.query("alice", "Which tea does Alice brew every morning?", k=1, max_distance=0.8, refresh=False)
    assert tea and tea[0].source == "personas/alice/lore/shop.md" and "Tieguanyin" in tea[0].text
    sprocket = store.query("bob", "Which robot follows Bob everywhere?", k=1, refresh=False)
    assert sprocket[0].source == "personas/bob/lore/robots.md"
    home = store.query("mei", "林美的家乡在哪里？", k=2, refresh=False)
    assert any("杭州" in s.text for s in home)


def test_index_heals_when_collection_and_manifest_disagree(tmp_path: Path) -> None:
    ws = make_ws(tmp_path)
    first = LoreStore(ws).index()
    store = LoreStore(ws)
    store._col().delete(ids=["personas/alice/lore/shop.md@0"])  # as if a crash lost a write
    healed = store.index()
    assert (healed.added, healed.unchanged, healed.chunks_added) == (6, 0, first.chunks_added)
    assert store._col().count() == first.chunks_added
    ws.settings.rag_args.chunk_chars = 80  # new chunking: everything is rebuilt with smaller chunks
    rebuilt = LoreStore(ws).index()
    assert rebuilt.added == 6 and rebuilt.chunks_added > first.chunks_added
    assert LoreStore(ws)._col().count() == rebuilt.chunks_added
    LoreStore(ws).manifest_path.write_text("{not json", encoding="utf-8")
    again = LoreStore(ws).index()
    assert again.added == 6 and LoreStore(ws)._col().count() == again.chunks_added == rebuilt.chunks_added
