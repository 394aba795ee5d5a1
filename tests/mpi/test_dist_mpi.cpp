// The shared distributed test body (dist_cases.h) under mpirun, against the MPI
// communicator and the single one. Every rank runs every test; only rank 0 prints, and the
// job fails when any rank failed. A rank that stops early (a failed ASSERT skipping a
// collective) makes the others time out (SHARDRT_COLLECTIVE_TIMEOUT, set short by ctest)
// rather than hang.
#include <gtest/gtest.h>

#include <cstdio>

#include "dist/bootstrap.h"
#include "dist_cases.h"

shardrt::dist::Communicator& dist_test_comm(const std::string& kind) {
  static auto mpi = shardrt::dist::make_mpi_communicator();
  static auto single = shardrt::dist::make_single_communicator();
  if (kind == "mpi") return *mpi;
  if (kind == "single") return *single;
  throw shardrt::Error("no communicator '" + kind + "' in this binary");
}

using dist_cases::DistCollectives;
INSTANTIATE_TEST_SUITE_P(Comm, DistCollectives, ::testing::Values(std::string("mpi"), std::string("single")),
                         [](const auto& i) { return i.param; });

TEST(DistMpi, BootstrapFindsMpirun) {
  auto li = shardrt::dist::detect_launch();
  EXPECT_EQ(li.launcher, "mpirun");
  EXPECT_EQ(li.world_size, dist_test_comm("mpi").size());
  EXPECT_EQ(li.rank, dist_test_comm("mpi").rank());
  EXPECT_EQ(dist_test_comm("mpi").backend(), "mpi");
}

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  shardrt::dist::Communicator& world = dist_test_comm("mpi");
  if (world.rank() != 0) {
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
  }
  int rc = RUN_ALL_TESTS();
  int64_t mine = rc != 0, any = 0;
  world.all_reduce(&mine, &any, 1, shardrt::DType::I64, shardrt::dist::ReduceOp::Max);
  if (world.rank() == 0 && any && !rc) std::fprintf(stderr, "another rank failed\n");
  return any ? 1 : 0;
}
