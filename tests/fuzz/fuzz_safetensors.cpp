// libFuzzer target: bytes as a .safetensors file -> SafetensorsFile (header validation), then a
// bounded read of each tensor's first and last elements (the data path behind the offsets).
#include <algorithm>
#include <vector>

#include "fuzz/fuzz_util.h"
#include "sharding/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto path = gf::fuzz::scratch().path() / "input.safetensors";
  gf::fuzz::write_file(path, {reinterpret_cast<const char*>(data), size});
  gf::fuzz::expect_clean([&] {
    gf::SafetensorsFile f(path.string());
    std::vector<float> buf(64);
    for (const auto& [name, t] : f.tensors()) {
      int64_t n = 1;
      for (int64_t d : t.shape) n *= d;  // validated: the product fits and matches end - begin
      const int64_t k = std::min<int64_t>(n, 64);
      f.read_f32(t, 0, k, buf.data());
      f.read_f32(t, n - k, n, buf.data());
    }
    (void)f.tensor("no.such.tensor");  // must be a gf::Error, not a crash
  });
  return 0;
}
