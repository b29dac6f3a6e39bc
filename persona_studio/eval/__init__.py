"""Persona fidelity: how close each adapter's replies come to the real person's.

    heldout.py   the fixed held-out conversations (never trained on)
    metrics.py   reference overlap (BLEU, chrF, ROUGE-L) and style distance of reply sets
    loss.py      teacher-forced held-out loss / perplexity per adapter (transformers + peft)
    generate.py  batched generation through any engine
    run.py       one eval run: every adapter on the held-out set and the probe questions
    report.py    where results go: SQLite, adapters/<v>/eval.json, .studio/exports/ reports
    samples.py   probe replies while a job trains (samples.jsonl)

Nothing here imports torch/transformers/vllm at module level.
"""
