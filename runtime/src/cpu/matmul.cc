// kiln.matmul and kiln.gated_mlp: a register-tiled GEMM over packed B panels
// (prefill) and GEMV paths (decode: at most kGemvMaxRows rows of A), reading
// B plain (f32, f64, f16, bf16) or block-quantized (i4, ui4, i8, ui8, f8),
// stored [K, N] or transposed [N, K], and dequantizing on the fly into
// cache-sized panels or rows; the whole dequantized B never exists.
//
// GEMM blocking (GotoBLAS order): a task owns an [MC x NC] tile of C. For
// each depth block of KC it packs B[k0:k0+KC, n0:n0+NC] into strips of NR
// columns ([strip][k][NR], zero-padded), then runs the MR x NR micro-kernel
// (llm_util.h) over every MR rows of A for each strip; a strip (KC * NR
// values) stays in L1 while A's rows stream from L2.
//
// GEMV: a transposed B is read row by row, each row dotted with every A row;
// 4-bit and 8-bit rows with K-blocks of whole vectors are dotted straight
// from their bytes (FusedDots4 / FusedDots8), never decoded to memory. A
// [K, N] B is streamed four rows at a time into per-column accumulators.
//
// Accumulation is in T = f32, or f64 when an operand or the result is f64.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "cpu/kernels.h"
#include "cpu/llm_util.h"

namespace kiln {

namespace {

constexpr int64_t kKC = 256;     // depth of a packed panel
constexpr int64_t kMC = 120;     // rows of a task (a multiple of kPanelMR)
constexpr int64_t kNCMax = 256;  // columns of a task, at most
// Decode-shaped products (few rows of A) take a GEMV path that streams B
// once without packing it, up to a row count measured against the GEMM path
// (AVX-512, K = N = 2048, 2 threads): a transposed f32 B breaks even near 12
// rows, a [K, N] one near 6, a quantized transposed one (whose GEMM decodes
// every panel) near 16.
constexpr int64_t kGemvMaxRows = 16;
int64_t GemvMaxRows(bool trans, bool quantized) {
  if (!trans) return 6;
  return quantized ? kGemvMaxRows : 12;
}

/// The B operand of a GEMM: logically [K, N], stored [K, N] or (trans)
/// [N, K], plain or quantized; a batched B holds its matrices back to back.
struct BMatrix {
  int64_t K = 0, N = 0;
  bool trans = false;
  // Plain storage.
  kiln_dtype_t dtype = KILN_DTYPE_INVALID;
  const void* data = nullptr;
  // Quantized storage: matrix i starts at QView row i * stored_rows().
  const QView* q = nullptr;

  int64_t stored_rows() const { return trans ? N : K; }
  int64_t stored_cols() const { return trans ? K : N; }

  /// Stored row `r` of matrix `bi`, elements [c0, c0 + n), as T: a pointer
  /// into the tensor when it already holds T, else decoded into `tmp`.
  template <typename T>
  KILN_ALWAYS_INLINE const T* Row(int64_t bi, int64_t r, int64_t c0, int64_t n,
                                  T* tmp) const {
    const int64_t row = bi * stored_rows() + r;
    if (q) {
      if constexpr (sizeof(T) == sizeof(float)) {
        q->Row(row, c0, n, tmp);
      } else {
        float chunk[256];
        for (int64_t i = 0; i < n; i += 256) {
          int64_t m = std::min<int64_t>(256, n - i);
          q->Row(row, c0 + i, m, chunk);
          for (int64_t j = 0; j < m; ++j) tmp[i + j] = T(chunk[j]);
        }
      }
      return tmp;
    }
    const int64_t offset = row * stored_cols() + c0;
    if ((sizeof(T) == 4 && dtype == KILN_DTYPE_F32) ||
        (sizeof(T) == 8 && dtype == KILN_DTYPE_F64))
      return static_cast<const T*>(data) + offset;
    LoadRow<T>(dtype, data, offset, n, tmp);
    return tmp;
  }
};

/// One (batched) product C = A @ B (+ bias) with the result stored as
/// `out_dtype`. A is T, row-major with leading dimension lda; batch i reads
/// A at a_offset[i] (elements) and B matrix b_index[i], and writes
/// out + i * M * ldo.
template <typename T>
struct GemmArgs {
  int64_t batches = 1, M = 0, N = 0, K = 0;
  const T* a = nullptr;
  int64_t lda = 0;
  const int64_t* a_offset = nullptr;  // null: all batches at 0
  BMatrix b;
  const int64_t* b_index = nullptr;  // null: all batches use matrix 0
  const T* bias = nullptr;           // [N] or null
  kiln_dtype_t out_dtype = KILN_DTYPE_F32;
  void* out = nullptr;
  int64_t ldo = 0;       // row stride of the result, elements
  int64_t out_col0 = 0;  // first result column written

