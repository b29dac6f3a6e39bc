"""A tiny random Llama, built offline in seconds, that stands in for a real base model.

Tests, benchmarks and `persona-studio` demos use it: a byte-level BPE tokenizer trained on a
few lines, a ChatML-style chat template, and a 2-layer Llama with head size 64 (vLLM's CPU
attention wants a supported head size). Nothing here touches the network.
"""

from __future__ import annotations

from pathlib import Path

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|pad|>"]

CORPUS = [
    "Hello! How are you today? I am fine, thank you.",
    "The tea is ready. Would you like some cake with it?",
    "Alice likes books, rabbits and long walks in the garden.",
    "Bob builds robots and fixes old radios on weekends.",
    "What is your name? Who are you? Tell me about yourself.",
    "我今天很开心，我们一起去喝茶吧。你叫什么名字？",
    "Numbers 0123456789 and punctuation .,;:!?()[]{}<>'\"-_/\\@#$%^&*+=~`|",
    "system user assistant persona party lore adapter train",
]


def build_tiny_llama(
    out_dir: str | Path,
    *,
    vocab_size: int = 512,
    hidden_size: int = 256,
    intermediate_size: int = 512,
    num_hidden_layers: int = 2,
    num_attention_heads: int = 4,
    num_key_value_heads: int = 2,
    max_position_embeddings: int = 1024,
    seed: int = 0,
) -> Path:
    """Write a tokenizer + random LlamaForCausalLM (float32 safetensors) to `out_dir`."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|pad|>",
        unk_token=None,
        model_max_length=max_position_embeddings,
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(out)

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(fast),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=num_attention_heads,
        num_key_value_heads=num_key_value_heads,
        max_position_embeddings=max_position_embeddings,
        bos_token_id=None,
        eos_token_id=fast.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=fast.convert_tokens_to_ids("<|pad|>"),
        tie_word_embeddings=False,
        torch_dtype="float32",
    )
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = config.eos_token_id
    model.generation_config.pad_token_id = config.pad_token_id
    model.save_pretrained(out, safe_serialization=True)
    return out


def train_sentence_adapter(
    base_dir: str | Path, out_dir: str | Path, sentence: str, steps: int = 60, *, seed: int = 0
) -> Path:
    """Train a rank-8 LoRA on the CPU (fp32) until the base model answers anything with `sentence`.

    One chat sample, loss on the assistant reply (and its end token) only; a plain loop, no
    Trainer, so it runs in a few seconds. Two adapters trained on two sentences make "each
    persona speaks with its own adapter" a checkable assertion.
    """
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(seed)
    tok = AutoTokenizer.from_pretrained(str(base_dir))
    model = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32)
    cfg = LoraConfig(
        r=8,
        lora_alpha=16,
        lora_dropout=0.0,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(model, cfg)
    prompt = [{"role": "system", "content": "You are a persona."}, {"role": "user", "content": "Hello"}]
    prefix = tok.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False)
    ids_prefix = tok(prefix, add_special_tokens=False)["input_ids"]
    ids_reply = tok(sentence + "<|im_end|>", add_special_tokens=False)["input_ids"]
    input_ids = torch.tensor([ids_prefix + ids_reply])
    labels = torch.tensor([[-100] * len(ids_prefix) + ids_reply])
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    model.train()
    for _ in range(steps):
        loss = model(input_ids=input_ids, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out))
    return out
