// The KV-cache kernels: kiln.kv_cache_append writes a step's keys and values
// into a !kiln.kv_cache in place (after the rows already cached), and
// kiln.kv_cache_read returns the cached rows as dense BSHD tensors.
// kiln.attention reads a cache directly (attention.cc) and kiln.shape_of
// reports its logical shape (movement.cc).
//
// Only the contiguous layout with an unquantized element type (f32, f16,
// bf16) exists on the CPU so far: appended tensors have the cache's type and
// are copied row by row, no conversion. Quantized caches (i8, i4, f8) are
// UNIMPLEMENTED.
#include <algorithm>
#include <cstdint>
#include <cstring>

#include "cpu/kernels.h"
#include "cpu/llm_util.h"

namespace kiln {

namespace {

enum AppendOperand : size_t { kCache = 0, kKey, kValue, kKeyScale, kValueScale };

bool IsQuantizedCacheDtype(kiln_dtype_t t) {
  switch (t) {
    case KILN_DTYPE_I8:
    case KILN_DTYPE_I4:
    case KILN_DTYPE_F8E4M3FN:
    case KILN_DTYPE_F8E5M2:
      return true;
    default:
      return false;
  }
}

/// Checks operand `i` is a contiguous cache these kernels can move (an
/// unquantized float type, a consistent length) and points `*cache` at it.
kiln_status_t CheckCache(const KernelContext& ctx, size_t i,
                         const KvCache** cache) {
  if (ctx.num_inputs() <= i || !ctx.is_cache(i))
    return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                       "operand #%zu must be a !kiln.kv_cache", i);
  const KvCache& c = ctx.cache_input(i);
  if (IsQuantizedCacheDtype(c.dtype))
    return KernelError(ctx, KILN_STATUS_UNIMPLEMENTED,
                       "a %s KV cache is quantized; quantized KV caches come "
                       "with the KV-layout work",
                       DtypeName(c.dtype));
  if (c.dtype != KILN_DTYPE_F32 && c.dtype != KILN_DTYPE_F16 &&
      c.dtype != KILN_DTYPE_BF16)
    return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                       "KV cache element type %s is not f32, f16 or bf16",
                       DtypeName(c.dtype));
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
  } const dims[3] = {{"batch", t.shape[0], c.batch},
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

kiln_status_t KvCacheAppendKernel(KernelContext& ctx) {
  const KvCache* cache = nullptr;
  KILN_RETURN_IF_ERROR(CheckCache(ctx, kCache, &cache));
  for (size_t i : {size_t(kKeyScale), size_t(kValueScale)})
    if (ctx.num_inputs() > i && ctx.has_input(i))
      return KernelError(ctx, KILN_STATUS_UNIMPLEMENTED,
                         "scales(...) are for a quantized KV cache; quantized "
                         "KV caches come with the KV-layout work");
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

  // append_cache may move the storage (growing it), so everything below
  // reads the result, not the operand.
  KvCache* out = nullptr;
  KILN_RETURN_IF_ERROR(ctx.append_cache(0, kCache, S, &out));
  const int64_t start = out->length - S;
  const int64_t Hkv = out->kv_heads, D = out->head_dim, Dv = out->v_head_dim;
  const size_t esize = ElemBytes(out->dtype);
  const uint8_t* ksrc = static_cast<const uint8_t*>(k.data);
  const uint8_t* vsrc = static_cast<const uint8_t*>(v.data);
  uint8_t* kdst = static_cast<uint8_t*>(out->key);
  uint8_t* vdst = static_cast<uint8_t*>(out->value);
  if (S == 0 || out->batch * Hkv == 0) return nullptr;
  // One task per run of (sequence, head) pairs: each writes its own rows.
  ctx.pool().parallel_for(
      out->batch * Hkv, HeadGrain(S, D + Dv), [&](int64_t begin, int64_t end) {
        for (int64_t bh = begin; bh < end; ++bh) {
          const int64_t b = bh / Hkv, h = bh % Hkv;
          for (int64_t s = 0; s < S; ++s) {
            const int64_t row = (b * S + s) * Hkv + h;
            std::memcpy(kdst + size_t(out->KeyOffset(b, h, start + s)) * esize,
                        ksrc + size_t(row * D) * esize, size_t(D) * esize);
            std::memcpy(
                vdst + size_t(out->ValueOffset(b, h, start + s)) * esize,
                vsrc + size_t(row * Dv) * esize, size_t(Dv) * esize);
          }
        }
      });
  return nullptr;
}

kiln_status_t KvCacheReadKernel(KernelContext& ctx) {
  const KvCache* cache = nullptr;
  KILN_RETURN_IF_ERROR(CheckCache(ctx, 0, &cache));
  const KvCache& c = *cache;
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
  const size_t esize = ElemBytes(c.dtype);
  const uint8_t* ksrc = static_cast<const uint8_t*>(c.key);
  const uint8_t* vsrc = static_cast<const uint8_t*>(c.value);
  uint8_t* kdst = static_cast<uint8_t*>(k->data);
  uint8_t* vdst = static_cast<uint8_t*>(v->data);
  ctx.pool().parallel_for(
      B * Hkv, HeadGrain(T, D + Dv), [&](int64_t begin, int64_t end) {
        for (int64_t bh = begin; bh < end; ++bh) {
          const int64_t b = bh / Hkv, h = bh % Hkv;
          for (int64_t t = 0; t < T; ++t) {
            const int64_t row = (b * T + t) * Hkv + h;
            std::memcpy(kdst + size_t(row * D) * esize,
                        ksrc + size_t(c.KeyOffset(b, h, t)) * esize,
                        size_t(D) * esize);
            std::memcpy(vdst + size_t(row * Dv) * esize,
                        vsrc + size_t(c.ValueOffset(b, h, t)) * esize,
                        size_t(Dv) * esize);
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