  int64_t AOffset(int64_t i) const { return a_offset ? a_offset[i] : 0; }
  int64_t BIndex(int64_t i) const { return b_index ? b_index[i] : 0; }
  int64_t OutOffset(int64_t i, int64_t m, int64_t n) const {
    return (i * M + m) * ldo + out_col0 + n;
  }
};

/// Adds the bias and stores `rows` x `cols` values of `c` (row stride ldc)
/// at result rows m0.., columns n0.. of batch i.
template <typename T>
KILN_ALWAYS_INLINE void StoreTile(const GemmArgs<T>& g, int64_t i, int64_t m0,
                                  int64_t n0, int64_t rows, int64_t cols, T* c,
                                  int64_t ldc) {
  for (int64_t r = 0; r < rows; ++r) {
    T* row = c + r * ldc;
    if (g.bias)
      for (int64_t j = 0; j < cols; ++j) row[j] += g.bias[n0 + j];
    StoreRow<T>(row, cols, g.out_dtype, g.out, g.OutOffset(i, m0 + r, n0));
  }
}

// ---------------------------------------------------------------------------
// GEMM path.

/// Packs B[k0:k0+kc, n0:n0+nc] of matrix `bi` into strips of NR columns.
template <typename T, int NR>
KILN_ALWAYS_INLINE void PackB(const BMatrix& b, int64_t bi, int64_t k0,
                              int64_t kc, int64_t n0, int64_t nc,
                              T* __restrict panel, T* __restrict tmp) {
  const int64_t strips = (nc + NR - 1) / NR;
  if (!b.trans) {
    for (int64_t k = 0; k < kc; ++k) {
      const T* src = b.Row<T>(bi, k0 + k, n0, nc, tmp);
      for (int64_t s = 0; s < strips; ++s) {
        T* dst = panel + (s * kc + k) * NR;
        const int64_t w = std::min<int64_t>(NR, nc - s * NR);
        std::memcpy(dst, src + s * NR, size_t(w) * sizeof(T));
        for (int64_t j = w; j < NR; ++j) dst[j] = T(0);
      }
    }
    return;
  }
  for (int64_t j = 0; j < nc; ++j) {
    const T* src = b.Row<T>(bi, n0 + j, k0, kc, tmp);
    T* dst = panel + (j / NR) * kc * NR + (j % NR);
    for (int64_t k = 0; k < kc; ++k) dst[k * NR] = src[k];
  }
  for (int64_t j = nc; j < strips * NR; ++j) {
    T* dst = panel + (j / NR) * kc * NR + (j % NR);
    for (int64_t k = 0; k < kc; ++k) dst[k * NR] = T(0);
  }
}

template <typename T>
struct GemmTask {
  const GemmArgs<T>* g;
  int64_t mc, nc, m_tiles, n_tiles;

  template <int VB>
  KILN_ALWAYS_INLINE void Run(int64_t begin, int64_t end) const {
    constexpr int L = Vec<T, VB>::kLanes;
    constexpr int NR = 2 * L;
    const GemmArgs<T>& a = *g;
    const int64_t nc_pad = (nc + NR - 1) / NR * NR;
    std::vector<T> panel(size_t(std::min(a.K, kKC) * nc_pad + NR));
    std::vector<T> tmp(size_t(std::max<int64_t>(kKC, nc_pad)));
    std::vector<T> ctile(size_t(mc * nc_pad));
    for (int64_t t = begin; t < end; ++t) {
      // Row tiles vary fastest so consecutive tasks read the same B columns.
      const int64_t i = t / (m_tiles * n_tiles);
      const int64_t ni = (t / m_tiles) % n_tiles;
      const int64_t mi = t % m_tiles;
      const int64_t m0 = mi * mc, rows = std::min(mc, a.M - m0);
      const int64_t n0 = ni * nc, cols = std::min(nc, a.N - n0);
      const int64_t strips = (cols + NR - 1) / NR;
      const int64_t bi = a.BIndex(i);
      const T* abase = a.a + a.AOffset(i) + m0 * a.lda;
      if (a.K == 0) std::fill(ctile.begin(), ctile.end(), T(0));
      for (int64_t k0 = 0; k0 < a.K; k0 += kKC) {
        const int64_t kc = std::min(kKC, a.K - k0);
        PackB<T, NR>(a.b, bi, k0, kc, n0, cols, panel.data(), tmp.data());
        MultiplyPanel<T, VB>(rows, strips, kc, abase + k0, a.lda, panel.data(),
                             ctile.data(), nc_pad, k0 == 0);
      }
      StoreTile(a, i, m0, n0, rows, cols, ctile.data(), nc_pad);
    }
  }
};

// ---------------------------------------------------------------------------
// GEMV paths (few rows of A).

/// A's rows rearranged for the fused 4-bit dot: per 2-element pair, the even
/// element in `even`, the odd one in `odd` (so nibbles need no shuffling),
/// plus the sum of each scale block's elements (for the zero points).
struct NibbleActs {
  std::vector<float> even, odd, block_sums;
};

/// Transposed B ([N, K]): each task takes a run of B rows; each B row is
/// read once (decoded into `tmp` unless it already is T) and dotted with
/// every A row.
template <typename T>
struct GemvTask {
  const GemmArgs<T>* g;
  int64_t n_chunk, n_chunks;
  // Fused int4 / int8 decoding (T = f32, B quantized in blocks along K).
  bool fused4 = false, fused8 = false;
  const NibbleActs* acts = nullptr;  // fused4: [batch][row]

