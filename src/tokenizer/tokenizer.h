// Tokenizer from a Hugging Face tokenizer.json: byte-level BPE (GPT-2 / Llama-3 pre-tokenizer;
// Llama 3, SmolLM2) and SentencePiece-style BPE with byte fallback (Llama 2, Mistral, TinyLlama).
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace gf {

class Tokenizer {
 public:
  // Parses and validates (merges whose parts are not in the vocab, ids >= vocab, empty added tokens
  // are one-line errors naming `where` and the field).
  static Tokenizer from_json(const std::string& json, const std::string& where);
  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  // Like `tokenizers`' encode(text, add_special_tokens): added/special tokens in the text are
  // matched first; with add_special_tokens the post-processor's template (e.g. BOS) is applied.
  std::vector<int32_t> encode(std::string_view text, bool add_special_tokens = true) const;
  // Like decode(ids, skip_special_tokens).
  std::string decode(const std::vector<int32_t>& ids, bool skip_special_tokens = false) const;
  int64_t vocab_size() const;  // highest id + 1
  std::optional<int32_t> token_to_id(std::string_view token) const;
  std::string id_to_token(int32_t id) const;

  // Streams text as ids arrive: returns only complete UTF-8 (held-back bytes come with later ids), and
  // the concatenated output equals decode(all ids). A run of byte-fallback tokens (<0xNN>) comes out when
  // a visible token ends it (or at flush): decode(), like HF's ByteFallback, turns every byte of a run that
  // is not valid UTF-8 into U+FFFD, so no prefix of a run is safe to show early. SentencePiece decoders drop
  // the text's first leading space, so to stream a continuation push the prompt's ids first and discard
  // what they return.
  class Stream {
   public:
    explicit Stream(const Tokenizer& t, bool skip_special_tokens = true) : t_(t), skip_(skip_special_tokens) {}
    std::string push(int32_t id);
    std::string flush();  // whatever is left (invalid bytes as U+FFFD)
   private:
    const Tokenizer& t_;
    bool skip_;
    std::vector<int32_t> ids_;  // ids whose text is not all returned yet
    size_t emitted_ = 0;        // bytes of their decoded text already returned
    bool started_ = false;      // a visible token came before ids_ (start-of-text rules are over)
  };

  struct Impl;
 private:
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

struct ChatMessage {
  std::string role, content;
};
// Renders messages with the model's chat template. Supported families, recognised by their markers:
// ChatML (<|im_start|>: SmolLM2, Qwen), Llama 3 (<|start_header_id|>), Llama 2 / Mistral ([INST]).
// Other templates are a one-line error naming the template.
std::string apply_chat_template(const std::string& tmpl, const std::vector<ChatMessage>& messages,
                                bool add_generation_prompt, const std::string& bos_token,
                                const std::string& eos_token);

}  // namespace gf
