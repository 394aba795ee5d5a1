// CPU kernels of shardrt.RMSNorm, shardrt.Attention and shardrt.Rotary. All compute in
// fp32 (inputs of fp16/bf16 are widened once, outputs narrowed once).
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "backends/cpu/float_rows.h"
#include "backends/cpu/cpu_kernels.h"
#include "backends/cpu/elementwise_impl.h"
#include "backends/cpu/gemm.h"

namespace shardrt::cpu {

namespace {

bool half_or_f32(DType t) { return t == DType::F32 || t == DType::F16 || t == DType::BF16; }

// A float view of a tensor: the tensor's own data when it is fp32, else a widened copy.
struct F32View {
  std::vector<float> buf;
  const float* p = nullptr;
  explicit F32View(const Tensor& t) {
    if (t.dtype() == DType::F32) {
      p = t.data<float>();
    } else {
      buf.resize(size_t(t.numel()));
      to_f32(t.dtype(), t.raw(), buf.data(), t.numel());
      p = buf.data();
    }
  }
};


// Element strides of `small` broadcast onto `big` (right-aligned; 0 where small has 1 or
// lacks the dim). Returned with big's rank.
std::vector<int64_t> bcast_strides(const Dims& small, const Dims& big) {
  std::vector<int64_t> st(big.size(), 0);
  int64_t s = 1;
  for (size_t i = 0; i < small.size(); ++i) {
    size_t si = small.size() - 1 - i, bi = big.size() - 1 - i;
    st[bi] = small[si] == 1 ? 0 : s;
    s *= small[si];
  }
  return st;
}

// ---- shardrt.RMSNorm ----

void rmsnorm_kernel(KernelCtx& c) {
  const Tensor& x = *c.input(0);
  const Tensor& w = *c.input(1);
  Tensor& y = *c.out[0];
  DType t = x.dtype();
  if (!half_or_f32(t)) c.fail(std::string("unsupported type ") + dtype_name(t));
  const int64_t D = x.dims().back();
  if (w.numel() != D) c.fail("W has " + std::to_string(w.numel()) + " elements, expected " + std::to_string(D));
  const int64_t rows = D ? x.numel() / D : 0;
  const float eps = c.node.attr_f("epsilon", 1e-6f);
  F32View wv(w);
  parallel_for(rows, std::max<int64_t>(1, 16384 / std::max<int64_t>(D, 1)), [&](int64_t b, int64_t e) {
    std::vector<float> row(static_cast<size_t>(D));
    for (int64_t r = b; r < e; ++r) {
      load_row(t, x.raw(), r * D, D, row.data());
      float ss = 0;  // fp32 accumulation, as the op defines
      for (int64_t i = 0; i < D; ++i) ss += row[i] * row[i];
      const float inv = 1.0f / std::sqrt(ss / float(D) + eps);
      for (int64_t i = 0; i < D; ++i) row[i] = (row[i] * inv) * wv.p[i];
      store_row(t, y.raw(), r * D, D, row.data());
    }
  });
}

// ---- shardrt.Rotary ----

void rotary_kernel(KernelCtx& c) {
  const Tensor& x = *c.input(0);
  const Tensor& cs = *c.input(1);
  const Tensor& sn = *c.input(2);
  Tensor& y = *c.out[0];
  DType t = x.dtype();
  if (!half_or_f32(t)) c.fail(std::string("unsupported type ") + dtype_name(t));
  const bool inter = c.node.attr_i("interleaved", 0) != 0;
  const Dims& xd = x.dims();
  const int64_t D = xd.back();
  const int64_t R = cs.dims().back();
  if (R % 2 || R > D || sn.dims().back() != R) c.fail("bad rotary width " + std::to_string(R));
  // Leading dims: X's rows vs Cos/Sin's rows, broadcast.
  Dims xl(xd.begin(), xd.end() - 1);
  Dims cl(cs.dims().begin(), cs.dims().end() - 1), sl(sn.dims().begin(), sn.dims().end() - 1);
  auto cst = bcast_strides(cl, xl), sst = bcast_strides(sl, xl);
  F32View cv(cs), sv(sn);
  const int64_t rows = D ? x.numel() / D : 0;
  const int64_t half = R / 2;
  parallel_for(rows, std::max<int64_t>(1, 8192 / std::max<int64_t>(D, 1)), [&](int64_t b, int64_t e) {
    std::vector<float> in(static_cast<size_t>(D)), out(static_cast<size_t>(D));
    for (int64_t r = b; r < e; ++r) {
      // Row r's Cos/Sin rows through the broadcast strides.
      int64_t rem = r, co = 0, so = 0;
      for (size_t k = xl.size(); k-- > 0;) {
        int64_t idx = rem % xl[k];
        rem /= xl[k];
        co += idx * cst[k];
        so += idx * sst[k];
      }
      const float* cr = cv.p + co * R;
      const float* sr = sv.p + so * R;
      load_row(t, x.raw(), r * D, D, in.data());
      if (!inter) {
        for (int64_t i = 0; i < half; ++i) {
          out[i] = in[i] * cr[i] - in[i + half] * sr[i];
          out[i + half] = in[i + half] * cr[i + half] + in[i] * sr[i + half];
        }
      } else {
        for (int64_t i = 0; i < R; i += 2) {
          out[i] = in[i] * cr[i] - in[i + 1] * sr[i];
          out[i + 1] = in[i + 1] * cr[i + 1] + in[i] * sr[i + 1];
        }
      }
      for (int64_t i = R; i < D; ++i) out[i] = in[i];
      store_row(t, y.raw(), r * D, D, out.data());
    }
  });
}

// ---- shardrt.Attention ----
//
// Blocked over query rows: for a block of rows of every (batch, head) at once, the scores
// block is one batched GEMM (Q_blk · K^T, scaled through alpha), then a row-parallel fp32
// masked softmax, then a second batched GEMM (P · V). gemm_batched spreads the (batch,
// head) items over the cores; grouped-query heads share their KV head's offsets. With
// `causal`, a block only multiplies against the keys its last row may see.

void attention_kernel(KernelCtx& c) {
  const Tensor& q = *c.input(0);
  const Tensor& k = *c.input(1);
  const Tensor& v = *c.input(2);
  const Tensor* mask = c.input(3);
  Tensor& y = *c.out[0];
  DType t = q.dtype();
  if (!half_or_f32(t)) c.fail(std::string("unsupported type ") + dtype_name(t));
  const int64_t B = q.dim(0), Hq = q.dim(1), Sq = q.dim(2), D = q.dim(3);
  const int64_t Hkv = k.dim(1), Skv = k.dim(2), Dv = v.dim(3);
  if (Hkv == 0 || Hq % Hkv) c.fail("head counts do not group");
  const int64_t group = Hq / Hkv;
  float scale = c.node.attr_f("scale", 0.f);
  if (scale == 0.f) scale = D > 0 ? 1.0f / std::sqrt(float(D)) : 1.0f;
  const bool causal = c.node.attr_i("causal", 0) != 0;
  const int64_t off = Skv - Sq;  // query i sees keys j <= i + off
  const int64_t count = B * Hq;
  if (y.numel() == 0) return;

  F32View qv(q), kv(k), vv(v);
  // Output in fp32: straight into y for fp32, else a staging buffer narrowed at the end.
  std::vector<float> ybuf;
  float* yp = nullptr;
  if (t == DType::F32) {
    yp = y.data<float>();
  } else {
    ybuf.resize(size_t(y.numel()));
    yp = ybuf.data();
  }
  if (Skv == 0) {  // nothing to attend: zeros, as the op defines
    std::fill(yp, yp + y.numel(), 0.f);
    if (t != DType::F32) from_f32(t, yp, y.raw(), y.numel());
    return;
  }

  // The mask, widened to fp32 (float masks) or kept as bytes (bool), with broadcast strides
  // over [B, Hq, Sq, Skv].
  std::vector<float> mf;
  const uint8_t* mb = nullptr;
  std::vector<int64_t> mst(4, 0);
  if (mask) {
    if (mask->rank() > 4) c.fail("Mask has rank > 4");
    mst = bcast_strides(mask->dims(), Dims{B, Hq, Sq, Skv});
    if (mask->dtype() == DType::Bool) {
      mb = mask->data<uint8_t>();
    } else if (half_or_f32(mask->dtype())) {
      mf.resize(size_t(mask->numel()));
      to_f32(mask->dtype(), mask->raw(), mf.data(), mask->numel());
    } else {
      c.fail(std::string("Mask has unsupported type ") + dtype_name(mask->dtype()));
    }
  }

  // Rows per block: keep the scores buffer near 16 MiB whatever B·H·Skv is.
  const int64_t budget = int64_t(4) << 20;  // floats
  int64_t blk = std::clamp<int64_t>(budget / std::max<int64_t>(1, count * Skv), 1, 256);
  blk = std::min(blk, Sq);
  std::vector<float> scores(static_cast<size_t>(count * blk * Skv));
  std::vector<float> outb(static_cast<size_t>(count * blk * Dv));
  const size_t nc = static_cast<size_t>(count);
  std::vector<int64_t> a_off(nc), b_off(nc), c_off(nc), v_off(nc), o_off(nc);

  for (int64_t i0 = 0; i0 < Sq; i0 += blk) {
    const int64_t rows = std::min(blk, Sq - i0);
    // Keys any row of the block may see (all of them without causal).
    int64_t ncols = Skv;
    if (causal) ncols = std::clamp<int64_t>(i0 + rows - 1 + off + 1, 0, Skv);
    float* outp = outb.data();
    if (ncols > 0) {
      for (int64_t h = 0; h < count; ++h) {
        const int64_t b = h / Hq, kvh = b * Hkv + (h % Hq) / group;
        a_off[size_t(h)] = (h * Sq + i0) * D;
        b_off[size_t(h)] = kvh * Skv * D;
        c_off[size_t(h)] = h * blk * Skv;
        v_off[size_t(h)] = kvh * Skv * Dv;
        o_off[size_t(h)] = h * blk * Dv;
      }
      // scores[h] (rows x ncols, ld Skv) = scale * Q_blk · K[:ncols]^T
      gemm_batched(DType::F32, false, true, rows, ncols, D, scale, qv.p, D, a_off.data(), kv.p, D, b_off.data(),
                   0.f, scores.data(), Skv, c_off.data(), count);
    }
    // Masked softmax per row, fp32; rows that can see nothing become zeros.
    parallel_for(count * rows, std::max<int64_t>(1, 4096 / std::max<int64_t>(ncols, 1)), [&](int64_t rb, int64_t re) {
      for (int64_t ri = rb; ri < re; ++ri) {
        const int64_t h = ri / rows, r = ri % rows, i = i0 + r;
        const int64_t b = h / Hq, hh = h % Hq;
        float* s = scores.data() + h * blk * Skv + r * Skv;
        const int64_t lim = causal ? std::clamp<int64_t>(i + off + 1, 0, ncols) : ncols;
        const int64_t mrow = b * mst[0] + hh * mst[1] + i * mst[2];
        constexpr float ninf = -std::numeric_limits<float>::infinity();
        // Separate loops without branches inside (mask, max, exp-and-sum, scale), so that
        // each vectorises; exp is the branch-free fast_expf (about 1 ulp).
        if (mb) {
          const uint8_t* m = mb + mrow;
          const int64_t st = mst[3];
          for (int64_t j = 0; j < lim; ++j) s[j] = m[j * st] ? s[j] : ninf;
        } else if (!mf.empty()) {
          const float* m = mf.data() + mrow;
          const int64_t st = mst[3];
          if (st == 1)
            for (int64_t j = 0; j < lim; ++j) s[j] += m[j];
          else
            for (int64_t j = 0; j < lim; ++j) s[j] += m[j * st];
        }
        // Reductions in 16 independent lanes: fp max/add chains do not vectorise otherwise.
        float lane[16];
        int64_t j = 0;
        for (int k = 0; k < 16; ++k) lane[k] = ninf;
        for (; j + 16 <= lim; j += 16)
          for (int k = 0; k < 16; ++k) lane[k] = s[j + k] > lane[k] ? s[j + k] : lane[k];
        float mx = ninf;
        for (int k = 0; k < 16; ++k) mx = lane[k] > mx ? lane[k] : mx;
        for (; j < lim; ++j) mx = s[j] > mx ? s[j] : mx;
        if (mx == ninf) {
          // No key visible (or all masked by -inf): the op defines a zero row.
          std::fill(s, s + ncols, 0.f);
          continue;
        }
        for (j = 0; j < lim; ++j) s[j] = fast_expf(s[j] - mx);
        for (int k = 0; k < 16; ++k) lane[k] = 0.f;
        for (j = 0; j + 16 <= lim; j += 16)
          for (int k = 0; k < 16; ++k) lane[k] += s[j + k];
        float sum = 0;
        for (int k = 0; k < 16; ++k) sum += lane[k];
        for (; j < lim; ++j) sum += s[j];
        const float inv = 1.0f / sum;
        for (int64_t j = 0; j < lim; ++j) s[j] *= inv;
        for (int64_t j = lim; j < ncols; ++j) s[j] = 0.f;  // keys past the causal limit
      }
    });
    if (ncols > 0) {
      // out[h] (rows x Dv) = P · V[:ncols]
      gemm_batched(DType::F32, false, false, rows, Dv, ncols, 1.f, scores.data(), Skv, c_off.data(), vv.p, Dv,
                   v_off.data(), 0.f, outp, Dv, o_off.data(), count);
    } else {
      std::fill(outb.begin(), outb.end(), 0.f);
    }
    // Scatter the block's rows into y (fp32 staging).
    parallel_for(count, 64, [&](int64_t hb, int64_t he) {
      for (int64_t h = hb; h < he; ++h)
        std::copy_n(outp + h * blk * Dv, rows * Dv, yp + (h * Sq + i0) * Dv);
    });
  }
  if (t != DType::F32) from_f32(t, yp, y.raw(), y.numel());
}

}  // namespace

void register_fused_attention_kernels() {
  register_kernel("shardrt.RMSNorm", rmsnorm_kernel);
  register_kernel("shardrt.Rotary", rotary_kernel);
  register_kernel("shardrt.Attention", attention_kernel);
}

}  // namespace shardrt::cpu
