#!/usr/bin/env python3
"""Writes a tiny random Llama checkpoint in Hugging Face layout, for tests (never the runtime).

  make_tiny_llama.py --out DIR --variant mha|gqa|tied|llama3|big [--dtype bf16|f16|f32] [--shards N] [--seed S]

Files: config.json, model.safetensors (or model-0000X-of-0000N.safetensors + model.safetensors.index.json),
tokenizer.json (byte-level BPE trained here on a built-in corpus), tokenizer_config.json (ChatML template),
generation_config.json. Tensor names and shapes are those transformers' LlamaForCausalLM saves; q/k rows are
in HF (rotate-half) order by construction, since the reference applies rotate-half RoPE to them as stored.
safetensors files are written by hand (the format is an 8-byte header length, a JSON header, raw data) so
bf16 needs no torch and `big` streams tensor by tensor instead of holding gigabytes.
"""
import argparse
import json
import os

import numpy as np

# The architectures. hidden_dim 176 (mha) is not a multiple of 32 and 96 (gqa dim) not of 64: ragged int4 groups.
VARIANTS = {
    "mha": dict(dim=64, n_layers=2, n_heads=4, n_kv_heads=4, head_dim=16, hidden_dim=176, vocab=320,
                specials=("<s>", "</s>"), rope_theta=10000.0, norm_eps=1e-5, tied=False, llama3=False),
    "gqa": dict(dim=96, n_layers=3, n_heads=4, n_kv_heads=2, head_dim=32, hidden_dim=256, vocab=400,
                specials=("<s>", "</s>"), rope_theta=10000.0, norm_eps=1e-6, tied=False, llama3=False),
    "tied": dict(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=16, hidden_dim=192, vocab=300,
                 specials=("<|begin_of_text|>", "<|end_of_text|>"), rope_theta=10000.0, norm_eps=1e-5,
                 tied=True, llama3=False),
    "llama3": dict(dim=128, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=32, hidden_dim=320, vocab=480,
                   specials=("<|begin_of_text|>", "<|end_of_text|>"), rope_theta=500000.0, norm_eps=1e-5,
                   tied=False, llama3=True),
    # ~3.3 GB in f32 (~1.6 GB in bf16): the sharder's peak-RSS measurement.
    "big": dict(dim=4096, n_layers=4, n_heads=32, n_kv_heads=8, head_dim=128, hidden_dim=14336, vocab=512,
                specials=("<|begin_of_text|>", "<|end_of_text|>"), rope_theta=500000.0, norm_eps=1e-5,
                tied=False, llama3=True),
}
CHAT_SPECIALS = ("<|im_start|>", "<|im_end|>")
CHATML = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
          "'<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
# Llama 3's pre-tokenizer split (also GPT-4's): letters, numbers in runs of 1-3, punctuation, whitespace.
LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")
CORPUS = """The quick brown fox jumps over the lazy dog. A small model learns the shape of the words it reads.
Once upon a time there was a little robot who liked to count the stars: one, two, three, 42, 1000, 65536.
She sells sea shells by the sea shore; the shells she sells are surely sea shells.
In the beginning the weights were random, and the logits were not all the same, which made the test useful.
def hello(name):\n    return f"Hello, {name}!"  # code has    runs of spaces and tabs\t\tand symbols {}[]()<>
Tensor parallel ranks each hold a slice of every matrix; they add their partial sums after each block.
The cat sat on the mat. The dog sat on the log. The bird sat in the tree and sang a song to the sun.
Numbers like 3.14159, 2.71828 and 1.41421 appear in science; dates like 2024-06-01 appear in logs.
Café, naïve, résumé, Zürich, 東京, Москва and 🚀 emoji are bytes too, and byte-level BPE handles them.
What is the capital of France? Paris is the capital of France. What is two plus two? Two plus two is four.
"""


def to_bf16_bits(a):
    """float32 -> bf16 bit patterns, round to nearest even (NaN kept NaN)."""
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)
    r = ((u + np.uint32(0x7FFF) + ((u >> 16) & np.uint32(1))) >> 16).astype(np.uint16)
    nan = np.isnan(a)
    if nan.any():
        r[nan] = ((u[nan] >> 16) | 0x40).astype(np.uint16)
    return r


def encode(a, dtype):
    if dtype == "bf16":
        return to_bf16_bits(a).tobytes()
    return a.astype(np.float16 if dtype == "f16" else np.float32).tobytes()


ST_DTYPE = {"bf16": "BF16", "f16": "F16", "f32": "F32"}
ELEM = {"bf16": 2, "f16": 2, "f32": 4}


def tensor_specs(v):
    """(HF name, shape, kind) in the order transformers writes them; kind picks the init."""
    d, hd, kv, q, h = v["dim"], v["head_dim"], v["n_kv_heads"] * v["head_dim"], v["n_heads"] * v["head_dim"], v["hidden_dim"]
    specs = [("model.embed_tokens.weight", (v["vocab"], d), "embed")]
    for i in range(v["n_layers"]):
        p = f"model.layers.{i}."
        specs += [(p + "input_layernorm.weight", (d,), "norm"),
                  (p + "self_attn.q_proj.weight", (q, d), "w"), (p + "self_attn.k_proj.weight", (kv, d), "w"),
                  (p + "self_attn.v_proj.weight", (kv, d), "w"), (p + "self_attn.o_proj.weight", (d, q), "w"),
                  (p + "post_attention_layernorm.weight", (d,), "norm"),
                  (p + "mlp.gate_proj.weight", (h, d), "w"), (p + "mlp.up_proj.weight", (h, d), "w"),
                  (p + "mlp.down_proj.weight", (d, h), "w")]
    specs.append(("model.norm.weight", (d,), "norm"))
    if not v["tied"]:
        specs.append(("lm_head.weight", (v["vocab"], d), "head"))
    return specs


