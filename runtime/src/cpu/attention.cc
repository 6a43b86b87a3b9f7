// kiln.attention on kv(key, value) tensors: scaled dot-product attention in
// BSHD layout with grouped-query heads, the none / causal / sliding_window /
// tree mask kinds, an explicit boolean or additive attn_mask, and softcap.
// Computed in f32 whatever the operand types; K/V that are not f32 (f16,
// bf16, quantized) are converted once per call.
//
// Each task owns a run of query rows of one (batch, query head). A row
// visits only the keys its mask kind can make visible (for causal prefill,
// half of them; for a sliding window, the sink and the window), scores them,
// and takes a max-subtracted softmax, so exp never overflows. A row that
// sees no key at all (every key masked, or -inf additive masks) yields
// zeros rather than 0/0.
//
// Not implemented yet (UNIMPLEMENTED): cache(...) operands, and sparsity
// (mask kind sparse, sparse_index operands).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string_view>
#include <vector>

#include "cpu/kernels.h"
#include "cpu/llm_util.h"

namespace kiln {

namespace {

enum Operand : size_t { kQuery = 0, kKey, kValue, kCache, kAttnMask, kTreeMask, kSparseIndex };
enum class MaskKind { kNone, kCausal, kSlidingWindow, kTree };

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

/// Reads key or value fully as f32 (when it is not already f32).
void ToF32(KernelContext& ctx, size_t i, std::vector<float>& out) {
  if (ctx.is_quantized(i)) {
    QView q(ctx.qinput(i));
    const int64_t cols = q.cols();
    out.resize(size_t(q.rows() * cols));
    ctx.pool().parallel_for(q.rows(), std::max<int64_t>(1, 8192 / std::max<int64_t>(cols, 1)),
                            [&](int64_t b, int64_t e) {
                              for (int64_t r = b; r < e; ++r) q.Row(r, 0, cols, out.data() + r * cols);
                            });
    return;
  }
  const Tensor& t = ctx.input(i);
  out.resize(size_t(t.numel()));
  ctx.pool().parallel_for(t.numel(), 1 << 14, [&](int64_t b, int64_t e) {
    LoadRow<float>(t.dtype, t.data, b, e - b, out.data() + b);
  });
}

struct AttentionTask {
  // Shapes.
  int64_t B, Sq, Skv, Hq, Hkv, D, Dv, group;
  int64_t rows_per_task, tasks_per_head;
  // Data: q in its dtype; k, v f32 [B, Skv, Hkv, D / Dv].
  const Tensor* q;
  const float* k;
  const float* v;
  Tensor* out;
  // Mask.
  MaskKind kind;
  int64_t window, sink;
  float scale, softcap;
  const Tensor* attn_mask;
  int64_t ms[4];  // attn_mask strides over [B, Hq, Sq, Skv] (0 = broadcast)
  const uint8_t* tree;
  int64_t tree_bstride;  // 0 for a [Sq, Sq] tree mask

