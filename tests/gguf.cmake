# GGUF import: dequantization, tiny-llama config and Q/K order, the malformed corpus (inputs written by
# make_gguf_cases.py), and the real SmolLM2 file when launch/fetch_smollm2.sh has fetched it.
set(GF_GGUF_CASES ${CMAKE_CURRENT_BINARY_DIR}/gguf_cases)
add_test(NAME gguf_make_cases
         COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/gguf/make_gguf_cases.py ${GF_GGUF_CASES})
set_tests_properties(gguf_make_cases PROPERTIES FIXTURES_SETUP gguf_cases TIMEOUT 120)

add_executable(gguf_test gguf/gguf_test.cpp)
target_link_libraries(gguf_test PRIVATE gf_sharding GTest::gtest_main)
add_test(NAME gguf_test COMMAND gguf_test)
set_tests_properties(gguf_test PROPERTIES FIXTURES_REQUIRED gguf_cases TIMEOUT 60
                     ENVIRONMENT GF_GGUF_CASES=${GF_GGUF_CASES})

# The C++ tokenizer joins the SmolLM2 check once src/tokenizer defines Tokenizer::from_json.
add_executable(gguf_dump gguf/gguf_dump.cpp)
target_link_libraries(gguf_dump PRIVATE gf_sharding)
file(GLOB GF_TOKENIZER_SOURCES ${CMAKE_SOURCE_DIR}/src/tokenizer/*.cpp)
foreach(f ${GF_TOKENIZER_SOURCES})
  file(STRINGS ${f} defines_from_json REGEX "Tokenizer::from_json")
  if(defines_from_json)
    target_compile_definitions(gguf_dump PRIVATE GF_HAVE_TOKENIZER=1)
  endif()
endforeach()
add_test(NAME gguf_smollm2
         COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/gguf/check_smollm2.py $<TARGET_FILE:gguf_dump>
                 ${CMAKE_SOURCE_DIR}/models/src/SmolLM2-135M-Instruct.Q4_1.gguf ${CMAKE_CURRENT_BINARY_DIR}/gguf_smollm2)
set_tests_properties(gguf_smollm2 PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 300)
