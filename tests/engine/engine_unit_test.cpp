// Engine units without MPI: counter RNG, sampler determinism, CLI parsing errors, prompt lines, presets.
#include <gtest/gtest.h>

#include <cmath>
#include <set>
#include <vector>

#include "cli/options.h"
#include "cli/text_io.h"
#include "core/error.h"
#include "engine/rng.h"
#include "engine/synthetic.h"
#include "kernels/cpu/cpu_ops.h"

namespace gf {
namespace {

TEST(Rng, CounterBasedAndUniform) {
  EXPECT_EQ(sample_uniform(7, 0, 5), sample_uniform(7, 0, 5));
  std::set<double> seen;
  double mean = 0;
  for (uint64_t step = 0; step < 20000; ++step) {
    double u = sample_uniform(42, 3, step);
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
    seen.insert(u);
    mean += u / 20000;
  }
  EXPECT_EQ(seen.size(), 20000u);
  EXPECT_NEAR(mean, 0.5, 0.01);
  EXPECT_NE(sample_uniform(42, 0, 1), sample_uniform(42, 1, 1));  // samples are separate streams
  EXPECT_NE(sample_uniform(42, 0, 1), sample_uniform(43, 0, 1));
}

TEST(Sampler, SameUSameTokenAndFollowsDistribution) {
  std::vector<float> logits(97);
  for (size_t i = 0; i < logits.size(); ++i) logits[i] = float(std::sin(double(i) * 1.7) * 3.0);
  cpu::SamplingParams p{0.9f, 20, 0.95f};
  std::vector<int> counts(logits.size());
  for (uint64_t s = 0; s < 4000; ++s) {
    double u = sample_uniform(1, 0, s);
    int32_t a = cpu::sample(logits.data(), int64_t(logits.size()), p, u);
    ASSERT_EQ(a, cpu::sample(logits.data(), int64_t(logits.size()), p, u));
    ++counts[a];
  }
  int argmax = int(std::max_element(logits.begin(), logits.end()) - logits.begin());
  EXPECT_EQ(int(std::max_element(counts.begin(), counts.end()) - counts.begin()), argmax);
  int distinct = 0;
  for (int c : counts) distinct += c > 0;
  EXPECT_GT(distinct, 2);
  EXPECT_LE(distinct, 20);  // top-k honoured
  cpu::SamplingParams greedy;
  EXPECT_EQ(cpu::sample(logits.data(), int64_t(logits.size()), greedy, 0.99), argmax);
}

CliOptions parse(std::vector<const char*> args) {
  args.insert(args.begin(), "gptfast-tp");
  return parse_cli(int(args.size()), args.data());
}

void expect_error(std::vector<const char*> args, const std::string& needle) {
  try {
    parse(args);
    ADD_FAILURE() << "no error for " << needle;
  } catch (const Error& e) {
    std::string what = e.what();
    EXPECT_NE(what.find(needle), std::string::npos) << what;
    EXPECT_EQ(what.find('\n'), std::string::npos) << "one line: " << what;
  }
}

TEST(Cli, ParsesAndValidates) {
  CliOptions o = parse({"--model", "m", "--int4", "--group-size", "64", "--prompt-ids", "1,2,3", "--greedy"});
  EXPECT_EQ(o.format, WeightFormat::INT4);
  EXPECT_EQ(o.group_size.value(), 64);
  EXPECT_EQ(o.prompt_ids, (std::vector<int32_t>{1, 2, 3}));
  EXPECT_EQ(o.temperature, 0.f);
  expect_error({"--model", "m", "--int8", "--int4", "--prompt", "x"}, "exclusive");
  expect_error({"--model", "m", "--group-size", "64", "--prompt", "x"}, "--int4");
  expect_error({"--model", "m", "--int4", "--group-size", "48", "--prompt", "x"}, "32, 64 or 128");
  expect_error({"--model", "m", "--prompt-ids", "1,x,3"}, "--prompt-ids");
  expect_error({"--model", "m", "--prompt-ids", "1,-2"}, "--prompt-ids");
  expect_error({"--model", "m"}, "give a prompt");
  expect_error({"--prompt", "x"}, "--model");
  expect_error({"--model", "m", "--synthetic", "tiny", "--prompt", "x"}, "--model");
  expect_error({"--model", "m", "--prompt", "x", "--top-p", "1.5"}, "--top-p");
  expect_error({"--model", "m", "--prompt", "x", "--temperature", "-1"}, "--temperature");
  expect_error({"--model", "m", "--prompt", "x", "--backend", "tpu"}, "--backend");
  expect_error({"--model", "m", "--prompt", "x", "--no-such-flag"}, "no-such-flag");
  expect_error({"--model", "m", "--prompt", "x", "--max-new-tokens", "ten"}, "max-new-tokens");
  expect_error({"--model", "m", "--prompt", "x", "--config", "/nonexistent.ini"}, "--config");
  expect_error({"--model", "m", "--prompt", "x", "--draft", "d", "--synthetic-acceptance", "0.7"}, "--draft-synthetic");
  expect_error({"--synthetic", "tiny", "--prompt-ids", "1", "--draft-synthetic", "tiny", "--synthetic-acceptance", "1.5"},
               "[0, 1]");
  EXPECT_EQ(parse({"--synthetic", "tiny", "--prompt-ids", "1", "--draft-synthetic", "tiny", "--synthetic-acceptance",
                   "0.7"}).synthetic_acceptance, 0.7);
}

TEST(PromptFile, LinesAndProblems) {
  auto lines = split_prompt_lines("one\r\n\nt\xffo\nthree");
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[0].text, "one");
  EXPECT_EQ(lines[1].line, 3);
  EXPECT_EQ(lines[2].line, 4);
  EXPECT_EQ(prompt_problem("h\xc3\xa9llo \xf0\x9f\x98\x80"), "");
  EXPECT_NE(prompt_problem(lines[1].text), "");
  EXPECT_NE(prompt_problem(std::string("a\0b", 3)), "");
  EXPECT_NE(prompt_problem("\xc0\xaf"), "");          // overlong
  EXPECT_NE(prompt_problem("\xed\xa0\x80"), "");      // surrogate
  EXPECT_NE(prompt_problem(std::string(kMaxPromptBytes + 1, 'a')), "");
}

TEST(Presets, EveryModelPresetSplitsForItsUsualTp) {
  struct Case { const char* name; int tp; };
  for (Case c : {Case{"llama-2-7b", 4}, {"llama-2-13b", 2}, {"llama-2-70b", 8}, {"llama-3-8b", 8}, {"llama-3-70b", 8},
                 {"mistral-7b", 8}, {"smollm2-135m", 3}, {"tinyllama-1.1b", 4}, {"tiny", 2}}) {
    ModelConfig cfg = load_model_preset(std::string(GF_CONFIG_DIR) + "/models/" + c.name + ".ini");
    EXPECT_EQ(cfg.name, c.name);
    for (int r = 0; r < c.tp; ++r) EXPECT_NO_THROW(plan_rank_slice(cfg, c.tp, r)) << c.name;
  }
  ModelConfig l3 = load_model_preset(std::string(GF_CONFIG_DIR) + "/models/llama-3-8b.ini");
  EXPECT_EQ(l3.head_dim, 128);
  EXPECT_EQ(l3.eos_ids, (std::vector<int64_t>{128001, 128009}));
  EXPECT_THROW(load_model_preset("no-such-model"), Error);
}

}  // namespace
}  // namespace gf
