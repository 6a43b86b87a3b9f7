// Elementwise kernels: binary arithmetic with NumPy broadcasting, logic,
// comparisons, select, unary math and activations, casts, trilu and fused
// elementwise programs (kiln.elementwise). Also the definitions of the
// shared helpers declared in kernel_util.h.
//
// Every kernel walks its output in order, one contiguous row at a time
// (StridedPlan / ForEachRow), with the per-element operation a template
// functor so the inner loops are plain loops the compiler vectorizes (the
// f16 / bf16 conversions in half.h and FastExpF are branch-free for that).
// f16 and bf16 compute in f32 and round back to nearest even; f64 computes
// in f64. Transcendentals are libm's, except e^x in f32 (FastExpF, < 1 ulp),
// which exp, sigmoid, silu and softmax use.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "cpu/kernel_util.h"
#include "cpu/kernels.h"
#include "kiln/runtime/artifact_format.h"

namespace kiln {

//===----------------------------------------------------------------------===//
// Shared helpers (kernel_util.h)
//===----------------------------------------------------------------------===//

kiln_status_t CheckOperands(const KernelContext& ctx, size_t required,
                            size_t optional) {
  if (ctx.num_inputs() < required || ctx.num_inputs() > required + optional) {
    if (optional == 0)
      return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                         "expected %zu operands, found %zu", required,
                         ctx.num_inputs());
    return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                       "expected %zu to %zu operands, found %zu", required,
                       required + optional, ctx.num_inputs());
  }
  for (size_t i = 0; i < ctx.num_inputs(); ++i) {
    if (i < required && !ctx.has_input(i))
      return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                         "operand #%zu is missing", i);
    if (ctx.has_input(i) && ctx.is_quantized(i))
      return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                         "operand #%zu is a quantized tensor, which this kernel "
                         "does not take",
                         i);
  }
  if (ctx.num_outputs() < 1)
    return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT, "no result declared");
  return nullptr;
}

bool BroadcastShapes(const Dims* const* shapes, int n, Dims* out) {
  int rank = 0;
  for (int k = 0; k < n; ++k) rank = std::max(rank, shapes[k]->rank);
  out->rank = rank;
  for (int d = 0; d < rank; ++d) {
    int64_t dim = 1;
    for (int k = 0; k < n; ++k) {
      int id = d - (rank - shapes[k]->rank);
      if (id < 0) continue;
      int64_t v = (*shapes[k])[id];
      if (v == 1) continue;
      if (dim != 1 && dim != v) return false;  // 0 only matches 0 (or 1)
      dim = v;
    }
    out->d[d] = dim;
  }
  return true;
}

StridedPlan StridedPlan::Make(const Dims& out, const Dims* const* inputs,
                              int n) {
  StridedPlan p;
  p.operands = n;
  p.numel = out.numel();
  Dims dense[kMaxOperands];
  for (int k = 0; k < n; ++k) dense[k] = StridesOf(*inputs[k]);
  // Keep the dimensions that are not 1, with each operand's stride (0 where
  // the operand stretches), then merge neighbours every operand walks
  // contiguously.
  int r = 0;
  for (int d = 0; d < out.rank; ++d) {
    if (out[d] == 1) continue;
    int64_t st[kMaxOperands];
    for (int k = 0; k < n; ++k) {
      int id = d - (out.rank - inputs[k]->rank);
      st[k] = (id >= 0 && (*inputs[k])[id] == out[d]) ? dense[k][id] : 0;
    }
    bool merge = r > 0;
    for (int k = 0; k < n && merge; ++k)
      merge = p.stride[k][r - 1] == st[k] * out[d];
    if (merge) {
      p.shape[r - 1] *= out[d];
      for (int k = 0; k < n; ++k) p.stride[k][r - 1] = st[k];
    } else {
      p.shape[r] = out[d];
      for (int k = 0; k < n; ++k) p.stride[k][r] = st[k];
      ++r;
    }
  }
  if (r == 0) {
    p.shape[0] = 1;
    for (int k = 0; k < n; ++k) p.stride[k][0] = 0;
    r = 1;
  }
  p.rank = r;
  return p;
}

void ParallelCopy(ThreadPool& pool, void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  constexpr int64_t kChunk = 1 << 18;
  int64_t chunks = int64_t((bytes + kChunk - 1) / kChunk);
  pool.parallel_for(chunks, 1, [&](int64_t b, int64_t e) {
    size_t begin = size_t(b) * kChunk;
    size_t end = std::min(bytes, size_t(e) * kChunk);
    std::memcpy(static_cast<char*>(dst) + begin,
                static_cast<const char*>(src) + begin, end - begin);
  });
}

void UnpackNibbles(const uint8_t* src, const Dims& shape, bool is_signed,
                   uint8_t* dst) {
  int64_t inner = shape.rank ? shape.back() : 1;
  if (inner == 0) return;
  int64_t rows = shape.numel() / inner;
  int64_t row_bytes = (inner + 1) / 2;
  for (int64_t r = 0; r < rows; ++r) {
    const uint8_t* s = src + r * row_bytes;
    uint8_t* o = dst + r * inner;
    for (int64_t j = 0; j < inner; ++j) {
      uint8_t nib = (s[j >> 1] >> ((j & 1) * 4)) & 0xF;
      o[j] = is_signed ? uint8_t(int8_t(uint8_t(nib << 4)) >> 4) : nib;
    }
  }
}

void PackNibbles(const uint8_t* src, const Dims& shape, uint8_t* dst) {
  int64_t inner = shape.rank ? shape.back() : 1;
  if (inner == 0) return;
  int64_t rows = shape.numel() / inner;
  int64_t row_bytes = (inner + 1) / 2;
  for (int64_t r = 0; r < rows; ++r) {
    const uint8_t* s = src + r * inner;
    uint8_t* o = dst + r * row_bytes;
    std::memset(o, 0, size_t(row_bytes));
    for (int64_t j = 0; j < inner; ++j)
      o[j >> 1] |= uint8_t((s[j] & 0xF) << ((j & 1) * 4));
  }
}

namespace {

// Presents a launch whose i4 / ui4 operands and results are unpacked to one
// byte per element (as i8 / ui8); see RunOnUnpackedNibbles.
class UnpackedNibbleContext : public KernelContext {
 public:
  explicit UnpackedNibbleContext(KernelContext& base) : base_(base) {
    inputs_.resize(base.num_inputs());
    input_bytes_.resize(base.num_inputs());
    for (size_t i = 0; i < base.num_inputs(); ++i) {
      if (!base.has_input(i) || base.is_quantized(i)) continue;
      const Tensor& t = base.input(i);
      inputs_[i] = t;
      if (!IsSubByte(t.dtype)) continue;
      input_bytes_[i].resize(size_t(t.numel()));
      if (t.numel() > 0)
        UnpackNibbles(static_cast<const uint8_t*>(t.data), t.shape,
                      t.dtype == KILN_DTYPE_I4, input_bytes_[i].data());
      inputs_[i].dtype = Widened(t.dtype);
      inputs_[i].data = input_bytes_[i].data();
    }
    outputs_.resize(base.num_outputs());
    output_bytes_.resize(base.num_outputs());
    allocated_.resize(base.num_outputs(), false);
  }

