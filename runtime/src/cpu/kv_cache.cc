// The KV-cache kernels: kiln.kv_cache_append writes a step's keys and values
// into a !kiln.kv_cache in place (after the rows already cached), and
// kiln.kv_cache_read returns the cached rows as dense BSHD tensors.
// kiln.attention reads a cache directly (attention.cc) and kiln.shape_of
// reports its logical shape (movement.cc).
//
// Any layout (contiguous, paged) and storage type: rows are addressed
// through KvCache::Row, and a quantized cache (i8, i4, f8E4M3FN) quantizes
// each appended row with scales computed from it (kv_codec.h). Appended
// tensors have the cache's element type. Static per-head scales
// (scales(...) operands) are UNIMPLEMENTED.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "cpu/kernels.h"
#include "cpu/kv_codec.h"
#include "cpu/llm_util.h"

namespace kiln {

namespace {

enum AppendOperand : size_t { kCache = 0, kKey, kValue, kKeyScale, kValueScale };

/// Checks operand `i` is a cache these kernels can move (a float element
/// type, a known storage type, a consistent length) and points `*cache` at
/// it.
kiln_status_t CheckCache(const KernelContext& ctx, size_t i,
                         const KvCache** cache) {
  if (ctx.num_inputs() <= i || !ctx.is_cache(i))
    return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                       "operand #%zu must be a !kiln.kv_cache", i);
  const KvCache& c = ctx.cache_input(i);
  if (c.dtype != KILN_DTYPE_F32 && c.dtype != KILN_DTYPE_F16 &&
      c.dtype != KILN_DTYPE_BF16)
    return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                       "KV cache element type %s is not f32, f16 or bf16",
                       DtypeName(c.dtype));
  if (c.quantized() && KvQmax(c.stored()) == 0.f)
    return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                       "KV cache storage type %s is not i8, i4 or f8E4M3FN",
                       DtypeName(c.stored()));
  if (c.length < 0 || c.length > c.capacity)
    return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                       "KV cache length %lld is outside its capacity %lld",
                       (long long)c.length, (long long)c.capacity);
  *cache = &c;
  return nullptr;
}

/// Checks a key or value operand `t` ([B, S, Hkv, dim] of the cache's type)
/// against the cache; `S` is the number of tokens.
kiln_status_t CheckRows(const KernelContext& ctx, const KvCache& c,
                        const Tensor& t, const char* what, int64_t dim,
                        const char* dim_name) {
  if (t.shape.rank != 4)
    return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                       "%s %s must be [batch, tokens, kv_heads, %s]", what,
                       t.shape.str().c_str(), dim_name);
  if (t.dtype != c.dtype)
    return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                       "%s element type %s does not match the KV cache's %s",
                       what, DtypeName(t.dtype), DtypeName(c.dtype));
  struct {
    const char* name;
    int64_t got, want;
  } const dims[3] = {{"batch", t.shape[0], c.ragged() ? 1 : c.batch},
                     {"kv_heads", t.shape[2], c.kv_heads},
                     {dim_name, t.shape[3], dim}};
  for (const auto& d : dims)
    if (d.got != d.want)
      return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                         "%s %s has %s %lld but the KV cache has %lld", what,
                         t.shape.str().c_str(), d.name, (long long)d.got,
                         (long long)d.want);
  if (!t.data && t.numel() != 0)
    return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT, "%s has no data",
                       what);
  return nullptr;
}

/// (sequence, head) pairs per parallel_for task, so that a task moves at
/// least ~16k elements.
int64_t HeadGrain(int64_t rows, int64_t row_elems) {
  return std::max<int64_t>(1, 16384 / std::max<int64_t>(rows * row_elems, 1));
}

