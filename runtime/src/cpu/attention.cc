// kiln.attention: scaled dot-product attention in BSHD layout with
// grouped-query heads, the none / causal / sliding_window / tree mask kinds,
// an explicit boolean or additive attn_mask, and softcap. Keys and values
// come from kv(key, value) tensors or from a cache(...) operand (a
// !kiln.kv_cache of any layout and storage type: its rows [0, length) are
// the keys, and the queries are the last Sq of them, the same alignment as
// with tensors). Computed in f32 whatever the operand types. f32 tensors and
// contiguous f32 caches are read in place through (batch, token, head)
// strides; f16 / bf16 / quantized tensors are converted to f32 once per
// call; every other cache (paged, f16 / bf16, quantized) is read row by row
// through its block table as the key and value blocks are packed, and
// dequantized there: no full-size copy of the cache is made.
//
// Each task owns a run of query rows of one (batch, query head). A row
// visits only the keys its mask kind can make visible (for causal prefill,
// half of them; for a sliding window, the sink and the window), scores them,
// and takes a max-subtracted softmax, so exp never overflows. A row that
// sees no key at all (every key masked, or -inf additive masks) yields
// zeros rather than 0/0.
//
// Not implemented yet (UNIMPLEMENTED): sparsity (mask kind sparse,
// sparse_index operands).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include "cpu/kernels.h"
#include "cpu/kv_codec.h"
#include "cpu/llm_util.h"

namespace kiln {

namespace {

enum Operand : size_t {
  kQuery = 0,
  kKey,
  kValue,
  kCache,
  kAttnMask,
  kTreeMask,
  kSparseIndex
};
enum class MaskKind { kNone, kCausal, kSlidingWindow, kTree };

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

/// Reads key or value fully as f32 (when it is not already f32).
void ToF32(KernelContext& ctx, size_t i, std::vector<float>& out) {
  if (ctx.is_quantized(i)) {
    QView q(ctx.qinput(i));
    const int64_t cols = q.cols();
    out.resize(size_t(q.rows() * cols));
    ctx.pool().parallel_for(
        q.rows(), std::max<int64_t>(1, 8192 / std::max<int64_t>(cols, 1)),
        [&](int64_t b, int64_t e) {
          for (int64_t r = b; r < e; ++r)
            q.Row(r, 0, cols, out.data() + r * cols);
        });
    return;
  }
  const Tensor& t = ctx.input(i);
  out.resize(size_t(t.numel()));
  ctx.pool().parallel_for(t.numel(), 1 << 14, [&](int64_t b, int64_t e) {
    LoadRow<float>(t.dtype, t.data, b, e - b, out.data() + b);
  });
}

/// Flash-attention-2 on the CPU. A task owns `heads` query heads of one KV
/// group (sharing its K/V reads) for a block of query rows; its rows are
/// (query i, head) pairs, row r = qi * heads + hh. For each block of kKB keys
/// it packs K^T and V into micro-kernel panels, computes the scores
/// S = Q K^T with the GEMM micro-kernel, masks them, folds them into the
/// running max / sum of each row (online softmax: rescaling the partial
/// output when the max grows), and accumulates P V. Key blocks no row of the
/// task can see (past the causal frontier, inside a sliding window's gap)
/// are skipped.
struct AttentionTask {
  static constexpr int64_t kKB = 64;  // keys per block