  // Packs the results the kernel wrote into the base context's buffers.
  kiln_status_t Finish() {
    for (size_t i = 0; i < outputs_.size(); ++i) {
      if (!allocated_[i] || !IsSubByte(base_.output_dtype(i))) continue;
      Tensor* real = nullptr;
      KILN_RETURN_IF_ERROR(base_.allocate_output(i, outputs_[i].shape, &real));
      if (real->numel() > 0)
        PackNibbles(output_bytes_[i].data(), real->shape,
                    static_cast<uint8_t*>(real->data));
    }
    return nullptr;
  }

  const char* op() const override { return base_.op(); }
  const char* location() const override { return base_.location(); }
  size_t num_inputs() const override { return base_.num_inputs(); }
  bool has_input(size_t i) const override { return base_.has_input(i); }
  bool is_quantized(size_t i) const override { return base_.is_quantized(i); }
  const Tensor& input(size_t i) const override { return inputs_[i]; }
  const QTensor& qinput(size_t i) const override { return base_.qinput(i); }
  bool is_cache(size_t i) const override { return base_.is_cache(i); }
  const KvCache& cache_input(size_t i) const override { return base_.cache_input(i); }
  kiln_status_t append_cache(size_t out, size_t in, int64_t tokens, KvCache** result) override {
    return base_.append_cache(out, in, tokens, result);
  }
  size_t num_outputs() const override { return base_.num_outputs(); }
  kiln_dtype_t output_dtype(size_t i) const override {
    return Widened(base_.output_dtype(i));
  }
  const Dims& declared_output_shape(size_t i) const override {
    return base_.declared_output_shape(i);
  }
  kiln_status_t allocate_output(size_t i, const Dims& shape,
                                Tensor** out) override {
    if (!IsSubByte(base_.output_dtype(i)))
      return base_.allocate_output(i, shape, out);
    // Check the shape against the declaration now, as the kernel expects.
    const Dims& d = base_.declared_output_shape(i);
    bool ok = d.rank == shape.rank;
    for (int k = 0; ok && k < d.rank; ++k) ok = d[k] < 0 || d[k] == shape[k];
    if (!ok)
      return KernelError(*this, KILN_STATUS_INVALID_ARGUMENT,
                         "result shape %s does not match the declared %s",
                         shape.str().c_str(), d.str().c_str());
    output_bytes_[i].assign(size_t(shape.numel()), 0);
    outputs_[i].dtype = Widened(base_.output_dtype(i));
    outputs_[i].shape = shape;
    outputs_[i].data = output_bytes_[i].data();
    allocated_[i] = true;
    *out = &outputs_[i];
    return nullptr;
  }
  bool can_alias(size_t, size_t) const override { return false; }
  kiln_status_t alias_output(size_t, const Dims&, size_t, Tensor**) override {
    return KernelError(*this, KILN_STATUS_INTERNAL, "no aliasing of 4-bit data");
  }
  const Attrs& attrs() const override { return base_.attrs(); }
  ThreadPool& pool() override { return base_.pool(); }

 private:
  static kiln_dtype_t Widened(kiln_dtype_t t) {
    return t == KILN_DTYPE_I4 ? KILN_DTYPE_I8
                              : t == KILN_DTYPE_U4 ? KILN_DTYPE_U8 : t;
  }

  KernelContext& base_;
  std::vector<Tensor> inputs_, outputs_;
  std::vector<std::vector<uint8_t>> input_bytes_, output_bytes_;
  std::vector<bool> allocated_;
};

}  // namespace

bool HasSubByteOperand(const KernelContext& ctx) {
  for (size_t i = 0; i < ctx.num_inputs(); ++i)
    if (ctx.has_input(i) && !ctx.is_quantized(i) && IsSubByte(ctx.input(i).dtype))
      return true;
  for (size_t i = 0; i < ctx.num_outputs(); ++i)
    if (IsSubByte(ctx.output_dtype(i))) return true;
  return false;
}

kiln_status_t RunOnUnpackedNibbles(KernelContext& ctx, KernelFn fn) {
  UnpackedNibbleContext unpacked(ctx);
  KILN_RETURN_IF_ERROR(fn(unpacked));
  return unpacked.Finish();
}

namespace {

//===----------------------------------------------------------------------===//
// Binary arithmetic, logic and comparisons
//===----------------------------------------------------------------------===//

// Integer +, -, * wrap around (two's complement) instead of overflowing,
// which would be undefined for the signed types: compute in the unsigned
// type of the promoted operands.
template <class C>
inline C WrapAdd(C a, C b) {
  if constexpr (std::is_integral_v<C>) {
    using U = std::make_unsigned_t<decltype(a + b)>;
    return C(U(a) + U(b));
  } else {
    return a + b;
  }
}
template <class C>
inline C WrapSub(C a, C b) {
  if constexpr (std::is_integral_v<C>) {
    using U = std::make_unsigned_t<decltype(a + b)>;
    return C(U(a) - U(b));
  } else {
    return a - b;
  }
}
template <class C>
inline C WrapMul(C a, C b) {
  if constexpr (std::is_integral_v<C>) {
    using U = std::make_unsigned_t<decltype(a + b)>;
    return C(U(a) * U(b));
  } else {
    return a * b;
  }
}
// Integer division truncates toward zero; the kernel rejects zero divisors
// before it runs, and MIN / -1 wraps to MIN instead of trapping.
template <class C>
inline C Divide(C a, C b) {
  if constexpr (std::is_integral_v<C> && std::is_signed_v<C>) {
    using U = std::make_unsigned_t<decltype(a + b)>;
    return b == C(-1) ? C(U(0) - U(a)) : C(a / b);
  } else {
    return a / b;
  }
}
// max / min propagate NaN (as NumPy's maximum / minimum and ONNX Max / Min).
// `|`, not `||`: both comparisons always run, so the select has no branch
// and the loops vectorize.
template <class C>
inline C Maximum(C a, C b) {
  return ((a > b) | (a != a)) ? a : b;
}
template <class C>
inline C Minimum(C a, C b) {
  return ((a < b) | (a != a)) ? a : b;
}

enum class BinOp { kAdd, kSub, kMul, kDiv, kPow, kMax, kMin, kAnd, kOr };

template <BinOp kOp, class C>
inline C ApplyBinary(C a, C b) {
  if constexpr (kOp == BinOp::kAdd) return WrapAdd(a, b);
  if constexpr (kOp == BinOp::kSub) return WrapSub(a, b);
  if constexpr (kOp == BinOp::kMul) return WrapMul(a, b);
  if constexpr (kOp == BinOp::kDiv) return Divide(a, b);
  if constexpr (kOp == BinOp::kPow) return std::pow(a, b);
  if constexpr (kOp == BinOp::kMax) return Maximum(a, b);
  if constexpr (kOp == BinOp::kMin) return Minimum(a, b);
  if constexpr (kOp == BinOp::kAnd) return C(a & b);
  if constexpr (kOp == BinOp::kOr) return C(a | b);
}

const char* BinOpName(BinOp op) {
  switch (op) {
    case BinOp::kAdd: return "add";
    case BinOp::kSub: return "sub";
    case BinOp::kMul: return "mul";
    case BinOp::kDiv: return "div";
    case BinOp::kPow: return "pow";
    case BinOp::kMax: return "max";
    case BinOp::kMin: return "min";
    case BinOp::kAnd: return "and";
    case BinOp::kOr: return "or";
  }
  return "?";
}

// Writes f(a[i], b[i]) for the broadcast plan's rows; f maps two stored
// elements to one stored result. The branches on the inner strides pick a
// loop the compiler can vectorize (both contiguous, or one operand fixed).
template <class S, class D, class F>
void RunBinary(ThreadPool& pool, const StridedPlan& plan, const S* a,
               const S* b, D* o, F f) {
  const int64_t sa = plan.inner_stride(0), sb = plan.inner_stride(1);
  pool.parallel_for(plan.numel, kGrainCheap, [&](int64_t begin, int64_t end) {
    ForEachRow(plan, begin, end, [&](int64_t out, const int64_t* in, int64_t n) {
      const S* pa = a + in[0];
      const S* pb = b + in[1];
      D* po = o + out;
      if (sa == 1 && sb == 1) {
        for (int64_t i = 0; i < n; ++i) po[i] = f(pa[i], pb[i]);
      } else if (sa == 1 && sb == 0) {
        const S vb = *pb;
        for (int64_t i = 0; i < n; ++i) po[i] = f(pa[i], vb);
      } else if (sa == 0 && sb == 1) {
        const S va = *pa;
        for (int64_t i = 0; i < n; ++i) po[i] = f(va, pb[i]);
      } else {
        for (int64_t i = 0; i < n; ++i) po[i] = f(pa[i * sa], pb[i * sb]);
      }
    });
  });
}

// Checks two operands and the result, broadcasts, allocates the result and
// builds the plan (plan->numel == 0 when there is nothing to compute).
kiln_status_t PrepareBinary(KernelContext& ctx, bool same_result_type,
                            StridedPlan* plan, Tensor** out) {
  KILN_RETURN_IF_ERROR(CheckOperands(ctx, 2));
  const Tensor& a = ctx.input(0);
  const Tensor& b = ctx.input(1);
  if (a.dtype != b.dtype)
    return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                       "operand element types %s and %s differ",
                       DTypeName(a.dtype), DTypeName(b.dtype));
  if (same_result_type && ctx.output_dtype(0) != a.dtype)
    return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                       "result element type %s differs from the operands' %s",
                       DTypeName(ctx.output_dtype(0)), DTypeName(a.dtype));
  const Dims* shapes[2] = {&a.shape, &b.shape};
  Dims shape;
  if (!BroadcastShapes(shapes, 2, &shape))
    return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                       "operand shapes %s and %s are not broadcastable",
                       a.shape.str().c_str(), b.shape.str().c_str());
  KILN_RETURN_IF_ERROR(ctx.allocate_output(0, shape, out));
  *plan = StridedPlan::Make(shape, shapes, 2);
  return nullptr;
}

