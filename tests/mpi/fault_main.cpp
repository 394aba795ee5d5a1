// A rank lost mid-run: every rank runs an engine with an AllReduce twice; between the runs
// rank 1 kills itself (SIGKILL, no clean-up), or with the argument "hang" stops answering
// (sleeps). The others must end the job within the collective timeout, naming the lost rank
// and the collective they waited on (check_fault.cmake checks the launcher's exit status,
// the time and the message).
#include <csignal>
#include <cstdio>
#include <cstring>
#include <chrono>
#include <thread>

#include "dist/bootstrap.h"
#include "ir/graph.h"
#include "shardrt/engine.h"

using namespace shardrt;

int main(int argc, char** argv) {
  bool hang = argc > 1 && std::strcmp(argv[1], "hang") == 0;
  auto world = dist::communicator_from_env();
  Graph g;
  Value* x = g.add_input("x", DType::F32, {64});
  g.outputs = {g.add_node("shardrt.AllReduce", "fault_allreduce", {x}, {"y"},
                          {{"group", Attr::of(std::string("world"))}})
                   ->outputs[0]};
  Engine e = build_engine_from_graph(std::move(g), BuildConfig{});
  ExecutionContext ctx(e, *world);
  Tensor in(DType::F32, {64});
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
