# CPU kernel tests: each op against a float64 reference written in the test; plus the matmul benchmark.
add_executable(test_kernels_cpu
  ${CMAKE_CURRENT_LIST_DIR}/kernels_cpu/test_matmul.cpp
  ${CMAKE_CURRENT_LIST_DIR}/kernels_cpu/test_elementwise.cpp
  ${CMAKE_CURRENT_LIST_DIR}/kernels_cpu/test_attention.cpp
  ${CMAKE_CURRENT_LIST_DIR}/kernels_cpu/test_sample.cpp
  ${CMAKE_CURRENT_LIST_DIR}/kernels_cpu/test_mma_layout.cpp)
target_link_libraries(test_kernels_cpu PRIVATE gf_kernels_cpu GTest::gtest_main)

# One ctest entry per suite so a failure names the op.
foreach(suite Formats/MatmulTest MatmulChecks Embed Rmsnorm AddRmsnorm Add SiluMul Rope KvWrite RoundKvInt8
              Heads/AttentionTest AttentionChecks Sample MmaLayout)
  string(REPLACE "/" "_" name "kernels_cpu_${suite}")
  add_test(NAME ${name} COMMAND test_kernels_cpu --gtest_filter=${suite}.*)
  set_tests_properties(${name} PROPERTIES TIMEOUT 120 ENVIRONMENT OMP_NUM_THREADS=2)
endforeach()

# Not a test: prints GB/s of weight bytes. Run: bench_cpu_matmul [M] [seconds].
add_executable(bench_cpu_matmul ${CMAKE_CURRENT_LIST_DIR}/bench/bench_cpu_matmul.cpp)
target_link_libraries(bench_cpu_matmul PRIVATE gf_kernels_cpu)
