# GPU kernel tests (label gpu: run on the GPU machine with ctest -L gpu) and the kernel micro-benchmark.
if(GPTFAST_WITH_CUDA AND TARGET gf_kernels_cuda)
  foreach(t matmul ops)
    add_executable(gf_test_gpu_kernels_${t} ${CMAKE_CURRENT_SOURCE_DIR}/gpu/kernels_${t}_test.cu)
    target_link_libraries(gf_test_gpu_kernels_${t} PRIVATE gf_kernels_cuda gf_kernels_cpu GTest::gtest_main)
    add_test(NAME gpu_kernels_${t} COMMAND gf_test_gpu_kernels_${t})
    set_tests_properties(gpu_kernels_${t} PROPERTIES LABELS gpu TIMEOUT 600)
  endforeach()
  # The same cases with the opt-in paths on: launch_matmul sending M <= 16 to the tensor-core GEMV, and every
  # kernel launched with programmatic dependent launch (kernels/cuda/launch.cuh).
  add_test(NAME gpu_kernels_matmul_mma COMMAND gf_test_gpu_kernels_matmul)
  set_tests_properties(gpu_kernels_matmul_mma PROPERTIES LABELS gpu TIMEOUT 600 ENVIRONMENT GPTFAST_GEMV=mma)
  foreach(t matmul ops)
    add_test(NAME gpu_kernels_${t}_pdl COMMAND gf_test_gpu_kernels_${t})
    set_tests_properties(gpu_kernels_${t}_pdl PROPERTIES LABELS gpu TIMEOUT 600 ENVIRONMENT GPTFAST_PDL=1)
  endforeach()
  add_executable(bench_gpu_kernels ${CMAKE_CURRENT_SOURCE_DIR}/bench/bench_gpu_kernels.cu)
  target_link_libraries(bench_gpu_kernels PRIVATE gf_kernels_cuda)
endif()