  // Shapes.
  int64_t B, Sq, Skv, Hq, Hkv, D, Dv, group;
  int64_t heads;     // query heads per task (a divisor of group)
  int64_t q_rows;    // query rows per task
  int64_t q_blocks;  // ceil(Sq / q_rows)
  // Data: q in its dtype; k, v f32, row (b, j, h) of K at
  // k + b * k_bstride + j * k_tstride + h * k_hstride (likewise V): a BSHD
  // tensor or a cache's [batch][head][capacity] rows. With `cache` set, rows
  // come from it instead (KvCache::Row, decoded to f32).
  const Tensor* q;
  const float* k;
  const float* v;
  const KvCache* cache;
  int64_t k_bstride, k_tstride, k_hstride;
  int64_t v_bstride, v_tstride, v_hstride;
  Tensor* out;
  // Mask.
  MaskKind kind;
  int64_t window, sink;
  float scale, softcap;
  const Tensor* attn_mask;
  int64_t ms[4];  // attn_mask strides over [B, Hq, Sq, Skv] (0 = broadcast)
  const uint8_t* tree;
  int64_t tree_bstride;  // 0 for a [Sq, Sq] tree mask
  // A ragged batch (the cache's seq_lengths): queries are [1, N] with
  // sequence b's Sq_b = q_off[b + 1] - q_off[b] at rows [q_off[b], ...), its
  // keys the cache's seq_lengths[b]; work items split each sequence's
  // queries into blocks of q_rows.
  struct Item {
    int64_t seq, i0, nq;
  };
  const Item* items;  // null: a uniform batch
  const int64_t* q_off;
  const int64_t* seq_len;

  /// Keys query `i` of a sequence with `sq` queries and `skv` keys may see:
  /// [0, lo_end) and [lo, hi).
  void Candidates(int64_t i, int64_t sq, int64_t skv, int64_t* lo_end, int64_t* lo,
                  int64_t* hi) const {
    const int64_t pos = skv - sq + i;  // the query's absolute position
    *lo_end = 0;
    *lo = 0;
    *hi = skv;
    if (kind == MaskKind::kCausal) {
      *hi = std::clamp<int64_t>(pos + 1, 0, skv);
    } else if (kind == MaskKind::kSlidingWindow) {
      *hi = std::clamp<int64_t>(pos + 1, 0, skv);
      *lo = std::clamp<int64_t>(pos - window + 1, 0, *hi);
      *lo_end = std::min(sink, *lo);
    }
  }