def make_tensor(rng, shape, kind):
    # std 1/sqrt(fan_in) keeps activations O(1) through the blocks; the head's 1.5/sqrt(dim) spreads logits
    # over a few units so the argmax is not a near-tie that rounding could flip. Tied heads reuse the embedding.
    if kind == "norm":
        return rng.uniform(0.8, 1.2, size=shape).astype(np.float32)
    std = 1.5 / np.sqrt(shape[1]) if kind in ("head", "embed") else 1.0 / np.sqrt(shape[1])
    return (rng.standard_normal(size=shape, dtype=np.float32) * np.float32(std))


def write_safetensors(path, specs, dtype, rng):
    """Header first (offsets from shapes), then each tensor generated and written in turn."""
    header, off = {"__metadata__": {"format": "pt"}}, 0
    for name, shape, _ in specs:
        n = int(np.prod(shape)) * ELEM[dtype]
        header[name] = {"dtype": ST_DTYPE[dtype], "shape": list(shape), "data_offsets": [off, off + n]}
        off += n
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * (-len(hb) % 8)
    with open(path + ".tmp", "wb") as f:
        f.write(len(hb).to_bytes(8, "little"))
        f.write(hb)
        for name, shape, kind in specs:
            rows = 1024 if len(shape) == 2 else shape[0]  # big tensors in row blocks: bounded memory
            for r0 in range(0, shape[0], rows):
                sub = (min(rows, shape[0] - r0),) + tuple(shape[1:])
                f.write(encode(make_tensor(rng, sub, kind) if len(shape) == 2 else make_tensor(rng, shape, kind), dtype))
    os.replace(path + ".tmp", path)
    return off


def write_tokenizer(out, v):
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    bos, eos = v["specials"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    specials = [bos, eos, *CHAT_SPECIALS]
    trainer = trainers.BpeTrainer(vocab_size=v["vocab"], special_tokens=specials, min_frequency=2,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator([CORPUS] * 4, trainer=trainer)
    bos_id, eos_id = tok.token_to_id(bos), tok.token_to_id(eos)
    tok.post_processor = processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A {bos} $B",
                                                       special_tokens=[(bos, bos_id)])
    tok.save(os.path.join(out, "tokenizer.json"))
    return tok.get_vocab_size(), bos_id, eos_id, tok.token_to_id(CHAT_SPECIALS[1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--variant", required=True, choices=sorted(VARIANTS))
    ap.add_argument("--dtype", default="bf16", choices=sorted(ST_DTYPE))
    ap.add_argument("--shards", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    v = dict(VARIANTS[a.variant])
    os.makedirs(a.out, exist_ok=True)
    vocab, bos_id, eos_id, im_end_id = write_tokenizer(a.out, v)
    v["vocab"] = vocab  # the trainer may stop short of the request: the model follows the tokenizer
    eos_ids = [eos_id, im_end_id] if v["llama3"] else eos_id
    cfg = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "hidden_size": v["dim"], "intermediate_size": v["hidden_dim"], "num_hidden_layers": v["n_layers"],
        "num_attention_heads": v["n_heads"], "num_key_value_heads": v["n_kv_heads"], "head_dim": v["head_dim"],
        "hidden_act": "silu", "max_position_embeddings": 256 if a.variant != "big" else 8192,
        "rms_norm_eps": v["norm_eps"], "rope_theta": v["rope_theta"], "rope_scaling": None,
        "tie_word_embeddings": v["tied"], "vocab_size": vocab, "bos_token_id": bos_id, "eos_token_id": eos_ids,
        "attention_bias": False, "attention_dropout": 0.0, "mlp_bias": False, "initializer_range": 0.02,
        "pretraining_tp": 1, "use_cache": True, "torch_dtype": {"bf16": "bfloat16", "f16": "float16", "f32": "float32"}[a.dtype],
        "transformers_version": "4.44.0",
    }
    if v["llama3"]:
        # original_max_position 64 puts this head_dim's wavelengths in all three llama3 regimes.
        cfg["rope_scaling"] = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                               "high_freq_factor": 4.0, "original_max_position_embeddings": 64}
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    bos, eos = v["specials"]
    with open(os.path.join(a.out, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": bos, "eos_token": eos,
                   "add_bos_token": True, "model_max_length": cfg["max_position_embeddings"],
                   "chat_template": CHATML}, f, indent=2)
    with open(os.path.join(a.out, "generation_config.json"), "w") as f:
        json.dump({"bos_token_id": bos_id, "eos_token_id": eos_ids, "do_sample": False,
                   "transformers_version": "4.44.0"}, f, indent=2)

    rng = np.random.default_rng(a.seed)
    specs = tensor_specs(v)
    if a.shards <= 1:
        write_safetensors(os.path.join(a.out, "model.safetensors"), specs, a.dtype, rng)
        return
    # Contiguous runs of tensors per file, like save_pretrained's size-capped sharding.
    n = a.shards
    groups = [specs[len(specs) * k // n: len(specs) * (k + 1) // n] for k in range(n)]
    weight_map, total = {}, 0
    for k, g in enumerate(groups):
        fname = f"model-{k + 1:05d}-of-{n:05d}.safetensors"
        total += write_safetensors(os.path.join(a.out, fname), g, a.dtype, rng)
        weight_map.update({name: fname for name, _, _ in g})
    with open(os.path.join(a.out, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)


if __name__ == "__main__":
    main()
