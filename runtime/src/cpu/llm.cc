// The LLM kernels' registry and the smaller ones: rms_norm, layer_norm,
// rope, glu, embedding, dequantize, qtensor_data; plus what llm_util.h
// declares (ISA detection, QView, activations). matmul.cc and attention.cc
// hold the GEMM and attention kernels.
//
// kiln.quantize is not registered: its result is a !kiln.qtensor (data,
// scales, zero points), and a kernel can only produce plain tensors through
// KernelContext::allocate_output.
#include <array>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "cpu/kernels.h"
#include "cpu/llm_util.h"

namespace kiln {

// ---------------------------------------------------------------------------
// ISA dispatch.

namespace {

Isa DetectIsa() {
#if KILN_X86_DISPATCH
  __builtin_cpu_init();
  if (__builtin_cpu_supports("x86-64-v4")) return Isa::kAvx512;
  if (__builtin_cpu_supports("x86-64-v3")) return Isa::kAvx2;
#endif
  return Isa::kBase;
}

std::atomic<int> g_isa_cap{-1};

}  // namespace

Isa LlmIsa() {
  static const Isa detected = DetectIsa();
  const int cap = g_isa_cap.load(std::memory_order_relaxed);
  return cap >= 0 && cap < int(detected) ? Isa(cap) : detected;
}

void SetLlmIsaCapForTesting(int cap) {
  g_isa_cap.store(cap, std::memory_order_relaxed);
}

// ---------------------------------------------------------------------------
// QView.

QView::QView(const QTensor& q) {
  storage_ = q.data.dtype;
  data_ = static_cast<const uint8_t*>(q.data.data);
  const Dims& shape = q.data.shape;
  const int rank = shape.rank;
  const uint32_t bits = kiln_dtype_bit_width(storage_);
  cols_ = rank ? shape.back() : 1;
  outer_rank_ = rank ? rank - 1 : 0;
  rows_ = 1;
  for (int d = 0; d < outer_rank_; ++d) rows_ *= shape[d];
  row_bytes_ = (cols_ * int64_t(bits) + 7) / 8;
  const Dims& ss = q.scales.shape;
  scale_cols_ = rank ? ss.back() : 1;
  int64_t stride = 1;
  for (int d = outer_rank_ - 1; d >= 0; --d) {
    outer_dims_[d] = shape[d];
    outer_blocks_[d] =
        q.block[d] > 0 ? q.block[d] : std::max<int64_t>(shape[d], 1);
    scale_strides_[d] = stride;
    stride *= ss[d];
  }
  const int64_t last_block = rank ? q.block[rank - 1] : 0;
  col_block_ = last_block > 0 ? last_block : std::max<int64_t>(cols_, 1);
  scale_dtype_ = q.scales.dtype;
  scales_ = q.scales.data;
  if (q.has_zero_points()) {
    zp_ = static_cast<const uint8_t*>(q.zero_points.data);
    zp_row_bytes_ = (scale_cols_ * int64_t(bits) + 7) / 8;
  }
}

const float* QView::F8Table(kiln_dtype_t storage) {
  static const std::array<float, 256> e4m3 = [] {
    std::array<float, 256> t{};
    for (int i = 0; i < 256; ++i) t[size_t(i)] = F8E4M3FNToFloat(uint8_t(i));
    return t;
  }();
  static const std::array<float, 256> e5m2 = [] {
    std::array<float, 256> t{};
    for (int i = 0; i < 256; ++i) t[size_t(i)] = F8E5M2ToFloat(uint8_t(i));
    return t;
  }();
  return storage == KILN_DTYPE_F8E4M3FN ? e4m3.data() : e5m2.data();
}

std::string CheckQTensor(const QTensor& q, const char* what) {
  auto fail = [&](const std::string& why) {
    return std::string(what) + ": " + why;
  };
  const kiln_dtype_t st = q.data.dtype;
  const bool is_float8 = st == KILN_DTYPE_F8E4M3FN || st == KILN_DTYPE_F8E5M2;
  if (st != KILN_DTYPE_I4 && st != KILN_DTYPE_U4 && st != KILN_DTYPE_I8 &&
      st != KILN_DTYPE_U8 && !is_float8)
    return fail(std::string("unsupported quantized storage type ") +
                DtypeName(st));
  if (!IsFloatDtype(q.scales.dtype))
    return fail(std::string("scale type ") + DtypeName(q.scales.dtype) +
                " is not a float type");
  if (!IsFloatDtype(q.expressed))
    return fail(std::string("expressed type ") + DtypeName(q.expressed) +
                " is not a float type");
  const Dims& shape = q.data.shape;
  if (q.block.rank != shape.rank || q.scales.shape.rank != shape.rank)
    return fail("data " + shape.str() + ", block " + q.block.str() +
                " and scales " + q.scales.shape.str() + " differ in rank");
  for (int d = 0; d < shape.rank; ++d) {
    if (q.block[d] < 0) return fail("negative block " + q.block.str());
    const int64_t want =
        q.block[d] == 0 ? 1 : (shape[d] + q.block[d] - 1) / q.block[d];
    if (q.scales.shape[d] != want)
      return fail("scales " + q.scales.shape.str() + " do not match data " +
                  shape.str() + " with block " + q.block.str());
  }
  if (shape.numel() > 0 && (!q.data.data || !q.scales.data))
    return fail("missing data or scales");
  if (q.has_zero_points()) {
    if (is_float8) return fail("zero points given for float8 storage");
    if (q.zero_points.dtype != st)
      return fail(std::string("zero point type ") +
                  DtypeName(q.zero_points.dtype) + " is not the storage type " +
                  DtypeName(st));
    if (q.zero_points.shape != q.scales.shape)
      return fail("zero points " + q.zero_points.shape.str() +
                  " do not match scales " + q.scales.shape.str());
  }
  return "";
}

// ---------------------------------------------------------------------------
// Activations.

bool ParseActivation(std::string_view name, Act* act) {
  if (name == "relu")
    *act = Act::kRelu;
  else if (name == "silu")
    *act = Act::kSilu;
  else if (name == "gelu")
    *act = Act::kGelu;
  else if (name == "gelu_tanh")
    *act = Act::kGeluTanh;
  else if (name == "sigmoid")
    *act = Act::kSigmoid;
  else
    return false;
  return true;
}

namespace {

bool NeedsF64(const KernelContext& ctx, size_t input) {
  return ctx.output_dtype(0) == KILN_DTYPE_F64 ||
         (ctx.has_input(input) && !ctx.is_quantized(input) &&
          ctx.input(input).dtype == KILN_DTYPE_F64);
}

/// Normalizes `axis` into [0, rank) or returns false.
bool NormalizeAxis(int64_t axis, int rank, int* out) {
  if (axis < -rank || axis >= rank) return false;
  *out = int(axis < 0 ? axis + rank : axis);
  return true;
}

/// Expands a parameter (norm weight or bias) broadcastable to `norm` (the
/// normalized dimensions) into a dense vector of norm.numel() values.
template <typename T>
kiln_status_t ExpandParam(const KernelContext& ctx, size_t i, const char* what,
                          const Dims& norm, std::vector<T>* out) {
  KILN_RETURN_IF_ERROR(CheckFloatInput(ctx, i, what));
  const Tensor& p = ctx.input(i);
  bool ok = p.shape.rank <= norm.rank;
  for (int d = 0; ok && d < p.shape.rank; ++d) {
    const int64_t pd = p.shape.back(d), nd = norm.back(d);
    ok = pd == nd || pd == 1;
  }
  if (!ok)
    return KernelError(
        ctx, KILN_STATUS_INVALID_ARGUMENT,
        "%s shape %s does not match the normalized dimensions %s", what,
        p.shape.str().c_str(), norm.str().c_str());
  const int64_t n = norm.numel();
  out->resize(size_t(n));
  if (p.shape.numel() == n) {
    LoadRow<T>(p.dtype, p.data, 0, n, out->data());
    return nullptr;
  }
  const Dims pstrides = StridesOf(p.shape);
  for (int64_t e = 0; e < n; ++e) {
    int64_t rem = e, src = 0;
    for (int d = 0; d < norm.rank; ++d) {
      const int64_t idx = rem % norm.back(d);
      rem /= norm.back(d);
      if (d < p.shape.rank && p.shape.back(d) != 1)
        src += idx * pstrides.back(d);
    }
    (*out)[size_t(e)] = T(LoadScalar(p.dtype, p.data, src));
  }
  return nullptr;
}

// ---------------------------------------------------------------------------
// rms_norm / layer_norm

template <typename T>
struct NormTask {
  const Tensor* x;
  Tensor* y;
  const T* w;
  const T* b;  // layer_norm bias or null
  int64_t inner;
  T eps;
  bool layer;
  // add_rms_norm: the row normalized is x + residual, also stored in sum.
  const Tensor* residual = nullptr;
  Tensor* sum = nullptr;

