# GPU kernel tests (label gpu: run on the GPU machine with ctest -L gpu) and the kernel micro-benchmark.
if(GPTFAST_WITH_CUDA AND TARGET gf_kernels_cuda)
  foreach(t matmul ops)
    add_executable(gf_test_gpu_kernels_${t} ${CMAKE_CURRENT_SOURCE_DIR}/gpu/kernels_${t}_test.cu)
    target_link_libraries(gf_test_gpu_kernels_${t} PRIVATE gf_kernels_cuda gf_kernels_cpu GTest::gtest_main)
    add_test(NAME gpu_kernels_${t} COMMAND gf_test_gpu_kernels_${t})
    set_tests_properties(gpu_kernels_${t} PROPERTIES LABELS gpu TIMEOUT 600)
  endforeach()
  # The same cases with launch_matmul forced to one GEMV for every M <= 16 (by default M >= 2 goes to the
  # tensor-core one), with the tiled GEMV at M = 1 in place of gemv1 (int8 / int4), and with programmatic dependent
  # launch off (kernels/cuda/launch.cuh).
  foreach(v simt mma tiled)
    add_test(NAME gpu_kernels_matmul_${v} COMMAND gf_test_gpu_kernels_matmul)
    set_tests_properties(gpu_kernels_matmul_${v} PROPERTIES LABELS gpu TIMEOUT 600 ENVIRONMENT GPTFAST_GEMV=${v})
  endforeach()
  foreach(t matmul ops)
    add_test(NAME gpu_kernels_${t}_nopdl COMMAND gf_test_gpu_kernels_${t})
    set_tests_properties(gpu_kernels_${t}_nopdl PROPERTIES LABELS gpu TIMEOUT 600 ENVIRONMENT GPTFAST_PDL=0)
  endforeach()
  add_executable(bench_gpu_kernels ${CMAKE_CURRENT_SOURCE_DIR}/bench/bench_gpu_kernels.cu)
  target_link_libraries(bench_gpu_kernels PRIVATE gf_kernels_cuda)
endif()