  template <int VB>
  KILN_ALWAYS_INLINE void Run(int64_t begin, int64_t end) const {
    const GemmArgs<T>& a = *g;
    std::vector<T> tmp(static_cast<size_t>(a.K));
    std::vector<T> res(size_t(a.M * n_chunk));
    for (int64_t t = begin; t < end; ++t) {
      const int64_t i = t / n_chunks;
      const int64_t n0 = (t % n_chunks) * n_chunk;
      const int64_t cols = std::min(n_chunk, a.N - n0);
      const int64_t bi = a.BIndex(i);
      const T* abase = a.a + a.AOffset(i);
      for (int64_t j = 0; j < cols; ++j) {
        const int64_t n = n0 + j;
        if constexpr (sizeof(T) == sizeof(float)) {
          if (fused4 || fused8) {
            // Up to four A rows per pass over the B row: their accumulators
            // stay in registers.
            for (int64_t m = 0; m < a.M; m += 4) {
              const int64_t r = bi * a.N + n;
              float* out = res.data() + m * n_chunk + j;
              const NibbleActs* x4 = fused4 ? acts + i * a.M + m : nullptr;
              const float* x8 = abase + m * a.lda;
              switch (std::min<int64_t>(4, a.M - m)) {
                case 4:
                  Fused<VB, 4>(r, x4, x8, out);
                  break;
                case 3:
                  Fused<VB, 3>(r, x4, x8, out);
                  break;
                case 2:
                  Fused<VB, 2>(r, x4, x8, out);
                  break;
                default:
                  Fused<VB, 1>(r, x4, x8, out);
                  break;
              }
            }
            continue;
          }
        }
        const T* brow = a.b.template Row<T>(bi, n, 0, a.K, tmp.data());
        for (int64_t m = 0; m < a.M; ++m)
          res[size_t(m * n_chunk + j)] =
              Dot<T, VB>(abase + m * a.lda, brow, a.K);
      }
      StoreTile(a, i, 0, n0, a.M, cols, res.data(), n_chunk);
    }
  }

  template <int VB, int M>
  KILN_ALWAYS_INLINE void Fused(int64_t row, const NibbleActs* x4,
                                const float* x8, float* res) const {
    if (fused4)
      FusedDots4<VB, M>(row, x4, res);
    else if (g->b.q->storage() == KILN_DTYPE_I8)
      FusedDots8<VB, M, true>(row, x8, res);
    else
      FusedDots8<VB, M, false>(row, x8, res);
  }

  /// res[m * n_chunk] = dot(A row m, dequantized 4-bit B row `row`) for
  /// m < M, without materializing the row: per scale block,
  /// s * sum(q * a) - s * z * sum(a), the nibbles decoded once for all rows.
  /// Needs blocks of whole multiples of 32 elements along K (the caller
  /// checks); a partial last block is decoded one element at a time.
  template <int VB, int M>
  KILN_ALWAYS_INLINE void FusedDots4(int64_t row, const NibbleActs* x,
                                     float* res) const {
    using BL = ByteLanes<VB>;
    using F = typename BL::F;
    constexpr int L = Vec<float, VB>::kLanes;
    const QView& q = *g->b.q;
    const int64_t K = g->K;
    const uint8_t* p = q.row_data(row);
    const int64_t sr = q.ScaleRow(row);
    const int64_t bl = q.col_block(), hb = bl / 2;
    // Signed nibbles are unsigned ones with the top bit flipped, minus 8.
    const uint8_t flip = q.storage() == KILN_DTYPE_I4 ? 0x88 : 0;
    const float bias = flip ? 8.f : 0.f;
    const int64_t full = K / bl;
    F acc[M], bacc[M];
    float corr[M];
    for (int m = 0; m < M; ++m) {
      acc[m] = F{};
      corr[m] = 0.f;
    }
    for (int64_t blk = 0; blk < full; ++blk) {
      const float s = q.Scale(sr, blk);
      const float zs = (q.ZeroPoint(sr, blk) + bias) * s;
      const uint8_t* qb = p + blk * hb;
      const int64_t off = blk * hb;
      for (int m = 0; m < M; ++m) bacc[m] = F{};
      for (int64_t c = 0; c < hb; c += L) {
        typename BL::U u = LoadV<typename BL::U>(qb + c);
        u ^= flip;
        const auto wide = BL::Widen(u);
        const F lo = BL::Float(wide & 15), hi = BL::Float(wide >> 4);
        for (int m = 0; m < M; ++m)
          bacc[m] += lo * LoadV<F>(x[m].even.data() + off + c) +
                     hi * LoadV<F>(x[m].odd.data() + off + c);
      }
      for (int m = 0; m < M; ++m) {
        acc[m] += s * bacc[m];
        corr[m] += zs * x[m].block_sums[size_t(blk)];
      }
    }
    for (int m = 0; m < M; ++m) {
      float sum = HorizontalSum<float>(acc[m]) - corr[m];
      for (int64_t k = full * bl; k < K; ++k) {
        const int64_t sc = k / bl;
        const uint8_t b = uint8_t(p[k / 2] ^ flip);
        const float v =
            float((k & 1) ? b >> 4 : b & 15) - bias - q.ZeroPoint(sr, sc);
        const float av =
            (k & 1) ? x[m].odd[size_t(k / 2)] : x[m].even[size_t(k / 2)];
        sum += v * q.Scale(sr, sc) * av;
      }
      res[m * n_chunk] = sum;
    }
  }

