// Communicators (single, MPI, environment, Python callbacks, dp × tp meshes) and the
// per-rank build of a tensor-parallel engine under a sharding plan.
#include <memory>

#include "build/multi_rank.h"
#include "dist/bootstrap.h"
#include "dist/collective_exec.h"
#include "dist/mesh.h"
#include "dist/plan.h"
#include "onnx/importer.h"
#include "py_common.h"
#include "py_communicator.h"
#include "py_network.h"

namespace shardrt::py {
namespace {

using dist::Communicator;

// A Mesh that keeps its world communicator alive.
struct OwningMesh {
  std::shared_ptr<Communicator> world;
  dist::Mesh mesh;
  OwningMesh(std::shared_ptr<Communicator> w, int dp, int tp) : world(std::move(w)), mesh(*world, dp, tp) {}
};

std::shared_ptr<Communicator> shared(std::unique_ptr<Communicator> c) { return std::shared_ptr<Communicator>(std::move(c)); }

dist::ShardingPlan plan_from_py(const std::string& plan) {
  // JSON text (starts with '{') or a plan file.
  auto first = plan.find_first_not_of(" \t\r\n");
  if (first != std::string::npos && plan[first] == '{') return dist::parse_plan_json(plan, "python");
  return dist::load_plan_file(plan);
}

}  // namespace

void init_dist(pyb::module_& m) {
  pyb::class_<Communicator, std::shared_ptr<Communicator>>(m, "Communicator")
      .def_property_readonly("rank", &Communicator::rank)
      .def_property_readonly("size", &Communicator::size)
      .def_property_readonly("backend", &Communicator::backend)
      .def_property_readonly("group_name", &Communicator::group_name)
      .def_static("single", [] { return shared(dist::make_single_communicator()); }, "A world of one rank.")
      .def_static(
          "from_mpi", [] { return shared(dist::make_mpi_communicator()); },
          "The MPI world (mpirun/srun); raises when shardrt was built without MPI.")
      .def_static("mpi_available", &dist::mpi_available)
      .def_static(
          "from_env", [] { return shared(dist::communicator_from_env()); },
          "The world the launcher left (mpirun/srun: MPI; none: a world of one).")
      .def_static(
          "from_callbacks",
          [](int rank, int size, pyb::object all_reduce, pyb::object all_gather, pyb::object broadcast,
             pyb::object reduce_scatter, pyb::object barrier, pyb::object split, const std::string& backend,
             const std::string& name) {
            Callbacks cb{all_reduce, all_gather, reduce_scatter, broadcast, barrier, split};
            return shared(make_callback_communicator(rank, size, std::move(cb), backend, name));
          },
          pyb::arg("rank"), pyb::arg("size"), pyb::arg("all_reduce"), pyb::arg("all_gather"), pyb::arg("broadcast"),
          pyb::arg("reduce_scatter") = pyb::none(), pyb::arg("barrier") = pyb::none(),
          pyb::arg("split") = pyb::none(), pyb::arg("backend") = "python", pyb::arg("name") = "world",
          "A communicator whose collectives call Python: all_reduce(send, recv, op), all_gather(send, recv, "
          "counts), broadcast(buf, root), reduce_scatter(send, recv, counts, op), barrier(), split(color, key, "
          "name) -> Communicator. Buffers are 1-D HostTensor views valid during the call.")
      .def_static(
          "mesh",
          [](std::shared_ptr<Communicator> world, int dp, int tp) {
            auto holder = std::make_shared<OwningMesh>(std::move(world), dp, tp);
            return std::shared_ptr<Communicator>(holder, &holder->mesh);
          },
          pyb::arg("world"), pyb::arg("dp"), pyb::arg("tp"),
          "The dp x tp mesh over `world` (collective: every rank calls it with the same dp and tp).")
      .def(
          "all_reduce",
          [](Communicator& c, const pyb::object& a, const std::string& op) {
            Tensor t = borrow_tensor(a, "all_reduce buffer");
            pyb::gil_scoped_release nogil;
            c.all_reduce(t.raw(), t.raw(), t.numel(), t.dtype(), dist::reduce_op_from_name(op));
          },
          pyb::arg("buf"), pyb::arg("op") = "sum", "In place over a contiguous host array.")
      .def(
          "broadcast",
          [](Communicator& c, const pyb::object& a, int root) {
            Tensor t = borrow_tensor(a, "broadcast buffer");
            pyb::gil_scoped_release nogil;
            c.broadcast(t.raw(), t.numel(), t.dtype(), root);
          },
          pyb::arg("buf"), pyb::arg("root") = 0)
      .def("barrier", [](Communicator& c) { c.barrier(); }, pyb::call_guard<pyb::gil_scoped_release>())
      .def("__repr__", [](const Communicator& c) {
        return "Communicator(" + c.backend() + ", rank " + std::to_string(c.rank()) + " of " +
               std::to_string(c.size()) + ")";
      });

  m.def(
      "build_rank_engine",
      [](const pyb::object& model, const std::string& plan, int tp, int tp_index, const BuildConfig& cfg, int dp) {
        // The model: a Network (its graph is taken) or an ONNX file.
        std::unique_ptr<Graph> g;
        if (pyb::isinstance<PyNetwork>(model)) g = model.cast<PyNetwork&>().take();
        dist::ShardingPlan p = plan_from_py(plan);
        std::string path = g ? "" : model.cast<std::string>();
        pyb::gil_scoped_release nogil;
        Graph graph = g ? std::move(*g) : import_onnx_file(path);
        return build_rank_engine(std::move(graph), p, MeshShape{dp, tp}, tp_index, cfg);
      },
      pyb::arg("model"), pyb::arg("plan"), pyb::arg("tp"), pyb::arg("tp_index"), pyb::arg("cfg") = BuildConfig{},
      pyb::arg("dp") = 1,
      "Tensor-parallel index `tp_index` of `tp`'s engine of a Network or ONNX file, sharded under a plan "
      "(JSON text or a plan file; docs/parallel.md).");
  m.def("chunk_sizes", &dist::chunk_sizes, pyb::arg("total"), pyb::arg("parts"),
        "torch.chunk's piece sizes of `total` in `parts`.");
}

}  // namespace shardrt::py
