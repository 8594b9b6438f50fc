# Engine, comm and CLI tests: units, multi-rank forward checks, CLI behaviour and failure handling.
set(GF_ENGINE_TESTS ${CMAKE_CURRENT_SOURCE_DIR}/engine)

add_executable(engine_unit_test ${GF_ENGINE_TESTS}/engine_unit_test.cpp
               ${CMAKE_SOURCE_DIR}/src/cli/options.cpp ${CMAKE_SOURCE_DIR}/src/cli/text_io.cpp)
target_link_libraries(engine_unit_test PRIVATE gf_engine GTest::gtest_main)
target_compile_definitions(engine_unit_test PRIVATE GF_CONFIG_DIR="${CMAKE_SOURCE_DIR}/configs")
add_test(NAME engine_unit COMMAND engine_unit_test)
set_tests_properties(engine_unit PROPERTIES TIMEOUT 60)

add_executable(engine_mpi_test ${GF_ENGINE_TESTS}/engine_mpi_test.cpp)
target_link_libraries(engine_mpi_test PRIVATE gf_engine GTest::gtest)
add_test(NAME engine_mpi_np1 COMMAND ${GF_MPIRUN} -np 1 $<TARGET_FILE:engine_mpi_test>)
add_test(NAME engine_mpi_np2 COMMAND ${GF_MPIRUN} -np 2 $<TARGET_FILE:engine_mpi_test>)
set_tests_properties(engine_mpi_np1 engine_mpi_np2 PROPERTIES TIMEOUT 120 ENVIRONMENT OMP_NUM_THREADS=1)

# The CLI end to end on synthetic models, and the failure tests (RELIABILITY items 7, 14, 15).
add_test(NAME engine_cli COMMAND ${Python3_EXECUTABLE} ${GF_ENGINE_TESTS}/cli_test.py
         --exe $<TARGET_FILE:gptfast-tp> --configs ${CMAKE_SOURCE_DIR}/configs --mpirun "${GF_MPIRUN}")
set_tests_properties(engine_cli PROPERTIES TIMEOUT 300)