  /// The 8-bit counterpart of FusedDots4 (blocks of whole multiples of 16).
  template <int VB, int M, bool kSigned>
  KILN_ALWAYS_INLINE void FusedDots8(int64_t row, const float* x,
                                     float* res) const {
    using BL = ByteLanes<VB>;
    using F = typename BL::F;
    constexpr int L = Vec<float, VB>::kLanes;
    const QView& q = *g->b.q;
    const int64_t K = g->K, lda = g->lda;
    // Signed bytes are unsigned ones with the top bit flipped, minus 128.
    const uint8_t flip = kSigned ? 0x80 : 0;
    const float bias = kSigned ? 128.f : 0.f;
    const uint8_t* p = q.row_data(row);
    const int64_t sr = q.ScaleRow(row);
    const int64_t bl = q.col_block();
    const int64_t full = K / bl;
    F acc[M], bacc[M];
    for (int m = 0; m < M; ++m) acc[m] = F{};
    for (int64_t blk = 0; blk < full; ++blk) {
      const float s = q.Scale(sr, blk), z = q.ZeroPoint(sr, blk) + bias;
      const uint8_t* qb = p + blk * bl;
      for (int m = 0; m < M; ++m) bacc[m] = F{};
      for (int64_t c = 0; c < bl; c += L) {
        typename BL::U u = LoadV<typename BL::U>(qb + c);
        u ^= flip;
        const F v = BL::Float(BL::Widen(u)) - z;
        for (int m = 0; m < M; ++m)
          bacc[m] += v * LoadV<F>(x + m * lda + blk * bl + c);
      }
      for (int m = 0; m < M; ++m) acc[m] += s * bacc[m];
    }
    for (int m = 0; m < M; ++m) {
      float sum = HorizontalSum<float>(acc[m]);
      for (int64_t k = full * bl; k < K; ++k) {
        const int64_t sc = k / bl;
        const float v = kSigned ? float(int8_t(p[k])) : float(p[k]);
        sum += (v - q.ZeroPoint(sr, sc)) * q.Scale(sr, sc) * x[m * lda + k];
      }
      res[m * n_chunk] = sum;
    }
  }
};

/// Non-transposed B ([K, N]): each task takes a run of columns and
/// accumulates A[m, k] * B[k, n0:n1] over k, four B rows at a time, into
/// L1-resident accumulators; B is streamed once, unpacked.
template <typename T>
struct GemvNTask {
  const GemmArgs<T>* g;
  int64_t n_chunk, n_chunks;

