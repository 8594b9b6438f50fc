# GPU engine tests (label gpu): the CUDA backend against the CPU reference, at tp=1 and (with two
# GPUs) tp=2 under mpirun. Built only with the CUDA backend; run with `ctest -L gpu` on a GPU machine.
if(GPTFAST_WITH_CUDA)
  add_executable(gf_engine_cuda_test gpu/engine_cuda_test.cpp)
  target_link_libraries(gf_engine_cuda_test PRIVATE gf_engine GTest::gtest)
  add_test(NAME gpu_engine_tp1 COMMAND ${GF_MPIRUN} -np 1 $<TARGET_FILE:gf_engine_cuda_test>)
  add_test(NAME gpu_engine_tp2 COMMAND ${GF_MPIRUN} -np 2 -x NCCL_NVLS_ENABLE=0 $<TARGET_FILE:gf_engine_cuda_test>)
  set_tests_properties(gpu_engine_tp1 gpu_engine_tp2 PROPERTIES LABELS gpu TIMEOUT 600 SKIP_RETURN_CODE 77
                       ENVIRONMENT "NCCL_NVLS_ENABLE=0;GPTFAST_COLLECTIVE_TIMEOUT_S=60")

  # The same engine tests with the opt-in paths on (tensor-core GEMV, split sampler), until they become the default.
  add_test(NAME gpu_engine_tp1_optin COMMAND ${GF_MPIRUN} -np 1 $<TARGET_FILE:gf_engine_cuda_test>)
  add_test(NAME gpu_engine_tp2_optin COMMAND ${GF_MPIRUN} -np 2 -x NCCL_NVLS_ENABLE=0 -x GPTFAST_GEMV -x GPTFAST_SAMPLER
           $<TARGET_FILE:gf_engine_cuda_test>)
  set_tests_properties(gpu_engine_tp1_optin gpu_engine_tp2_optin PROPERTIES LABELS gpu TIMEOUT 600 SKIP_RETURN_CODE 77
                       ENVIRONMENT "NCCL_NVLS_ENABLE=0;GPTFAST_COLLECTIVE_TIMEOUT_S=60;GPTFAST_GEMV=mma;GPTFAST_SAMPLER=split")

  # Programmatic dependent launch (GPTFAST_PDL=1, kernels/cuda/launch.cuh): the engine against the CPU with every
  # decode kernel overlapping its predecessor (graph replay and eager), alone and with the tensor-core GEMV; the
  # kernel tests and the one-shot all-reduce (its flag protocol under early launch) with it too.
  add_test(NAME gpu_engine_tp1_pdl COMMAND ${GF_MPIRUN} -np 1 $<TARGET_FILE:gf_engine_cuda_test>)
  add_test(NAME gpu_engine_tp2_pdl COMMAND ${GF_MPIRUN} -np 2 -x NCCL_NVLS_ENABLE=0 -x GPTFAST_PDL
           $<TARGET_FILE:gf_engine_cuda_test>)
  set_tests_properties(gpu_engine_tp1_pdl gpu_engine_tp2_pdl PROPERTIES LABELS gpu TIMEOUT 600 SKIP_RETURN_CODE 77
                       ENVIRONMENT "NCCL_NVLS_ENABLE=0;GPTFAST_COLLECTIVE_TIMEOUT_S=60;GPTFAST_PDL=1")
  add_test(NAME gpu_engine_tp1_pdl_mma COMMAND ${GF_MPIRUN} -np 1 $<TARGET_FILE:gf_engine_cuda_test>)
  set_tests_properties(gpu_engine_tp1_pdl_mma PROPERTIES LABELS gpu TIMEOUT 600 SKIP_RETURN_CODE 77
                       ENVIRONMENT "NCCL_NVLS_ENABLE=0;GPTFAST_COLLECTIVE_TIMEOUT_S=60;GPTFAST_PDL=1;GPTFAST_GEMV=mma")
  if(TARGET gf_kernels_cuda)  # the targets of gpu_kernels.cmake and gpu_allreduce.cmake (names resolve at generation)
    add_test(NAME gpu_kernels_matmul_pdl COMMAND gf_test_gpu_kernels_matmul)
    add_test(NAME gpu_kernels_ops_pdl COMMAND gf_test_gpu_kernels_ops)
    set_tests_properties(gpu_kernels_matmul_pdl gpu_kernels_ops_pdl PROPERTIES LABELS gpu TIMEOUT 600
                         ENVIRONMENT GPTFAST_PDL=1)
  endif()
  add_test(NAME gpu_allreduce_tp2_pdl COMMAND ${GF_MPIRUN} -np 2 -x NCCL_NVLS_ENABLE=0 -x GPTFAST_PDL
           $<TARGET_FILE:gf_allreduce_test>)
  set_tests_properties(gpu_allreduce_tp2_pdl PROPERTIES LABELS gpu TIMEOUT 300 SKIP_RETURN_CODE 77
                       ENVIRONMENT "NCCL_NVLS_ENABLE=0;GPTFAST_COLLECTIVE_TIMEOUT_S=60;GPTFAST_PDL=1")

  # A silent peer (rank 1 sleeps through a decode step) ends both ranks within the deadline.
  add_executable(gf_engine_fault_test gpu/engine_fault_test.cpp)
  target_link_libraries(gf_engine_fault_test PRIVATE gf_engine GTest::gtest)
  add_test(NAME gpu_engine_silent_peer COMMAND ${GF_MPIRUN} -np 2 -x NCCL_NVLS_ENABLE=0 $<TARGET_FILE:gf_engine_fault_test>)
  set_tests_properties(gpu_engine_silent_peer PROPERTIES LABELS gpu TIMEOUT 90 SKIP_RETURN_CODE 77
                       ENVIRONMENT "NCCL_NVLS_ENABLE=0")

  # The CLI on two GPUs: kill -9 and SIGSTOP of rank 1 mid-decode end the job in one line (RELIABILITY 15, 16).
  add_test(NAME gpu_cli_faults COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/engine/cli_test.py
           --exe $<TARGET_FILE:gptfast-tp> --configs ${CMAKE_SOURCE_DIR}/configs --mpirun "${GF_MPIRUN}"
           --backend cuda --faults-only)
  set_tests_properties(gpu_cli_faults PROPERTIES LABELS gpu TIMEOUT 180 SKIP_RETURN_CODE 77
                       ENVIRONMENT "NCCL_NVLS_ENABLE=0")

  # Engine costs for launch/device/gpu_check.sh (not a ctest: it times, it does not judge).
  add_executable(gf_engine_bench gpu/engine_bench.cpp)
  target_link_libraries(gf_engine_bench PRIVATE gf_engine)
  set_target_properties(gf_engine_bench PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR})
endif()