/// Copies (or quantizes) token row `src` of k / v into row `dst`.
void StoreToken(const KvCache& c, const Tensor& k, const Tensor& v, int64_t src, int64_t dst,
                std::vector<float>& row) {
  const size_t esize = ElemBytes(k.dtype);
  for (bool value : {false, true}) {
    const Tensor& t = value ? v : k;
    const int64_t dim = value ? c.v_head_dim : c.head_dim;
    const KvRowRef r = KvRow(c, value, dst);
    if (!c.quantized()) {
      std::memcpy(r.data, static_cast<const uint8_t*>(t.data) + size_t(src * dim) * esize,
                  size_t(dim) * esize);
    } else {
      LoadRow<float>(t.dtype, t.data, src * dim, dim, row.data());
      KvStoreRow(c, r, row.data());
    }
  }
}

/// A ragged batch: k / v are [1, N, kv_heads, dim] with sequence b's tokens
/// at rows [q_offsets[b], q_offsets[b + 1]), appended after its own rows.
kiln_status_t AppendRagged(KernelContext& ctx, const KvCache& in, const Tensor& k,
                           const Tensor& v) {
  const int64_t n = in.batch, N = k.shape[1];
  bool ok = k.shape[0] == 1 && in.q_offsets && in.q_offsets[0] == 0 && in.q_offsets[n] == N;
  for (int64_t b = 0; ok && b < n; ++b) ok = in.q_offsets[b + 1] >= in.q_offsets[b];
  if (!ok)
    return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                       "a ragged batch of %lld sequences appends key [1, N, kv_heads, "
                       "head_dim] with N its offsets' total; found key %s",
                       (long long)n, k.shape.str().c_str());
  KvCache* out = nullptr;
  KILN_RETURN_IF_ERROR(ctx.append_cache(0, kCache, N, &out));
  const KvCache& c = *out;
  if (!c.ragged())
    return KernelError(ctx, KILN_STATUS_INTERNAL, "the appended cache is not ragged");
  for (int64_t b = 0; b < n; ++b)
    if (c.seq_lengths[b] != in.seq_lengths[b] + in.q_offsets[b + 1] - in.q_offsets[b] ||
        c.seq_lengths[b] > c.capacity)
      return KernelError(ctx, KILN_STATUS_RESOURCE_EXHAUSTED,
                         "sequence %lld of the ragged batch needs %lld rows; the cache holds "
                         "%lld",
                         (long long)b,
                         (long long)(in.seq_lengths[b] + in.q_offsets[b + 1] - in.q_offsets[b]),
                         (long long)c.capacity);
  const int64_t Hkv = c.kv_heads;
  if (N == 0 || Hkv == 0) return nullptr;
  ctx.pool().parallel_for(n * Hkv, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> row(size_t(std::max(c.head_dim, c.v_head_dim)));
    for (int64_t bh = begin; bh < end; ++bh) {
      const int64_t b = bh / Hkv, h = bh % Hkv;
      for (int64_t i = in.q_offsets[b]; i < in.q_offsets[b + 1]; ++i)
        StoreToken(c, k, v, i * Hkv + h, c.Row(b, h, in.seq_lengths[b] + i - in.q_offsets[b]),
                   row);
    }
  });
  return nullptr;
}