  template <int VB>
  KILN_ALWAYS_INLINE void Run(int64_t begin, int64_t end) const {
    std::vector<T> buf(static_cast<size_t>(inner)), rbuf;
    if (residual) rbuf.resize(static_cast<size_t>(inner));
    T* v = buf.data();
    const T n = T(inner);
    for (int64_t r = begin; r < end; ++r) {
      LoadRow<T>(x->dtype, x->data, r * inner, inner, v);
      if (residual) {
        LoadRow<T>(residual->dtype, residual->data, r * inner, inner,
                   rbuf.data());
        for (int64_t i = 0; i < inner; ++i) v[i] += rbuf[size_t(i)];
        StoreRow<T>(v, inner, sum->dtype, sum->data, r * inner);
        // Normalize the sum as stored, as an unfused add then norm would.
        LoadRow<T>(sum->dtype, sum->data, r * inner, inner, v);
      }
      if (layer) {
        T sum = 0;
        {
          using V = typename Vec<T, VB>::type;
          constexpr int L = Vec<T, VB>::kLanes;
          V acc{};
          int64_t i = 0;
          for (; i + L <= inner; i += L) acc += LoadV<V>(v + i);
          sum = HorizontalSum<T>(acc);
          for (; i < inner; ++i) sum += v[i];
        }
        const T mean = sum / n;
        for (int64_t i = 0; i < inner; ++i) v[i] -= mean;
        const T inv = T(1) / std::sqrt(Dot<T, VB>(v, v, inner) / n + eps);
        if (b) {
          for (int64_t i = 0; i < inner; ++i) v[i] = v[i] * inv * w[i] + b[i];
        } else {
          for (int64_t i = 0; i < inner; ++i) v[i] = v[i] * inv * w[i];
        }
      } else {
        const T inv = T(1) / std::sqrt(Dot<T, VB>(v, v, inner) / n + eps);
        for (int64_t i = 0; i < inner; ++i) v[i] = v[i] * inv * w[i];
      }
      StoreRow<T>(v, inner, y->dtype, y->data, r * inner);
    }
  }
};

/// rms_norm / layer_norm, and add_rms_norm when `residual` (inputs input,
/// residual, weight; outputs sum, result).
template <typename T>
kiln_status_t Norm(KernelContext& ctx, bool layer, bool residual = false) {
  KILN_RETURN_IF_ERROR(CheckFloatOutput(ctx));
  KILN_RETURN_IF_ERROR(CheckFloatInput(ctx, 0, "input"));
  const Tensor& x = ctx.input(0);
  const size_t wi = residual ? 2 : 1;
  const Tensor* res = nullptr;
  if (residual) {
    KILN_RETURN_IF_ERROR(CheckFloatInput(ctx, 1, "residual"));
    res = &ctx.input(1);
    if (res->shape != x.shape)
      return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                         "residual shape %s does not match input %s",
                         res->shape.str().c_str(), x.shape.str().c_str());
    if (ctx.num_outputs() != 2)
      return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                         "add_rms_norm has 2 results (sum, result), found %zu",
                         ctx.num_outputs());
    KILN_RETURN_IF_ERROR(CheckFloatOutput(ctx, 1));
  }
  int axis;
  const int64_t axis_attr = ctx.attrs().Int("axis", -1);
  if (!NormalizeAxis(axis_attr, x.shape.rank, &axis))
    return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                       "axis %lld is out of range for input %s",
                       (long long)axis_attr, x.shape.str().c_str());
  const double eps = ctx.attrs().Float("epsilon", 1e-5);
  if (!(eps >= 0))
    return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                       "epsilon %g must be non-negative", eps);
  Dims norm;
  for (int d = axis; d < x.shape.rank; ++d) norm.push_back(x.shape[d]);
  std::vector<T> w, b;
  KILN_RETURN_IF_ERROR(ExpandParam<T>(ctx, wi, "weight", norm, &w));
  const bool has_bias = layer && ctx.num_inputs() > 2 && ctx.has_input(2);
  if (has_bias) KILN_RETURN_IF_ERROR(ExpandParam<T>(ctx, 2, "bias", norm, &b));
  Tensor *y = nullptr, *sum = nullptr;
  if (residual) KILN_RETURN_IF_ERROR(ctx.allocate_output(0, x.shape, &sum));
  KILN_RETURN_IF_ERROR(ctx.allocate_output(residual ? 1 : 0, x.shape, &y));
  const int64_t inner = norm.numel();
  if (y->numel() == 0) return nullptr;
  NormTask<T> task{&x,    y,      w.data(), has_bias ? b.data() : nullptr,
                   inner, T(eps), layer,    res,
                   sum};
  ParallelForIsa(ctx.pool(), x.numel() / inner,
                 std::max<int64_t>(1, 16384 / inner), task);
  return nullptr;
}

