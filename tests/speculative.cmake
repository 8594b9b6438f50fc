# Speculative decoding: greedy equality, sampling distribution (chi-square), rollback, refusals;
# multi-rank under mpirun. Plus the CPU benchmark (not a test).
add_executable(speculative_test ${CMAKE_CURRENT_LIST_DIR}/speculative/speculative_test.cpp)
target_link_libraries(speculative_test PRIVATE gf_engine gf_sharding GTest::gtest)
add_test(NAME speculative_np1 COMMAND ${GF_MPIRUN} -np 1 $<TARGET_FILE:speculative_test>)
add_test(NAME speculative_np2 COMMAND ${GF_MPIRUN} -np 2 $<TARGET_FILE:speculative_test>)
set_tests_properties(speculative_np1 speculative_np2 PROPERTIES TIMEOUT 300 ENVIRONMENT OMP_NUM_THREADS=1)

# Not a test: SmolLM2-135M bf16 target with its own int4 shard as draft, e.g.
#   gptfast-shard --from models/src/SmolLM2-135M-Instruct.Q4_1.gguf --model smollm2 --tp 1
#   gptfast-shard --from models/src/SmolLM2-135M-Instruct.Q4_1.gguf --model smollm2 --tp 1 --int4 --group-size 32
#   bench_speculative models/smollm2/tp1-bf16 models/smollm2/tp1-int4g32 5 128
add_executable(bench_speculative ${CMAKE_CURRENT_LIST_DIR}/bench/bench_speculative.cpp)
target_link_libraries(bench_speculative PRIVATE gf_engine)