kiln_status_t KvCacheAppendKernel(KernelContext& ctx) {
  const KvCache* cache = nullptr;
  KILN_RETURN_IF_ERROR(CheckCache(ctx, kCache, &cache));
  for (size_t i : {size_t(kKeyScale), size_t(kValueScale)})
    if (ctx.num_inputs() > i && ctx.has_input(i))
      return KernelError(ctx, KILN_STATUS_UNIMPLEMENTED,
                         "static KV scales (scales(...) operands) are not "
                         "supported by the CPU kernel yet; use per-token "
                         "scales");
  KILN_RETURN_IF_ERROR(CheckFloatInput(ctx, kKey, "key"));
  KILN_RETURN_IF_ERROR(CheckFloatInput(ctx, kValue, "value"));
  const Tensor& k = ctx.input(kKey);
  const Tensor& v = ctx.input(kValue);
  KILN_RETURN_IF_ERROR(
      CheckRows(ctx, *cache, k, "key", cache->head_dim, "head_dim"));
  KILN_RETURN_IF_ERROR(
      CheckRows(ctx, *cache, v, "value", cache->v_head_dim, "v_head_dim"));
  const int64_t S = k.shape[1];
  if (v.shape[1] != S)
    return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                       "key %s and value %s hold different numbers of tokens",
                       k.shape.str().c_str(), v.shape.str().c_str());
  if (cache->ragged()) return AppendRagged(ctx, *cache, k, v);

  // append_cache may move the storage (growing it), so everything below
  // reads the result, not the operand.
  KvCache* out = nullptr;
  KILN_RETURN_IF_ERROR(ctx.append_cache(0, kCache, S, &out));
  const int64_t start = out->length - S;
  const int64_t Hkv = out->kv_heads, D = out->head_dim, Dv = out->v_head_dim;
  if (S == 0 || out->batch * Hkv == 0) return nullptr;
  const KvCache& c = *out;
  // One task per run of (sequence, head) pairs: each writes its own rows.
  ctx.pool().parallel_for(
      c.batch * Hkv, HeadGrain(S, D + Dv), [&](int64_t begin, int64_t end) {
        std::vector<float> row(size_t(std::max(D, Dv)));
        for (int64_t bh = begin; bh < end; ++bh) {
          const int64_t b = bh / Hkv, h = bh % Hkv;
          for (int64_t s = 0; s < S; ++s)
            StoreToken(c, k, v, (b * S + s) * Hkv + h, c.Row(b, h, start + s), row);
        }
      });
  return nullptr;
}

kiln_status_t KvCacheReadKernel(KernelContext& ctx) {
  const KvCache* cache = nullptr;
  KILN_RETURN_IF_ERROR(CheckCache(ctx, 0, &cache));
  const KvCache& c = *cache;
  if (c.ragged())
    return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                       "a ragged batch's sequences have different lengths; kv_cache_read "
                       "returns one dense [batch, tokens] tensor");
  if (ctx.num_outputs() != 2)
    return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                       "expected 2 results (key, value), found %zu",
                       ctx.num_outputs());
  for (size_t i = 0; i < 2; ++i)
    if (ctx.output_dtype(i) != c.dtype)
      return KernelError(
          ctx, KILN_STATUS_INVALID_ARGUMENT,
          "%s result element type %s does not match the KV cache's %s",
          i == 0 ? "key" : "value", DtypeName(ctx.output_dtype(i)),
          DtypeName(c.dtype));
  const int64_t B = c.batch, T = c.length, Hkv = c.kv_heads, D = c.head_dim,
                Dv = c.v_head_dim;
  Tensor* k = nullptr;
  Tensor* v = nullptr;
  KILN_RETURN_IF_ERROR(ctx.allocate_output(0, Dims{B, T, Hkv, D}, &k));
  KILN_RETURN_IF_ERROR(ctx.allocate_output(1, Dims{B, T, Hkv, Dv}, &v));
  if (T == 0 || B * Hkv == 0) return nullptr;
  ctx.pool().parallel_for(
      B * Hkv, HeadGrain(T, D + Dv), [&](int64_t begin, int64_t end) {
        std::vector<float> row(size_t(std::max(D, Dv)));
        for (int64_t bh = begin; bh < end; ++bh) {
          const int64_t b = bh / Hkv, h = bh % Hkv;
          for (int64_t t = 0; t < T; ++t) {
            const int64_t dst = (b * T + t) * Hkv + h;
            for (bool value : {false, true}) {
              Tensor* o = value ? v : k;
              const int64_t dim = value ? Dv : D;
              KvLoadRow(c, KvRow(c, value, c.Row(b, h, t)), row.data());
              StoreRow<float>(row.data(), dim, o->dtype, o->data, dst * dim);
            }
          }
        }
      });
  return nullptr;
}

}  // namespace

void AppendKvCacheKernels(std::vector<KernelEntry>& out) {
  out.push_back({"kv_cache_append", KvCacheAppendKernel});
  out.push_back({"kv_cache_read", KvCacheReadKernel});
}

}  // namespace kiln
