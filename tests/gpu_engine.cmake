# GPU engine tests (label gpu): the CUDA backend against the CPU reference, at tp=1 and (with two
# GPUs) tp=2 under mpirun. Built only with the CUDA backend; run with `ctest -L gpu` on a GPU machine.
if(GPTFAST_WITH_CUDA)
  add_executable(gf_engine_cuda_test gpu/engine_cuda_test.cpp)
  target_link_libraries(gf_engine_cuda_test PRIVATE gf_engine GTest::gtest)
  # The engine against the CPU at tp=1 and tp=2: by default (PDL, split sampler, tensor-core GEMV for
  # 2 <= M <= 16), with every one of those switched back (_plain), and, at tp=1, the tensor-core GEMV at
  # M = 1 too (_mma) and the tiled GEMV at M = 1 in place of gemv1 (_tiled). The variables travel to every
  # rank with -x.
  set(gf_env_ "")
  set(gf_env__plain GPTFAST_PDL=0 GPTFAST_SAMPLER=gather GPTFAST_GEMV=simt)
  set(gf_env__mma GPTFAST_GEMV=mma)
  set(gf_env__tiled GPTFAST_GEMV=tiled)
  foreach(variant "" _plain _mma _tiled)
    set(env NCCL_NVLS_ENABLE=0 GPTFAST_COLLECTIVE_TIMEOUT_S=60 ${gf_env_${variant}})
    set(forward "")
    foreach(kv IN LISTS gf_env_${variant})
      string(REGEX REPLACE "=.*" "" key "${kv}")
      list(APPEND forward -x ${key})
    endforeach()
    foreach(np 1 2)
      if(np EQUAL 2 AND (variant STREQUAL "_mma" OR variant STREQUAL "_tiled"))
        continue()  # tp=2 GPU minutes are scarce
      endif()
      add_test(NAME gpu_engine_tp${np}${variant}
               COMMAND ${GF_MPIRUN} -np ${np} -x NCCL_NVLS_ENABLE=0 ${forward} $<TARGET_FILE:gf_engine_cuda_test>)
      set_tests_properties(gpu_engine_tp${np}${variant} PROPERTIES LABELS gpu TIMEOUT 600 SKIP_RETURN_CODE 77
                           ENVIRONMENT "${env}")
    endforeach()
  endforeach()

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
