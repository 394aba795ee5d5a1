// A CUDA injection library (CUDA_INJECTION64_PATH) that records the start and end of every
// kernel, memcpy and memset the process runs, CUDA-graph nodes included (CUPTI's
// concurrent-kernel activity), and writes them at exit to $TRACE_OUT (default
// /tmp/trace.tsv): start ns, end ns, graph node id (0 outside graphs), grid x, block x, name.
// timeline.py turns that into a decode step's per-kernel critical path (bench/RESULTS.md).
//
// Build (CUPTI's headers and library come with the CUDA toolkit, or with PyPI's torch in
// nvidia/cu13 of its site-packages):
//   g++ -O2 -shared -fPIC -o cupti_trace.so cupti_trace.cpp -I$CUPTI/include \
//       -I/usr/local/cuda/include -L$CUPTI/lib -l:libcupti.so.13 -Wl,-rpath,'$ORIGIN'
// Use (libcupti.so.13 beside it or on LD_LIBRARY_PATH):
//   TRACE_OUT=/tmp/trace.tsv CUDA_INJECTION64_PATH=$PWD/cupti_trace.so \
//       shardrt_decode_bench MODEL --batch 1 --past 512 --dtype fp16 --device cuda \
//       --benchmark_min_time=0.05 --benchmark_filter='decode_step/'
//   python3 timeline.py /tmp/trace.tsv
#include <cupti.h>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <cstdint>
#include <vector>
#include <string>
#include <mutex>

namespace {
struct Rec { uint64_t start, end; uint32_t corr; uint64_t node; std::string name; int gx, bx; };
std::vector<Rec>* g_recs;
std::mutex g_mu;
void CUPTIAPI buf_req(uint8_t** b, size_t* size, size_t* max) {
  *size = 8 << 20; *b = (uint8_t*)aligned_alloc(8, *size); *max = 0;
}
void CUPTIAPI buf_done(CUcontext, uint32_t, uint8_t* b, size_t, size_t valid) {
  CUpti_Activity* r = nullptr;
  std::lock_guard<std::mutex> lk(g_mu);
  while (cuptiActivityGetNextRecord(b, valid, &r) == CUPTI_SUCCESS) {
    if (r->kind == CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL || r->kind == CUPTI_ACTIVITY_KIND_KERNEL) {
      auto* k = (CUpti_ActivityKernel9*)r;
      g_recs->push_back({k->start, k->end, k->correlationId, k->graphNodeId, k->name ? k->name : "?", (int)k->gridX, (int)k->blockX});
    } else if (r->kind == CUPTI_ACTIVITY_KIND_MEMCPY || r->kind == CUPTI_ACTIVITY_KIND_MEMSET) {
      auto* m = (CUpti_ActivityMemcpy5*)r;
      g_recs->push_back({m->start, m->end, m->correlationId, m->graphNodeId, r->kind == CUPTI_ACTIVITY_KIND_MEMCPY ? "[memcpy]" : "[memset]", 0, 0});
    }
  }
  free(b);
}
void dump() {
  cuptiActivityFlushAll(1);
  const char* out = getenv("TRACE_OUT");
  FILE* f = fopen(out ? out : "/tmp/trace.tsv", "w");
  if (!f) return;
  for (auto& r : *g_recs) fprintf(f, "%llu\t%llu\t%llu\t%d\t%d\t%s\n", (unsigned long long)r.start, (unsigned long long)r.end, (unsigned long long)r.node, r.gx, r.bx, r.name.c_str());
  fclose(f);
}
}  // namespace

extern "C" int InitializeInjection() {
  g_recs = new std::vector<Rec>();
  g_recs->reserve(1 << 22);
  cuptiActivityRegisterCallbacks(buf_req, buf_done);
  cuptiActivityEnable(CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL);
  cuptiActivityEnable(CUPTI_ACTIVITY_KIND_MEMCPY);
  cuptiActivityEnable(CUPTI_ACTIVITY_KIND_MEMSET);
  atexit(dump);
  return 1;
}
