// The tokenizer of a GGUF file (tokenizer.ggml.*) rebuilt as Hugging Face tokenizer.json text:
// `gpt2` (byte-level BPE) and `llama` (SentencePiece as BPE with byte fallback, merges derived
// from scores the way HF's LlamaConverter does).
#pragma once
#include <string>

#include "sharding/gguf_parse.h"

namespace gf {

// Refuses special token ids (bos, eos, unk, pad, ...) outside [0, vocab) and a missing token list.
void check_gguf_special_ids(const GgufFile& f);
std::string gguf_tokenizer_json(const GgufFile& f);

}  // namespace gf