  template <int VB>
  KILN_ALWAYS_INLINE void Run(int64_t begin, int64_t end) const {
    constexpr int NR = 2 * Vec<float, VB>::kLanes;
    const int64_t rows_max = q_rows * heads;
    const int64_t kb_pad = (kKB + NR - 1) / NR * NR;
    const int64_t dv_pad = (Dv + NR - 1) / NR * NR;
    std::vector<float> qa(size_t(rows_max * D)), kpanel(size_t(kb_pad * D)),
        vpanel(size_t(kKB * dv_pad)), sc(size_t(rows_max * kb_pad)),
        o(size_t(rows_max * dv_pad)), tmp(size_t(std::max(D, dv_pad))),
        row_max(static_cast<size_t>(rows_max)),
        row_sum(static_cast<size_t>(rows_max)),
        mask_vals(static_cast<size_t>(kKB));
    const bool bool_mask = attn_mask && attn_mask->dtype == KILN_DTYPE_I1;
    const int64_t head_groups = group / heads;
    for (int64_t t = begin; t < end; ++t) {
      int64_t b, hg, i0, nq, sq = Sq, skv = Skv, qbase;
      if (items) {
        const Item& it = items[t / (Hkv * head_groups)];
        hg = t % (Hkv * head_groups);
        b = it.seq;
        i0 = it.i0;
        nq = it.nq;
        sq = q_off[b + 1] - q_off[b];
        skv = seq_len[b];
        qbase = q_off[b];
      } else {
        const int64_t qb = t % q_blocks;
        hg = (t / q_blocks) % (Hkv * head_groups);
        b = t / (q_blocks * Hkv * head_groups);
        i0 = qb * q_rows;
        nq = std::min(q_rows, Sq - i0);
        qbase = b * Sq;
      }
      const int64_t kvh = hg / head_groups;
      const int64_t h0 = kvh * group + (hg % head_groups) * heads;
      const int64_t rows = nq * heads;
      for (int64_t qi = 0; qi < nq; ++qi)
        for (int64_t hh = 0; hh < heads; ++hh)
          LoadRow<float>(q->dtype, q->data,
                         ((qbase + i0 + qi) * Hq + h0 + hh) * D, D,
                         qa.data() + (qi * heads + hh) * D);
      std::fill(o.begin(), o.begin() + rows * dv_pad, 0.f);
      std::fill(row_max.begin(), row_max.end(), kNegInf);
      std::fill(row_sum.begin(), row_sum.end(), 0.f);
      // Candidate ranges grow with the query position, so the task's union
      // is [0, first row's lo_end) and [first row's lo, last row's hi).
      int64_t first_lo_end, first_lo, first_hi, last_lo_end, last_lo, last_hi;
      Candidates(i0, sq, skv, &first_lo_end, &first_lo, &first_hi);
      Candidates(i0 + nq - 1, sq, skv, &last_lo_end, &last_lo, &last_hi);
      for (int64_t j0 = 0; j0 < last_hi; j0 += kKB) {
        const int64_t kb = std::min(kKB, last_hi - j0);
        if (j0 >= first_lo_end && j0 + kb <= first_lo)
          continue;  // a sliding window's gap
        PackKeys<NR>(b, kvh, j0, kb, kpanel.data(), tmp.data());
        MultiplyPanel<float, VB>(rows, kb_pad / NR, D, qa.data(), D,
                                 kpanel.data(), sc.data(), kb_pad, true);
        bool any = false;
        for (int64_t r = 0; r < rows; ++r)
          any |= Softmax(b, h0 + r % heads, i0 + r / heads, sq, skv, j0, kb, bool_mask,
                         sc.data() + r * kb_pad, mask_vals.data(),
                         &row_max[size_t(r)], &row_sum[size_t(r)],
                         o.data() + r * dv_pad);
        if (!any) continue;
        PackValues<NR>(b, kvh, j0, kb, dv_pad, vpanel.data(), tmp.data());
        MultiplyPanel<float, VB>(rows, dv_pad / NR, kb, sc.data(), kb_pad,
                                 vpanel.data(), o.data(), dv_pad, false);
      }
      for (int64_t r = 0; r < rows; ++r) {
        float* orow = o.data() + r * dv_pad;
        // No visible key: zeros (row_sum stays 0 and orow was never touched).
        const float inv =
            row_sum[size_t(r)] > 0 ? 1.f / row_sum[size_t(r)] : 0.f;
        for (int64_t d = 0; d < Dv; ++d) orow[d] *= inv;
        StoreRow<float>(orow, Dv, out->dtype, out->data,
                        ((qbase + i0 + r / heads) * Hq + h0 + r % heads) * Dv);
      }
    }
  }

  /// K[j0:j0+kb]^T as strips of NR keys: panel[(j / NR) * D * NR + d * NR + j %
  /// NR].
  template <int NR>
  KILN_ALWAYS_INLINE void PackKeys(int64_t b, int64_t kvh, int64_t j0,
                                   int64_t kb, float* __restrict panel,
                                   float* __restrict tmp) const {
    const int64_t strips = (kb + NR - 1) / NR;
    const float* rows =
        cache ? nullptr : k + b * k_bstride + kvh * k_hstride + j0 * k_tstride;
    for (int64_t jj = 0; jj < strips * NR; ++jj) {
      float* dst = panel + (jj / NR) * D * NR + jj % NR;
      if (jj < kb) {
        const float* src = rows + jj * k_tstride;
        if (cache) {
          KvLoadRow(*cache, KvRow(*cache, false, cache->Row(b, kvh, j0 + jj)),
                    tmp);
          src = tmp;
        }
        for (int64_t d = 0; d < D; ++d) dst[d * NR] = src[d];
      } else {
        for (int64_t d = 0; d < D; ++d) dst[d * NR] = 0.f;
      }
    }
  }