// The arithmetic ops (not and / or) on a prepared plan.
template <BinOp kOp>
kiln_status_t RunArithmetic(KernelContext& ctx, const StridedPlan& plan,
                            Tensor* out) {
  const Tensor& a = ctx.input(0);
  const Tensor& b = ctx.input(1);
  const kiln_dtype_t dtype = a.dtype;
  if constexpr (kOp == BinOp::kDiv) {
    // Integer division by zero has no value: report the first zero divisor.
    kiln_status_t status = nullptr;
    DispatchInt(dtype, [&](auto tag) {
      using S = typename decltype(tag)::type;
      const S* pb = b.as<S>();
      for (int64_t i = 0, n = b.numel(); i < n; ++i)
        if (pb[i] == 0) {
          status = KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                               "integer division by zero (rhs element %lld of "
                               "shape %s)",
                               static_cast<long long>(i), b.shape.str().c_str());
          return;
        }
    });
    if (status) return status;
  }
  DispatchNumeric(dtype, [&](auto tag) {
    using S = typename decltype(tag)::type;
    using E = Elem<S>;
    if constexpr (kOp != BinOp::kPow || kIsFloatStorage<S>) {  // else rejected
      RunBinary(ctx.pool(), plan, a.as<S>(), b.as<S>(), out->as<S>(),
                [](S x, S y) {
                  return E::Store(ApplyBinary<kOp>(E::Load(x), E::Load(y)));
                });
    }
  });
  return nullptr;
}

template <BinOp kOp>
kiln_status_t BinaryKernel(KernelContext& ctx) {
  KILN_RETURN_IF_ERROR(CheckOperands(ctx, 2));
  const kiln_dtype_t dtype = ctx.input(0).dtype;
  constexpr bool kLogical = kOp == BinOp::kAnd || kOp == BinOp::kOr;
  bool supported;
  if (kLogical)
    supported = dtype == KILN_DTYPE_I1;
  else if (kOp == BinOp::kPow)
    supported = DispatchFloat(dtype, [](auto) {});
  else
    supported = DispatchNumeric(dtype, [](auto) {});
  if (!supported)
    return KernelError(ctx, KILN_STATUS_UNIMPLEMENTED,
                       "no %s kernel for element type %s", BinOpName(kOp),
                       DTypeName(dtype));
  StridedPlan plan;
  Tensor* out = nullptr;
  KILN_RETURN_IF_ERROR(PrepareBinary(ctx, true, &plan, &out));
  if (plan.numel == 0) return nullptr;
  if constexpr (kLogical) {
    // Any non-zero byte reads as true; results are 0 or 1.
    RunBinary(ctx.pool(), plan, ctx.input(0).as<uint8_t>(),
              ctx.input(1).as<uint8_t>(), out->as<uint8_t>(),
              [](uint8_t x, uint8_t y) {
                return uint8_t(ApplyBinary<kOp>(uint8_t(x != 0), uint8_t(y != 0)));
              });
    return nullptr;
  } else {
    return RunArithmetic<kOp>(ctx, plan, out);
  }
}

enum class Predicate { kEq, kNe, kLt, kLe, kGt, kGe };

template <Predicate kPred, class C>
inline uint8_t Compare(C a, C b) {
  if constexpr (kPred == Predicate::kEq) return a == b;
  if constexpr (kPred == Predicate::kNe) return a != b;
  if constexpr (kPred == Predicate::kLt) return a < b;
  if constexpr (kPred == Predicate::kLe) return a <= b;
  if constexpr (kPred == Predicate::kGt) return a > b;
  if constexpr (kPred == Predicate::kGe) return a >= b;
}

kiln_status_t CompareKernel(KernelContext& ctx) {
  KILN_RETURN_IF_ERROR(CheckOperands(ctx, 2));
  std::string_view name = ctx.attrs().String("predicate");
  static constexpr std::pair<std::string_view, Predicate> kNames[] = {
      {"eq", Predicate::kEq}, {"ne", Predicate::kNe}, {"lt", Predicate::kLt},
      {"le", Predicate::kLe}, {"gt", Predicate::kGt}, {"ge", Predicate::kGe}};
  const Predicate* pred = nullptr;
  for (const auto& p : kNames)
    if (p.first == name) pred = &p.second;
  if (!pred)
    return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                       "unknown predicate '%.*s' (expected eq, ne, lt, le, gt "
                       "or ge)",
                       int(name.size()), name.data());
  const kiln_dtype_t dtype = ctx.input(0).dtype;
  if (!DispatchAll(dtype, [](auto) {}))
    return KernelError(ctx, KILN_STATUS_UNIMPLEMENTED,
                       "no compare kernel for element type %s", DTypeName(dtype));
  if (ctx.output_dtype(0) != KILN_DTYPE_I1)
    return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                       "result element type must be i1, found %s",
                       DTypeName(ctx.output_dtype(0)));
  StridedPlan plan;
  Tensor* out = nullptr;
  KILN_RETURN_IF_ERROR(PrepareBinary(ctx, false, &plan, &out));
  if (plan.numel == 0) return nullptr;
  const Tensor& a = ctx.input(0);
  const Tensor& b = ctx.input(1);
  auto run = [&](auto tag) {
    using S = typename decltype(tag)::type;
    using E = Elem<S>;
    auto go = [&](auto pred_tag) {
      constexpr Predicate kPred = decltype(pred_tag)::value;
      RunBinary(ctx.pool(), plan, a.as<S>(), b.as<S>(), out->as<uint8_t>(),
                [](S x, S y) { return Compare<kPred>(E::Load(x), E::Load(y)); });
    };
    switch (*pred) {
      case Predicate::kEq: go(std::integral_constant<Predicate, Predicate::kEq>{}); break;
      case Predicate::kNe: go(std::integral_constant<Predicate, Predicate::kNe>{}); break;
      case Predicate::kLt: go(std::integral_constant<Predicate, Predicate::kLt>{}); break;
      case Predicate::kLe: go(std::integral_constant<Predicate, Predicate::kLe>{}); break;
      case Predicate::kGt: go(std::integral_constant<Predicate, Predicate::kGt>{}); break;
      case Predicate::kGe: go(std::integral_constant<Predicate, Predicate::kGe>{}); break;
    }
  };
  DispatchAll(dtype, run);
  return nullptr;
}

