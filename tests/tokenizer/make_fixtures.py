#!/usr/bin/env python3
"""Reference fixtures for the C++ tokenizer, made with the `tokenizers` package (and jinja2).

  make_fixtures.py OUTDIR                    train five small tokenizer.json files (Llama 3, SmolLM2 and
                                             GPT-2 byte-level; Llama 2 and Metaspace SentencePiece-style),
                                             write <name>.expected.json for each and chat.expected.json
  make_fixtures.py --tokenizer T --out F     expected ids/decodes of the test corpus for any tokenizer.json
"""
import argparse
import json
import os
import random

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
                r"\s*[\r\n]+|\s+(?!\S)|\s+")

TRAIN = [
    "The quick brown fox jumps over the lazy dog. It's a sunny day, isn't it? We'll see what they've done.",
    "In 2024 the model processed 1234567 tokens at 98.6 percent accuracy; version 3.14.159 shipped on 12/05.",
    "def forward(self, x):\n    return self.w2(F.silu(self.w1(x)) * self.w3(x))\n\nfor i in range(10):\n\tprint(i)",
    "Tensor parallelism splits each weight matrix across GPUs; an all-reduce sums the partial results.",
    "Café, naïve, résumé, façade, jalapeño, Ångström, Øresund, Straße, œuvre, coöperate.",
    "東京は日本の首都です。北京是中国的首都。서울은 한국의 수도입니다。",
    "مرحبا بالعالم. שלום עולם. Привет, мир! Γειά σου Κόσμε.",
    "Emoji: 😀 🎉 👍🏽 👨‍👩‍👧‍👦 🏳️‍🌈 and symbols ™ © ® → ∑ ∞ ≠.",
    "Hello world! Hello, World? HELLO WORLD. hello-world_hello.world",
    "    indented   text\twith\ttabs\n\n\nand  multiple   spaces   \r\nWindows line.",
    "<html><body class=\"main\">{\"key\": [1, 2, 3], \"nested\": {\"a\": null}}</body></html>",
    "SELECT name, COUNT(*) FROM users WHERE age >= 18 GROUP BY name ORDER BY 2 DESC;",
]

CORPUS = [
    "", " ", "  ", "\n", "\t", "Hello", " Hello", "Hello world", "hello  world", "Hello,   world!\n\n",
    "The quick brown fox jumps over the lazy dog.",
    "I'm sure they'll say it's fine; we've DONE it, HAVEN'T we? 'quoted' words.",
    "Numbers: 1 12 123 1234 12345 123456 3.14159 1,000,000 0x1F 2024-11-25",
    "Café naïve résumé Ångström Straße — “smart quotes” and ‘single’ … ellipsis",
    "日本語のテキストと中文文本，以及한국어 텍스트。",
    "العربية من اليمين إلى اليسار עברית גם",
    "Emoji 😀😃 👍🏽 family 👨‍👩‍👧‍👦 flag 🏳️‍🌈 keycap 1️⃣ end",
    "tabs\tand\ttabs\t\t and newlines\n\nand\r\nCRLF   trailing   ",
    "    def f(x):\n        return x ** 2  # square\n",
    "if (a && b || !c) { return arr[i++] >> 2; } // done",
    "<s>Hello</s>", "text with <|begin_of_text|> inside", "<|im_start|>user\nhi<|im_end|>\n",
    "a<|im_end|>b</s>c<s>", "<unk> literally", "<mask> and  <mask>x", "word<tool>word <tool> end",
    "<extra> a <extra>b two words two  words<extra>", "norm tok norm  tok", "<rs>   after <rs>\n\nx", "sw swap sw, (sw) answer sw", "<|begin_of_text|><|begin_of_text|>", "<s><s> </s>",
    "Special chars: \u00a0nbsp \u2003emsp \u200bzwsp \u3000ideographic \x85nel \u2028ls \x1cfs \x00nul",
    "Rare: 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 ᚠᛇᚻ ꙮ 🀄 \U0001F9D1\u200d\U0001F4BB",
    "x" * 300, "ab " * 200, "1234567890" * 20, "\n" * 50, " " * 64,
]

SPECIALS_L3 = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
SPECIALS_CHATML = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
SP_SPECIALS = ["<unk>", "<s>", "</s>"]


SYLLABLES = ["ka", "to", "ren", "mi", "sha", "lo", "qu", "ex", "pre", "tion", "ing", "ver", "ström", "é", "ña", "über",
             "при", "вет", "мир", "κό", "σμε", "東", "京", "語", "한", "국", "٣", "مر", "حبا", "0", "42", "_id", "Self", "()"]