kiln_status_t RmsNormKernel(KernelContext& ctx) {
  return NeedsF64(ctx, 0) ? Norm<double>(ctx, false) : Norm<float>(ctx, false);
}
kiln_status_t AddRmsNormKernel(KernelContext& ctx) {
  return NeedsF64(ctx, 0) ? Norm<double>(ctx, false, true)
                          : Norm<float>(ctx, false, true);
}
kiln_status_t LayerNormKernel(KernelContext& ctx) {
  return NeedsF64(ctx, 0) ? Norm<double>(ctx, true) : Norm<float>(ctx, true);
}

// ---------------------------------------------------------------------------
// rope

template <typename T>
kiln_status_t Rope(KernelContext& ctx) {
  KILN_RETURN_IF_ERROR(CheckFloatOutput(ctx));
  KILN_RETURN_IF_ERROR(CheckFloatInput(ctx, 0, "input"));
  KILN_RETURN_IF_ERROR(CheckFloatInput(ctx, 1, "cos"));
  KILN_RETURN_IF_ERROR(CheckFloatInput(ctx, 2, "sin"));
  const Tensor& x = ctx.input(0);
  const Tensor& cos = ctx.input(1);
  const Tensor& sin = ctx.input(2);
  const bool has_pos = ctx.num_inputs() > 3 && ctx.has_input(3);
  const bool interleaved = ctx.attrs().Flag("interleaved");
  if (x.shape.rank != 4)
    return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                       "input %s must be [batch, seq, heads, head_dim]",
                       x.shape.str().c_str());
  const int64_t B = x.shape[0], S = x.shape[1], H = x.shape[2], D = x.shape[3];
  const int64_t rot_attr = ctx.attrs().Int("rotary_dim", 0);
  const int64_t rot = rot_attr ? rot_attr : D;
  if (rot < 0 || rot % 2 || rot > D)
    return KernelError(
        ctx, KILN_STATUS_INVALID_ARGUMENT,
        "rotary_dim %lld must be even and at most head_dim %lld of input %s",
        (long long)rot_attr, (long long)D, x.shape.str().c_str());
  const int64_t half = rot / 2;
  if (cos.shape != sin.shape)
    return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                       "cos %s and sin %s shapes differ",
                       cos.shape.str().c_str(), sin.shape.str().c_str());
  const Tensor* pos = nullptr;
  int64_t pos_bstride = 0, cache_rows = 0, cos_bstride = 0;
  if (has_pos) {
    pos = &ctx.input(3);
    if (ctx.is_quantized(3) || !IsIntDtype(pos->dtype))
      return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                         "positions element type %s is not an integer type",
                         DtypeName(pos->dtype));
    if (pos->shape.rank != 2 || (pos->shape[0] != B && pos->shape[0] != 1) ||
        pos->shape[1] != S)
      return KernelError(
          ctx, KILN_STATUS_INVALID_ARGUMENT,
          "positions shape %s does not match [batch, seq] of input %s",
          pos->shape.str().c_str(), x.shape.str().c_str());
    if (cos.shape.rank != 2 || cos.shape[1] != half)
      return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                         "cos/sin shape %s is not [max_position, %lld]",
                         cos.shape.str().c_str(), (long long)half);
    pos_bstride = pos->shape[0] == 1 ? 0 : S;
    cache_rows = cos.shape[0];
    // Every position must index a cache row; checked before any work.
    for (int64_t b = 0; b < pos->shape[0]; ++b)
      for (int64_t s = 0; s < S; ++s) {
        const int64_t p = LoadInt(pos->dtype, pos->data, b * S + s);
        if (p < 0 || p >= cache_rows)
          return KernelError(
              ctx, KILN_STATUS_INVALID_ARGUMENT,
              "position %lld at [%lld, %lld] is outside the cos/sin cache of "
              "%lld positions",
              (long long)p, (long long)b, (long long)s, (long long)cache_rows);
      }
  } else {
    if (cos.shape.rank != 3 || (cos.shape[0] != B && cos.shape[0] != 1) ||
        cos.shape[1] != S || cos.shape[2] != half)
      return KernelError(
          ctx, KILN_STATUS_INVALID_ARGUMENT,
          "cos/sin shape %s does not match [batch, seq, rotary_dim / 2] = "
          "[%lld, %lld, %lld]",
          cos.shape.str().c_str(), (long long)B, (long long)S, (long long)half);
    cos_bstride = cos.shape[0] == 1 ? 0 : S;
  }
  Tensor* y = nullptr;
  KILN_RETURN_IF_ERROR(ctx.allocate_output(0, x.shape, &y));
  if (y->numel() == 0) return nullptr;
  ctx.pool().parallel_for(
      B * S, std::max<int64_t>(1, 8192 / std::max<int64_t>(H * D, 1)),
      [&](int64_t begin, int64_t end) {
        std::vector<T> c(static_cast<size_t>(half)),
            s(static_cast<size_t>(half)), v(static_cast<size_t>(D)),
            o(static_cast<size_t>(D));
        for (int64_t bs = begin; bs < end; ++bs) {
          const int64_t b = bs / S, t = bs % S;
          const int64_t row =
              pos ? LoadInt(pos->dtype, pos->data, b * pos_bstride + t)
                  : b * cos_bstride + t;
          LoadRow<T>(cos.dtype, cos.data, row * half, half, c.data());
          LoadRow<T>(sin.dtype, sin.data, row * half, half, s.data());
          for (int64_t h = 0; h < H; ++h) {
            const int64_t off = (bs * H + h) * D;
            LoadRow<T>(x.dtype, x.data, off, D, v.data());
            if (interleaved) {
              for (int64_t i = 0; i < half; ++i) {
                const T x1 = v[2 * i], x2 = v[2 * i + 1];
                o[2 * i] = x1 * c[i] - x2 * s[i];
                o[2 * i + 1] = x1 * s[i] + x2 * c[i];
              }
            } else {
              for (int64_t i = 0; i < half; ++i) {
                const T x1 = v[i], x2 = v[i + half];
                o[i] = x1 * c[i] - x2 * s[i];
                o[i + half] = x1 * s[i] + x2 * c[i];
              }
            }
            for (int64_t i = rot; i < D; ++i) o[i] = v[i];
            StoreRow<T>(o.data(), D, y->dtype, y->data, off);
          }
        }
      });
  return nullptr;
}

