# --perplexity, --interactive and the --chat stop set, end to end on a tiny random checkpoint (CPU, tp=1 and 2).
string(REPLACE ";" " " GF_MPIRUN_STR_P "${GF_MPIRUN}")
add_test(NAME perplexity_cli
         COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/perplexity/ppl_test.py
                 --exe $<TARGET_FILE:gptfast-tp> --shard $<TARGET_FILE:gptfast-shard> --mpirun "${GF_MPIRUN_STR_P}"
                 --work ${CMAKE_BINARY_DIR}/perplexity)
set_tests_properties(perplexity_cli PROPERTIES TIMEOUT 300)

add_executable(perplexity_unit_test ${CMAKE_CURRENT_SOURCE_DIR}/perplexity/perplexity_unit_test.cpp)
target_link_libraries(perplexity_unit_test PRIVATE gf_engine GTest::gtest_main)
add_test(NAME perplexity_unit COMMAND perplexity_unit_test)
set_tests_properties(perplexity_unit PROPERTIES TIMEOUT 60)
