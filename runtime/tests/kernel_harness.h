// Runs one CPU kernel outside an artifact, for kernel unit tests: inputs are
// owned vectors, results are allocated by the harness.
#ifndef KILN_RUNTIME_TESTS_KERNEL_HARNESS_H_
#define KILN_RUNTIME_TESTS_KERNEL_HARNESS_H_

#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "cpu/kernel.h"

namespace kiln::testing {

/// An owned tensor.
struct HostTensor {
  kiln_dtype_t dtype = KILN_DTYPE_F32;
  Dims shape;
  std::vector<uint8_t> bytes;

  HostTensor() = default;
  HostTensor(kiln_dtype_t t, Dims s) : dtype(t), shape(s), bytes(StorageBytes(t, s)) {}
  template <typename T>
  static HostTensor Of(kiln_dtype_t t, Dims s, const std::vector<T>& values) {
    HostTensor h(t, s);
    std::memcpy(h.bytes.data(), values.data(), std::min(h.bytes.size(), values.size() * sizeof(T)));
    return h;
  }
  template <typename T>
  T* as() { return reinterpret_cast<T*>(bytes.data()); }
  template <typename T>
  const T* as() const { return reinterpret_cast<const T*>(bytes.data()); }
  template <typename T>
  std::vector<T> values() const {
    return std::vector<T>(as<T>(), as<T>() + shape.numel());
  }
  Tensor view() {
    Tensor t;
    t.dtype = dtype;
    t.shape = shape;
    t.data = bytes.empty() ? nullptr : bytes.data();
    return t;
  }
};

/// Random f32 values in [lo, hi) from a fixed seed.
inline std::vector<float> RandomFloats(size_t n, uint32_t seed, float lo = -1.f, float hi = 1.f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

class KernelHarness : public KernelContext {
 public:
  explicit KernelHarness(std::string op, int threads = 2) : op_(std::move(op)), pool_(threads) {}

  /// Adds a plain tensor operand.
  KernelHarness& In(HostTensor t) {
    inputs_.push_back(std::make_unique<HostTensor>(std::move(t)));
    views_.push_back(inputs_.back()->view());
    present_.push_back(true);
    quantized_.push_back(false);
    qviews_.emplace_back();
    return *this;
  }
  /// Adds an absent optional operand.
  KernelHarness& None() {
    inputs_.push_back(nullptr);
    views_.emplace_back();
    present_.push_back(false);
    quantized_.push_back(false);
    qviews_.emplace_back();
    return *this;
  }
  /// Adds a quantized operand; `zero_points` may have an empty byte vector.
  KernelHarness& InQ(HostTensor data, HostTensor scales, HostTensor zero_points, Dims block,
                     kiln_dtype_t expressed = KILN_DTYPE_F32) {
    owned_.push_back(std::make_unique<HostTensor>(std::move(data)));
    QTensor q;
    q.data = owned_.back()->view();
    owned_.push_back(std::make_unique<HostTensor>(std::move(scales)));
    q.scales = owned_.back()->view();
    owned_.push_back(std::make_unique<HostTensor>(std::move(zero_points)));
    q.zero_points = owned_.back()->view();
    if (owned_.back()->bytes.empty()) q.zero_points.data = nullptr;
    q.block = block;
    q.expressed = expressed;
    inputs_.push_back(nullptr);
    views_.emplace_back();
    present_.push_back(true);
    quantized_.push_back(true);
    qviews_.push_back(q);
    return *this;
  }
  /// Declares a result with its dtype and compile-time shape (-1 = dynamic).
  KernelHarness& Out(kiln_dtype_t dtype, Dims declared) {
    out_dtypes_.push_back(dtype);
    out_declared_.push_back(declared);
    outputs_.push_back(nullptr);
    out_views_.emplace_back();
    return *this;
  }
  KernelHarness& Attr(const std::string& name, int64_t v) {
    AttrValue a; a.kind = AttrValue::kInt; a.i = v; attrs_.Set(name, a); return *this;
  }
  KernelHarness& AttrF(const std::string& name, double v) {
    AttrValue a; a.kind = AttrValue::kFloat; a.f = v; attrs_.Set(name, a); return *this;
  }
  KernelHarness& AttrS(const std::string& name, std::string v) {
    AttrValue a; a.kind = AttrValue::kString; a.s = std::move(v); attrs_.Set(name, a); return *this;
  }
  KernelHarness& AttrInts(const std::string& name, std::vector<int64_t> v) {
    AttrValue a; a.kind = AttrValue::kInts; a.ints = std::move(v); attrs_.Set(name, a); return *this;
  }
  KernelHarness& Flag(const std::string& name) {
    AttrValue a; a.kind = AttrValue::kBool; a.i = 1; attrs_.Set(name, a); return *this;
  }

  /// Runs the kernel; returns its status (the caller owns it).
  kiln_status_t Run() {
    KernelFn fn = LookupCpuKernel(op_);
    if (!fn) return kiln_status_allocate(KILN_STATUS_UNIMPLEMENTED, nullptr, 0, "no kernel %s", op_.c_str());
    return fn(*this);
  }
  /// Runs and returns the error message, or "" on success.
  std::string RunMessage() {
    kiln_status_t s = Run();
    std::string m = s ? kiln_status_message(s) : "";
    if (s && m.empty()) m = "error";
    kiln_status_free(s);
    return m;
  }
  HostTensor& Result(size_t i = 0) { return *outputs_[i]; }

  // KernelContext.
  const char* op() const override { return op_.c_str(); }
  const char* location() const override { return "test"; }
  size_t num_inputs() const override { return views_.size(); }
  bool has_input(size_t i) const override { return i < present_.size() && present_[i]; }
  bool is_quantized(size_t i) const override { return i < quantized_.size() && quantized_[i]; }
  const Tensor& input(size_t i) const override { return views_[i]; }
  const QTensor& qinput(size_t i) const override { return qviews_[i]; }
  size_t num_outputs() const override { return out_dtypes_.size(); }
  kiln_dtype_t output_dtype(size_t i) const override { return out_dtypes_[i]; }
  const Dims& declared_output_shape(size_t i) const override { return out_declared_[i]; }
  kiln_status_t allocate_output(size_t i, const Dims& shape, Tensor** out) override {
    const Dims& d = out_declared_[i];
    if (d.rank != shape.rank)
      return KernelError(*this, KILN_STATUS_INVALID_ARGUMENT, "result rank %d, declared %s", shape.rank, d.str().c_str());
    for (int k = 0; k < d.rank; ++k)
      if (d[k] >= 0 && d[k] != shape[k])
        return KernelError(*this, KILN_STATUS_INVALID_ARGUMENT, "result shape %s, declared %s",
                           shape.str().c_str(), d.str().c_str());
    outputs_[i] = std::make_unique<HostTensor>(out_dtypes_[i], shape);
    // Poison fresh results so a kernel that skips an element is caught.
    if (!outputs_[i]->bytes.empty())
      std::memset(outputs_[i]->bytes.data(), 0xA5, outputs_[i]->bytes.size());
    out_views_[i] = outputs_[i]->view();
    *out = &out_views_[i];
    return nullptr;
  }
  bool can_alias(size_t, size_t) const override { return false; }
  kiln_status_t alias_output(size_t, const Dims&, size_t, Tensor**) override {
    return KernelError(*this, KILN_STATUS_INTERNAL, "aliasing not allowed here");
  }
  const Attrs& attrs() const override { return attrs_; }
  ThreadPool& pool() override { return pool_; }

 private:
  std::string op_;
  ThreadPool pool_;
  std::vector<std::unique_ptr<HostTensor>> inputs_, owned_, outputs_;
  std::vector<Tensor> views_, out_views_;
  std::vector<QTensor> qviews_;
  std::vector<bool> present_, quantized_;
  std::vector<kiln_dtype_t> out_dtypes_;
  std::vector<Dims> out_declared_;
  Attrs attrs_;
};

}  // namespace kiln::testing

#endif  // KILN_RUNTIME_TESTS_KERNEL_HARNESS_H_
