// The Python-side Network: the C++ Network plus a generation count, so that handles made
// before build_engine() took the graph are refused instead of dangling.
#pragma once
#include <memory>
#include <string>

#include "ir/graph.h"
#include "shardrt/network.h"

namespace shardrt::py {

struct PyNetwork;

struct PyITensor {
  ITensor t;
  std::shared_ptr<PyNetwork> net;  // keeps the graph the handle points into alive
  int generation = 0;
};

struct PyNetwork : std::enable_shared_from_this<PyNetwork> {
  std::string name;
  Network net;
  int generation = 0;  // bumped when the graph is handed to a build

  PyITensor handle(ITensor t);
  // The handle's tensor, or Error when it is from another network or an older generation.
  ITensor check(const PyITensor& t, const std::string& what) const;
  // The graph for a build; the network is empty (and older handles invalid) afterwards.
  std::unique_ptr<Graph> take() {
    ++generation;
    return net.release();
  }
};

}  // namespace shardrt::py