//===----------------------------------------------------------------------===//
// Select
//===----------------------------------------------------------------------===//

kiln_status_t SelectKernel(KernelContext& ctx) {
  KILN_RETURN_IF_ERROR(CheckOperands(ctx, 3));
  if (HasSubByteOperand(ctx)) return RunOnUnpackedNibbles(ctx, SelectKernel);
  const Tensor& c = ctx.input(0);
  const Tensor& t = ctx.input(1);
  const Tensor& f = ctx.input(2);
  if (c.dtype != KILN_DTYPE_I1)
    return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                       "condition must be i1, found %s", DTypeName(c.dtype));
  if (t.dtype != f.dtype || ctx.output_dtype(0) != t.dtype)
    return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                       "on_true %s, on_false %s and result %s element types "
                       "must match",
                       DTypeName(t.dtype), DTypeName(f.dtype),
                       DTypeName(ctx.output_dtype(0)));
  const Dims* shapes[3] = {&c.shape, &t.shape, &f.shape};
  Dims shape;
  if (!BroadcastShapes(shapes, 3, &shape))
    return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                       "condition %s, on_true %s and on_false %s shapes are "
                       "not broadcastable",
                       c.shape.str().c_str(), t.shape.str().c_str(),
                       f.shape.str().c_str());
  Tensor* out = nullptr;
  KILN_RETURN_IF_ERROR(ctx.allocate_output(0, shape, &out));
  if (shape.numel() == 0) return nullptr;
  const StridedPlan plan = StridedPlan::Make(shape, shapes, 3);
  DispatchBySize(ElementBytes(t.dtype), [&](auto tag) {
    using T = typename decltype(tag)::type;
    const uint8_t* pc = c.as<uint8_t>();
    const T* pt = t.as<T>();
    const T* pf = f.as<T>();
    T* po = out->as<T>();
    const int64_t sc = plan.inner_stride(0), st = plan.inner_stride(1),
                  sf = plan.inner_stride(2);
    ctx.pool().parallel_for(plan.numel, kGrainCheap, [&](int64_t b, int64_t e) {
      ForEachRow(plan, b, e, [&](int64_t o, const int64_t* in, int64_t n) {
        const uint8_t* rc = pc + in[0];
        const T* rt = pt + in[1];
        const T* rf = pf + in[2];
        T* ro = po + o;
        if (sc == 1 && st == 1 && sf == 1) {
          for (int64_t i = 0; i < n; ++i) ro[i] = rc[i] ? rt[i] : rf[i];
        } else if (sc == 1 && st == 0 && sf == 1) {  // masked fill
          const T vt = *rt;
          for (int64_t i = 0; i < n; ++i) ro[i] = rc[i] ? vt : rf[i];
        } else if (sc == 1 && st == 1 && sf == 0) {
          const T vf = *rf;
          for (int64_t i = 0; i < n; ++i) ro[i] = rc[i] ? rt[i] : vf;
        } else {
          for (int64_t i = 0; i < n; ++i)
            ro[i] = rc[i * sc] ? rt[i * st] : rf[i * sf];
        }
      });
    });
  });
  return nullptr;
}

//===----------------------------------------------------------------------===//
// Unary math and activations
//===----------------------------------------------------------------------===//

enum class UnOp {
  kNeg, kAbs, kExp, kLog, kSqrt, kRsqrt, kReciprocal, kTanh, kSin, kCos, kErf,
  kNot, kRelu, kSilu, kGelu, kGeluTanh, kSigmoid
};

const char* UnOpName(UnOp op) {
  switch (op) {
    case UnOp::kNeg: return "neg";
    case UnOp::kAbs: return "abs";
    case UnOp::kExp: return "exp";
    case UnOp::kLog: return "log";
    case UnOp::kSqrt: return "sqrt";
    case UnOp::kRsqrt: return "rsqrt";
    case UnOp::kReciprocal: return "reciprocal";
    case UnOp::kTanh: return "tanh";
    case UnOp::kSin: return "sin";
    case UnOp::kCos: return "cos";
    case UnOp::kErf: return "erf";
    case UnOp::kNot: return "not";
    case UnOp::kRelu: return "relu";
    case UnOp::kSilu: return "silu";
    case UnOp::kGelu: return "gelu";
    case UnOp::kGeluTanh: return "gelu_tanh";
    case UnOp::kSigmoid: return "sigmoid";
  }
  return "?";
}

template <UnOp kOp, class C>
inline C ApplyUnary(C x) {
  if constexpr (kOp == UnOp::kNeg) {
    if constexpr (std::is_integral_v<C>) {
      using U = std::make_unsigned_t<decltype(+x)>;
      return C(U(0) - U(x));  // wraps: neg(MIN) == MIN
    } else {
      return -x;
    }
  }
  if constexpr (kOp == UnOp::kAbs) {
    if constexpr (std::is_unsigned_v<C>) {
      return x;
    } else if constexpr (std::is_integral_v<C>) {
      using U = std::make_unsigned_t<decltype(+x)>;
      return x < 0 ? C(U(0) - U(x)) : x;
    } else {
      return std::fabs(x);
    }
  }
  if constexpr (kOp == UnOp::kExp) return ExpC(x);
  if constexpr (kOp == UnOp::kLog) return std::log(x);
  if constexpr (kOp == UnOp::kSqrt) return std::sqrt(x);
  if constexpr (kOp == UnOp::kRsqrt) return C(1) / std::sqrt(x);
  if constexpr (kOp == UnOp::kReciprocal) return C(1) / x;
  if constexpr (kOp == UnOp::kTanh) return std::tanh(x);
  if constexpr (kOp == UnOp::kSin) return std::sin(x);
  if constexpr (kOp == UnOp::kCos) return std::cos(x);
  if constexpr (kOp == UnOp::kErf) return std::erf(x);
  if constexpr (kOp == UnOp::kNot) return C(!x);
  if constexpr (kOp == UnOp::kRelu) return x < C(0) ? C(0) : x;  // keeps NaN
  // 1 / (1 + e^-x) saturates cleanly at both ends (e^-x -> inf gives 0).
  if constexpr (kOp == UnOp::kSigmoid) return C(1) / (C(1) + ExpC(-x));
  if constexpr (kOp == UnOp::kSilu) return x / (C(1) + ExpC(-x));
  if constexpr (kOp == UnOp::kGelu)
    return C(0.5) * x * (C(1) + std::erf(x * C(0.70710678118654752440)));
  if constexpr (kOp == UnOp::kGeluTanh) {
    const C k = C(0.79788456080286535588);  // sqrt(2 / pi)
    return C(0.5) * x * (C(1) + std::tanh(k * (x + C(0.044715) * x * x * x)));
  }
}