  template <int VB>
  KILN_ALWAYS_INLINE void Run(int64_t begin, int64_t end) const {
    std::vector<float> qrow(static_cast<size_t>(D)), scores(static_cast<size_t>(Skv)), acc(static_cast<size_t>(Dv)),
        mask_row(attn_mask ? size_t(Skv) : 0);
    const bool bool_mask = attn_mask && attn_mask->dtype == KILN_DTYPE_I1;
    for (int64_t t = begin; t < end; ++t) {
      const int64_t bh = t / tasks_per_head;
      const int64_t b = bh / Hq, h = bh % Hq, kvh = h / group;
      const int64_t i0 = (t % tasks_per_head) * rows_per_task;
      const int64_t i1 = std::min(Sq, i0 + rows_per_task);
      for (int64_t i = i0; i < i1; ++i) {
        const int64_t pos = Skv - Sq + i;  // the query's absolute position
        // Candidate keys: [0, lo_end) and [lo, hi).
        int64_t lo_end = 0, lo = 0, hi = Skv;
        if (kind == MaskKind::kCausal) {
          hi = std::clamp<int64_t>(pos + 1, 0, Skv);
        } else if (kind == MaskKind::kSlidingWindow) {
          hi = std::clamp<int64_t>(pos + 1, 0, Skv);
          lo = std::clamp<int64_t>(pos - window + 1, 0, hi);
          lo_end = std::min(sink, lo);
        }
        if (attn_mask) LoadMaskRow(b, h, i, bool_mask, mask_row.data());
        LoadRow<float>(q->dtype, q->data, ((b * Sq + i) * Hq + h) * D, D, qrow.data());
        float max = kNegInf;
        auto score = [&](int64_t j) {
          float s = kNegInf;
          bool visible = true;
          if (kind == MaskKind::kTree && j >= Skv - Sq)
            visible = tree[b * tree_bstride + i * Sq + (j - (Skv - Sq))] != 0;
          if (visible) {
            const float* kr = k + ((b * Skv + j) * Hkv + kvh) * D;
            s = Dot<float, VB>(qrow.data(), kr, D) * scale;
            if (softcap > 0) s = softcap * std::tanh(s / softcap);
            if (attn_mask) s += mask_row[size_t(j)];  // -inf where a bool mask hides
          }
          scores[size_t(j)] = s;
          max = std::max(max, s);
        };
        for (int64_t j = 0; j < lo_end; ++j) score(j);
        for (int64_t j = lo; j < hi; ++j) score(j);
        std::fill(acc.begin(), acc.end(), 0.f);
        float* o = acc.data();
        if (max != kNegInf && !std::isnan(max)) {
          float sum = 0;
          auto accumulate = [&](int64_t j) {
            const float s = scores[size_t(j)];
            if (s == kNegInf) return;
            const float p = std::exp(s - max);
            sum += p;
            Axpy<float, VB>(p, v + ((b * Skv + j) * Hkv + kvh) * Dv, o, Dv);
          };
          for (int64_t j = 0; j < lo_end; ++j) accumulate(j);
          for (int64_t j = lo; j < hi; ++j) accumulate(j);
          const float inv = 1.f / sum;
          for (int64_t d = 0; d < Dv; ++d) o[d] *= inv;
        }
        StoreRow<float>(o, Dv, out->dtype, out->data, ((b * Sq + i) * Hq + h) * Dv);
      }
    }
  }

  /// mask_row[j] = the additive mask of (b, h, i, j); a boolean mask gives
  /// 0 (visible) or -inf.
  void LoadMaskRow(int64_t b, int64_t h, int64_t i, bool bool_mask, float* row) const {
    const int64_t base = b * ms[0] + h * ms[1] + i * ms[2];
    const int64_t js = ms[3];
    if (bool_mask) {
      const uint8_t* m = static_cast<const uint8_t*>(attn_mask->data) + base;
      for (int64_t j = 0; j < Skv; ++j) row[j] = m[j * js] ? 0.f : kNegInf;
    } else if (js == 1) {
      LoadRow<float>(attn_mask->dtype, attn_mask->data, base, Skv, row);
    } else {
      const float val = float(LoadScalar(attn_mask->dtype, attn_mask->data, base));
      std::fill(row, row + Skv, val);
    }
  }
};

}  // namespace

kiln_status_t AttentionKernel(KernelContext& ctx) {
  KILN_RETURN_IF_ERROR(CheckFloatOutput(ctx));
  const Attrs& attrs = ctx.attrs();
  // Later work: KV-cache operands and sparse attention.
  if (ctx.num_inputs() > kCache && ctx.has_input(kCache))
    return KernelError(ctx, KILN_STATUS_UNIMPLEMENTED,
                       "cache(...) operands (!kiln.kv_cache) are not supported by the CPU "
                       "attention kernel yet; only kv(key, value) tensors are");
  for (size_t i = kSparseIndex; i < ctx.num_inputs(); ++i)
    if (ctx.has_input(i))
      return KernelError(ctx, KILN_STATUS_UNIMPLEMENTED,
                         "sparse attention (sparse_index operands) is not supported by the CPU "
                         "attention kernel yet");
  const std::string_view sparsity = attrs.String("sparsity");
  if (!sparsity.empty())
    return KernelError(ctx, KILN_STATUS_UNIMPLEMENTED,
                       "sparsity '%.*s' is not supported by the CPU attention kernel yet",
                       int(sparsity.size()), sparsity.data());
  const std::string_view mask_name = attrs.String("mask", "none");
  MaskKind kind;
  if (mask_name == "none") kind = MaskKind::kNone;
  else if (mask_name == "causal") kind = MaskKind::kCausal;
  else if (mask_name == "sliding_window") kind = MaskKind::kSlidingWindow;
  else if (mask_name == "tree") kind = MaskKind::kTree;
  else if (mask_name == "sparse")
    return KernelError(ctx, KILN_STATUS_UNIMPLEMENTED,
                       "mask kind sparse is not supported by the CPU attention kernel yet");
  else
    return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT, "unknown mask kind '%.*s'",
                       int(mask_name.size()), mask_name.data());