def train_corpus():
    """TRAIN shuffled, plus pseudo-words from many scripts, so merges reach a few thousand tokens."""
    rng = random.Random(1234)
    lines = []
    for _ in range(400):
        words = " ".join(rng.choice(TRAIN) for _ in range(3)).split(" ")
        rng.shuffle(words)
        lines.append(" ".join(words))
    for _ in range(3000):
        words = ["".join(rng.choice(SYLLABLES) for _ in range(rng.randrange(1, 4))) for _ in range(rng.randrange(3, 12))]
        lines.append(" ".join(words) + rng.choice([".", ",", "!", "?\n", ";", " ", "\t"]))
    return TRAIN * 20 + lines


def byte_level(name):
    tok = Tokenizer(models.BPE(ignore_merges=(name == "bytelevel_llama3")))
    if name == "bytelevel_llama3":
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False)])
    elif name == "bytelevel_smollm2":
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)])
    else:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = SPECIALS_CHATML if name == "bytelevel_smollm2" else []
    trainer = trainers.BpeTrainer(vocab_size=3000, show_progress=False, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(train_corpus(), trainer)
    if name == "bytelevel_llama3":  # Llama 3 keeps its special tokens after the vocabulary
        tok.add_special_tokens([AddedToken(s, normalized=False, special=True) for s in SPECIALS_L3])
        tok.add_tokens([AddedToken("<tool>", normalized=False, special=False),
                        AddedToken("<mask>", lstrip=True, normalized=False, special=True),
                        AddedToken("<rs>", rstrip=True, normalized=False, special=False),
                        AddedToken("sw", single_word=True, normalized=False, special=False),
                        AddedToken("norm tok", normalized=True, special=False)])
        bos = tok.token_to_id("<|begin_of_text|>")
        tok.post_processor = processors.Sequence([
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A <|begin_of_text|> $B",
                                          special_tokens=[("<|begin_of_text|>", bos)])])
    elif name == "bytelevel_smollm2":
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    else:
        tok.add_special_tokens([AddedToken("<|endoftext|>", normalized=False, special=True)])
    return tok


def sentencepiece(name):
    """Llama 2 style: byte-fallback BPE over ▁-joined words, with <unk> <s> </s> and <0xNN> first."""
    base = Tokenizer(models.BPE())
    base.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    base.train_from_iterator(train_corpus(), trainers.BpeTrainer(vocab_size=4000, show_progress=False, limit_alphabet=150))
    trained = json.loads(base.to_str())["model"]
    vocab = {t: i for i, t in enumerate(SP_SPECIALS + [f"<0x{b:02X}>" for b in range(256)])}
    for t, _ in sorted(trained["vocab"].items(), key=lambda kv: kv[1]):
        vocab.setdefault(t, len(vocab))
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in trained["merges"]]
    if name == "sp_unk":  # no byte fallback: characters outside the vocabulary become one fused <unk>
        vocab = {t: i for i, t in enumerate([t for t in vocab if not t.startswith("<0x")])}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", byte_fallback=(name != "sp_unk"),
                               fuse_unk=True))
    if name in ("sp_llama2", "sp_unk"):
        tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
        tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                         decoders.Strip(" ", 1, 0)])
    else:
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=False)
        tok.decoder = decoders.Sequence([decoders.Metaspace(replacement="▁", prepend_scheme="first"),
                                         decoders.ByteFallback(), decoders.Fuse()])
    tok.add_special_tokens([AddedToken(s, normalized=False, special=True) for s in SP_SPECIALS])
    # Normalized added tokens: matched after the normalizer, their content normalized too.
    tok.add_tokens([AddedToken("<extra>", normalized=True, special=False),
                    AddedToken("two words", normalized=True, special=False)])
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                       special_tokens=[("<s>", vocab["<s>"])])
    return tok


def long_prompt():
    rng = random.Random(7)
    parts = CORPUS[10:22] + TRAIN
    out = []
    while sum(map(len, out)) < 200_000:
        out.append(rng.choice(parts))
    return " ".join(out)[:200_000]


