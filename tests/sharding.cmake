# tests/sharding.cmake: shard file, checkpoint readers, quantizers and gptfast-shard (units + CLI cases).
include(GoogleTest)
file(GLOB GF_SHARDING_TEST_SRC CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/sharding/*.cpp)
add_executable(test_sharding ${GF_SHARDING_TEST_SRC})
target_link_libraries(test_sharding PRIVATE gf_sharding GTest::gtest_main)
gtest_discover_tests(test_sharding TEST_PREFIX "sharding." PROPERTIES TIMEOUT 120 DISCOVERY_TIMEOUT 60)

# gptfast-shard end to end on tiny HF checkpoints (tests/tools/make_tiny_llama.py).
foreach(case basics variants crash_resume disk_full verify_flip)
  add_test(NAME sharding.cli.${case}
           COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/sharding/cli_cases.sh $<TARGET_FILE:gptfast-shard>
                   ${CMAKE_CURRENT_SOURCE_DIR}/tools/make_tiny_llama.py ${case})
  set_tests_properties(sharding.cli.${case} PROPERTIES TIMEOUT 180)
endforeach()