  template <int VB>
  KILN_ALWAYS_INLINE void Run(int64_t begin, int64_t end) const {
    using V = typename Vec<T, VB>::type;
    constexpr int L = Vec<T, VB>::kLanes;
    const GemmArgs<T>& a = *g;
    std::vector<T> tmp(size_t(4 * n_chunk)), acc(size_t(a.M * n_chunk));
    for (int64_t t = begin; t < end; ++t) {
      const int64_t i = t / n_chunks;
      const int64_t n0 = (t % n_chunks) * n_chunk;
      const int64_t cols = std::min(n_chunk, a.N - n0);
      const int64_t bi = a.BIndex(i);
      const T* abase = a.a + a.AOffset(i);
      std::fill(acc.begin(), acc.end(), T(0));
      int64_t k = 0;
      for (; k + 4 <= a.K; k += 4) {
        const T* b0 = a.b.template Row<T>(bi, k, n0, cols, tmp.data());
        const T* b1 =
            a.b.template Row<T>(bi, k + 1, n0, cols, tmp.data() + n_chunk);
        const T* b2 =
            a.b.template Row<T>(bi, k + 2, n0, cols, tmp.data() + 2 * n_chunk);
        const T* b3 =
            a.b.template Row<T>(bi, k + 3, n0, cols, tmp.data() + 3 * n_chunk);
        for (int64_t m = 0; m < a.M; ++m) {
          const T* am = abase + m * a.lda + k;
          const T a0 = am[0], a1 = am[1], a2 = am[2], a3 = am[3];
          T* y = acc.data() + m * n_chunk;
          int64_t n = 0;
          for (; n + L <= cols; n += L)
            StoreV(y + n, LoadV<V>(y + n) + a0 * LoadV<V>(b0 + n) +
                              a1 * LoadV<V>(b1 + n) + a2 * LoadV<V>(b2 + n) +
                              a3 * LoadV<V>(b3 + n));
          for (; n < cols; ++n)
            y[n] += a0 * b0[n] + a1 * b1[n] + a2 * b2[n] + a3 * b3[n];
        }
      }
      for (; k < a.K; ++k) {
        const T* b0 = a.b.template Row<T>(bi, k, n0, cols, tmp.data());
        for (int64_t m = 0; m < a.M; ++m)
          Axpy<T, VB>(abase[m * a.lda + k], b0, acc.data() + m * n_chunk, cols);
      }
      StoreTile(a, i, 0, n0, a.M, cols, acc.data(), n_chunk);
    }
  }
};

/// Runs a GEMM: the GEMV path for decode shapes, else the tiled GEMM.
template <typename T>
void RunGemm(ThreadPool& pool, const GemmArgs<T>& g) {
  if (g.batches == 0 || g.M == 0 || g.N == 0) return;
  const int threads = pool.size();
  if (g.M <= GemvMaxRows(g.b.trans, g.b.q != nullptr)) {
    // Columns per task: ~8 tasks per thread, whole vectors, at most 256 (B
    // rows per task for the transposed form) or 512 (columns for [K, N]).
    const int64_t cap = g.b.trans ? 256 : 512;
    int64_t chunk = (g.N + int64_t(threads) * 8 - 1) / (int64_t(threads) * 8);
    chunk = std::min(
        cap, std::max<int64_t>(g.b.trans ? 4 : 64, (chunk + 15) / 16 * 16));
    const int64_t chunks = (g.N + chunk - 1) / chunk;
    if (!g.b.trans) {
      GemvNTask<T> task{&g, chunk, chunks};
      ParallelForIsa(pool, g.batches * chunks, 1, task);
      return;
    }
    GemvTask<T> task;
    task.g = &g;
    task.n_chunk = chunk;
    task.n_chunks = chunks;
    std::vector<NibbleActs> acts;
    if constexpr (sizeof(T) == sizeof(float)) {
      const QView* q = g.b.q;
      if (q && q->cols() == g.K) {
        const int64_t bl = q->col_block();
        const kiln_dtype_t st = q->storage();
        if ((st == KILN_DTYPE_I4 || st == KILN_DTYPE_U4) && bl % 32 == 0) {
          // Rearrange each A row once per call: it is read N times.
          task.fused4 = true;
          acts.resize(size_t(g.batches * g.M));
          for (int64_t i = 0; i < g.batches; ++i)
            for (int64_t m = 0; m < g.M; ++m) {
              NibbleActs& x = acts[size_t(i * g.M + m)];
              const T* row = g.a + g.AOffset(i) + m * g.lda;
              x.even.assign(size_t((g.K + 1) / 2), 0.f);
              x.odd.assign(size_t((g.K + 1) / 2), 0.f);
              x.block_sums.assign(size_t((g.K + bl - 1) / bl), 0.f);
              for (int64_t k = 0; k < g.K; ++k) {
                (k & 1 ? x.odd : x.even)[size_t(k / 2)] = row[k];
                x.block_sums[size_t(k / bl)] += row[k];
              }
            }
          task.acts = acts.data();
        } else if ((st == KILN_DTYPE_I8 || st == KILN_DTYPE_U8) &&
                   bl % 16 == 0) {
          task.fused8 = true;
        }
      }
    }
    ParallelForIsa(pool, g.batches * chunks, 1, task);
    return;
  }
  GemmTask<T> task;
  task.g = &g;
  task.mc = std::min<int64_t>(kMC, (g.M + kPanelMR - 1) / kPanelMR * kPanelMR);
  task.nc = std::min<int64_t>(kNCMax, (g.N + 31) / 32 * 32);
  auto count = [&] {
    return g.batches * ((g.M + task.mc - 1) / task.mc) *
           ((g.N + task.nc - 1) / task.nc);
  };
  // Enough tasks to balance the threads; tiles shrink to at least 64 x 48.
  while (threads > 1 && count() < 4 * threads && task.nc > 64) task.nc /= 2;
  while (threads > 1 && count() < 4 * threads && task.mc > 48)
    task.mc = task.mc / 2 / kPanelMR * kPanelMR;
  task.m_tiles = (g.M + task.mc - 1) / task.mc;
  task.n_tiles = (g.N + task.nc - 1) / task.nc;
  ParallelForIsa(pool, count(), 1, task);
}

// ---------------------------------------------------------------------------
// Operand helpers.

/// Reads a plain or quantized operand fully as T (for A operands and tiny
/// cases). Parallel over rows.
template <typename T>
void MaterializeOperand(KernelContext& ctx, size_t i, const QView* q,
                        std::vector<T>& out) {
  if (q) {
    out.resize(size_t(q->rows() * q->cols()));
    const int64_t cols = q->cols();
    ctx.pool().parallel_for(
        q->rows(), std::max<int64_t>(1, 4096 / std::max<int64_t>(cols, 1)),
        [&](int64_t b, int64_t e) {
          std::vector<float> row(static_cast<size_t>(cols));
          for (int64_t r = b; r < e; ++r) {
            q->Row(r, 0, cols, row.data());
            for (int64_t c = 0; c < cols; ++c)
              out[size_t(r * cols + c)] = T(row[size_t(c)]);
          }
        });
    return;
  }
  const Tensor& t = ctx.input(i);
  const int64_t n = t.numel();
  out.resize(size_t(n));
  ctx.pool().parallel_for(n, 1 << 14, [&](int64_t b, int64_t e) {
    LoadRow<T>(t.dtype, t.data, b, e - b, out.data() + b);
  });
}

/// Validates a weight-like operand (plain float or quantized) and, when
/// quantized, fills `q`.
kiln_status_t CheckWeight(KernelContext& ctx, size_t i, const char* what,
                          QView* q, bool* quantized) {
  if (!ctx.has_input(i))
    return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT, "missing operand %s",
                       what);
  *quantized = ctx.is_quantized(i);
  if (*quantized) {
    std::string err = CheckQTensor(ctx.qinput(i), what);
    if (!err.empty())
      return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT, "%s", err.c_str());
    *q = QView(ctx.qinput(i));
    return nullptr;
  }
  return CheckFloatInput(ctx, i, what);
}

