# libFuzzer targets for every parser (RELIABILITY.md item 18). OFF by default; a separate build dir
# configured with clang and -DGPTFAST_FUZZ=ON builds them (launch/fuzz.sh does it all), with the
# parser libraries instrumented by ASan/UBSan so a bad read deep inside them is caught where it happens.
option(GPTFAST_FUZZ "build the libFuzzer targets (clang; instruments the parser libraries)" OFF)
if(NOT GPTFAST_FUZZ)
  return()
endif()
if(NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
  message(FATAL_ERROR "GPTFAST_FUZZ=ON needs clang (configure with CC=clang CXX=clang++), got ${CMAKE_CXX_COMPILER_ID}")
endif()

# UB aborts instead of printing and going on, so libFuzzer saves the input.
set(GF_SANITIZE -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g)
foreach(lib gf_core gf_io gf_tokenizer gf_sharding)
  target_compile_options(${lib} PRIVATE ${GF_SANITIZE} -fsanitize=fuzzer-no-link)
  target_link_options(${lib} INTERFACE -fsanitize=address,undefined)
endforeach()

set(GF_FUZZ_SEEDS ${CMAKE_CURRENT_BINARY_DIR}/fuzz_seeds)
add_test(NAME fuzz_make_seeds COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/make_seeds.py ${GF_FUZZ_SEEDS})
set_tests_properties(fuzz_make_seeds PROPERTIES FIXTURES_SETUP fuzz_seeds TIMEOUT 120)

foreach(target fuzz_safetensors fuzz_gguf fuzz_tokenizer_json fuzz_tokenizer_text fuzz_hf_checkpoint)
  add_executable(${target} fuzz/${target}.cpp)
  target_include_directories(${target} PRIVATE ${CMAKE_CURRENT_SOURCE_DIR} ${CMAKE_SOURCE_DIR}/src)
  target_compile_options(${target} PRIVATE ${GF_SANITIZE} -fsanitize=fuzzer-no-link)
  target_link_options(${target} PRIVATE -fsanitize=fuzzer,address,undefined)
  target_link_libraries(${target} PRIVATE gf_sharding gf_tokenizer)
  target_compile_definitions(${target} PRIVATE GF_FUZZ_DATA_DIR="${CMAKE_CURRENT_SOURCE_DIR}/fuzz/data")
  # Regression: every seed runs clean (a quick check that the corpus and the target agree).
  add_test(NAME ${target}_seeds COMMAND ${target} -runs=0 ${GF_FUZZ_SEEDS}/${target})
  set_tests_properties(${target}_seeds PROPERTIES FIXTURES_REQUIRED fuzz_seeds TIMEOUT 120 LABELS fuzz)
endforeach()
