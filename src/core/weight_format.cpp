// Format names <-> FormatSpec.
#include "core/weight_format.h"

#include "core/error.h"

namespace gf {

std::string FormatSpec::name() const {
  switch (format) {
    case WeightFormat::BF16: return "bf16";
    case WeightFormat::INT8: return "int8";
    case WeightFormat::INT4: return "int4g" + std::to_string(group_size);
  }
  return "?";
}

FormatSpec FormatSpec::parse(const std::string& name) {
  if (name == "bf16") return {WeightFormat::BF16, 0};
  if (name == "int8") return {WeightFormat::INT8, 0};
  for (int g : {32, 64, 128})
    if (name == "int4g" + std::to_string(g)) return {WeightFormat::INT4, g};
  GF_FAIL("unknown weight format '", name, "' (expected bf16, int8, int4g32, int4g64 or int4g128)");
}

}  // namespace gf
