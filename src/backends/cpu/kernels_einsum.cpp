// Einsum: two-operand contractions without diagonals or broadcasting become a batched GEMM
// (operands permuted to [batch, m, k] x [batch, k, n] only when not already in that order);
// everything else (one or 3+ operands, repeated labels, broadcast ellipses, labels summed
// within one operand) runs as a plain loop over the output, accumulating in fp64 or int64.
#include <algorithm>
#include <map>

#include "backends/cpu/kernels_nn_util.h"
#include "ir/ops/nn_ops_einsum.h"

namespace shardrt::cpu::nn {

namespace {

// Labels per operand with the ellipsis expanded into synthetic labels 1..E (right-aligned).
struct Expanded {
  std::vector<std::vector<char>> ins;
  std::vector<char> out;
  std::map<char, int64_t> size;
};

std::vector<char> expand(const std::string& labels, size_t er, size_t E) {
  std::vector<char> r;
  for (char l : labels) {
    if (l == '.')
      for (size_t e = E - er; e < E; ++e) r.push_back(char(1 + e));
    else
      r.push_back(l);
  }
  return r;
}

void permute_f32(const float* src, const Dims& sd, const std::vector<size_t>& perm, float* dst) {
  const size_t r = sd.size();
  std::vector<int64_t> ss(r, 1);
  for (size_t d = r; d-- > 1;) ss[d - 1] = ss[d] * sd[d];
  Dims dd(r);
  std::vector<int64_t> st(r);
  for (size_t i = 0; i < r; ++i) { dd[i] = sd[perm[i]]; st[i] = ss[perm[i]]; }
  const int64_t total = numel(sd);
  if (r == 0) { if (total) dst[0] = src[0]; return; }
  const int64_t last = dd[r - 1], rows = last ? total / last : 0;
  parallel_for(rows, std::max<int64_t>(1, 16384 / std::max<int64_t>(1, last)), [&](int64_t b, int64_t e) {
    std::vector<int64_t> idx(r);
    for (int64_t row = b; row < e; ++row) {
      int64_t rem = row, off = 0;
      for (size_t d = r - 1; d-- > 0;) { idx[d] = rem % dd[d]; rem /= dd[d]; off += idx[d] * st[d]; }
      float* o = dst + row * last;
      for (int64_t i = 0; i < last; ++i) o[i] = src[off + i * st[r - 1]];
    }
  });
}

// The GEMM route; returns false when the equation does not fit it.
bool einsum_gemm(KernelCtx& c, const Expanded& x) {
  const Tensor& A = *c.in[0];
  const Tensor& B = *c.in[1];
  Tensor& Y = *c.out[0];
  const auto& la = x.ins[0];
  const auto& lb = x.ins[1];
  auto has = [](const std::vector<char>& v, char l) { return std::find(v.begin(), v.end(), l) != v.end(); };
  auto uniq = [](const std::vector<char>& v) {
    std::vector<char> s = v;
    std::sort(s.begin(), s.end());
    return std::adjacent_find(s.begin(), s.end()) == s.end();
  };
  if (!uniq(la) || !uniq(lb)) return false;
  for (size_t i = 0; i < la.size(); ++i)
    if (A.dim(int64_t(i)) != x.size.at(la[i])) return false;  // broadcast dim
  for (size_t i = 0; i < lb.size(); ++i)
    if (B.dim(int64_t(i)) != x.size.at(lb[i])) return false;
  std::vector<char> bat, m, n, k;
  for (char l : la) {
    const bool inb = has(lb, l), ino = has(x.out, l);
    if (inb && ino) bat.push_back(l);
    else if (ino) m.push_back(l);
    else if (inb) k.push_back(l);
    else return false;  // summed within A alone
  }
  for (char l : lb)
    if (!has(la, l)) {
      if (has(x.out, l)) n.push_back(l);
      else return false;  // summed within B alone
    }
  auto cat = [](std::initializer_list<const std::vector<char>*> parts) {
    std::vector<char> r;
    for (auto* p : parts) r.insert(r.end(), p->begin(), p->end());
    return r;
  };
  auto prodsz = [&](const std::vector<char>& v) {
    int64_t p = 1;
    for (char l : v) p *= x.size.at(l);
    return p;
  };
  const int64_t NB = prodsz(bat), M = prodsz(m), N = prodsz(n), K = prodsz(k);
  std::vector<float> as, bs, ap, bp, ys, yp;
  const float* a = f32_view(&A, as);
  const float* b = f32_view(&B, bs);
  // A as [bat, m, k] or [bat, k, m] (transposed); otherwise a permuted copy.
  bool ta = false, tb = false;
  auto order = [&](const std::vector<char>& labels, const std::vector<char>& want, const float* src,
                   const Tensor& t, std::vector<float>& store) -> const float* {
    if (labels == want) return src;
    std::vector<size_t> perm;
    for (char l : want) perm.push_back(static_cast<size_t>(std::find(labels.begin(), labels.end(), l) - labels.begin()));
    store.resize(static_cast<size_t>(t.numel()));
    permute_f32(src, t.dims(), perm, store.data());
    return store.data();
  };
  if (la == cat({&bat, &k, &m}) && la != cat({&bat, &m, &k})) ta = true;
  else a = order(la, cat({&bat, &m, &k}), a, A, ap);
  if (lb == cat({&bat, &n, &k}) && lb != cat({&bat, &k, &n})) tb = true;
  else b = order(lb, cat({&bat, &k, &n}), b, B, bp);
  const std::vector<char> yl = cat({&bat, &m, &n});
  const bool direct = yl == x.out && Y.dtype() == DType::F32;
  float* y;
  if (direct) y = Y.data<float>();
  else { yp.resize(static_cast<size_t>(NB * M * N)); y = yp.data(); }
  std::vector<int64_t> ao(static_cast<size_t>(NB)), bo(static_cast<size_t>(NB)), co(static_cast<size_t>(NB));
  for (int64_t i = 0; i < NB; ++i) { ao[size_t(i)] = i * M * K; bo[size_t(i)] = i * K * N; co[size_t(i)] = i * M * N; }
  gemm_batched(DType::F32, ta, tb, M, N, K, 1.f, a, ta ? M : K, ao.data(), b, tb ? K : N, bo.data(), 0.f, y,
               N, co.data(), NB);
  if (direct) return true;
  float* yo = f32_out(&Y, ys);
  if (yl == x.out) {
    std::copy(yp.begin(), yp.end(), yo);
  } else {
    Dims yd;
    for (char l : yl) yd.push_back(x.size.at(l));
    std::vector<size_t> perm;
    for (char l : x.out) perm.push_back(static_cast<size_t>(std::find(yl.begin(), yl.end(), l) - yl.begin()));
    permute_f32(yp.data(), yd, perm, yo);
  }
  finish_f32(&Y, ys);
  return true;
}

template <class Acc>
void einsum_loop(KernelCtx& c, const Expanded& x, const std::vector<std::vector<Acc>>& vals) {
  Tensor& Y = *c.out[0];
  std::vector<char> all;
  for (auto& [l, s] : x.size) all.push_back(l);
  std::vector<char> sum;
  for (char l : all)
    if (std::find(x.out.begin(), x.out.end(), l) == x.out.end()) sum.push_back(l);
  // Per operand, the stride of each label (summed over repeats, 0 where broadcast).
  const size_t nin = x.ins.size();
  std::vector<std::map<char, int64_t>> stride(nin);
  for (size_t i = 0; i < nin; ++i) {
    const Dims& d = c.in[i]->dims();
    int64_t s = 1;
    for (size_t k = d.size(); k-- > 0;) {
      if (d[k] != 1 || x.size.at(x.ins[i][k]) == 1) stride[i][x.ins[i][k]] += s;
      else stride[i][x.ins[i][k]] += 0;
      s *= d[k];
    }
  }
  auto stride_of = [&](size_t i, char l) {
    auto it = stride[i].find(l);
    return it == stride[i].end() ? int64_t(0) : it->second;
  };
  std::vector<std::vector<int64_t>> ostr(nin), sstr(nin);
  for (size_t i = 0; i < nin; ++i) {
    for (char l : x.out) ostr[i].push_back(stride_of(i, l));
    for (char l : sum) sstr[i].push_back(stride_of(i, l));
  }
  std::vector<int64_t> osz, ssz;
  for (char l : x.out) osz.push_back(x.size.at(l));
  for (char l : sum) ssz.push_back(x.size.at(l));
  const int64_t total_sum = numel(ssz);
  std::vector<Acc> out(static_cast<size_t>(Y.numel()));
  parallel_for(Y.numel(), 256, [&](int64_t b, int64_t e) {
    std::vector<int64_t> sidx(sum.size()), base(nin), off(nin);
    for (int64_t yi = b; yi < e; ++yi) {
      int64_t rem = yi;
      std::fill(base.begin(), base.end(), 0);
      for (size_t d = x.out.size(); d-- > 0;) {
        const int64_t id = rem % osz[d];
        rem /= osz[d];
        for (size_t i = 0; i < nin; ++i) base[i] += id * ostr[i][d];
      }
      Acc acc = 0;
      std::fill(sidx.begin(), sidx.end(), 0);
      off = base;
      for (int64_t s = 0; s < total_sum; ++s) {
        Acc p = 1;
        for (size_t i = 0; i < nin; ++i) p *= vals[i][size_t(off[i])];
        acc += p;
        for (size_t d = sum.size(); d-- > 0;) {
          for (size_t i = 0; i < nin; ++i) off[i] += sstr[i][d];
          if (++sidx[d] < ssz[d]) break;
          for (size_t i = 0; i < nin; ++i) off[i] -= sstr[i][d] * ssz[d];
          sidx[d] = 0;
        }
      }
      out[size_t(yi)] = acc;
    }
  });
  for (int64_t i = 0; i < Y.numel(); ++i) Y.set_f(i, double(out[size_t(i)]));
  if (Y.dtype() == DType::I64)
    for (int64_t i = 0; i < Y.numel(); ++i) Y.data<int64_t>()[i] = int64_t(out[size_t(i)]);
}

void einsum_kernel(KernelCtx& c) {
  EinsumSpec spec;
  std::vector<size_t> ranks;
  for (const Tensor* t : c.in) ranks.push_back(static_cast<size_t>(t->rank()));
  std::string err;
  if (!parse_einsum(c.node.attr_s("equation", ""), ranks, spec, &err)) c.fail(err);
  Expanded x;
  const size_t E = spec.out_ellipsis_rank;
  for (size_t i = 0; i < c.in.size(); ++i) {
    x.ins.push_back(expand(spec.inputs[i], spec.ellipsis_rank[i], E));
    for (size_t k = 0; k < x.ins[i].size(); ++k) {
      const int64_t d = c.in[i]->dim(int64_t(k));
      auto [it, fresh] = x.size.emplace(x.ins[i][k], d);
      if (!fresh && it->second != d) {
        if (it->second == 1) it->second = d;
        else if (d != 1) c.fail("einsum label sizes disagree");
      }
    }
  }
  x.out = expand(spec.output, E, E);
  const DType t = c.out[0]->dtype();
  const bool fl = t == DType::F32 || t == DType::F16 || t == DType::BF16;
  if (fl && c.in.size() == 2 && einsum_gemm(c, x)) return;
  if (is_float_type(t)) {
    std::vector<std::vector<double>> vals;
    for (const Tensor* in : c.in) {
      std::vector<double> v(static_cast<size_t>(in->numel()));
      for (int64_t i = 0; i < in->numel(); ++i) v[size_t(i)] = in->get_f(i);
      vals.push_back(std::move(v));
    }
    einsum_loop<double>(c, x, vals);
  } else {
    std::vector<std::vector<int64_t>> vals;
    for (const Tensor* in : c.in) {
      std::vector<int64_t> v(static_cast<size_t>(in->numel()));
      for (int64_t i = 0; i < in->numel(); ++i) v[size_t(i)] = in->get_i(i);
      vals.push_back(std::move(v));
    }
    einsum_loop<int64_t>(c, x, vals);
  }
}

}  // namespace

void register_einsum_kernels() { register_kernel("Einsum", einsum_kernel); }

}  // namespace shardrt::cpu::nn