  KILN_RETURN_IF_ERROR(CheckFloatInput(ctx, kQuery, "query"));
  if (ctx.num_inputs() <= kValue || !ctx.has_input(kKey) || !ctx.has_input(kValue))
    return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                       "needs kv(key, value) operands (or a cache)");
  for (size_t i : {size_t(kKey), size_t(kValue)}) {
    const char* what = i == kKey ? "key" : "value";
    if (ctx.is_quantized(i)) {
      std::string err = CheckQTensor(ctx.qinput(i), what);
      if (!err.empty()) return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT, "%s", err.c_str());
    } else {
      KILN_RETURN_IF_ERROR(CheckFloatInput(ctx, i, what));
    }
  }
  const Tensor& q = ctx.input(kQuery);
  const Dims& ks = OperandShape(ctx, kKey);
  const Dims& vs = OperandShape(ctx, kValue);
  if (q.shape.rank != 4 || ks.rank != 4 || vs.rank != 4)
    return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                       "query %s, key %s and value %s must be [batch, seq, heads, head_dim]",
                       q.shape.str().c_str(), ks.str().c_str(), vs.str().c_str());
  const int64_t B = q.shape[0], Sq = q.shape[1], Hq = q.shape[2], D = q.shape[3];
  const int64_t Skv = ks[1], Hkv = ks[2], Dv = vs[3];
  if (ks[0] != B || vs[0] != B || vs[1] != Skv || vs[2] != Hkv || ks[3] != D)
    return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                       "key %s and value %s do not match query %s (batch, kv length, kv heads, "
                       "head_dim)",
                       ks.str().c_str(), vs.str().c_str(), q.shape.str().c_str());
  if (Hkv == 0 ? Hq != 0 : Hq % Hkv != 0)
    return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                       "query heads %lld are not a multiple of kv heads %lld (query %s, key %s)",
                       (long long)Hq, (long long)Hkv, q.shape.str().c_str(), ks.str().c_str());

  const double scale = attrs.Has("scale") ? attrs.Float("scale") : 1.0 / std::sqrt(double(D));
  if (!(scale > 0) || !std::isfinite(scale))
    return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT, "scale must be positive, found %g", scale);
  const double softcap = attrs.Float("softcap", 0);
  if (!(softcap >= 0) || !std::isfinite(softcap))
    return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT, "softcap must be non-negative, found %g",
                       softcap);
  const int64_t window = attrs.Int("mask_window", 0), sink = attrs.Int("mask_sink", 0);
  if (kind == MaskKind::kSlidingWindow && (window <= 0 || sink < 0))
    return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                       "sliding_window mask needs window > 0 and sink >= 0, found window = %lld, "
                       "sink = %lld",
                       (long long)window, (long long)sink);

  AttentionTask task{};
  task.attn_mask = nullptr;
  if (ctx.num_inputs() > kAttnMask && ctx.has_input(kAttnMask)) {
    if (ctx.is_quantized(kAttnMask))
      return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT, "attn_mask must not be quantized");
    const Tensor& m = ctx.input(kAttnMask);
    if (m.dtype != KILN_DTYPE_I1 && !IsFloatDtype(m.dtype))
      return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                         "attn_mask element type %s must be i1 or a float type", DtypeName(m.dtype));
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
      return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                         "attn_mask shape %s does not broadcast to [batch, heads, q, k] = "
                         "[%lld, %lld, %lld, %lld]",
                         m.shape.str().c_str(), (long long)B, (long long)Hq, (long long)Sq,
                         (long long)Skv);
    task.attn_mask = &m;
  }
  const bool has_tree = ctx.num_inputs() > kTreeMask && ctx.has_input(kTreeMask);
  if (has_tree != (kind == MaskKind::kTree))
    return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                       has_tree ? "tree_mask given but the mask kind is %.*s"
                                : "mask kind %.*s needs a tree_mask operand",
                       int(mask_name.size()), mask_name.data());
  if (has_tree) {
    const Tensor& t = ctx.input(kTreeMask);
    if (ctx.is_quantized(kTreeMask) || t.dtype != KILN_DTYPE_I1)
      return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT, "tree_mask element type must be i1");
    const bool batched = t.shape.rank == 3 && t.shape[0] == B && t.shape[1] == Sq && t.shape[2] == Sq;
    const bool shared = t.shape.rank == 2 && t.shape[0] == Sq && t.shape[1] == Sq;
    if (!batched && !shared)
      return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                         "tree_mask shape %s must be [batch, q, q] or [q, q] for query %s",
                         t.shape.str().c_str(), q.shape.str().c_str());
    if (Sq > Skv)
      return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                         "tree attention needs the %lld new tokens among the %lld keys",
                         (long long)Sq, (long long)Skv);
    task.tree = static_cast<const uint8_t*>(t.data);
    task.tree_bstride = batched ? Sq * Sq : 0;
  }

  Tensor* out = nullptr;
  KILN_RETURN_IF_ERROR(ctx.allocate_output(0, Dims{B, Sq, Hq, Dv}, &out));
  if (out->numel() == 0) return nullptr;

  std::vector<float> kbuf, vbuf;
  const float* kdata;
  const float* vdata;
  if (!ctx.is_quantized(kKey) && ctx.input(kKey).dtype == KILN_DTYPE_F32) {
    kdata = static_cast<const float*>(ctx.input(kKey).data);
  } else {
    ToF32(ctx, kKey, kbuf);
    kdata = kbuf.data();
  }
  if (!ctx.is_quantized(kValue) && ctx.input(kValue).dtype == KILN_DTYPE_F32) {
    vdata = static_cast<const float*>(ctx.input(kValue).data);
  } else {
    ToF32(ctx, kValue, vbuf);
    vdata = vbuf.data();
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
  task.k = kdata;
  task.v = vdata;
  task.out = out;
  task.kind = kind;
  task.window = window;
  task.sink = sink;
  task.scale = float(scale);
  task.softcap = float(softcap);
  // About 8 tasks per thread, each at least one row.
  const int64_t heads = B * Hq;
  const int64_t want = int64_t(ctx.pool().size()) * 8;
  task.rows_per_task = std::max<int64_t>(1, std::min<int64_t>(Sq, (heads * Sq + want - 1) / want));
  task.tasks_per_head = (Sq + task.rows_per_task - 1) / task.rows_per_task;
  ParallelForIsa(ctx.pool(), heads * task.tasks_per_head, 1, task);
  return nullptr;
}

}  // namespace kiln