bool NeedsF64(KernelContext& ctx, std::initializer_list<size_t> inputs) {
  if (ctx.output_dtype(0) == KILN_DTYPE_F64) return true;
  for (size_t i : inputs)
    if (ctx.has_input(i) && !ctx.is_quantized(i) &&
        ctx.input(i).dtype == KILN_DTYPE_F64)
      return true;
  return false;
}

// ---------------------------------------------------------------------------
// kiln.matmul

template <typename T>
kiln_status_t Matmul(KernelContext& ctx) {
  const bool trans_attr = ctx.attrs().Flag("transpose_b");
  QView qa, qb;
  bool a_quant = false, b_quant = false;
  KILN_RETURN_IF_ERROR(CheckWeight(ctx, 0, "a", &qa, &a_quant));
  KILN_RETURN_IF_ERROR(CheckWeight(ctx, 1, "b", &qb, &b_quant));
  const bool has_bias = ctx.num_inputs() > 2 && ctx.has_input(2);
  if (has_bias) KILN_RETURN_IF_ERROR(CheckFloatInput(ctx, 2, "bias"));

  const Dims& as = OperandShape(ctx, 0);
  const Dims& bs = OperandShape(ctx, 1);
  if (as.rank < 1 || bs.rank < 1)
    return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                       "operands need rank >= 1, found a %s and b %s",
                       as.str().c_str(), bs.str().c_str());
  // ONNX MatMul: a rank-1 a is a row [1, K] and a rank-1 b a column [K, 1],
  // each extra dimension dropped from the result. A column [K, 1] is the
  // same bytes as a transposed [1, K], which the GEMV path handles.
  const bool a_vec = as.rank == 1, b_vec = bs.rank == 1;
  const bool trans = b_vec ? true : trans_attr;
  const int64_t M = a_vec ? 1 : as.back(1);
  const int64_t K = as.back(0);
  const int64_t bK = b_vec ? bs[0] : (trans ? bs.back(0) : bs.back(1));
  const int64_t N = b_vec ? 1 : (trans ? bs.back(1) : bs.back(0));
  if (K != bK)
    return KernelError(
        ctx, KILN_STATUS_INVALID_ARGUMENT,
        "contraction dimensions differ: a %s has K = %lld, b %s%s has K = %lld",
        as.str().c_str(), (long long)K, bs.str().c_str(),
        trans_attr ? " (transposed)" : "", (long long)bK);

  // Batch dimensions broadcast NumPy-style.
  Dims abatch, bbatch, batch;
  for (int d = 0; d + 2 < as.rank; ++d) abatch.push_back(as[d]);
  for (int d = 0; d + 2 < bs.rank; ++d) bbatch.push_back(bs[d]);
  batch.rank = std::max(abatch.rank, bbatch.rank);
  for (int d = 0; d < batch.rank; ++d) {
    int ad = d - (batch.rank - abatch.rank),
        bd = d - (batch.rank - bbatch.rank);
    int64_t x = ad >= 0 ? abatch[ad] : 1, y = bd >= 0 ? bbatch[bd] : 1;
    if (x != y && x != 1 && y != 1)
      return KernelError(
          ctx, KILN_STATUS_INVALID_ARGUMENT,
          "batch dimensions of a %s and b %s are not broadcast-compatible",
          as.str().c_str(), bs.str().c_str());
    batch[d] = x == 1 ? y : x;
  }
  if (has_bias) {
    const Dims& bias = ctx.input(2).shape;
    if (bias.rank != 1 || bias[0] != N)
      return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                         "bias shape %s does not match [%lld]",
                         bias.str().c_str(), (long long)N);
  }

  Dims out_shape = batch;
  if (!a_vec) out_shape.push_back(M);
  if (!b_vec) out_shape.push_back(N);
  Tensor* out = nullptr;
  KILN_RETURN_IF_ERROR(ctx.allocate_output(0, out_shape, &out));
  if (out->numel() == 0) return nullptr;

  // A as T: the input itself when it already is, else a converted copy.
  std::vector<T> a_copy;
  const T* a_data;
  const bool a_direct =
      !a_quant && ((sizeof(T) == 4 && ctx.input(0).dtype == KILN_DTYPE_F32) ||
                   (sizeof(T) == 8 && ctx.input(0).dtype == KILN_DTYPE_F64));
  if (a_direct) {
    a_data = static_cast<const T*>(ctx.input(0).data);
  } else {
    MaterializeOperand<T>(ctx, 0, a_quant ? &qa : nullptr, a_copy);
    a_data = a_copy.data();
  }
  std::vector<T> bias;
  if (has_bias) {
    bias.resize(size_t(N));
    LoadRow<T>(ctx.input(2).dtype, ctx.input(2).data, 0, N, bias.data());
  }

  GemmArgs<T> g;
  g.M = M;
  g.N = N;
  g.K = K;
  g.a = a_data;
  g.lda = K;
  g.b.K = K;
  g.b.N = N;
  g.b.trans = trans;
  if (b_quant) {
    g.b.q = &qb;
  } else {
    g.b.dtype = ctx.input(1).dtype;
    g.b.data = ctx.input(1).data;
  }
  g.bias = has_bias ? bias.data() : nullptr;
  g.out_dtype = out->dtype;
  g.out = out->data;
  g.ldo = N;

  const int64_t batches = batch.numel();
  const int64_t b_count = bbatch.numel();
  std::vector<int64_t> a_offset, b_index;
  if (b_count == 1 && abatch.numel() == batches) {
    // One B for every batch: fold a's batch into M (one big GEMM). The
    // result's batch order equals a's when b's batch dims are all 1.
    g.M = M * batches;
  } else {
    g.batches = batches;
    a_offset.resize(size_t(batches));
    b_index.resize(size_t(batches));
    for (int64_t i = 0; i < batches; ++i) {
      int64_t rem = i, ai = 0, bi = 0, astride = 1, bstride = 1;
      for (int d = batch.rank - 1; d >= 0; --d) {
        const int64_t idx = rem % batch[d];
        rem /= batch[d];
        int ad = d - (batch.rank - abatch.rank),
            bd = d - (batch.rank - bbatch.rank);
        if (ad >= 0) {
          if (abatch[ad] != 1) ai += idx * astride;
          astride *= abatch[ad];
        }
        if (bd >= 0) {
          if (bbatch[bd] != 1) bi += idx * bstride;
          bstride *= bbatch[bd];
        }
      }
      a_offset[size_t(i)] = ai * M * K;
      b_index[size_t(i)] = bi;
    }
    g.a_offset = a_offset.data();
    g.b_index = b_index.data();
  }
  RunGemm(ctx.pool(), g);
  return nullptr;
}

