// shardrt.PositionalEmbedding on CUDA against the CPU kernel (which its own test checks against
// Gather, Gather and Add): the same fp32 sum rounded once, so bit for bit; the output is
// poisoned (0xff) before the kernel runs. GPT-2's decode and prefill shapes, fp32 / fp16 / bf16,
// int64 and int32 ids, rows with different past lengths.
#include <gtest/gtest.h>

#include <cstring>
#include <string>

#include "backends/cpu/cpu_kernels.h"
#include "backends/cuda/cuda_eval.h"
#include "ir/graph.h"
#include "../op_test_util.h"

using namespace shardrt;

TEST(CudaPositionalEmbedding, MatchesCpuBitForBit) {
  if (!shardrt::cuda::device_available()) GTEST_SKIP() << "no GPU";
  struct Shape3 {
    int64_t B, S, V, P, E;
  };
  for (const Shape3& sh : {Shape3{1, 1, 50257, 1024, 768}, Shape3{2, 7, 50257, 1024, 768}, Shape3{3, 2, 33, 9, 5}})
    for (DType t : {DType::F32, DType::F16, DType::BF16})
      for (DType it : {DType::I64, DType::I32}) {
        Tensor tok = optest::random_tensor(t, {sh.V, sh.E}, -2, 2, 1), pos = optest::random_tensor(t, {sh.P, sh.E}, -2, 2, 2);
        Tensor ids64(DType::I64, {sh.B, sh.S});
        for (int64_t i = 0; i < ids64.numel(); ++i) ids64.data<int64_t>()[i] = (i * 7919 + 11) % sh.V;
        const Tensor ids = it == DType::I64 ? ids64 : ids64.cast(DType::I32);
        std::vector<int64_t> lens;
        for (int64_t b = 0; b < sh.B; ++b) lens.push_back(b == sh.B - 1 ? sh.P - sh.S : (b * 5) % (sh.P - sh.S + 1));
        Tensor past = Tensor::from_i64(lens);
        Node n;
        n.op = "shardrt.PositionalEmbedding";
        n.name = "embed";
        const std::string what = std::string(dtype_name(t)) + " ids " + dtype_name(it) + " B" + std::to_string(sh.B) +
                                 " S" + std::to_string(sh.S) + " E" + std::to_string(sh.E);
        Tensor want = cpu::eval_node(n, {&ids, &past, &tok, &pos})[0];
        Tensor got = cuda::eval_node(n, {&ids, &past, &tok, &pos})[0];
        ASSERT_EQ(got.dims(), want.dims()) << what;
        EXPECT_EQ(std::memcmp(got.raw(), want.raw(), want.nbytes()), 0) << what;
      }
}