template <UnOp kOp>
constexpr bool kCheapUnary =
    kOp == UnOp::kNeg || kOp == UnOp::kAbs || kOp == UnOp::kNot ||
    kOp == UnOp::kRelu || kOp == UnOp::kReciprocal || kOp == UnOp::kSqrt ||
    kOp == UnOp::kRsqrt;

template <class S, class F>
void RunUnary(ThreadPool& pool, const S* in, S* out, int64_t n, int64_t grain,
              F f) {
  pool.parallel_for(n, grain, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) out[i] = f(in[i]);
  });
}

template <UnOp kOp>
kiln_status_t UnaryOnTensor(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  constexpr bool numeric = kOp == UnOp::kNeg || kOp == UnOp::kAbs;
  bool supported = kOp == UnOp::kNot ? x.dtype == KILN_DTYPE_I1
                   : numeric        ? DispatchNumeric(x.dtype, [](auto) {})
                                    : DispatchFloat(x.dtype, [](auto) {});
  if (!supported)
    return KernelError(ctx, KILN_STATUS_UNIMPLEMENTED,
                       "no %s kernel for element type %s", UnOpName(kOp),
                       DTypeName(x.dtype));
  KILN_RETURN_IF_ERROR(CheckSameType(ctx, x.dtype));
  Tensor* out = nullptr;
  KILN_RETURN_IF_ERROR(ctx.allocate_output(0, x.shape, &out));
  const int64_t n = x.numel();
  if (n == 0) return nullptr;
  const int64_t grain = kCheapUnary<kOp> ? kGrainCheap : kGrainHeavy;
  if constexpr (kOp == UnOp::kNot) {
    RunUnary(ctx.pool(), x.as<uint8_t>(), out->as<uint8_t>(), n, grain,
             [](uint8_t v) { return uint8_t(v == 0); });
  } else {
    DispatchNumeric(x.dtype, [&](auto tag) {
      using S = typename decltype(tag)::type;
      using E = Elem<S>;
      if constexpr (!numeric && !kIsFloatStorage<S>) {
        return;  // rejected above
      } else {
        RunUnary(ctx.pool(), x.as<S>(), out->as<S>(), n, grain,
                 [](S v) { return E::Store(ApplyUnary<kOp>(E::Load(v))); });
      }
    });
  }
  return nullptr;
}

template <UnOp kOp>
kiln_status_t UnaryKernel(KernelContext& ctx) {
  KILN_RETURN_IF_ERROR(CheckOperands(ctx, 1));
  return UnaryOnTensor<kOp>(ctx);
}

kiln_status_t ActivationKernel(KernelContext& ctx) {
  KILN_RETURN_IF_ERROR(CheckOperands(ctx, 1));
  std::string_view kind = ctx.attrs().String("kind");
  if (kind == "relu") return UnaryOnTensor<UnOp::kRelu>(ctx);
  if (kind == "silu") return UnaryOnTensor<UnOp::kSilu>(ctx);
  if (kind == "gelu") return UnaryOnTensor<UnOp::kGelu>(ctx);
  if (kind == "gelu_tanh") return UnaryOnTensor<UnOp::kGeluTanh>(ctx);
  if (kind == "sigmoid") return UnaryOnTensor<UnOp::kSigmoid>(ctx);
  return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                     "unknown activation kind '%.*s' (expected relu, silu, "
                     "gelu, gelu_tanh or sigmoid)",
                     int(kind.size()), kind.data());
}

//===----------------------------------------------------------------------===//
// Cast
//===----------------------------------------------------------------------===//

// A value to a 4-bit integer: like Convert to a 64-bit integer (floats
// truncated toward zero), then wrapped to the low 4 bits, two's complement
// for i4. ONNX leaves out-of-range casts undefined, but its Cast node tests
// expect this wrapping (-9 -> i4 7, -9 -> ui4 7).
template <class S>
inline uint8_t ConvertToNibble(S s) {
  uint64_t v;
  if constexpr (std::is_same_v<S, uint64_t>)
    v = s;
  else
    v = uint64_t(Convert<int64_t>(s));
  return uint8_t(v & 0xF);
}

kiln_status_t CastKernel(KernelContext& ctx) {
  KILN_RETURN_IF_ERROR(CheckOperands(ctx, 1));
  const Tensor& x = ctx.input(0);
  const kiln_dtype_t from = x.dtype, to = ctx.output_dtype(0);
  auto byte_type = [](kiln_dtype_t t) { return DispatchAll(t, [](auto) {}); };
  if (!(byte_type(from) || IsSubByte(from)) || !(byte_type(to) || IsSubByte(to)))
    return KernelError(ctx, KILN_STATUS_UNIMPLEMENTED,
                       "no cast from %s to %s", DTypeName(from), DTypeName(to));
  Tensor* out = nullptr;
  KILN_RETURN_IF_ERROR(ctx.allocate_output(0, x.shape, &out));
  const int64_t n = x.numel();
  if (n == 0) return nullptr;
  if (from == to) {
    ParallelCopy(ctx.pool(), out->data, x.data, x.bytes());
    return nullptr;
  }
  // 4-bit sources are unpacked to i8 / ui8 first; 4-bit results are
  // computed one per byte and packed at the end.
  std::vector<uint8_t> unpacked, nibbles;
  const void* src = x.data;
  kiln_dtype_t src_type = from;
  if (IsSubByte(from)) {
    unpacked.resize(size_t(n));
    UnpackNibbles(x.as<uint8_t>(), x.shape, from == KILN_DTYPE_I4, unpacked.data());
    src = unpacked.data();
    src_type = from == KILN_DTYPE_I4 ? KILN_DTYPE_I8 : KILN_DTYPE_U8;
  }
  ThreadPool& pool = ctx.pool();
  DispatchAll(src_type, [&](auto stag) {
    using S = typename decltype(stag)::type;
    const S* in = static_cast<const S*>(src);
    if (IsSubByte(to)) {
      nibbles.resize(size_t(n));
      uint8_t* o = nibbles.data();
      pool.parallel_for(n, kGrainCheap, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) o[i] = ConvertToNibble(in[i]);
      });
      return;
    }
    DispatchAll(to, [&](auto dtag) {
      using D = typename decltype(dtag)::type;
      D* o = out->as<D>();
      pool.parallel_for(n, kGrainCheap, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) o[i] = Convert<D>(in[i]);
      });
    });
  });
  if (IsSubByte(to)) PackNibbles(nibbles.data(), x.shape, out->as<uint8_t>());
  return nullptr;
}

//===----------------------------------------------------------------------===//
// Trilu
//===----------------------------------------------------------------------===//

