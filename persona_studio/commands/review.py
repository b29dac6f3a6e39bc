"""`review`: the Review screen's operations, headless."""

from __future__ import annotations

import argparse
import json

from persona_studio import review
from persona_studio.termsafe import json_text
from persona_studio.workspace import Workspace


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("review", parents=[common], help="score histogram, blocked-word hits, accept/reject/undo")
    rsub = p.add_subparsers(dest="review_cmd", metavar="ACTION")
    p.add_argument("--persona", required=True, help="persona id")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=run_summary)
    for name, help_ in (("accept", "accept samples"), ("reject", "reject samples"), ("reset", "back to pending")):
        q = rsub.add_parser(name, help=help_)
        q.add_argument("ids", nargs="+", type=int, metavar="SAMPLE_ID")
        q.set_defaults(handler=run_status, status={"accept": "accepted", "reject": "rejected"}.get(name, "pending"))
    q = rsub.add_parser("undo", help="undo the last review action for the persona")
    q.set_defaults(handler=run_undo)


def _known_persona(ws: Workspace, persona: str) -> None:
    """A typo must not read as "0 samples" or act on nothing silently. Known: a card, or
    samples (imported before the persona had a card)."""
    import difflib

    from persona_studio.review import ReviewError

    known = set(ws.persona_ids())
    if persona in known:
        return
    with ws.store() as store:
        known |= {r[0] for r in store.query("SELECT DISTINCT persona_id FROM samples")}
    if persona not in known:
        close = difflib.get_close_matches(persona, sorted(known), n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}?" if close else f"known: {', '.join(sorted(known)) or 'none yet'}"
        raise ReviewError(f"unknown persona {persona!r} ({hint})")


def run_summary(args: argparse.Namespace, ws: Workspace) -> int:
    _known_persona(ws, args.persona)
    with ws.store() as store:
        info = {
            "persona": args.persona,
            "counts": review.counts(store, args.persona),
            "scores": review.score_histogram(store, args.persona),
            "blocked": dict(review.blocked_summary(store, args.persona)),
        }
    if args.json:
        print(json_text(info))
        return 0
    print(f"{args.persona}: " + ", ".join(f"{k} {v}" for k, v in info["counts"].items()))
    top = max(info["scores"].values()) or 1
    for bucket, n in info["scores"].items():
        print(f"  score {bucket:>8} {'█' * round(30 * n / top):<30} {n}")
    for word, n in info["blocked"].items():
        print(f"  blocked {word!r}: {n} hit(s)")
    return 0


def run_status(args: argparse.Namespace, ws: Workspace) -> int:
    _known_persona(ws, args.persona)
    with ws.store() as store:
        n = review.set_status(store, args.ids, args.status, persona=args.persona)
    print(json.dumps({"changed": n, "status": args.status}) if args.json else f"{n} sample(s) now {args.status}")
    return 0


def run_undo(args: argparse.Namespace, ws: Workspace) -> int:
    _known_persona(ws, args.persona)
    with ws.store() as store:
        done = review.undo(store, args.persona, ws.settings.make_dataset.pii)
    if args.json:
        print(json.dumps({"undone": done}))
    else:
        print(f"undid {done['action']} of sample {done['sample_id']}" if done else "nothing to undo")
    return 0
