// Runs one CPU kernel outside an artifact, for kernel unit tests: inputs are
// owned vectors, results are allocated by the harness. KV-cache operands
// (HostCache) own their storage the way an executor-owned cache does, and a
// cache result shares its operand's storage, as the executor's in-place
// update does.
#ifndef KILN_RUNTIME_TESTS_KERNEL_HARNESS_H_
#define KILN_RUNTIME_TESTS_KERNEL_HARNESS_H_

#include <algorithm>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "cpu/kernel.h"
#include "cpu/kv_codec.h"

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

/// An owned KV cache (contiguous layout): `view` is what the kernel sees,
/// pointing into `key` ([batch, kv_heads, capacity, head_dim]) and `value`
/// ([batch, kv_heads, capacity, v_head_dim]), so element (b, h, t, d) of the
/// keys is key element view.KeyOffset(b, h, t) + d. Copies share the storage:
/// a result cache and the operand it was appended to are the same memory.
struct HostCache {
  KvCache view;
  std::shared_ptr<HostTensor> key, value;
  /// Whether append_cache may reallocate (an executor-owned cache) rather
  /// than fail (a cache the caller bound with a fixed capacity).
  bool growable = false;
  /// A ragged batch: storage of view.seq_lengths (the result of an append
  /// gets its own).
  std::shared_ptr<std::vector<int64_t>> lengths;

  HostCache() = default;
  HostCache(kiln_dtype_t dtype, int64_t batch, int64_t kv_heads, int64_t head_dim,
            int64_t v_head_dim, int64_t capacity, int64_t length, bool grows)
      : growable(grows) {
    view.dtype = dtype;
    view.batch = batch;
    view.kv_heads = kv_heads;
    view.head_dim = head_dim;
    view.v_head_dim = v_head_dim;
    view.length = length;
    Allocate(capacity);
  }

  /// Fresh storage for `capacity` rows per (sequence, head), poisoned so
  /// that rows a kernel should have written but skipped are caught.
  void Allocate(int64_t capacity) {
    view.capacity = capacity;
    key = std::make_shared<HostTensor>(
        view.dtype, Dims{view.batch, view.kv_heads, capacity, view.head_dim});
    value = std::make_shared<HostTensor>(
        view.dtype, Dims{view.batch, view.kv_heads, capacity, view.v_head_dim});
    if (!key->bytes.empty()) std::memset(key->bytes.data(), 0xA5, key->bytes.size());
    if (!value->bytes.empty()) std::memset(value->bytes.data(), 0xA5, value->bytes.size());
    view.key = key->bytes.empty() ? nullptr : key->bytes.data();
    view.value = value->bytes.empty() ? nullptr : value->bytes.data();
  }