kiln_status_t TriluKernel(KernelContext& ctx) {
  KILN_RETURN_IF_ERROR(CheckOperands(ctx, 1));
  if (HasSubByteOperand(ctx)) return RunOnUnpackedNibbles(ctx, TriluKernel);
  const Tensor& x = ctx.input(0);
  KILN_RETURN_IF_ERROR(CheckSameType(ctx, x.dtype));
  if (x.shape.rank < 2)
    return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                       "input must have rank >= 2, found shape %s",
                       x.shape.str().c_str());
  const int64_t diagonal = ctx.attrs().Int("diagonal", 0);
  const bool upper = ctx.attrs().Flag("upper");
  Tensor* out = nullptr;
  KILN_RETURN_IF_ERROR(ctx.allocate_output(0, x.shape, &out));
  const int64_t rows = x.numel() / std::max<int64_t>(x.shape.back(), 1);
  const int64_t m = x.shape.back(1), n = x.shape.back();
  if (x.numel() == 0) return nullptr;
  const size_t es = ElementBytes(x.dtype);
  const char* in = x.as<char>();
  char* o = out->as<char>();
  // Row i keeps columns [lo, hi): upper j >= i + diagonal, lower
  // j <= i + diagonal. The diagonal is clamped first so that i + diagonal
  // cannot overflow; beyond [-m, n] it changes nothing.
  const int64_t d = std::clamp<int64_t>(diagonal, -m - 1, n + 1);
  ctx.pool().parallel_for(rows, std::max<int64_t>(1, kGrainCheap / n),
                          [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      const int64_t i = r % m;
      const int64_t lo = upper ? std::clamp<int64_t>(i + d, 0, n) : 0;
      const int64_t hi = upper ? n : std::clamp<int64_t>(i + d + 1, 0, n);
      const size_t row = size_t(r) * size_t(n) * es;
      if (hi <= lo) {
        std::memset(o + row, 0, size_t(n) * es);
        continue;
      }
      std::memset(o + row, 0, size_t(lo) * es);
      std::memcpy(o + row + size_t(lo) * es, in + row + size_t(lo) * es,
                  size_t(hi - lo) * es);
      std::memset(o + row + size_t(hi) * es, 0, size_t(n - hi) * es);
    }
  });
  return nullptr;
}


//===----------------------------------------------------------------------===//
// Fused elementwise programs
//===----------------------------------------------------------------------===//

// kiln.elementwise runs a register program (artifact_format.h,
// kiln_ew_opcode_t) over f32 / f16 / bf16 inputs broadcast to the result.
// The output is computed kEwChunk elements at a time: each input's part of
// the chunk is converted into an f32 register, every instruction is then one
// plain loop over the chunk (the arithmetic ones vectorize), and the result
// register is rounded into the output. Values stay in f32 between
// instructions and only the result is rounded to its dtype, where a chain of
// unfused f16 / bf16 kernels rounds after every op; a program that needs
// such an intermediate rounding spells it with KILN_EW_ROUND_F16 /
// KILN_EW_ROUND_BF16. exp is FastExpF and max / min propagate NaN, as in the
// unfused kernels, so that fusing changes nothing but those roundings.

// Elements per chunk: small enough that all registers of a typical program
// stay in L1, large enough that the per-instruction dispatch is amortized.
constexpr int64_t kEwChunk = 256;

const char* const kEwOpNames[] = {
    "const", "add", "sub",  "mul",   "div",  "max", "min", "pow",        "neg",      "abs",
    "exp",   "log", "sqrt", "rsqrt", "tanh", "sin", "cos", "erf", "round_bf16", "round_f16"};
static_assert(sizeof(kEwOpNames) / sizeof(kEwOpNames[0]) == KILN_EW_OPCODE_COUNT,
              "one name per opcode");

// Operands an opcode reads: CONST reads constants[a] (no register), the
// binary opcodes are ADD..POW, the rest are unary.
int EwRegisterOperands(int64_t op) {
  if (op == KILN_EW_CONST) return 0;
  return op >= KILN_EW_ADD && op <= KILN_EW_POW ? 2 : 1;
}

// One decoded instruction; it writes register inputs + its index.
struct EwInstr {
  int op;
  int64_t a, b;
};

struct EwProgram {
  std::vector<EwInstr> code;
  std::vector<float> constants;
  int64_t result = 0;
};

// Decodes and checks the launch's program against `inputs` input registers,
// so that running it needs no checks.
kiln_status_t DecodeEwProgram(const KernelContext& ctx, size_t inputs, EwProgram* p) {
  const Attrs& attrs = ctx.attrs();
  const AttrValue* code = attrs.Find("code");
  if (code && code->kind != AttrValue::kInts)
    return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                       "attribute 'code' must be a list of integers");
  const std::vector<int64_t>& words = attrs.Ints("code");
  if (words.size() % 4 != 0)
    return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                       "attribute 'code' has %zu entries, which is not a multiple of 4 "
                       "(opcode, dst, a, b per instruction)",
                       words.size());
  // The manifest stores a list whose numbers are all integral as ints.
  if (const AttrValue* c = attrs.Find("constants")) {
    if (c->kind == AttrValue::kFloats)
      for (double v : c->floats) p->constants.push_back(float(v));
    else if (c->kind == AttrValue::kInts)
      for (int64_t v : c->ints) p->constants.push_back(float(v));
    else
      return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                         "attribute 'constants' must be a list of numbers");
  }
  const size_t count = words.size() / 4;
  const long long nconst = (long long)p->constants.size();
  for (size_t i = 0; i < count; ++i) {
    const int64_t op = words[4 * i], dst = words[4 * i + 1];
    const int64_t a = words[4 * i + 2], b = words[4 * i + 3];
    if (op < 0 || op >= KILN_EW_OPCODE_COUNT)
      return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                         "instruction %zu: unknown opcode %lld (expected 0 to %d)", i,
                         (long long)op, KILN_EW_OPCODE_COUNT - 1);
    const char* name = kEwOpNames[op];
    // Registers below `defined` hold the inputs and earlier results.
    const int64_t defined = int64_t(inputs + i);
    if (dst != defined)
      return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                         "instruction %zu (%s): writes register %lld, expected %lld "
                         "(instruction i writes register %zu + i)",
                         i, name, (long long)dst, (long long)defined, inputs);
    const int reads = EwRegisterOperands(op);
    if (reads == 0 && (a < 0 || a >= nconst))
      return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                         "instruction %zu (const): constant index %lld is out of range "
                         "(%lld constants)",
                         i, (long long)a, nconst);
    if (reads >= 1 && (a < 0 || a >= defined))
      return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                         "instruction %zu (%s): operand a reads register %lld, which is "
                         "not defined before it (registers 0 to %lld are)",
                         i, name, (long long)a, (long long)(defined - 1));
    if (reads == 2 && (b < 0 || b >= defined))
      return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                         "instruction %zu (%s): operand b reads register %lld, which is "
                         "not defined before it (registers 0 to %lld are)",
                         i, name, (long long)b, (long long)(defined - 1));
    if (reads < 2 && b != -1)
      return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                         "instruction %zu (%s): the unused operand b must be -1, found %lld",
                         i, name, (long long)b);
    p->code.push_back({int(op), a, b});
  }
  if (!attrs.Has("result"))
    return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT, "attribute 'result' is missing");
  p->result = attrs.Int("result");
  const int64_t registers = int64_t(inputs + count);
  if (p->result < 0 || p->result >= registers)
    return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                       "result register %lld is out of range: registers 0 to %lld are "
                       "defined (%zu inputs, %zu instructions)",
                       (long long)p->result, (long long)(registers - 1), inputs, count);
  return nullptr;
}