kiln_status_t RopeKernel(KernelContext& ctx) {
  return NeedsF64(ctx, 0) ? Rope<double>(ctx) : Rope<float>(ctx);
}

// ---------------------------------------------------------------------------
// glu

template <typename T>
kiln_status_t Glu(KernelContext& ctx, Act act) {
  KILN_RETURN_IF_ERROR(CheckFloatOutput(ctx));
  KILN_RETURN_IF_ERROR(CheckFloatInput(ctx, 0, "gate"));
  const Tensor& gate = ctx.input(0);
  const bool has_up = ctx.num_inputs() > 1 && ctx.has_input(1);
  Dims out_shape = gate.shape;
  int64_t width;  // F: elements of one row of the result
  const Tensor* up = nullptr;
  if (has_up) {
    KILN_RETURN_IF_ERROR(CheckFloatInput(ctx, 1, "up"));
    up = &ctx.input(1);
    if (up->shape != gate.shape)
      return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                         "up shape %s does not match gate %s",
                         up->shape.str().c_str(), gate.shape.str().c_str());
    width = gate.shape.rank ? gate.shape.back() : 1;
  } else {
    if (gate.shape.rank < 1 || gate.shape.back() % 2)
      return KernelError(
          ctx, KILN_STATUS_INVALID_ARGUMENT,
          "a fused gate/up operand %s needs an even last dimension",
          gate.shape.str().c_str());
    width = gate.shape.back() / 2;
    out_shape[out_shape.rank - 1] = width;
  }
  Tensor* y = nullptr;
  KILN_RETURN_IF_ERROR(ctx.allocate_output(0, out_shape, &y));
  if (y->numel() == 0) return nullptr;
  const int64_t rows = y->numel() / width;
  ctx.pool().parallel_for(
      rows, std::max<int64_t>(1, 8192 / width), [&](int64_t b, int64_t e) {
        std::vector<T> g(static_cast<size_t>(width)),
            u(static_cast<size_t>(width)), o(static_cast<size_t>(width));
        for (int64_t r = b; r < e; ++r) {
          if (up) {
            LoadRow<T>(gate.dtype, gate.data, r * width, width, g.data());
            LoadRow<T>(up->dtype, up->data, r * width, width, u.data());
          } else {
            LoadRow<T>(gate.dtype, gate.data, r * 2 * width, width, g.data());
            LoadRow<T>(gate.dtype, gate.data, r * 2 * width + width, width,
                       u.data());
          }
          GluRow<T>(act, g.data(), u.data(), width, o.data());
          StoreRow<T>(o.data(), width, y->dtype, y->data, r * width);
        }
      });
  return nullptr;
}

