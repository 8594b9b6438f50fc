// gptfast-shard: converts a checkpoint into per-rank shard files for tensor parallelism, or verifies a set.
#include <csignal>
#include <cstdio>
#include <iostream>

#include <boost/program_options.hpp>
#include <hdf5.h>

#include "core/error.h"
#include "model/shard_store.h"
#include "sharding/split.h"

namespace po = boost::program_options;

int main(int argc, char** argv) {
  // Past a file size limit write() must fail with EFBIG (one clean error line), not kill us by signal.
  std::signal(SIGXFSZ, SIG_IGN);
  // HDF5 keeps a file whose close failed (disk full) half-open, and its atexit cleanup then crashes on
  // it; every file we open is closed by RAII, so that cleanup has nothing to do for us anyway.
  H5dont_atexit();
  po::options_description desc(
      "gptfast-shard --from CHECKPOINT --model NAME --tp N [--int8 | --int4 [--group-size G]]\n"
      "gptfast-shard --verify SHARD_DIR\n\nOptions");
  std::string from, model, model_dir, verify;
  int64_t tp = 1;
  int group_size = 128;
  desc.add_options()("help,h", "show this help")("version", "print the version")(
      "from", po::value(&from), "Hugging Face checkpoint directory or .gguf file")(
      "model", po::value(&model), "model name: output goes to <store>/<model>/tp<N>-<format>")(
      "model-dir", po::value(&model_dir), "the store (default: $GPTFAST_MODEL_DIR, else ./models)")(
      "tp", po::value(&tp)->default_value(1), "tensor-parallel size (ranks)")(
      "int8", po::bool_switch(), "int8 weight-only (per output channel)")(
      "int4", po::bool_switch(), "int4 weight-only (groups of --group-size)")(
      "group-size", po::value(&group_size)->default_value(128), "int4 group size: 32, 64 or 128")(
      "resume", po::bool_switch(), "finish an interrupted run (see sharding/README.md)")(
      "force", po::bool_switch(), "re-make an existing complete shard set")(
      "quiet,q", po::bool_switch(), "no progress lines")(
      "verify", po::value(&verify), "re-hash every rank file of SHARD_DIR against its manifest.json");
  try {
    po::variables_map vm;
    po::store(po::parse_command_line(argc, argv, desc), vm);
    po::notify(vm);
    if (vm.count("help")) {
      std::cout << desc << "\n";
      return 0;
    }
    if (vm.count("version")) {
      std::cout << "gptfast-shard " << GPTFAST_VERSION << "\n";
      return 0;
    }
    if (!verify.empty()) {
      int bad = gf::verify_shard_dir(verify);
      if (bad == 0) std::fprintf(stderr, "gptfast-shard: %s: every rank file matches manifest.json\n", verify.c_str());
      return bad == 0 ? 0 : 1;
    }
    GF_CHECK(!from.empty() && !model.empty(), "--from and --model are required (see --help)");
    GF_CHECK(!(vm["int8"].as<bool>() && vm["int4"].as<bool>()), "--int8 and --int4 exclude each other");
    GF_CHECK(tp >= 1 && tp <= 4096, "--tp must be in [1, 4096], got ", tp);
    gf::ShardOptions opt;
    opt.from = from;
    opt.model = model;
    opt.store = gf::default_store(model_dir);
    opt.tp = tp;
    if (vm["int8"].as<bool>()) opt.fmt = {gf::WeightFormat::INT8, 0};
    if (vm["int4"].as<bool>()) {
      GF_CHECK(group_size == 32 || group_size == 64 || group_size == 128, "--group-size must be 32, 64 or 128, got ",
               group_size);
      opt.fmt = {gf::WeightFormat::INT4, group_size};
    }
    opt.resume = vm["resume"].as<bool>();
    opt.force = vm["force"].as<bool>();
    opt.progress = !vm["quiet"].as<bool>();
    std::string dir = gf::run_shard(opt);
    std::fprintf(stderr, "gptfast-shard: wrote %s\n", dir.c_str());
    return 0;
  } catch (const po::error& e) {
    std::fprintf(stderr, "gptfast-shard: error: %s (see --help)\n", e.what());
  } catch (const gf::Error& e) {
    std::fprintf(stderr, "gptfast-shard: error: %s\n", e.what());
    if (!e.hint().empty()) std::fprintf(stderr, "HINT: %s\n", e.hint().c_str());
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "gptfast-shard: error: out of memory\n");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "gptfast-shard: error: %s\n", e.what());
  }
  return 1;
}