  /// V[j0:j0+kb] as strips of NR value channels: panel[(d / NR) * kb * NR + j *
  /// NR + d % NR].
  template <int NR>
  KILN_ALWAYS_INLINE void PackValues(int64_t b, int64_t kvh, int64_t j0,
                                     int64_t kb, int64_t dv_pad,
                                     float* __restrict panel,
                                     float* __restrict tmp) const {
    const float* rows =
        cache ? nullptr : v + b * v_bstride + kvh * v_hstride + j0 * v_tstride;
    for (int64_t jj = 0; jj < kb; ++jj) {
      const float* src = rows + jj * v_tstride;
      if (cache) {
        KvLoadRow(*cache, KvRow(*cache, true, cache->Row(b, kvh, j0 + jj)),
                  tmp);
        src = tmp;
      }
      for (int64_t s = 0; s < dv_pad / NR; ++s) {
        float* dst = panel + (s * kb + jj) * NR;
        const int64_t w = std::min<int64_t>(NR, Dv - s * NR);
        std::memcpy(dst, src + s * NR, size_t(w) * sizeof(float));
        for (int64_t x = w; x < NR; ++x) dst[x] = 0.f;
      }
    }
  }

  /// Turns one row's raw scores s[0:kb] (keys j0..) into probabilities
  /// relative to the row's running max, rescaling its partial output and
  /// sum when the max grows. Masked keys get probability 0. Returns whether
  /// any key of the block was visible.
  KILN_ALWAYS_INLINE bool Softmax(int64_t b, int64_t h, int64_t i, int64_t sq,
                                  int64_t skv, int64_t j0, int64_t kb,
                                  bool bool_mask, float* s, float* mask_vals,
                                  float* row_max, float* row_sum,
                                  float* orow) const {
    int64_t lo_end, lo, hi;
    Candidates(i, sq, skv, &lo_end, &lo, &hi);
    if (attn_mask) LoadMask(b, h, i, j0, kb, bool_mask, mask_vals);
    float block_max = kNegInf;
    for (int64_t jj = 0; jj < kb; ++jj) {
      const int64_t j = j0 + jj;
      bool visible = j < lo_end || (j >= lo && j < hi);
      if (visible && kind == MaskKind::kTree && j >= skv - sq)
        visible = tree[b * tree_bstride + i * sq + (j - (skv - sq))] != 0;
      float x = kNegInf;
      if (visible) {
        x = s[jj] * scale;
        if (softcap > 0) x = softcap * std::tanh(x / softcap);
        if (attn_mask) x += mask_vals[jj];  // -inf where a bool mask hides
      }
      s[jj] = x;
      block_max = std::max(block_max, x);
    }
    if (block_max == kNegInf || std::isnan(block_max)) {
      std::fill(s, s + kb, 0.f);
      return false;
    }
    const float new_max = std::max(*row_max, block_max);
    if (new_max != *row_max) {
      const float alpha =
          std::exp(*row_max - new_max);  // 0 while the row was empty
      *row_sum *= alpha;
      for (int64_t d = 0; d < Dv; ++d) orow[d] *= alpha;
      *row_max = new_max;
    }
    float sum = 0;
    for (int64_t jj = 0; jj < kb; ++jj) {
      const float p = s[jj] == kNegInf ? 0.f : std::exp(s[jj] - new_max);
      s[jj] = p;
      sum += p;
    }
    *row_sum += sum;
    return true;
  }

