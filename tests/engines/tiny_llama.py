"""A tiny random-weight Llama in Hugging Face layout, built offline in seconds (about 2 MB).

The tokenizer is a byte-level BPE trained here by ``tokenizers`` on a few sentences, with a
ChatML chat template; the weights are transformers' random initialisation of a two-layer Llama,
seeded so every build is the same. Nothing comes from a hub. What it says is noise, but it is a
real model to a real engine: its tokens, template, context and end-of-sequence are all honoured.
"""

from __future__ import annotations

import json
from pathlib import Path

CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] or '' }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
_CORPUS = [
    "Count from one to one hundred: one, two, three, four, five, six, seven, eight, nine, ten.",
    "Name three colours, please. Red, green and blue are colours; so are yellow and purple.",
    "Be brief. The quick brown fox jumps over the lazy dog. Hello, world!",
    "word0 word1 word2 word3 word4 word5 word6 word7 word8 word9 turn system user assistant",
    'naïve café, 東京, 🙂 and nothing more. JSON: {"name": "value", "items": [1, 2, 3]}',
]


def build_tiny_llama(directory: Path, vocab_size: int = 512, seed: int = 0) -> Path:
    """Write the model into ``directory`` (created) and return it."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    directory.mkdir(parents=True, exist_ok=True)
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    bpe.train_from_iterator(_CORPUS * 20, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>", unk_token=None
    )
    eos, pad = bpe.token_to_id("<|im_end|>"), bpe.token_to_id("<|endoftext|>")
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(directory)

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=2048,
        bos_token_id=None,
        eos_token_id=eos,
        pad_token_id=pad,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)
    model.save_pretrained(directory, safe_serialization=True)
    # No sampling defaults of its own: the request's (or aimi's) controls are the only ones.
    (directory / "generation_config.json").write_text(
        json.dumps({"eos_token_id": config.eos_token_id, "pad_token_id": config.pad_token_id})
    )
    return directory


if __name__ == "__main__":
    import sys

    print(build_tiny_llama(Path(sys.argv[1])))