def expected(tok, path):
    rng = random.Random(99)
    cases = []
    for text in CORPUS + [long_prompt()]:
        with_special = tok.encode(text, add_special_tokens=True).ids
        cases.append({
            "text": text,
            "ids": with_special,
            "ids_plain": tok.encode(text, add_special_tokens=False).ids,
            "decoded": tok.decode(with_special, skip_special_tokens=False),
            "decoded_skip": tok.decode(with_special, skip_special_tokens=True),
        })
    n = tok.get_vocab_size(with_added_tokens=True)
    decodes = []  # random ids: byte tokens in any order give invalid UTF-8 to repair
    for k in range(40):
        ids = [rng.randrange(n) for _ in range(rng.randrange(1, 12))]
        decodes.append({"ids": ids, "decoded": tok.decode(ids, skip_special_tokens=False),
                        "decoded_skip": tok.decode(ids, skip_special_tokens=True)})
    return {"tokenizer": os.path.abspath(path), "vocab_size": n, "cases": cases, "decodes": decodes}


CHAT_TEMPLATES = {
    "smollm2": "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}",
    "chatml_escaped": "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}",
    "llama3": "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}",
    # The no-tools path of Llama 3.1's template, condensed (our own wording of its rules).
    "llama31": "{{- bos_token }}{%- if not date_string is defined %}{%- set date_string = '26 Jul 2024' %}{%- endif %}{%- if messages[0]['role'] == 'system' %}{%- set system_message = messages[0]['content']|trim %}{%- set messages = messages[1:] %}{%- else %}{%- set system_message = '' %}{%- endif %}{{- '<|start_header_id|>system<|end_header_id|>\\n\\n' }}{{- 'Cutting Knowledge Date: December 2023\\n' }}{{- 'Today Date: ' + date_string + '\\n\\n' }}{{- system_message }}{{- '<|eot_id|>' }}{%- for message in messages %}{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}{%- endfor %}{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}",
    "llama2": "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}",
    "mistral": "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}",
}

CONVERSATIONS = [
    [{"role": "user", "content": "Hello!"}],
    [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "  What is 2+2?  "},
     {"role": "assistant", "content": " 4 "}, {"role": "user", "content": "And 3+3?\n"}],
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello there"},
     {"role": "user", "content": "Café ☕ — 東京?"}],
    [{"role": "user", "content": "one"}, {"role": "user", "content": "two"}],
]


def chat_expected():
    try:
        from jinja2.sandbox import ImmutableSandboxedEnvironment
    except ImportError:
        return None
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)

    def raise_exception(msg):
        raise ValueError(msg)
    env.globals["raise_exception"] = raise_exception
    out = []
    for name, tmpl in CHAT_TEMPLATES.items():
        for conv in CONVERSATIONS:
            for gen in (False, True):
                try:
                    text = env.from_string(tmpl).render(messages=conv, add_generation_prompt=gen,
                                                        bos_token="<s>", eos_token="</s>")
                    err = False
                except ValueError:
                    text, err = "", True
                out.append({"family": name, "template": tmpl, "messages": conv, "add_generation_prompt": gen,
                            "rendered": text, "error": err})
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("outdir", nargs="?")
    ap.add_argument("--tokenizer")
    ap.add_argument("--out")
    a = ap.parse_args()
    if a.tokenizer:
        tok = Tokenizer.from_file(a.tokenizer)
        with open(a.out, "w") as f:
            json.dump(expected(tok, a.tokenizer), f, ensure_ascii=False)
        return
    os.makedirs(a.outdir, exist_ok=True)
    for name in ["bytelevel_llama3", "bytelevel_smollm2", "bytelevel_gpt2", "sp_llama2", "sp_metaspace", "sp_unk"]:
        tok = byte_level(name) if name.startswith("bytelevel") else sentencepiece(name)
        path = os.path.join(a.outdir, name + ".json")
        tok.save(path)
        if name == "bytelevel_gpt2":  # the older merges form: "a b" strings
            j = json.load(open(path, encoding="utf-8"))
            j["model"]["merges"] = [" ".join(m) for m in j["model"]["merges"]]
            json.dump(j, open(path, "w", encoding="utf-8"), ensure_ascii=False)
            tok = Tokenizer.from_file(path)
        with open(os.path.join(a.outdir, name + ".expected.json"), "w", encoding="utf-8") as f:
            json.dump(expected(tok, path), f, ensure_ascii=False)
    chats = chat_expected()
    if chats is not None:
        with open(os.path.join(a.outdir, "chat.expected.json"), "w", encoding="utf-8") as f:
            json.dump(chats, f, ensure_ascii=False)


if __name__ == "__main__":
    main()
