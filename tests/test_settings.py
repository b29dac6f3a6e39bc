from __future__ import annotations

from pathlib import Path

import pytest

from persona_studio import settings
from persona_studio.settings import SettingsError

REPO = Path(__file__).resolve().parents[1]


def test_defaults_text_parses_back_to_defaults() -> None:
    assert settings.parse(settings.default_text()) == settings.defaults()


def test_default_text_is_commented_for_every_key() -> None:
    text = settings.default_text()
    for key in ("blocked_words", "accept_score", "lora_rank", "online_llm_clear", "max_new_tokens", "top_k"):
        line_no = next(i for i, line in enumerate(text.splitlines()) if f'"{key}"' in line)
        assert text.splitlines()[line_no - 1].strip().startswith("//"), key


def test_repo_settings_load() -> None:
    s = settings.load(REPO / "settings.jsonc")
    assert s.make_dataset.blocked_words, "the shipped workspace demonstrates blocked words"
    assert s.train_sft_args.lora_rank in settings.VLLM_LORA_RANKS


def test_values_are_typed_and_nested_defaults_filled() -> None:
    s = settings.parse('{"infer_args": {"temperature": 1}, "make_dataset": {"judge": {"accept_score": 4}}}')
    assert s.infer_args.temperature == 1.0 and isinstance(s.infer_args.temperature, float)
    assert s.make_dataset.judge.accept_score == 4
    assert s.make_dataset.pii.phone == "redact"
    assert s.train_sft_args.lora_rank == 8


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{\n "train_sft_args": {\n   "lora_rnk": 8\n }\n}', "f.jsonc:3: train_sft_args.lora_rnk: unknown key (did you mean 'lora_rank'?)"),
        ('{\n "train_sft_args": {\n   "lora_rank": 7\n }\n}', "f.jsonc:3: train_sft_args.lora_rank: must be one of 1, 8, 16"),
        ('{"infer_args": {\n  "temperature": "hot"}}', "f.jsonc:2: infer_args.temperature: expected a number, got a string"),
        ('{"infer_args": {\n\n  "top_p": 1.5}}', "f.jsonc:3: infer_args.top_p: must be <= 1.0, got 1.5"),
        ('{"make_dataset": {"pii": {"email": "hide"}}}', "f.jsonc:1: make_dataset.pii.email: must be one of 'redact', 'drop', 'keep'"),
        ('{"make_dataset": {"blocked_words": "x"}}', "make_dataset.blocked_words: expected a list, got a string"),
        ('{"make_dataset": {"judge": {"accept_score": 2.5}}}', "make_dataset.judge.accept_score: expected an integer"),
        ('{"engine": {"backend": "llamacpp"}}', "engine.backend: must be one of 'vllm', 'remote', 'transformers'"),
        ('{"vllm_args": {"enforce_eager": 1}}', "vllm_args.enforce_eager: expected true or false"),
        ('{"modle": {}}', "f.jsonc:1: modle: unknown key (did you mean 'model'?)"),
        ('{"model": [1]}', "model: expected an object, got a list"),
    ],
)
def test_bad_values_give_one_line_with_key_path_and_line(text: str, expected: str) -> None:
    with pytest.raises(SettingsError) as err:
        settings.parse(text, "f.jsonc")
    msg = str(err.value)
    assert expected in msg
    assert "\n" not in msg


def test_syntax_error_names_the_line() -> None:
    with pytest.raises(SettingsError, match=r"^f.jsonc:3: syntax error"):
        settings.parse('{\n  "infer_args": {},\n  ,,\n}', "f.jsonc")


def test_comments_and_trailing_commas_are_fine() -> None:
    s = settings.parse('// hi\n{ /* c */ "party": {"strategy": "list",}, }')
    assert s.party.strategy == "list"


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="not found"):
        settings.load(tmp_path / "settings.jsonc")


def test_api_keys_come_from_environment_only(monkeypatch: pytest.MonkeyPatch) -> None:
    s = settings.defaults()
    monkeypatch.setenv(s.make_dataset.judge.api_key_env, "sk-secret")
    assert settings.api_key(s.make_dataset.judge.api_key_env) == "sk-secret"
    assert "sk-secret" not in settings.default_text()
    assert "sk-secret" not in str(settings.to_dict(s))