// ---------------------------------------------------------------------------
// kiln.gated_mlp

/// A [rows, cols] weight (plain or quantized) as a BMatrix for x @ W, where
/// x has `hidden_in` columns. `transposed` means stored [out, in].
kiln_status_t WeightMatrix(KernelContext& ctx, size_t i, const char* what,
                           bool transposed, int64_t in_dim, QView* q,
                           BMatrix* b) {
  bool quant = false;
  KILN_RETURN_IF_ERROR(CheckWeight(ctx, i, what, q, &quant));
  const Dims& s = OperandShape(ctx, i);
  if (s.rank != 2)
    return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                       "%s weight %s must have rank 2", what, s.str().c_str());
  const int64_t k = transposed ? s[1] : s[0];
  if (k != in_dim)
    return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                       "%s weight %s%s does not match the input width %lld",
                       what, s.str().c_str(), transposed ? " (transposed)" : "",
                       (long long)in_dim);
  b->K = k;
  b->N = transposed ? s[0] : s[1];
  b->trans = transposed;
  if (quant) {
    b->q = q;
  } else {
    b->dtype = ctx.input(i).dtype;
    b->data = ctx.input(i).data;
  }
  return nullptr;
}

template <typename T>
kiln_status_t GatedMlp(KernelContext& ctx, Act act) {
  enum { kInput = 0, kGate = 1, kUp = 2, kGateUp = 3, kDown = 4 };
  KILN_RETURN_IF_ERROR(CheckFloatInput(ctx, kInput, "input"));
  if (ctx.num_inputs() < 5)
    return KernelError(
        ctx, KILN_STATUS_INVALID_ARGUMENT,
        "expected 5 operands (input, gate, up, gate_up, down), found %zu",
        ctx.num_inputs());
  const bool tw = ctx.attrs().Flag("transpose_weights");
  const Tensor& x = ctx.input(kInput);
  if (x.shape.rank < 1)
    return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                       "input %s needs rank >= 1", x.shape.str().c_str());
  const int64_t H = x.shape.back();
  const bool split = ctx.has_input(kGate) || ctx.has_input(kUp);
  if (split == ctx.has_input(kGateUp) ||
      (split && !(ctx.has_input(kGate) && ctx.has_input(kUp))))
    return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                       "needs either gate and up, or gate_up");
  QView qg, qu, qd;
  BMatrix wg, wu, wd;
  int64_t F;
  if (split) {
    KILN_RETURN_IF_ERROR(WeightMatrix(ctx, kGate, "gate", tw, H, &qg, &wg));
    KILN_RETURN_IF_ERROR(WeightMatrix(ctx, kUp, "up", tw, H, &qu, &wu));
    if (wg.N != wu.N)
      return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                         "gate %s and up %s widths differ",
                         OperandShape(ctx, kGate).str().c_str(),
                         OperandShape(ctx, kUp).str().c_str());
    F = wg.N;
  } else {
    KILN_RETURN_IF_ERROR(
        WeightMatrix(ctx, kGateUp, "gate_up", tw, H, &qg, &wg));
    if (wg.N % 2)
      return KernelError(
          ctx, KILN_STATUS_INVALID_ARGUMENT, "gate_up %s width %lld is odd",
          OperandShape(ctx, kGateUp).str().c_str(), (long long)wg.N);
    F = wg.N / 2;
  }
  KILN_RETURN_IF_ERROR(WeightMatrix(ctx, kDown, "down", tw, F, &qd, &wd));
  if (wd.N != H)
    return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                       "down weight %s does not produce the hidden size %lld",
                       OperandShape(ctx, kDown).str().c_str(), (long long)H);

  Tensor* out = nullptr;
  KILN_RETURN_IF_ERROR(ctx.allocate_output(0, x.shape, &out));
  const int64_t rows = H ? x.numel() / H : 0;
  if (out->numel() == 0) return nullptr;
  const kiln_dtype_t tdtype = sizeof(T) == 8 ? KILN_DTYPE_F64 : KILN_DTYPE_F32;

  // Rows go through in chunks so the [rows, F] intermediates stay bounded.
  const int64_t chunk = std::min<int64_t>(rows, 512);
  std::vector<T> xa(size_t(chunk * H)), gu(size_t(chunk * 2 * F)),
      h(size_t(chunk * F));
  for (int64_t r0 = 0; r0 < rows; r0 += chunk) {
    const int64_t m = std::min(chunk, rows - r0);
    LoadRow<T>(x.dtype, x.data, r0 * H, m * H, xa.data());
    // gate and up side by side in gu: [m, 2F], gate columns first.
    GemmArgs<T> g;
    g.M = m;
    g.K = H;
    g.a = xa.data();
    g.lda = H;
    g.out_dtype = tdtype;
    g.out = gu.data();
    g.ldo = 2 * F;
    if (split) {
      g.N = F;
      g.b = wg;
      RunGemm(ctx.pool(), g);
      g.b = wu;
      g.out_col0 = F;
      RunGemm(ctx.pool(), g);
    } else {
      g.N = 2 * F;
      g.b = wg;
      RunGemm(ctx.pool(), g);
    }
    ctx.pool().parallel_for(
        m, std::max<int64_t>(1, 8192 / std::max<int64_t>(F, 1)),
        [&](int64_t b, int64_t e) {
          for (int64_t r = b; r < e; ++r)
            GluRow<T>(act, gu.data() + r * 2 * F, gu.data() + r * 2 * F + F, F,
                      h.data() + r * F);
        });
    GemmArgs<T> d;
    d.M = m;
    d.N = H;
    d.K = F;
    d.a = h.data();
    d.lda = F;
    d.b = wd;
    d.out_dtype = out->dtype;
    d.out = static_cast<uint8_t*>(out->data) +
            r0 * H * int64_t(ElemBytes(out->dtype));
    d.ldo = H;
    RunGemm(ctx.pool(), d);
  }
  return nullptr;
}

}  // namespace

kiln_status_t MatmulKernel(KernelContext& ctx) {
  KILN_RETURN_IF_ERROR(CheckFloatOutput(ctx));
  if (ctx.num_inputs() < 2)
    return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                       "expected operands a and b, found %zu",
                       ctx.num_inputs());
  return NeedsF64(ctx, {0, 1}) ? Matmul<double>(ctx) : Matmul<float>(ctx);
}

kiln_status_t GatedMlpKernel(KernelContext& ctx) {
  KILN_RETURN_IF_ERROR(CheckFloatOutput(ctx));
  Act act;
  std::string_view name = ctx.attrs().String("activation");
  if (!ParseActivation(name, &act))
    return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                       "unknown activation '%.*s'", int(name.size()),
                       name.data());
  return NeedsF64(ctx, {0}) ? GatedMlp<double>(ctx, act)
                            : GatedMlp<float>(ctx, act);
}

}  // namespace kiln
