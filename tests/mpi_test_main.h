// The main of the multi-rank GoogleTest programs: every rank runs every test (the collectives need them
// all), only rank 0 prints, a failure on any rank fails the job, and a run in which every test skipped
// (no GPU, fewer GPUs than ranks) exits 77 so ctest says "skipped" rather than "passed".
#pragma once
#include <gtest/gtest.h>

#include "comm/comm.h"

namespace gf {

inline int run_tests_under_mpi(int argc, char** argv, Comm*& global) {
  MpiSession mpi(&argc, &argv);
  ::testing::InitGoogleTest(&argc, argv);
  int rc;
  {
    Comm comm = Comm::world();
    global = &comm;
    if (comm.rank() != 0) {
      auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
      delete listeners.Release(listeners.default_result_printer());
    }
    rc = RUN_ALL_TESTS();
    int worst = rc;
    MPI_Allreduce(&rc, &worst, 1, MPI_INT, MPI_MAX, comm.mpi());
    rc = worst;
    const auto* u = ::testing::UnitTest::GetInstance();
    if (rc == 0 && u->successful_test_count() == 0 && u->skipped_test_count() > 0) rc = 77;
    global = nullptr;
  }
  return rc;
}

}  // namespace gf
