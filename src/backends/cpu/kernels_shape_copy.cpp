// The strided copy engine shared by the shape kernels (see kernels_shape_common.h).
#include <algorithm>

#if defined(__SSE2__)
#include <immintrin.h>
#endif

#include "backends/copy_layout.h"
#include "backends/cpu/kernels_shape_common.h"

namespace shardrt::cpu::shape_k {

namespace {

// Work below this many bytes per thread is not worth spreading.
constexpr int64_t kGrainBytes = 64 << 10;
// Tiles of a transpose (elements): kTileI along the axis that reads contiguously, kTileJ
// along the output's contiguous axis (measured best on x86 for fp32, 32x128).
constexpr int64_t kTileI = 32, kTileJ = 128;

using Layout = CopyLayout;

// Visits rows [b, e) of the index space `dims` (m axes) in order, giving each row's
// destination and source offsets.
template <class F>
void walk(const int64_t* dims, const int64_t* ds, const int64_t* ss, int m, int64_t b, int64_t e, F&& f) {
  std::vector<int64_t> idx(size_t(m), 0);
  int64_t doff = 0, soff = 0, r = b;
  for (int a = m - 1; a >= 0; --a) {
    idx[size_t(a)] = r % dims[a];
    r /= dims[a];
    doff += idx[size_t(a)] * ds[a];
    soff += idx[size_t(a)] * ss[a];
  }
  for (int64_t i = b; i < e; ++i) {
    f(doff, soff);
    for (int a = m - 1; a >= 0; --a) {
      if (++idx[size_t(a)] < dims[a]) {
        doff += ds[a];
        soff += ss[a];
        break;
      }
      idx[size_t(a)] = 0;
      doff -= (dims[a] - 1) * ds[a];
      soff -= (dims[a] - 1) * ss[a];
    }
  }
}

// d[r][c] = s[c][r] for a 4x4 block of 4-byte elements (row strides in elements).
template <class T>
inline void transpose4x4(const T* s, int64_t ss, T* d, int64_t ds) {
#if defined(__SSE2__)
  __m128 r0 = _mm_loadu_ps(reinterpret_cast<const float*>(s));
  __m128 r1 = _mm_loadu_ps(reinterpret_cast<const float*>(s + ss));
  __m128 r2 = _mm_loadu_ps(reinterpret_cast<const float*>(s + 2 * ss));
  __m128 r3 = _mm_loadu_ps(reinterpret_cast<const float*>(s + 3 * ss));
  _MM_TRANSPOSE4_PS(r0, r1, r2, r3);
  _mm_storeu_ps(reinterpret_cast<float*>(d), r0);
  _mm_storeu_ps(reinterpret_cast<float*>(d + ds), r1);
  _mm_storeu_ps(reinterpret_cast<float*>(d + 2 * ds), r2);
  _mm_storeu_ps(reinterpret_cast<float*>(d + 3 * ds), r3);
#else
  for (int r = 0; r < 4; ++r)
    for (int c = 0; c < 4; ++c) d[r * ds + c] = s[c * ss + r];
#endif
}

}  // namespace

std::vector<int64_t> strides_of(const Dims& dims) {
  std::vector<int64_t> s(dims.size(), 1);
  for (int64_t i = int64_t(dims.size()) - 2; i >= 0; --i) s[size_t(i)] = s[size_t(i) + 1] * dims[size_t(i) + 1];
  return s;
}

void copy_bytes(void* dst, const void* src, size_t n) {
  if (n == 0 || dst == src) return;
  constexpr int64_t chunk = 1 << 20;
  if (int64_t(n) <= 4 * chunk) { std::memcpy(dst, src, n); return; }
  int64_t pieces = (int64_t(n) + chunk - 1) / chunk;
  parallel_for(pieces, 2, [&](int64_t b, int64_t e) {
    size_t lo = size_t(b * chunk), hi = std::min(n, size_t(e * chunk));
    std::memcpy(static_cast<char*>(dst) + lo, static_cast<const char*>(src) + lo, hi - lo);
  });
}

void fill_elems(void* dst, int64_t n, const void* elem, size_t es) {
  if (n <= 0) return;
  bool zero = true;
  for (size_t i = 0; i < es; ++i) zero &= static_cast<const uint8_t*>(elem)[i] == 0;
  if (zero || es == 1) { std::memset(dst, static_cast<const uint8_t*>(elem)[0], size_t(n) * es); return; }
  with_elem(es, [&](auto z) {
    using T = decltype(z);
    T v;
    std::memcpy(&v, elem, sizeof(T));
    T* d = static_cast<T*>(dst);
    parallel_for(n, kGrainBytes / int64_t(es), [&](int64_t b, int64_t e) { std::fill(d + b, d + e, v); });
  });
}

void strided_copy(void* dst, const std::vector<int64_t>& dst_strides, const void* src,
                  const std::vector<int64_t>& src_strides, const Dims& dims, size_t es) {
  for (int64_t d : dims)
    if (d == 0) return;
  Layout l = simplify_copy_layout(dims, dst_strides, src_strides);
  char* D = static_cast<char*>(dst);
  const char* S = static_cast<const char*>(src);
  int k = int(l.dims.size());
  if (k == 0) { std::memcpy(D, S, es); return; }
  int last = k - 1;
  int64_t n_last = l.dims[size_t(last)];
  int64_t rows = 1;
  for (int a = 0; a < last; ++a) rows *= l.dims[size_t(a)];
  const int64_t dsl = l.ds[size_t(last)], ssl = l.ss[size_t(last)];

  if (dsl == 1 && ssl == 1) {  // contiguous runs
    size_t run = size_t(n_last) * es;
    if (rows == 1) { copy_bytes(D, S, run); return; }
    int64_t grain = std::max<int64_t>(1, kGrainBytes / int64_t(run));
    parallel_for(rows, grain, [&](int64_t b, int64_t e) {
      walk(l.dims.data(), l.ds.data(), l.ss.data(), last, b, e, [&](int64_t doff, int64_t soff) {
        std::memcpy(D + doff * int64_t(es), S + soff * int64_t(es), run);
      });
    });
    return;
  }

  // An axis other than the innermost reads contiguously: a transpose. Copy square tiles
  // so that both the strided reads and the contiguous writes stay in cache.
  int q = -1;
  for (int a = 0; a < last; ++a)
    if (l.ss[size_t(a)] == 1) q = a;
  if (dsl == 1 && q >= 0 && es <= 8) {
    Dims od;
    std::vector<int64_t> ods, oss;
    for (int a = 0; a < last; ++a)
      if (a != q) { od.push_back(l.dims[size_t(a)]); ods.push_back(l.ds[size_t(a)]); oss.push_back(l.ss[size_t(a)]); }
    int m = int(od.size());
    int64_t outer = 1;
    for (int64_t x : od) outer *= x;
    const int64_t nq = l.dims[size_t(q)], dsq = l.ds[size_t(q)];
    const int64_t tiles = (nq + kTileI - 1) / kTileI;
    int64_t grain = std::max<int64_t>(1, kGrainBytes / (kTileI * n_last * int64_t(es)));
    with_elem(es, [&](auto z) {
      using T = decltype(z);
      T* Dt = reinterpret_cast<T*>(D);
      const T* St = reinterpret_cast<const T*>(S);
      parallel_for(outer * tiles, grain, [&](int64_t b, int64_t e) {
        for (int64_t u = b; u < e; ++u) {
          int64_t o = u / tiles, i0 = (u % tiles) * kTileI, i1 = std::min(nq, i0 + kTileI);
          int64_t doff = 0, soff = 0, r = o;
          for (int a = m - 1; a >= 0; --a) {
            int64_t ix = r % od[size_t(a)];
            r /= od[size_t(a)];
            doff += ix * ods[size_t(a)];
            soff += ix * oss[size_t(a)];
          }
          for (int64_t j0 = 0; j0 < n_last; j0 += kTileJ) {
            int64_t j1 = std::min(n_last, j0 + kTileJ);
            int64_t i = i0;
            if constexpr (sizeof(T) == 4) {
              // 4x4 register transposes for 4-byte elements.
              for (; i + 4 <= i1; i += 4) {
                int64_t j = j0;
                for (; j + 4 <= j1; j += 4)
                  transpose4x4(St + soff + i + j * ssl, ssl, Dt + doff + i * dsq + j, dsq);
                for (; j < j1; ++j)
                  for (int64_t ii = i; ii < i + 4; ++ii) Dt[doff + ii * dsq + j] = St[soff + ii + j * ssl];
              }
            }
            for (; i < i1; ++i) {
              T* dp = Dt + doff + i * dsq;
              const T* sp = St + soff + i;
              for (int64_t j = j0; j < j1; ++j) dp[j] = sp[j * ssl];
            }
          }
        }
      });
    });
    return;
  }

  // General rows: broadcast (source stride 0) or strided elements.
  int64_t grain = std::max<int64_t>(1, kGrainBytes / (n_last * int64_t(es)));
  with_elem(es, [&](auto z) {
    using T = decltype(z);
    T* Dt = reinterpret_cast<T*>(D);
    const T* St = reinterpret_cast<const T*>(S);
    parallel_for(rows, grain, [&](int64_t b, int64_t e) {
      walk(l.dims.data(), l.ds.data(), l.ss.data(), last, b, e, [&](int64_t doff, int64_t soff) {
        T* dp = Dt + doff;
        const T* sp = St + soff;
        if (ssl == 0 && dsl == 1) std::fill(dp, dp + n_last, *sp);
        else
          for (int64_t j = 0; j < n_last; ++j) dp[j * dsl] = sp[j * ssl];
      });
    });
  });
}

}  // namespace shardrt::cpu::shape_k