kiln_status_t GluKernel(KernelContext& ctx) {
  Act act;
  std::string_view name = ctx.attrs().String("activation");
  if (!ParseActivation(name, &act))
    return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                       "unknown activation '%.*s'", int(name.size()),
                       name.data());
  return NeedsF64(ctx, 0) ? Glu<double>(ctx, act) : Glu<float>(ctx, act);
}

// ---------------------------------------------------------------------------
// embedding

kiln_status_t EmbeddingKernel(KernelContext& ctx) {
  KILN_RETURN_IF_ERROR(CheckFloatOutput(ctx));
  if (ctx.num_inputs() < 2 || !ctx.has_input(0) || !ctx.has_input(1))
    return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                       "expected operands table and ids");
  const bool quant = ctx.is_quantized(0);
  QView q;
  if (quant) {
    std::string err = CheckQTensor(ctx.qinput(0), "table");
    if (!err.empty())
      return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT, "%s", err.c_str());
    q = QView(ctx.qinput(0));
  } else {
    KILN_RETURN_IF_ERROR(CheckFloatInput(ctx, 0, "table"));
  }
  const Dims& ts = OperandShape(ctx, 0);
  if (ts.rank != 2)
    return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                       "table %s must be [vocab, hidden]", ts.str().c_str());
  if (ctx.is_quantized(1) || !IsIntDtype(ctx.input(1).dtype))
    return KernelError(
        ctx, KILN_STATUS_INVALID_ARGUMENT,
        "ids element type %s is not an integer type",
        ctx.is_quantized(1) ? "qtensor" : DtypeName(ctx.input(1).dtype));
  const Tensor& ids = ctx.input(1);
  const int64_t V = ts[0], H = ts[1], n = ids.numel();
  if (ids.shape.rank + 1 > kMaxRank)
    return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                       "ids %s: result rank exceeds %d",
                       ids.shape.str().c_str(), kMaxRank);
  for (int64_t p = 0; p < n; ++p) {
    const int64_t id = LoadInt(ids.dtype, ids.data, p);
    if (id < 0 || id >= V) {
      Dims at;
      at.rank = ids.shape.rank;
      int64_t rem = p;
      for (int d = ids.shape.rank - 1; d >= 0; --d) {
        at[d] = rem % ids.shape[d];
        rem /= ids.shape[d];
      }
      return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                         "id %lld at position %s of ids %s is outside [0, "
                         "%lld) (vocabulary %lld)",
                         (long long)id, at.str().c_str(),
                         ids.shape.str().c_str(), (long long)V, (long long)V);
    }
  }
  Dims out_shape = ids.shape;
  out_shape.push_back(H);
  Tensor* y = nullptr;
  KILN_RETURN_IF_ERROR(ctx.allocate_output(0, out_shape, &y));
  if (y->numel() == 0) return nullptr;
  const kiln_dtype_t tdt = quant ? KILN_DTYPE_INVALID : ctx.input(0).dtype;
  const void* table = quant ? nullptr : ctx.input(0).data;
  const bool f64 = y->dtype == KILN_DTYPE_F64 || tdt == KILN_DTYPE_F64;
  ctx.pool().parallel_for(
      n, std::max<int64_t>(1, 16384 / std::max<int64_t>(H, 1)),
      [&](int64_t b, int64_t e) {
        std::vector<float> f(static_cast<size_t>(H));
        std::vector<double> d(f64 ? size_t(H) : 0);
        const size_t row_bytes = size_t(H) * ElemBytes(y->dtype);
        for (int64_t p = b; p < e; ++p) {
          const int64_t id = LoadInt(ids.dtype, ids.data, p);
          if (quant) {
            q.Row(id, 0, H, f.data());
            StoreRow<float>(f.data(), H, y->dtype, y->data, p * H);
          } else if (tdt == y->dtype) {
            std::memcpy(static_cast<uint8_t*>(y->data) + p * row_bytes,
                        static_cast<const uint8_t*>(table) + id * row_bytes,
                        row_bytes);
          } else if (f64) {
            LoadRow<double>(tdt, table, id * H, H, d.data());
            StoreRow<double>(d.data(), H, y->dtype, y->data, p * H);
          } else {
            LoadRow<float>(tdt, table, id * H, H, f.data());
            StoreRow<float>(f.data(), H, y->dtype, y->data, p * H);
          }
        }
      });
  return nullptr;
}

