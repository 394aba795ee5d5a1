// The `shardrt._C` extension module: the C++ API as the Python package uses it. One file
// per topic (tensors and DLPack, networks, engines and contexts, communicators).
#include "py_common.h"
#include "py_dlpack.h"
#include "shardrt/engine.h"

PYBIND11_MODULE(_C, m) {
  m.doc() = "shardrt's C++ core: networks, engines, execution contexts, communicators";
  namespace py = shardrt::py;
  pybind11::register_exception<shardrt::Error>(m, "Error", PyExc_RuntimeError);
  py::init_tensor(m);
  py::init_device(m);
  py::init_network(m);
  py::init_engine(m);
  py::init_dist(m);
#ifdef SHARDRT_WITH_MPI
  m.attr("with_mpi") = true;
#else
  m.attr("with_mpi") = false;
#endif
#ifdef SHARDRT_WITH_CUDA
  m.attr("with_cuda") = true;
#else
  m.attr("with_cuda") = false;
#endif
}
