#include <map>

#include "backends/kernel_registry.h"
#include "backends/cpu/cpu_kernels.h"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace shardrt::cpu {

using Registry = KernelRegistry<Kernel, register_all_kernels>;

void register_kernel(const std::string& op, Kernel k) { Registry::add(op, std::move(k)); }
const Kernel* find_kernel(const std::string& op) { return Registry::find(op); }
bool supports(const Node& n) { return find_kernel(n.op) != nullptr; }
std::vector<std::string> kernel_names() { return Registry::names(); }

void infer_concrete(const Node& n, const std::vector<const Tensor*>& ins, std::vector<DType>& types,
                    std::vector<Dims>& dims) {
  const OpSchema* s = find_schema(n.op);
  if (!s) throw GraphError(n.describe() + ": no schema for op '" + n.op + "'");
  InferCtx c(n);
  for (const Tensor* t : ins) {
    c.in_types.push_back(t ? t->dtype() : DType::Undefined);
    c.in_shapes.push_back(t ? dims_shape(t->dims()) : Shape{});
    c.in_values.push_back(t);
  }
  s->infer(c);
  types = c.out_types;
  dims.clear();
  for (auto& sh : c.out_shapes) {
    if (!shape_known(sh)) throw GraphError(n.describe() + ": output shape " + shape_str(sh) + " is not concrete");
    dims.push_back(shape_dims(sh));
  }
}

std::vector<Tensor> eval_node(const Node& n, const std::vector<const Tensor*>& ins) {
  const Kernel* k = find_kernel(n.op);
  if (!k) throw GraphError(n.describe() + ": the CPU backend has no kernel for op '" + n.op + "'");
  std::vector<DType> types;
  std::vector<Dims> dims;
  infer_concrete(n, ins, types, dims);
  std::vector<Tensor> outs;
  for (size_t i = 0; i < types.size(); ++i) outs.emplace_back(types[i], dims[i]);
  KernelCtx c{n, ins, {}};
  for (auto& t : outs) c.out.push_back(&t);
  (*k)(c);
  return outs;
}

void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
#ifdef _OPENMP
  int nt = omp_get_max_threads();
  if (n <= grain || nt <= 1 || omp_in_parallel()) { if (n > 0) fn(0, n); return; }
  int64_t chunks = std::min<int64_t>(nt, (n + grain - 1) / grain);
  int64_t per = (n + chunks - 1) / chunks;
#pragma omp parallel for num_threads(int(chunks)) schedule(static)
  for (int64_t c = 0; c < chunks; ++c) {
    int64_t b = c * per, e = std::min(n, b + per);
    if (b < e) fn(b, e);
  }
#else
  (void)grain;
  if (n > 0) fn(0, n);
#endif
}

}  // namespace shardrt::cpu
