# The tensor-parallel all-reduce on GPUs (label gpu): one-shot CUDA IPC vs NCCL, correctness at tp=2,
# and the latency micro-benchmark (mpirun -np N bench_allreduce; not a ctest: it times, it does not judge).
if(GPTFAST_WITH_CUDA)
  add_executable(gf_allreduce_test gpu/allreduce_test.cpp)
  target_link_libraries(gf_allreduce_test PRIVATE gf_engine GTest::gtest)
  add_test(NAME gpu_allreduce_tp2 COMMAND ${GF_MPIRUN} -np 2 -x NCCL_NVLS_ENABLE=0 $<TARGET_FILE:gf_allreduce_test>)
  # ..._nopdl: without programmatic dependent launch (on by default: the one-shot kernel's flag protocol
  # under early launch is the default path).
  add_test(NAME gpu_allreduce_tp2_nopdl COMMAND ${GF_MPIRUN} -np 2 -x NCCL_NVLS_ENABLE=0 -x GPTFAST_PDL
           $<TARGET_FILE:gf_allreduce_test>)
  set_tests_properties(gpu_allreduce_tp2 PROPERTIES LABELS gpu TIMEOUT 300 SKIP_RETURN_CODE 77
                       ENVIRONMENT "NCCL_NVLS_ENABLE=0;GPTFAST_COLLECTIVE_TIMEOUT_S=60")
  set_tests_properties(gpu_allreduce_tp2_nopdl PROPERTIES LABELS gpu TIMEOUT 300 SKIP_RETURN_CODE 77
                       ENVIRONMENT "NCCL_NVLS_ENABLE=0;GPTFAST_COLLECTIVE_TIMEOUT_S=60;GPTFAST_PDL=0")

  add_executable(bench_allreduce bench/bench_allreduce.cpp)
  target_link_libraries(bench_allreduce PRIVATE gf_engine)
  set_target_properties(bench_allreduce PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR})
endif()
