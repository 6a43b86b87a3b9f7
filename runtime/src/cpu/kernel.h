// The CPU backend's kernel interface. A manifest launch names a kiln op
// ("matmul", "rms_norm", ...); the executor looks its kernel up here and calls
// it with a KernelContext that gives the launch's operands, attributes and
// declared result types. The kernel checks the run-time shapes of its inputs,
// computes the result shapes, asks the context for the result buffers and
// fills them.
//
// Operands come in the op's ODS operand order; an absent optional operand is
// still counted and reports has_input(i) == false. A !kiln.qtensor operand
// reports is_quantized(i) and is read with qinput(i).
//
// One implementation per op: these kernels are also the numerical reference
// the GPU backend is checked against.
#ifndef KILN_RUNTIME_CPU_KERNEL_H_
#define KILN_RUNTIME_CPU_KERNEL_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cpu/tensor.h"
#include "cpu/thread_pool.h"
#include "kiln/runtime/api.h"

namespace kiln {

/// One attribute value of a launch, decoded from the manifest once at load.
struct AttrValue {
  enum Kind { kInt, kFloat, kString, kInts, kFloats, kBool } kind = kInt;
  int64_t i = 0;
  double f = 0;
  std::string s;
  std::vector<int64_t> ints;
  std::vector<double> floats;  // kFloats, and the same values for kInts
};

/// A launch's attributes by name. Missing attributes read as the default the
/// caller passes, exactly as an absent optional attribute reads in ODS.
class Attrs {
 public:
  void Set(std::string name, AttrValue v) {
    items_.emplace_back(std::move(name), std::move(v));
  }
  const AttrValue* Find(std::string_view name) const {
    for (const auto& it : items_)
      if (it.first == name) return &it.second;
    return nullptr;
  }
  bool Has(std::string_view name) const { return Find(name) != nullptr; }
  int64_t Int(std::string_view name, int64_t def = 0) const {
    const AttrValue* v = Find(name);
    if (!v) return def;
    if (v->kind == AttrValue::kFloat) return int64_t(v->f);
    return v->i;
  }
  double Float(std::string_view name, double def = 0) const {
    const AttrValue* v = Find(name);
    if (!v) return def;
    if (v->kind == AttrValue::kInt || v->kind == AttrValue::kBool)
      return double(v->i);
    return v->f;
  }
  /// Unit attributes (transpose_b, keep_dims, ...) are true when present.
  bool Flag(std::string_view name) const {
    const AttrValue* v = Find(name);
    return v && (v->kind != AttrValue::kBool || v->i != 0);
  }
  std::string_view String(std::string_view name,
                          std::string_view def = {}) const {
    const AttrValue* v = Find(name);
    return v && v->kind == AttrValue::kString ? std::string_view(v->s) : def;
  }
  const std::vector<int64_t>& Ints(std::string_view name) const {
    static const std::vector<int64_t> kEmpty;
    const AttrValue* v = Find(name);
    return v && v->kind == AttrValue::kInts ? v->ints : kEmpty;
  }
  const std::vector<std::pair<std::string, AttrValue>>& items() const {
    return items_;
  }

 private:
  std::vector<std::pair<std::string, AttrValue>> items_;
};

/// What a kernel sees of one launch.
class KernelContext {
 public:
  virtual ~KernelContext() = default;

  /// The op name ("matmul") and the launch's source location (the ONNX node
  /// name, or "" when unknown), for error messages.
  virtual const char* op() const = 0;
  virtual const char* location() const = 0;

  virtual size_t num_inputs() const = 0;
  virtual bool has_input(size_t i) const = 0;
  virtual bool is_quantized(size_t i) const = 0;
  /// A plain tensor operand. Only valid when has_input(i) && !is_quantized(i).
  virtual const Tensor& input(size_t i) const = 0;
  /// Operand `i`'s compile-time shape (-1 for run-time dimensions), or
  /// nullptr when the caller does not know it (kernel unit tests).
  virtual const Dims* declared_input_shape(size_t i) const {
    (void)i;
    return nullptr;
  }
  /// Whether operand `i` is a weight or constant of the model: its storage
  /// lives as long as the model, so an accelerator may keep a copy of it.
  virtual bool is_weight(size_t i) const {
    (void)i;
    return false;
  }
  /// A quantized operand. Only valid when is_quantized(i).
  virtual const QTensor& qinput(size_t i) const = 0;

  virtual size_t num_outputs() const = 0;
  /// The result's element type, fixed at compile time.
  virtual kiln_dtype_t output_dtype(size_t i) const = 0;
  /// The result's compile-time shape; -1 for dimensions known at run time.
  virtual const Dims& declared_output_shape(size_t i) const = 0;
  /// Allocates result `i` with `shape` (which must agree with every static
  /// dimension of the declared shape, or INVALID_ARGUMENT is returned) and
  /// points `*out` at it. The memory is uninitialized and never aliases an
  /// input.
  virtual kiln_status_t allocate_output(size_t i, const Dims& shape,
                                        Tensor** out) = 0;

  /// True when the memory plan lets result `out` share the buffer of input
  /// `in` (the compiler marks view-like launches such as reshape and bitcast,
  /// and gives both values one slot). The kernel may then call alias_output
  /// instead of allocate_output and copying.
  virtual bool can_alias(size_t out, size_t in) const = 0;
  /// Makes result `out` a view of input `in`'s bytes with `shape`, which must
  /// have the same storage size. Only valid when can_alias(out, in).
  virtual kiln_status_t alias_output(size_t out, const Dims& shape, size_t in,
                                     Tensor** result) = 0;

  /// True when operand `i` is a !kiln.kv_cache (then has_input(i) is true,
  /// is_quantized(i) false, and input(i) must not be called).
  virtual bool is_cache(size_t i) const {
    (void)i;
    return false;
  }
  /// A KV-cache operand. Only valid when is_cache(i).
  virtual const KvCache& cache_input(size_t i) const = 0;
  /// Makes result `out` (a !kiln.kv_cache) the cache operand `in` with
  /// `tokens` more rows per sequence: the same storage, grown first when the
  /// executor owns it and it is too small (RESOURCE_EXHAUSTED when a cache
  /// bound by the caller has no room). `*result` has length = the operand's
  /// length + tokens; the kernel then writes rows [old length, new length).
  /// Rows below the old length keep their contents.
  virtual kiln_status_t append_cache(size_t out, size_t in, int64_t tokens,
                                     KvCache** result) = 0;

  virtual const Attrs& attrs() const = 0;
  virtual ThreadPool& pool() = 0;
};

/// Kernels return NULL on success or an owned error status.
using KernelFn = kiln_status_t (*)(KernelContext& ctx);

/// The kernel for `op`, or nullptr when the CPU backend has none.
KernelFn LookupCpuKernel(std::string_view op);

/// Every op the CPU backend implements, sorted (for --help and errors).
std::vector<std::string_view> CpuKernelNames();

/// A status for a kernel failure, prefixed with the op and its location:
/// "kiln.matmul at 'node_name': ...".
kiln_status_t KernelError(const KernelContext& ctx, kiln_status_code_t code,
                          const char* format, ...) KILN_PRINTF_FORMAT(3, 4);

}  // namespace kiln

#define KILN_RETURN_IF_ERROR(expr)           \
  do {                                       \
    kiln_status_t kiln_status_tmp_ = (expr); \
    if (kiln_status_tmp_) return kiln_status_tmp_; \
  } while (0)

#endif  // KILN_RUNTIME_CPU_KERNEL_H_