// How the n inputs are read while the dense output is written in order:
// StridedPlan for any number of operands (size-1 dimensions dropped, runs
// that every operand reads contiguously merged). An operand's innermost
// stride is 1 or 0 (stretched): the dimensions after the innermost kept one
// are all 1, so a non-stretched operand is contiguous there.
struct EwPlan {
  int rank = 1;
  int64_t shape[kMaxRank] = {1};
  std::vector<int64_t> stride;  // [operand * kMaxRank + dim], elements

  EwPlan(const Dims& out, const std::vector<const Dims*>& inputs) {
    const size_t n = inputs.size();
    stride.assign(n * kMaxRank, 0);
    std::vector<Dims> dense(n);
    for (size_t k = 0; k < n; ++k) dense[k] = StridesOf(*inputs[k]);
    std::vector<int64_t> st(n);
    int r = 0;
    for (int d = 0; d < out.rank; ++d) {
      if (out[d] == 1) continue;
      for (size_t k = 0; k < n; ++k) {
        const int id = d - (out.rank - inputs[k]->rank);
        st[k] = (id >= 0 && (*inputs[k])[id] == out[d]) ? dense[k][id] : 0;
      }
      bool merge = r > 0;
      for (size_t k = 0; k < n && merge; ++k) merge = at(k, r - 1) == st[k] * out[d];
      if (merge) {
        shape[r - 1] *= out[d];
        for (size_t k = 0; k < n; ++k) at(k, r - 1) = st[k];
      } else {
        shape[r] = out[d];
        for (size_t k = 0; k < n; ++k) at(k, r) = st[k];
        ++r;
      }
    }
    if (r == 0) {  // a scalar: every stride stays 0
      shape[0] = 1;
      r = 1;
    }
    rank = r;
  }
  int64_t& at(size_t k, int d) { return stride[k * kMaxRank + size_t(d)]; }
  int64_t at(size_t k, int d) const { return stride[k * kMaxRank + size_t(d)]; }
};

// Converts `count` elements of `t` from element `offset` (step `step`, 0 or
// 1) into f32.
void LoadEw(const Tensor& t, int64_t offset, int64_t step, int64_t count, float* dst) {
  switch (t.dtype) {
    case KILN_DTYPE_F32: {
      const float* s = t.as<float>() + offset;
      if (step) {
        std::memcpy(dst, s, size_t(count) * sizeof(float));
      } else {
        std::fill(dst, dst + count, *s);
      }
      break;
    }
    case KILN_DTYPE_F16: {
      const uint16_t* s = t.as<uint16_t>() + offset;
      if (step) {
        for (int64_t i = 0; i < count; ++i) dst[i] = HalfToFloat(s[i]);
      } else {
        std::fill(dst, dst + count, HalfToFloat(*s));
      }
      break;
    }
    default: {  // bf16 (the kernel admits nothing else)
      const uint16_t* s = t.as<uint16_t>() + offset;
      if (step) {
        for (int64_t i = 0; i < count; ++i) dst[i] = BF16ToFloat(s[i]);
      } else {
        std::fill(dst, dst + count, BF16ToFloat(*s));
      }
      break;
    }
  }
}

void StoreEw(const float* src, int64_t count, kiln_dtype_t dtype, void* data, int64_t offset) {
  if (dtype == KILN_DTYPE_F32) {
    std::memcpy(static_cast<float*>(data) + offset, src, size_t(count) * sizeof(float));
  } else if (dtype == KILN_DTYPE_F16) {
    uint16_t* o = static_cast<uint16_t*>(data) + offset;
    for (int64_t i = 0; i < count; ++i) o[i] = FloatToHalf(src[i]);
  } else {
    uint16_t* o = static_cast<uint16_t*>(data) + offset;
    for (int64_t i = 0; i < count; ++i) o[i] = FloatToBF16(src[i]);
  }
}

// o[i] = f(a[i]) or f(a[i], b[i]) over one chunk. The registers of one
// instruction are distinct buffers (it writes a register above those it
// reads), which __restrict tells the vectorizer.
template <class F>
inline void EwUnary(float* __restrict o, const float* __restrict a, int64_t n, F f) {
  for (int64_t i = 0; i < n; ++i) o[i] = f(a[i]);
}
template <class F>
inline void EwBinary(float* __restrict o, const float* __restrict a,
                     const float* __restrict b, int64_t n, F f) {
  for (int64_t i = 0; i < n; ++i) o[i] = f(a[i], b[i]);
}

// Runs instruction `in` over the first n elements of its registers.
void RunEwInstr(const EwInstr& in, float* o, const float* a, const float* b, int64_t n) {
  switch (in.op) {
    case KILN_EW_ADD: EwBinary(o, a, b, n, [](float x, float y) { return x + y; }); break;
    case KILN_EW_SUB: EwBinary(o, a, b, n, [](float x, float y) { return x - y; }); break;
    case KILN_EW_MUL: EwBinary(o, a, b, n, [](float x, float y) { return x * y; }); break;
    case KILN_EW_DIV: EwBinary(o, a, b, n, [](float x, float y) { return x / y; }); break;
    case KILN_EW_MAX: EwBinary(o, a, b, n, [](float x, float y) { return Maximum(x, y); }); break;
    case KILN_EW_MIN: EwBinary(o, a, b, n, [](float x, float y) { return Minimum(x, y); }); break;
    case KILN_EW_POW:
      EwBinary(o, a, b, n, [](float x, float y) { return std::pow(x, y); });
      break;
    case KILN_EW_NEG: EwUnary(o, a, n, [](float x) { return -x; }); break;
    case KILN_EW_ABS: EwUnary(o, a, n, [](float x) { return std::fabs(x); }); break;
    case KILN_EW_EXP: EwUnary(o, a, n, [](float x) { return FastExpF(x); }); break;
    case KILN_EW_LOG: EwUnary(o, a, n, [](float x) { return std::log(x); }); break;
    case KILN_EW_SQRT: EwUnary(o, a, n, [](float x) { return std::sqrt(x); }); break;
    case KILN_EW_RSQRT: EwUnary(o, a, n, [](float x) { return 1.0f / std::sqrt(x); }); break;
    case KILN_EW_TANH: EwUnary(o, a, n, [](float x) { return std::tanh(x); }); break;
    case KILN_EW_SIN: EwUnary(o, a, n, [](float x) { return std::sin(x); }); break;
    case KILN_EW_COS: EwUnary(o, a, n, [](float x) { return std::cos(x); }); break;
    case KILN_EW_ERF: EwUnary(o, a, n, [](float x) { return std::erf(x); }); break;
    case KILN_EW_ROUND_BF16:
      EwUnary(o, a, n, [](float x) { return BF16ToFloat(FloatToBF16(x)); });
      break;
    case KILN_EW_ROUND_F16:
      EwUnary(o, a, n, [](float x) { return HalfToFloat(FloatToHalf(x)); });
      break;
    default: break;  // KILN_EW_CONST: filled once per task (see below)
  }
}

bool IsEwFloat(kiln_dtype_t t) {
  return t == KILN_DTYPE_F32 || t == KILN_DTYPE_F16 || t == KILN_DTYPE_BF16;
}

