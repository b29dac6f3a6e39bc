"""Preference pairs (chosen vs rejected reply to one context) for DPO/ORPO training.

Pairs come from every place a person says "this, not that": an edited chat reply, the swipe
they kept and continued from, an edited persona turn in review, and imported DPO/KTO datasets.
`prefs.store` keeps them (table `preferences`), redacted by the make-dataset PII rules;
`prefs.imports` reads preference datasets; `prefs.export` writes TRL / LLaMA-Factory files.
"""

from persona_studio.prefs.store import SOURCES, Pair, PrefError

__all__ = ["SOURCES", "Pair", "PrefError"]
