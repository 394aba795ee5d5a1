// A rank lost mid-run: every rank runs an engine with an AllReduce twice; between the runs
// rank 1 kills itself (SIGKILL, no clean-up), or with the argument "hang" stops answering
// (sleeps). The others must end the job within the collective timeout, naming the lost rank
// and the collective they waited on (check_fault.cmake checks the launcher's exit status,
// the time and the message). With the argument "cuda" the engine runs on the GPUs (one per
// rank: NCCL, or the one-shot peer all-reduce for this small message unless
// SHARDRT_PEER_ALLREDUCE=0); "elems=N" sets the all-reduce's length (default 64 floats).
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <cstring>
#include <chrono>
#include <thread>

#include "dist/bootstrap.h"
#include "ir/graph.h"
#include "shardrt/engine.h"

using namespace shardrt;

int main(int argc, char** argv) {
  bool hang = false, cuda = false;
  int64_t elems = 64;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "hang") == 0) hang = true;
    else if (std::strcmp(argv[i], "cuda") == 0) cuda = true;
    else if (std::strncmp(argv[i], "elems=", 6) == 0) elems = std::atoll(argv[i] + 6);
  }
  auto world = dist::communicator_from_env();
  Graph g;
  Value* x = g.add_input("x", DType::F32, {elems});
  g.outputs = {g.add_node("shardrt.AllReduce", "fault_allreduce", {x}, {"y"},
                          {{"group", Attr::of(std::string("world"))}})
                   ->outputs[0]};
  Engine e = build_engine_from_graph(std::move(g), BuildConfig{});
  ContextOptions opt;
  opt.device = "cuda";
  opt.comm = world.get();
  auto ctxp = cuda ? std::make_unique<ExecutionContext>(e, opt) : std::make_unique<ExecutionContext>(e, *world);
  ExecutionContext& ctx = *ctxp;
  Tensor in(DType::F32, {elems});
  auto out = ctx.run({{"x", in}});
  std::fprintf(stderr, "rank %d: first run done\n", world->rank());
  if (world->rank() == 1) {
    if (hang) std::this_thread::sleep_for(std::chrono::seconds(600));
    std::raise(SIGKILL);
  }
  out = ctx.run({{"x", in}});
  std::fprintf(stderr, "rank %d: the second run completed although rank 1 died\n", world->rank());
  return 0;
}
