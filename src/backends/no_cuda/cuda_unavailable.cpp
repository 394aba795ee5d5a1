// A build without CUDA (-DSHARDRT_WITH_CUDA=OFF): the CUDA entry points exist, so that
// callers link either way, and say why they cannot work.
#include "backends/cuda/cuda_eval.h"
#include "runtime/exec_backend.h"

namespace shardrt {

namespace {
const char* kNoCuda = "this shardrt was built without CUDA; rebuild with -DSHARDRT_WITH_CUDA=ON";
}

std::unique_ptr<ExecBackend> make_cuda_backend(const Engine::Impl&, dist::Communicator*) { throw Error(kNoCuda); }
void cuda_stream_wait(void*, void*) { throw Error(kNoCuda); }

namespace cuda {
bool device_available() { return false; }
std::string device_description() { return kNoCuda; }
std::vector<Tensor> eval_node(const Node& n, const std::vector<const Tensor*>&) {
  throw Error(n.describe() + ": " + kNoCuda);
}
std::vector<std::string> kernel_names() { return {}; }
bool has_kernel(const std::string&) { return false; }
}  // namespace cuda

}  // namespace shardrt
