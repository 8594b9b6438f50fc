# Tokenizer: parity with the Python `tokenizers` package on trained fixtures of both BPE forms,
# malformed tokenizer.json corpus, long prompts, streaming decode and chat templates.
set(GF_TOK_FIXTURES ${CMAKE_BINARY_DIR}/tests/tokenizer_fixtures)
set(GF_TOK_NAMES bytelevel_llama3 bytelevel_smollm2 bytelevel_gpt2 sp_llama2 sp_metaspace sp_unk)

add_test(NAME tokenizer_make_fixtures
         COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/tokenizer/make_fixtures.py ${GF_TOK_FIXTURES})
set_tests_properties(tokenizer_make_fixtures PROPERTIES FIXTURES_SETUP tokenizer_fixtures TIMEOUT 300)

# Reusable: tokenizer_parity EXPECTED.json (make_fixtures.py --tokenizer T --out EXPECTED.json).
add_executable(tokenizer_parity tokenizer/tokenizer_parity.cpp)
target_link_libraries(tokenizer_parity PRIVATE gf_tokenizer)
foreach(name ${GF_TOK_NAMES})
  add_test(NAME tokenizer_parity_${name} COMMAND tokenizer_parity ${GF_TOK_FIXTURES}/${name}.expected.json)
  set_tests_properties(tokenizer_parity_${name} PROPERTIES FIXTURES_REQUIRED tokenizer_fixtures TIMEOUT 120)
endforeach()

add_executable(tokenizer_test tokenizer/tokenizer_test.cpp)
target_link_libraries(tokenizer_test PRIVATE gf_tokenizer GTest::gtest_main)
add_test(NAME tokenizer_test COMMAND tokenizer_test)
set_tests_properties(tokenizer_test PROPERTIES FIXTURES_REQUIRED tokenizer_fixtures TIMEOUT 120
                     ENVIRONMENT GF_TOKENIZER_FIXTURES=${GF_TOK_FIXTURES})

# Real vocabularies (e.g. SmolLM2's tokenizer.json, or one converted from a GGUF) checked the same way:
#   cmake -DGF_TOKENIZER_EXTRA="/path/a/tokenizer.json;/path/b/tokenizer.json"
set(GF_TOKENIZER_EXTRA "" CACHE STRING "more tokenizer.json files to check against the tokenizers package")
set(extra_index 0)
foreach(path ${GF_TOKENIZER_EXTRA})
  math(EXPR extra_index "${extra_index} + 1")
  set(expected ${GF_TOK_FIXTURES}/extra${extra_index}.expected.json)
  add_test(NAME tokenizer_extra${extra_index}_expected
           COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/tokenizer/make_fixtures.py --tokenizer ${path} --out ${expected})
  set_tests_properties(tokenizer_extra${extra_index}_expected PROPERTIES FIXTURES_SETUP tokenizer_extra${extra_index} TIMEOUT 300)
  add_test(NAME tokenizer_extra${extra_index}_parity COMMAND tokenizer_parity ${expected})
  set_tests_properties(tokenizer_extra${extra_index}_parity PROPERTIES FIXTURES_REQUIRED tokenizer_extra${extra_index} TIMEOUT 300)
endforeach()