// ---------------------------------------------------------------------------
// dequantize / qtensor_data

kiln_status_t CheckQuantizedInput(const KernelContext& ctx, QView* q) {
  if (ctx.num_inputs() < 1 || !ctx.has_input(0) || !ctx.is_quantized(0))
    return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                       "input must be a quantized tensor");
  std::string err = CheckQTensor(ctx.qinput(0), "input");
  if (!err.empty())
    return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT, "%s", err.c_str());
  *q = QView(ctx.qinput(0));
  return nullptr;
}

kiln_status_t DequantizeKernel(KernelContext& ctx) {
  KILN_RETURN_IF_ERROR(CheckFloatOutput(ctx));
  QView q;
  KILN_RETURN_IF_ERROR(CheckQuantizedInput(ctx, &q));
  Tensor* y = nullptr;
  KILN_RETURN_IF_ERROR(ctx.allocate_output(0, ctx.qinput(0).data.shape, &y));
  if (y->numel() == 0) return nullptr;
  const int64_t cols = q.cols();
  ctx.pool().parallel_for(
      q.rows(), std::max<int64_t>(1, 16384 / cols), [&](int64_t b, int64_t e) {
        std::vector<float> f(static_cast<size_t>(cols));
        for (int64_t r = b; r < e; ++r) {
          q.Row(r, 0, cols, f.data());
          StoreRow<float>(f.data(), cols, y->dtype, y->data, r * cols);
        }
      });
  return nullptr;
}

