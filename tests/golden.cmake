# Golden end-to-end tests (tests/golden/golden_test.py): per variant a fixture makes the tiny HF checkpoint
# and every shard set, then each format runs under mpirun at tp=1 and tp=2 against the numpy reference.
set(GF_GOLDEN ${CMAKE_CURRENT_SOURCE_DIR}/golden/golden_test.py)
set(GF_GOLDEN_WORK ${CMAKE_BINARY_DIR}/golden)
string(REPLACE ";" " " GF_MPIRUN_STR "${GF_MPIRUN}")
set(GF_GOLDEN_RUN ${Python3_EXECUTABLE} ${GF_GOLDEN} --work ${GF_GOLDEN_WORK})

foreach(variant mha gqa tied llama3)
  add_test(NAME golden_make_${variant}
           COMMAND ${GF_GOLDEN_RUN} make --variant ${variant} --shard $<TARGET_FILE:gptfast-shard>)
  set_tests_properties(golden_make_${variant} PROPERTIES FIXTURES_SETUP golden_${variant} TIMEOUT 300)
  foreach(format bf16 int8 int4g32)
    add_test(NAME golden_${variant}_${format}
             COMMAND ${GF_GOLDEN_RUN} check --variant ${variant} --format ${format}
                     --tp $<TARGET_FILE:gptfast-tp> --mpirun ${GF_MPIRUN_STR})
    set_tests_properties(golden_${variant}_${format} PROPERTIES FIXTURES_REQUIRED golden_${variant} TIMEOUT 300)
  endforeach()
endforeach()

# The tokenizer path: a text prompt, and --chat through the ChatML template.
add_test(NAME golden_text_prompt
         COMMAND ${GF_GOLDEN_RUN} text --variant llama3 --tp $<TARGET_FILE:gptfast-tp> --mpirun ${GF_MPIRUN_STR})
add_test(NAME golden_chat
         COMMAND ${GF_GOLDEN_RUN} text --chat --variant llama3 --tp $<TARGET_FILE:gptfast-tp> --mpirun ${GF_MPIRUN_STR})
set_tests_properties(golden_text_prompt golden_chat PROPERTIES FIXTURES_REQUIRED golden_llama3 TIMEOUT 300)

# RELIABILITY 12: a rank count no shard set fits is one line naming the gptfast-shard command.
add_test(NAME golden_tp_mismatch
         COMMAND ${GF_GOLDEN_RUN} mismatch --variant mha --tp $<TARGET_FILE:gptfast-tp> --mpirun ${GF_MPIRUN_STR})
set_tests_properties(golden_tp_mismatch PROPERTIES FIXTURES_REQUIRED golden_mha TIMEOUT 120)

# The test tools themselves: the reference against its own quantizer, the checkpoint maker's shapes.
add_test(NAME golden_numpy_ref_selfcheck COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/golden/selfcheck.py
         --work ${GF_GOLDEN_WORK}/selfcheck)
set_tests_properties(golden_numpy_ref_selfcheck PROPERTIES TIMEOUT 120)