  /// mask_vals[jj] = the additive mask of (b, h, i, j0 + jj); a boolean
  /// mask gives 0 (visible) or -inf.
  KILN_ALWAYS_INLINE void LoadMask(int64_t b, int64_t h, int64_t i, int64_t j0,
                                   int64_t kb, bool bool_mask,
                                   float* vals) const {
    const int64_t base = b * ms[0] + h * ms[1] + i * ms[2] + j0 * ms[3];
    const int64_t js = ms[3];
    if (bool_mask) {
      const uint8_t* m = static_cast<const uint8_t*>(attn_mask->data) + base;
      for (int64_t jj = 0; jj < kb; ++jj) vals[jj] = m[jj * js] ? 0.f : kNegInf;
    } else if (js == 1) {
      LoadRow<float>(attn_mask->dtype, attn_mask->data, base, kb, vals);
    } else {
      std::fill(vals, vals + kb,
                float(LoadScalar(attn_mask->dtype, attn_mask->data, base)));
    }
  }
};

}  // namespace

kiln_status_t AttentionKernel(KernelContext& ctx) {
  KILN_RETURN_IF_ERROR(CheckFloatOutput(ctx));
  const Attrs& attrs = ctx.attrs();
  const bool has_cache = ctx.num_inputs() > kCache && ctx.has_input(kCache);
  const bool has_kv = (ctx.num_inputs() > kKey && ctx.has_input(kKey)) ||
                      (ctx.num_inputs() > kValue && ctx.has_input(kValue));
  if (has_cache && has_kv)
    return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                       "keys and values come from kv(key, value) or from "
                       "cache(...), not both");
  // Later work: sparse attention.
  for (size_t i = kSparseIndex; i < ctx.num_inputs(); ++i)
    if (ctx.has_input(i))
      return KernelError(ctx, KILN_STATUS_UNIMPLEMENTED,
                         "sparse attention (sparse_index operands) is not "
                         "supported by the CPU "
                         "attention kernel yet");
  const std::string_view sparsity = attrs.String("sparsity");
  if (!sparsity.empty())
    return KernelError(
        ctx, KILN_STATUS_UNIMPLEMENTED,
        "sparsity '%.*s' is not supported by the CPU attention kernel yet",
        int(sparsity.size()), sparsity.data());
  const std::string_view mask_name = attrs.String("mask", "none");
  MaskKind kind;
  if (mask_name == "none")
    kind = MaskKind::kNone;
  else if (mask_name == "causal")
    kind = MaskKind::kCausal;
  else if (mask_name == "sliding_window")
    kind = MaskKind::kSlidingWindow;
  else if (mask_name == "tree")
    kind = MaskKind::kTree;
  else if (mask_name == "sparse")
    return KernelError(
        ctx, KILN_STATUS_UNIMPLEMENTED,
        "mask kind sparse is not supported by the CPU attention kernel yet");
  else
    return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                       "unknown mask kind '%.*s'", int(mask_name.size()),
                       mask_name.data());

  KILN_RETURN_IF_ERROR(CheckFloatInput(ctx, kQuery, "query"));
  const Tensor& q = ctx.input(kQuery);
  // The K/V source: its kv length, kv heads and value head dim, and how
  // messages name it.
  int64_t Skv, Hkv, Dv;
  std::string kv_what;
  const KvCache* cache = nullptr;
  if (has_cache) {
    if (!ctx.is_cache(kCache))
      return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                         "the cache(...) operand is not a !kiln.kv_cache");
    cache = &ctx.cache_input(kCache);
    if (cache->dtype != KILN_DTYPE_F32 && cache->dtype != KILN_DTYPE_F16 &&
        cache->dtype != KILN_DTYPE_BF16)
      return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                         "KV cache element type %s is not f32, f16 or bf16",
                         DtypeName(cache->dtype));
    if (cache->quantized() && KvQmax(cache->stored()) == 0.f)
      return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                         "KV cache storage type %s is not i8, i4 or f8E4M3FN",
                         DtypeName(cache->stored()));
    if (cache->length < 0 || cache->length > cache->capacity)
      return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                         "KV cache length %lld is outside its capacity %lld",
                         (long long)cache->length, (long long)cache->capacity);
    if (q.shape.rank != 4)
      return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                         "query %s must be [batch, seq, heads, head_dim]",
                         q.shape.str().c_str());
    Skv = cache->length;
    Hkv = cache->kv_heads;
    Dv = cache->v_head_dim;
    kv_what = "cache [batch, tokens, kv_heads, head_dim] " +
              Dims{cache->batch, Skv, Hkv, cache->head_dim}.str();
    if (cache->ragged()) {
      // Queries [1, N]: the sequences' new tokens one after another.
      const int64_t n = cache->batch;
      bool ok = q.shape[0] == 1 && cache->q_offsets && cache->q_offsets[0] == 0 &&
                cache->q_offsets[n] == q.shape[1] && cache->head_dim == q.shape[3];
      for (int64_t b = 0; ok && b < n; ++b)
        ok = cache->q_offsets[b + 1] >= cache->q_offsets[b] &&
             cache->seq_lengths[b] >= cache->q_offsets[b + 1] - cache->q_offsets[b] &&
             cache->seq_lengths[b] <= cache->capacity;
      if (!ok)
        return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                           "a ragged batch of %lld sequences needs query [1, N, heads, %lld] "
                           "with N the sequences' new tokens, each among its cached ones; "
                           "found query %s",
                           (long long)n, (long long)cache->head_dim, q.shape.str().c_str());
    } else if (cache->batch != q.shape[0] || cache->head_dim != q.shape[3])
      return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                         "%s does not match query %s (batch, head_dim)",
                         kv_what.c_str(), q.shape.str().c_str());
    if ((!cache->key || !cache->value) && Skv > 0)
      return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                         "the KV cache has no storage");
  } else {
    if (ctx.num_inputs() <= kValue || !ctx.has_input(kKey) ||
        !ctx.has_input(kValue))
      return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                         "needs kv(key, value) operands (or a cache)");
    for (size_t i : {size_t(kKey), size_t(kValue)}) {
      const char* what = i == kKey ? "key" : "value";
      if (ctx.is_quantized(i)) {
        std::string err = CheckQTensor(ctx.qinput(i), what);
        if (!err.empty())
          return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT, "%s",
                             err.c_str());
      } else {
        KILN_RETURN_IF_ERROR(CheckFloatInput(ctx, i, what));
      }
    }
    const Dims& ks = OperandShape(ctx, kKey);
    const Dims& vs = OperandShape(ctx, kValue);
    if (q.shape.rank != 4 || ks.rank != 4 || vs.rank != 4)
      return KernelError(
          ctx, KILN_STATUS_INVALID_ARGUMENT,
          "query %s, key %s and value %s must be [batch, seq, heads, head_dim]",
          q.shape.str().c_str(), ks.str().c_str(), vs.str().c_str());
    Skv = ks[1];
    Hkv = ks[2];
    Dv = vs[3];
    kv_what = "key " + ks.str();
    if (ks[0] != q.shape[0] || vs[0] != q.shape[0] || vs[1] != Skv ||
        vs[2] != Hkv || ks[3] != q.shape[3])
      return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                         "key %s and value %s do not match query %s (batch, kv "
                         "length, kv heads, "
                         "head_dim)",
                         ks.str().c_str(), vs.str().c_str(),
                         q.shape.str().c_str());
  }
  const int64_t B = q.shape[0], Sq = q.shape[1], Hq = q.shape[2],
                D = q.shape[3];
  if (Hkv == 0 ? Hq != 0 : Hq % Hkv != 0)
    return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                       "query heads %lld are not a multiple of kv heads %lld "
                       "(query %s, %s)",
                       (long long)Hq, (long long)Hkv, q.shape.str().c_str(),
                       kv_what.c_str());

  const double scale =
      attrs.Has("scale") ? attrs.Float("scale") : 1.0 / std::sqrt(double(D));
  if (!(scale > 0) || !std::isfinite(scale))
    return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                       "scale must be positive, found %g", scale);
  const double softcap = attrs.Float("softcap", 0);
  if (!(softcap >= 0) || !std::isfinite(softcap))
    return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                       "softcap must be non-negative, found %g", softcap);
  const int64_t window = attrs.Int("mask_window", 0),
                sink = attrs.Int("mask_sink", 0);
  if (kind == MaskKind::kSlidingWindow && (window <= 0 || sink < 0))
    return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                       "sliding_window mask needs window > 0 and sink >= 0, "
                       "found window = %lld, "
                       "sink = %lld",
                       (long long)window, (long long)sink);

  const bool ragged = cache && cache->ragged();
  if (ragged) {
    // Each sequence is masked by its own positions; a padding mask or a
    // token tree has no meaning across the flattened sequences.
    if ((ctx.num_inputs() > kAttnMask && ctx.has_input(kAttnMask)) ||
        (ctx.num_inputs() > kTreeMask && ctx.has_input(kTreeMask)))
      return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                         "a ragged batch takes no attn_mask or tree_mask");
  }
  AttentionTask task{};
  task.attn_mask = nullptr;
  task.items = nullptr;
  if (ctx.num_inputs() > kAttnMask && ctx.has_input(kAttnMask)) {
    if (ctx.is_quantized(kAttnMask))
      return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                         "attn_mask must not be quantized");
    const Tensor& m = ctx.input(kAttnMask);
    if (m.dtype != KILN_DTYPE_I1 && !IsFloatDtype(m.dtype))
      return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                         "attn_mask element type %s must be i1 or a float type",
                         DtypeName(m.dtype));
    const int64_t full[4] = {B, Hq, Sq, Skv};
    bool ok = m.shape.rank <= 4 && (m.data || m.numel() == 0);
    const Dims strides = StridesOf(m.shape);
    for (int t = 0; ok && t < 4; ++t) {
      const int md = t - (4 - m.shape.rank);
      if (md < 0) {
        task.ms[t] = 0;
        continue;
      }
      ok = m.shape[md] == full[t] || m.shape[md] == 1;
      task.ms[t] = m.shape[md] == 1 ? 0 : strides[md];
    }
    if (!ok)
      return KernelError(
          ctx, KILN_STATUS_INVALID_ARGUMENT,
          "attn_mask shape %s does not broadcast to [batch, heads, q, k] = "
          "[%lld, %lld, %lld, %lld]",
          m.shape.str().c_str(), (long long)B, (long long)Hq, (long long)Sq,
          (long long)Skv);
    task.attn_mask = &m;
  }
  const bool has_tree =
      ctx.num_inputs() > kTreeMask && ctx.has_input(kTreeMask);
  if (has_tree != (kind == MaskKind::kTree))
    return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                       has_tree ? "tree_mask given but the mask kind is %.*s"
                                : "mask kind %.*s needs a tree_mask operand",
                       int(mask_name.size()), mask_name.data());
  if (has_tree) {
    const Tensor& t = ctx.input(kTreeMask);
    if (ctx.is_quantized(kTreeMask) || t.dtype != KILN_DTYPE_I1)
      return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                         "tree_mask element type must be i1");
    const bool batched = t.shape.rank == 3 && t.shape[0] == B &&
                         t.shape[1] == Sq && t.shape[2] == Sq;
    const bool shared =
        t.shape.rank == 2 && t.shape[0] == Sq && t.shape[1] == Sq;
    if (!batched && !shared)
      return KernelError(
          ctx, KILN_STATUS_INVALID_ARGUMENT,
          "tree_mask shape %s must be [batch, q, q] or [q, q] for query %s",
          t.shape.str().c_str(), q.shape.str().c_str());
    if (Sq > Skv)
      return KernelError(
          ctx, KILN_STATUS_INVALID_ARGUMENT,
          "tree attention needs the %lld new tokens among the %lld keys",
          (long long)Sq, (long long)Skv);
    task.tree = static_cast<const uint8_t*>(t.data);
    task.tree_bstride = batched ? Sq * Sq : 0;
  }

  Tensor* out = nullptr;
  KILN_RETURN_IF_ERROR(ctx.allocate_output(0, Dims{B, Sq, Hq, Dv}, &out));
  if (out->numel() == 0) return nullptr;

  std::vector<float> kbuf, vbuf;
  task.cache = nullptr;
  if (cache) {
    const int64_t cap = cache->capacity;
    if (!cache->paged() && !ragged && cache->stored() == KILN_DTYPE_F32) {
      // In place: row (b, j, h) is at ((b * Hkv + h) * capacity + j) * D.
      task.k = static_cast<const float*>(cache->key);
      task.v = static_cast<const float*>(cache->value);
      task.k_bstride = Hkv * cap * D;
      task.k_tstride = D;
      task.k_hstride = cap * D;
      task.v_bstride = Hkv * cap * Dv;
      task.v_tstride = Dv;
      task.v_hstride = cap * Dv;
    } else {
      task.cache = cache;
      task.k = task.v = nullptr;
      task.k_bstride = task.k_tstride = task.k_hstride = 0;
      task.v_bstride = task.v_tstride = task.v_hstride = 0;
    }
  } else {
    if (!ctx.is_quantized(kKey) && ctx.input(kKey).dtype == KILN_DTYPE_F32) {
      task.k = static_cast<const float*>(ctx.input(kKey).data);
    } else {
      ToF32(ctx, kKey, kbuf);
      task.k = kbuf.data();
    }
    if (!ctx.is_quantized(kValue) &&
        ctx.input(kValue).dtype == KILN_DTYPE_F32) {
      task.v = static_cast<const float*>(ctx.input(kValue).data);
    } else {
      ToF32(ctx, kValue, vbuf);
      task.v = vbuf.data();
    }
    // BSHD: row (b, j, h) is at ((b * Skv + j) * Hkv + h) * D.
    task.k_bstride = Skv * Hkv * D;
    task.k_tstride = Hkv * D;
    task.k_hstride = D;
    task.v_bstride = Skv * Hkv * Dv;
    task.v_tstride = Hkv * Dv;
    task.v_hstride = Dv;
  }

  task.B = B;
  task.Sq = Sq;
  task.Skv = Skv;
  task.Hq = Hq;
  task.Hkv = Hkv;
  task.D = D;
  task.Dv = Dv;
  task.group = Hq / Hkv;
  task.q = &q;
  task.out = out;
  task.kind = kind;
  task.window = window;
  task.sink = sink;
  task.scale = float(scale);
  task.softcap = float(softcap);
  // Rows per task: up to ~48 (query rows x heads of one KV group), fewer
  // when that leaves threads idle; a group's heads are split across tasks
  // only when batch x KV heads alone cannot keep the threads busy.
  const int64_t threads = ctx.pool().size();
  task.heads = task.group;
  while (task.heads > 1 && B * Hq / task.heads < 2 * threads &&
         task.heads % 2 == 0)
    task.heads /= 2;
  task.q_rows = std::max<int64_t>(1, 48 / task.heads);
  const int64_t units = B * (Hq / task.heads);
  while (task.q_rows > 1 &&
         units * ((Sq + task.q_rows - 1) / task.q_rows) < 4 * threads)
    task.q_rows /= 2;
  task.q_rows = std::min(task.q_rows, Sq);
  task.q_blocks = (Sq + task.q_rows - 1) / task.q_rows;
  if (ragged) {
    // Work items: blocks of q_rows queries of one sequence, so a decode
    // token and a long prefill chunk share the threads.
    std::vector<AttentionTask::Item> items;
    const int64_t n = cache->batch;
    task.heads = task.group;
    while (task.heads > 1 && n * Hq / task.heads < 2 * threads && task.heads % 2 == 0)
      task.heads /= 2;
    task.q_rows = std::max<int64_t>(1, 48 / task.heads);
    for (int64_t b = 0; b < n; ++b) {
      const int64_t sq = cache->q_offsets[b + 1] - cache->q_offsets[b];
      for (int64_t i0 = 0; i0 < sq; i0 += task.q_rows)
        items.push_back({b, i0, std::min(task.q_rows, sq - i0)});
    }
    task.items = items.data();
    task.q_off = cache->q_offsets;
    task.seq_len = cache->seq_lengths;
    const int64_t per_item = Hkv * (task.group / task.heads);
    ParallelForIsa(ctx.pool(), int64_t(items.size()) * per_item, 1, task);
    return nullptr;
  }
  ParallelForIsa(ctx.pool(), units * task.q_blocks, 1, task);
  return nullptr;
}

}  // namespace kiln
