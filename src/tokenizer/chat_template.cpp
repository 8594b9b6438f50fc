// apply_chat_template: renders the three Llama-family chat formats exactly as their Jinja templates
// do for system/user/assistant turns, recognising the family by its markers (no Jinja engine).
#include <ctime>
#include <string_view>

#include "core/error.h"
#include "tokenizer/tokenizer.h"

namespace gf {
namespace {

bool is_ws(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

std::string trim(std::string_view s) {  // Jinja's trim / Python's str.strip() on ASCII whitespace
  size_t b = 0, e = s.size();
  while (b < e && is_ws(s[b])) ++b;
  while (e > b && is_ws(s[e - 1])) --e;
  return std::string(s.substr(b, e - b));
}

// A template's built-in system prompt (SmolLM2: "You are a helpful AI assistant named SmolLM, ...";
// Qwen: "You are a helpful assistant."): the literal text after '<|im_start|>system\n', if any.
std::string chatml_default_system(const std::string& tmpl) {
  const std::string_view head = "<|im_start|>system";
  for (size_t pos = tmpl.find(head); pos != std::string::npos; pos = tmpl.find(head, pos + 1)) {
    size_t b = pos + head.size();
    if (tmpl.compare(b, 1, "\n") == 0)
      b += 1;
    else if (tmpl.compare(b, 2, "\\n") == 0)
      b += 2;
    else
      continue;
    const size_t e = tmpl.find("<|im_end|>", b);
    if (e == std::string::npos) continue;
    const std::string_view body(tmpl.data() + b, e - b);
    if (body.find_first_of("'\"{}") != std::string_view::npos)
      continue;  // built from a variable, not literal
    std::string out;
    for (size_t i = 0; i < body.size(); ++i) {  // Jinja string-literal escapes
      if (body[i] == '\\' && i + 1 < body.size()) {
        const char c = body[++i];
        out += c == 'n' ? '\n' : c == 't' ? '\t' : c;
      } else {
        out += body[i];
      }
    }
    return out;
  }
  return {};
}

std::string render_chatml(const std::string& tmpl, const std::vector<ChatMessage>& msgs, bool gen) {
  std::string out;
  const std::string dflt = chatml_default_system(tmpl);
  if (!dflt.empty() && (msgs.empty() || msgs[0].role != "system"))
    out += "<|im_start|>system\n" + dflt + "<|im_end|>\n";
  for (const ChatMessage& m : msgs)
    out += "<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n";
  if (gen) out += "<|im_start|>assistant\n";
  return out;
}

std::string render_llama3(const std::string& tmpl, const std::vector<ChatMessage>& msgs, bool gen,
                          const std::string& bos) {
  auto turn = [](const std::string& role, const std::string& content) {
    return "<|start_header_id|>" + role + "<|end_header_id|>\n\n" + content + "<|eot_id|>";
  };
  std::string out = bos;
  size_t first = 0;
  // Llama 3.1+: a system turn always comes first, headed by the knowledge cut-off and a date: the
  // template's default, or today's date where it calls strftime_now (as transformers provides).
  if (tmpl.find("Cutting Knowledge Date") != std::string::npos) {
    std::string system;
    if (!msgs.empty() && msgs[0].role == "system") system = trim(msgs[0].content), first = 1;
    std::string date = "26 Jul 2024";
    if (tmpl.find("strftime_now") != std::string::npos) {
      const std::time_t now = std::time(nullptr);
      std::tm tm{};
      localtime_r(&now, &tm);
      char buf[32];
      std::strftime(buf, sizeof buf, "%d %b %Y", &tm);
      date = buf;
    }
    out += turn("system",
                "Cutting Knowledge Date: December 2023\nToday Date: " + date + "\n\n" + system);
  }
  for (size_t i = first; i < msgs.size(); ++i) out += turn(msgs[i].role, trim(msgs[i].content));
  if (gen) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
  return out;
}

void check_alternation(const std::vector<ChatMessage>& msgs, size_t first) {
  for (size_t i = first; i < msgs.size(); ++i) {
    const bool want_user = (i - first) % 2 == 0;
    GF_CHECK((msgs[i].role == "user") == want_user && (want_user || msgs[i].role == "assistant"),
             "chat template: conversation roles must alternate user/assistant/user/...; message ",
             i, " is '", msgs[i].role, "'");
  }
}

// Llama 2: system folded into the first user turn inside <<SYS>>; BOS before every user turn.
std::string render_llama2(const std::vector<ChatMessage>& msgs, const std::string& bos,
                          const std::string& eos) {
  const bool has_system = !msgs.empty() && msgs[0].role == "system";
  const size_t first = has_system ? 1 : 0;
  check_alternation(msgs, first);
  std::string out;
  for (size_t i = first; i < msgs.size(); ++i) {
    std::string content;
    if (i == first && has_system)
      content.append("<<SYS>>\n").append(msgs[0].content).append("\n<</SYS>>\n\n");
    content += msgs[i].content;
    if (msgs[i].role == "user")
      out.append(bos).append("[INST] ").append(trim(content)).append(" [/INST]");
    else
      out.append(" ").append(trim(content)).append(" ").append(eos);
  }
  return out;
}

// Mistral (v0.1 instruct): one BOS, user turns in [INST], no system role.
std::string render_mistral(const std::vector<ChatMessage>& msgs, const std::string& bos,
                           const std::string& eos) {
  check_alternation(msgs, 0);
  std::string out = bos;
  for (const ChatMessage& m : msgs)
    out += m.role == "user" ? "[INST] " + m.content + " [/INST]" : m.content + eos;
  return out;
}

std::string one_line(std::string s) {
  for (char& c : s)
    if (c == '\n' || c == '\r') c = ' ';
  return s;
}

}  // namespace

std::string apply_chat_template(const std::string& tmpl, const std::vector<ChatMessage>& messages,
                                bool add_generation_prompt, const std::string& bos_token,
                                const std::string& eos_token) {
  if (tmpl.find("<|im_start|>") != std::string::npos)
    return render_chatml(tmpl, messages, add_generation_prompt);
  if (tmpl.find("<|start_header_id|>") != std::string::npos)
    return render_llama3(tmpl, messages, add_generation_prompt, bos_token);
  if (tmpl.find("[INST]") != std::string::npos) {  // these templates have no generation prompt
    return tmpl.find("<<SYS>>") != std::string::npos
               ? render_llama2(messages, bos_token, eos_token)
               : render_mistral(messages, bos_token, eos_token);
  }
  GF_FAIL(
      "chat template: not a supported family (ChatML <|im_start|>, Llama 3 <|start_header_id|>, "
      "Llama 2/Mistral [INST]); the template begins '",
      one_line(tmpl.substr(0, 60)), "'");
}

}  // namespace gf