kiln_status_t QTensorDataKernel(KernelContext& ctx) {
  QView q;
  KILN_RETURN_IF_ERROR(CheckQuantizedInput(ctx, &q));
  const Tensor& data = ctx.qinput(0).data;
  if (ctx.output_dtype(0) != data.dtype)
    return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                       "result element type %s is not the storage type %s",
                       DtypeName(ctx.output_dtype(0)), DtypeName(data.dtype));
  Tensor* y = nullptr;
  KILN_RETURN_IF_ERROR(ctx.allocate_output(0, data.shape, &y));
  if (y->bytes()) std::memcpy(y->data, data.data, size_t(y->bytes()));
  return nullptr;
}

}  // namespace

void AppendLlmKernels(std::vector<KernelEntry>& out) {
  out.push_back({"add_rms_norm", AddRmsNormKernel});
  out.push_back({"attention", AttentionKernel});
  out.push_back({"dequantize", DequantizeKernel});
  out.push_back({"embedding", EmbeddingKernel});
  out.push_back({"gated_mlp", GatedMlpKernel});
  out.push_back({"glu", GluKernel});
  out.push_back({"hadamard", HadamardKernel});
  out.push_back({"layer_norm", LayerNormKernel});
  out.push_back({"matmul", MatmulKernel});
  out.push_back({"qtensor_data", QTensorDataKernel});
  out.push_back({"quantize", QuantizeKernel});
  out.push_back({"rms_norm", RmsNormKernel});
  out.push_back({"rope", RopeKernel});
  out.push_back({"rotate", RotateKernel});
}

}  // namespace kiln
