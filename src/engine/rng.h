// Counter-based randomness: the u of every sampling step is a pure function of (seed, sample, step),
// so every rank draws the same u without communication and any step can be replayed.
#pragma once
#include <cstdint>

namespace gf {

// splitmix64's finalizer (Steele, Lea, Flood 2014): a bijective 64-bit mix.
inline uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// The top 53 bits as a double in [0, 1).
inline double to_unit_double(uint64_t h) { return double(h >> 11) * 0x1.0p-53; }

// u in [0, 1) for step `step` of sample `sample` under `seed`.
inline double sample_uniform(uint64_t seed, uint64_t sample, uint64_t step) {
  return to_unit_double(splitmix64(splitmix64(splitmix64(seed) ^ sample) ^ step));
}

}  // namespace gf