  /// Reallocates to `capacity` rows, keeping rows [0, length) of every
  /// (sequence, head). The capacity is the per-(sequence, head) row stride,
  /// so every head's rows move.
  void Grow(int64_t capacity) {
    std::shared_ptr<HostTensor> old_key = key, old_value = value;
    const int64_t old_capacity = view.capacity;
    Allocate(capacity);
    const int64_t heads = view.batch * view.kv_heads;
    const size_t krow = size_t(StorageBytes(view.dtype, Dims{view.head_dim}));
    const size_t vrow = size_t(StorageBytes(view.dtype, Dims{view.v_head_dim}));
    for (int64_t bh = 0; bh < heads; ++bh)
      for (int64_t t = 0; t < view.length; ++t) {
        std::memcpy(key->bytes.data() + size_t(bh * capacity + t) * krow,
                    old_key->bytes.data() + size_t(bh * old_capacity + t) * krow, krow);
        std::memcpy(value->bytes.data() + size_t(bh * capacity + t) * vrow,
                    old_value->bytes.data() + size_t(bh * old_capacity + t) * vrow, vrow);
      }
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
    caches_.emplace_back();
    return *this;
  }
  /// Adds a KV-cache operand with fresh (poisoned) storage of `capacity`
  /// rows, `length` of them valid; fill it through CacheOperand(i). A
  /// `growable` cache is reallocated by append_cache when too small, as an
  /// executor-owned one is; otherwise append_cache fails as for a cache the
  /// caller bound.
  KernelHarness& InCache(kiln_dtype_t dtype, int64_t batch, int64_t kv_heads,
                         int64_t head_dim, int64_t v_head_dim, int64_t capacity,
                         int64_t length, bool growable = false) {
    return InCache(HostCache(dtype, batch, kv_heads, head_dim, v_head_dim, capacity,
                             length, growable));
  }
  /// Adds a KV-cache operand sharing `cache`'s storage (e.g. another launch's
  /// ResultCache, as the executor threads a cache through a graph).
  KernelHarness& InCache(const HostCache& cache) {
    inputs_.push_back(nullptr);
    views_.emplace_back();
    present_.push_back(true);
    quantized_.push_back(false);
    qviews_.emplace_back();
    caches_.push_back(std::make_unique<HostCache>(cache));
    return *this;
  }
  /// Adds an absent optional operand.
  KernelHarness& None() {
    inputs_.push_back(nullptr);
    views_.emplace_back();
    present_.push_back(false);
    quantized_.push_back(false);
    qviews_.emplace_back();
    caches_.emplace_back();
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
    caches_.emplace_back();
    return *this;
  }
  /// Declares a result with its dtype and compile-time shape (-1 = dynamic).
  KernelHarness& Out(kiln_dtype_t dtype, Dims declared) {
    out_dtypes_.push_back(dtype);
    out_declared_.push_back(declared);
    outputs_.push_back(nullptr);
    out_views_.emplace_back();
    out_caches_.emplace_back();
    return *this;
  }
  /// Declares a !kiln.kv_cache result (produced by append_cache).
  KernelHarness& OutCache() {
    Out(KILN_DTYPE_INVALID, Dims{});
    out_caches_.back() = std::make_unique<HostCache>();
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
  KernelHarness& AttrFloats(const std::string& name, std::vector<double> v) {
    AttrValue a; a.kind = AttrValue::kFloats; a.floats = std::move(v); attrs_.Set(name, a); return *this;
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
  /// Cache operand `i` (its storage, to fill before Run).
  HostCache& CacheOperand(size_t i) { return *caches_[i]; }
  /// Cache result `i` after append_cache: the operand's storage (grown if it
  /// had to be) with the new length.
  HostCache& ResultCache(size_t i = 0) { return *out_caches_[i]; }

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
  bool is_cache(size_t i) const override { return i < caches_.size() && caches_[i]; }
  const KvCache& cache_input(size_t i) const override { return caches_[i]->view; }
  kiln_status_t append_cache(size_t out, size_t in, int64_t tokens,
                             KvCache** result) override {
    if (!is_cache(in) || out >= out_caches_.size() || !out_caches_[out])
      return KernelError(*this, KILN_STATUS_INTERNAL,
                         "append_cache(%zu, %zu): operand %zu or result %zu is no cache",
                         out, in, in, out);
    if (tokens < 0)
      return KernelError(*this, KILN_STATUS_INTERNAL, "append_cache of %lld tokens",
                         (long long)tokens);
    HostCache& c = *caches_[in];
    if (c.view.ragged()) {
      // Each sequence grows by its share of the flattened tokens.
      const KvCache& v = c.view;
      if (!v.q_offsets || v.q_offsets[v.batch] != tokens)
        return KernelError(*this, KILN_STATUS_INTERNAL, "append_cache of %lld ragged tokens",
                           (long long)tokens);
      HostCache& r = *out_caches_[out];
      r = c;
      r.lengths = std::make_shared<std::vector<int64_t>>(size_t(v.batch));
      int64_t longest = 0;
      for (int64_t b = 0; b < v.batch; ++b) {
        const int64_t need = v.seq_lengths[b] + v.q_offsets[b + 1] - v.q_offsets[b];
        if (need > v.capacity)
          return KernelError(*this, KILN_STATUS_RESOURCE_EXHAUSTED,
                             "sequence %lld needs %lld rows of %lld", (long long)b,
                             (long long)need, (long long)v.capacity);
        (*r.lengths)[size_t(b)] = need;
        longest = std::max(longest, need);
        PoisonRows(c, b, v.seq_lengths[b], need);
      }
      r.view.seq_lengths = r.lengths->data();
      r.view.length = longest;
      *result = &r.view;
      return nullptr;
    }
    const int64_t needed = c.view.length + tokens;
    if (needed > c.view.capacity) {
      if (!c.growable)
        return KernelError(*this, KILN_STATUS_RESOURCE_EXHAUSTED,
                           "the KV cache has a capacity of %lld tokens but %lld are "
                           "needed (%lld cached + %lld new)",
                           (long long)c.view.capacity, (long long)needed,
                           (long long)c.view.length, (long long)tokens);
      // Doubling, as an executor would, leaves capacity > length so that
      // kernels reading the grown cache still see a row stride that is not
      // the length.
      c.Grow(std::max(needed, 2 * c.view.capacity));
    }
    // The new rows hold poison until the kernel writes them.
    PoisonRows(c, c.view.length, needed);
    HostCache& r = *out_caches_[out];
    r = c;
    r.view.length = needed;
    *result = &r.view;
    return nullptr;
  }
  const Attrs& attrs() const override { return attrs_; }
  ThreadPool& pool() override { return pool_; }

 private:
  /// Poisons rows [begin, end) of every (sequence, head), in any layout and
  /// storage type (scales too).
  static void PoisonRows(HostCache& c, int64_t begin, int64_t end) {
    for (int64_t b = 0; b < c.view.batch; ++b) PoisonRows(c, b, begin, end);
  }
  /// The same for sequence b alone.
  static void PoisonRows(HostCache& c, int64_t b, int64_t begin, int64_t end) {
    const KvCache& v = c.view;
    for (int64_t h = 0; h < v.kv_heads; ++h)
      for (int64_t t = begin; t < end; ++t)
        for (bool value : {false, true}) {
          const KvRowRef r = KvRow(v, value, v.Row(b, h, t));
          std::memset(r.data, 0xA5, size_t(KvRowBytes(v, r.dim)));
          if (r.scales) std::memset(r.scales, 0xA5, size_t(KvScaleBytes(v, r.dim)));
        }
  }

  std::string op_;
  ThreadPool pool_;
  std::vector<std::unique_ptr<HostTensor>> inputs_, owned_, outputs_;
  std::vector<Tensor> views_, out_views_;
  std::vector<QTensor> qviews_;
  std::vector<std::unique_ptr<HostCache>> caches_, out_caches_;  // null: not a cache
  std::vector<bool> present_, quantized_;
  std::vector<kiln_dtype_t> out_dtypes_;
  std::vector<Dims> out_declared_;
  Attrs attrs_;
};

}  // namespace kiln::testing

#endif  // KILN_RUNTIME_TESTS_KERNEL_HARNESS_H_