kiln_status_t ElementwiseProgramKernel(KernelContext& ctx) {
  const size_t n = ctx.num_inputs();
  if (n == 0)
    return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT, "expected at least one operand");
  for (size_t i = 0; i < n; ++i) {
    if (!ctx.has_input(i))
      return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT, "operand #%zu is missing", i);
    if (ctx.is_quantized(i))
      return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                         "operand #%zu is a quantized tensor, which this kernel does not take",
                         i);
    if (!IsEwFloat(ctx.input(i).dtype))
      return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                         "operand #%zu has element type %s (expected f32, f16 or bf16)", i,
                         DTypeName(ctx.input(i).dtype));
  }
  if (ctx.num_outputs() < 1)
    return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT, "no result declared");
  const kiln_dtype_t out_type = ctx.output_dtype(0);
  if (!IsEwFloat(out_type))
    return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                       "result element type %s (expected f32, f16 or bf16)",
                       DTypeName(out_type));
  EwProgram prog;
  KILN_RETURN_IF_ERROR(DecodeEwProgram(ctx, n, &prog));

  // The result has the declared rank, which may exceed every input's: the
  // compiler folds scalar constants into the program, and those may have
  // been the only operands of the full rank.
  const int rank = ctx.declared_output_shape(0).rank;
  std::vector<const Dims*> shapes(n);
  std::string listed;
  for (size_t i = 0; i < n; ++i) {
    shapes[i] = &ctx.input(i).shape;
    listed += (i ? ", " : "") + shapes[i]->str();
  }
  for (size_t i = 0; i < n; ++i)
    if (shapes[i]->rank > rank)
      return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                         "operand #%zu has shape %s, of a higher rank than the declared "
                         "result %s",
                         i, shapes[i]->str().c_str(),
                         ctx.declared_output_shape(0).str().c_str());
  Dims broadcast;
  if (!BroadcastShapes(shapes.data(), int(n), &broadcast))
    return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                       "operand shapes %s are not broadcastable", listed.c_str());
  Dims shape;
  for (int d = 0; d < rank - broadcast.rank; ++d) shape.push_back(1);
  for (int d = 0; d < broadcast.rank; ++d) shape.push_back(broadcast[d]);
  Tensor* out = nullptr;
  KILN_RETURN_IF_ERROR(ctx.allocate_output(0, shape, &out));
  const int64_t numel = shape.numel();
  if (numel == 0) return nullptr;

  std::vector<Tensor> ins(n);
  for (size_t k = 0; k < n; ++k) ins[k] = ctx.input(k);
  const EwPlan plan(shape, shapes);
  const int last = plan.rank - 1;
  const size_t registers = n + prog.code.size();
  const int64_t chunks = (numel + kEwChunk - 1) / kEwChunk;
  // Work per element grows with the program; a grain of kGrainHeavy
  // elements at least, as for one transcendental.
  const int64_t grain_elements = std::max<int64_t>(
      kGrainHeavy, kGrainCheap / std::max<int64_t>(1, int64_t(prog.code.size())));
  const int64_t grain = std::max<int64_t>(1, grain_elements / kEwChunk);
  ctx.pool().parallel_for(chunks, grain, [&](int64_t cb, int64_t ce) {
    std::vector<float> regs(registers * size_t(kEwChunk));
    auto reg = [&](int64_t r) { return regs.data() + size_t(r) * size_t(kEwChunk); };
    // Constants are the same in every chunk: fill their registers once.
    for (size_t i = 0; i < prog.code.size(); ++i)
      if (prog.code[i].op == KILN_EW_CONST)
        std::fill(reg(int64_t(n + i)), reg(int64_t(n + i)) + kEwChunk,
                  prog.constants[size_t(prog.code[i].a)]);
    // The odometer of the first element of the task.
    int64_t idx[kMaxRank];
    std::vector<int64_t> off(n, 0);
    int64_t rem = cb * kEwChunk;
    for (int d = last; d >= 0; --d) {
      idx[d] = rem % plan.shape[d];
      rem /= plan.shape[d];
      for (size_t k = 0; k < n; ++k) off[k] += idx[d] * plan.at(k, d);
    }
    const int64_t end = std::min(numel, ce * kEwChunk);
    for (int64_t pos = cb * kEwChunk; pos < end; pos += kEwChunk) {
      const int64_t len = std::min(kEwChunk, end - pos);
      // Gather the chunk, one run of the innermost dimension at a time.
      for (int64_t filled = 0; filled < len;) {
        const int64_t count = std::min(plan.shape[last] - idx[last], len - filled);
        for (size_t k = 0; k < n; ++k)
          LoadEw(ins[k], off[k], plan.at(k, last), count, reg(int64_t(k)) + filled);
        filled += count;
        idx[last] += count;
        for (size_t k = 0; k < n; ++k) off[k] += count * plan.at(k, last);
        for (int d = last; d > 0 && idx[d] == plan.shape[d]; --d) {
          idx[d] = 0;
          ++idx[d - 1];
          for (size_t k = 0; k < n; ++k)
            off[k] += plan.at(k, d - 1) - plan.shape[d] * plan.at(k, d);
        }
      }
      for (size_t i = 0; i < prog.code.size(); ++i) {
        const EwInstr& in = prog.code[i];
        if (in.op == KILN_EW_CONST) continue;
        RunEwInstr(in, reg(int64_t(n + i)), reg(in.a), in.b >= 0 ? reg(in.b) : nullptr, len);
      }
      StoreEw(reg(prog.result), len, out_type, out->data, pos);
    }
  });
  return nullptr;
}

}  // namespace

void AppendElementwiseKernels(std::vector<KernelEntry>& out) {
  out.push_back({"add", BinaryKernel<BinOp::kAdd>});
  out.push_back({"sub", BinaryKernel<BinOp::kSub>});
  out.push_back({"mul", BinaryKernel<BinOp::kMul>});
  out.push_back({"div", BinaryKernel<BinOp::kDiv>});
  out.push_back({"pow", BinaryKernel<BinOp::kPow>});
  out.push_back({"max", BinaryKernel<BinOp::kMax>});
  out.push_back({"min", BinaryKernel<BinOp::kMin>});
  out.push_back({"and", BinaryKernel<BinOp::kAnd>});
  out.push_back({"or", BinaryKernel<BinOp::kOr>});
  out.push_back({"compare", CompareKernel});
  out.push_back({"select", SelectKernel});
  out.push_back({"neg", UnaryKernel<UnOp::kNeg>});
  out.push_back({"abs", UnaryKernel<UnOp::kAbs>});
  out.push_back({"exp", UnaryKernel<UnOp::kExp>});
  out.push_back({"log", UnaryKernel<UnOp::kLog>});
  out.push_back({"sqrt", UnaryKernel<UnOp::kSqrt>});
  out.push_back({"rsqrt", UnaryKernel<UnOp::kRsqrt>});
  out.push_back({"reciprocal", UnaryKernel<UnOp::kReciprocal>});
  out.push_back({"tanh", UnaryKernel<UnOp::kTanh>});
  out.push_back({"sin", UnaryKernel<UnOp::kSin>});
  out.push_back({"cos", UnaryKernel<UnOp::kCos>});
  out.push_back({"erf", UnaryKernel<UnOp::kErf>});
  out.push_back({"not", UnaryKernel<UnOp::kNot>});
  out.push_back({"activation", ActivationKernel});
  out.push_back({"cast", CastKernel});
  out.push_back({"trilu", TriluKernel});
  out.push_back({"elementwise", ElementwiseProgramKernel});
  AppendReduceKernels(out);
}

}  // namespace kiln
