# Real-model tests on SmolLM2-135M-Instruct (tests/smollm2/smollm2_test.py), after launch/fetch_smollm2.sh.
# A fixture shards the GGUF in every format for tp=1 and 2; then greedy tp=1 vs tp=2 per format, bf16 logits
# against a numpy forward pass over the GGUF, and perplexity per format against bf16's (itself a fixture).
# Every test exits 77 (SKIP) when the model file is absent. All carry LABELS smollm2: ctest -L smollm2.
set(GF_SMOLLM2_GGUF ${CMAKE_SOURCE_DIR}/models/src/SmolLM2-135M-Instruct.Q4_1.gguf)
string(REPLACE ";" " " GF_SMOLLM2_MPIRUN "${GF_MPIRUN}")
set(GF_SMOLLM2_RUN ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/smollm2/smollm2_test.py
    --work ${CMAKE_BINARY_DIR}/smollm2 --gguf ${GF_SMOLLM2_GGUF})
set(GF_SMOLLM2_TP --tp $<TARGET_FILE:gptfast-tp> --mpirun ${GF_SMOLLM2_MPIRUN})

add_test(NAME smollm2_make COMMAND ${GF_SMOLLM2_RUN} make --shard $<TARGET_FILE:gptfast-shard>)
set_tests_properties(smollm2_make PROPERTIES FIXTURES_SETUP smollm2_shards TIMEOUT 180)

foreach(format bf16 int8 int4g32 int4g64 int4g128)
  add_test(NAME smollm2_greedy_${format} COMMAND ${GF_SMOLLM2_RUN} greedy --format ${format} ${GF_SMOLLM2_TP})
  set_tests_properties(smollm2_greedy_${format} PROPERTIES FIXTURES_REQUIRED smollm2_shards TIMEOUT 120)
endforeach()

add_test(NAME smollm2_logits_bf16 COMMAND ${GF_SMOLLM2_RUN} logits ${GF_SMOLLM2_TP})
set_tests_properties(smollm2_logits_bf16 PROPERTIES FIXTURES_REQUIRED smollm2_shards TIMEOUT 180)

# bf16's perplexity (tp=1 and tp=2) is the baseline every quantized format is measured against.
add_test(NAME smollm2_ppl_bf16 COMMAND ${GF_SMOLLM2_RUN} ppl --format bf16 ${GF_SMOLLM2_TP})
set_tests_properties(smollm2_ppl_bf16 PROPERTIES FIXTURES_REQUIRED smollm2_shards FIXTURES_SETUP smollm2_ppl_base
                     TIMEOUT 180)
foreach(format int8 int4g32 int4g64 int4g128)
  add_test(NAME smollm2_ppl_${format} COMMAND ${GF_SMOLLM2_RUN} ppl --format ${format} ${GF_SMOLLM2_TP})
  set_tests_properties(smollm2_ppl_${format} PROPERTIES FIXTURES_REQUIRED "smollm2_shards;smollm2_ppl_base"
                       TIMEOUT 180)
endforeach()

# RELIABILITY 17: SIGTERM mid-batch leaves whole records in --output; a rerun finishes the rest exactly once.
add_test(NAME smollm2_resume COMMAND ${GF_SMOLLM2_RUN} resume ${GF_SMOLLM2_TP})
set_tests_properties(smollm2_resume PROPERTIES FIXTURES_REQUIRED smollm2_shards TIMEOUT 240)

# The tokenizer check (ours vs `tokenizers` built from the GGUF vocab) lives in gguf.cmake; it joins the label.
set(GF_SMOLLM2_TESTS smollm2_make smollm2_logits_bf16 smollm2_ppl_bf16 smollm2_resume)
foreach(format bf16 int8 int4g32 int4g64 int4g128)
  list(APPEND GF_SMOLLM2_TESTS smollm2_greedy_${format})
endforeach()
foreach(format int8 int4g32 int4g64 int4g128)
  list(APPEND GF_SMOLLM2_TESTS smollm2_ppl_${format})
endforeach()
if(TEST gguf_smollm2)
  list(APPEND GF_SMOLLM2_TESTS gguf_smollm2)
endif()
set_tests_properties(${GF_SMOLLM2_TESTS} PROPERTIES LABELS smollm2 SKIP_RETURN_CODE 77)
