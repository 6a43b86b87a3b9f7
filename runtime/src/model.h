// Internal definitions of the model and session handles, shared by the
// loader (model.cc), the executor (executor.cc) and generation
// (generate.cc).
#ifndef KILN_RUNTIME_MODEL_H_
#define KILN_RUNTIME_MODEL_H_

#include <cstdint>
#include <cstdlib>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "cpu/kernel.h"
#include "buffer.h"
#include "kv_store.h"
#include "manifest.h"

/// A read-only file mapping (ONNX external data referenced by an artifact).
struct KilnMappedFile {
  void* data = nullptr;
  uint64_t size = 0;
  ~KilnMappedFile();
};

struct kiln_model_s {
  kiln_artifact_t artifact = nullptr;
  kiln_artifact_t params = nullptr;
  kiln::Manifest manifest;
  std::vector<const void*> weight_data;  // one per manifest weight
  std::vector<std::unique_ptr<KilnMappedFile>> files;
  /// Storage of the packed weights, built at load (64-byte aligned).
  struct FreeDeleter {
    void operator()(void* p) const { std::free(p); }
  };
  std::vector<std::unique_ptr<uint8_t, FreeDeleter>> packed;
  uint64_t weight_bytes = 0;
  ~kiln_model_s();
};

namespace kiln {

/// Runs launches that have a kernel on a device (the CUDA backend). The
/// executor keeps every value in host memory and calls Launch instead of the
/// CPU kernel for each launch the accelerator covers.
class Accelerator {
 public:
  virtual ~Accelerator() = default;
  /// Whether Launch handles `launch`.
  virtual bool Covers(const LaunchDesc& launch) const = 0;
  /// Runs `launch` on the device: reads ctx's inputs, allocates and fills
  /// its outputs, as the CPU kernel would.
  virtual kiln_status_t Launch(KernelContext& ctx, const LaunchDesc& launch) = 0;
};

/// Runs the manifest's launches on CPU kernels (and, with an accelerator,
/// the ones it covers on the device). One forward at a time.
class Executor final : public KernelContext {
 public:
  Executor(const kiln_model_s* model, int threads, bool profile = false,
           std::unique_ptr<Accelerator> accelerator = nullptr);

  /// Binds `inputs` (graph-input order) and runs every launch.
  ///
  /// A KV-cache input (manifest value of kind kv_cache) is filled from its
  /// past key and value tensors: the run reads them in place and, when the
  /// graph appends to the cache, copies them once into storage of exactly the
  /// new length, which the present outputs then view. Unless the cache is
  /// bound (BindCache): then its past tensors are not read (pass empty
  /// tensors), the graph appends into the bound storage in place, and its
  /// present outputs are not produced.
  kiln_status_t Run(const Tensor* inputs, size_t count);
  /// Output `i` of the last successful Run.
  const Tensor& Output(size_t i) const { return outputs_[i]; }

  /// Binds KV-cache input value `value` to `cache` (storage the caller owns,
  /// with room for the tokens every later run appends) for the next runs;
  /// nullptr unbinds it. A run appends to `cache` in place and sets
  /// `cache->length` to the new length.
  kiln_status_t BindCache(int value, KvCache* cache);
  bool has_run() const { return has_run_; }

  /// Takes output `i`'s storage into `buffer` (swapping buffers, no copy)
  /// when the output owns a dynamically sized slot nobody else holds;
  /// otherwise copies it. `buffer` then holds Output(i)'s bytes.
  kiln_status_t TakeOutput(size_t i, AlignedBuffer& buffer);

  const Manifest& manifest() const { return m_; }
  bool profiling() const { return profile_; }

  /// Called after every successful launch (its index in the manifest's
  /// launches) while its operands and results are live: input(i) reads
  /// operands, value(id) any tensor value. For tools that watch
  /// intermediate values (kiln-compile's calibration and error report);
  /// not part of the C API. Empty: none.
  using Observer = std::function<void(size_t launch, const Executor& executor)>;
  void SetObserver(Observer observer) { observer_ = std::move(observer); }
  /// Tensor value `id` (a manifest value index) as the last launch left it.
  const Tensor& value(int id) const { return vals_[size_t(id)]; }
  /// Per-op totals, slowest first (valid until the next call).
  const std::vector<kiln_op_profile_t>& Profile();
  ThreadPool& pool() override { return pool_; }

  // KernelContext.
  const char* op() const override { return launch_->op.c_str(); }
  const char* location() const override { return launch_->loc.c_str(); }
  size_t num_inputs() const override { return launch_->in.size(); }
  bool has_input(size_t i) const override {
    return i < launch_->in.size() && launch_->in[i] >= 0;
  }
  bool is_quantized(size_t i) const override {
    return has_input(i) && m_.values[size_t(launch_->in[i])].kind == ValueDesc::kQTensor;
  }
  const Tensor& input(size_t i) const override { return vals_[size_t(launch_->in[i])]; }
  const QTensor& qinput(size_t i) const override { return qvals_[size_t(launch_->in[i])]; }
  bool is_weight(size_t i) const override {
    return has_input(i) && m_.values[size_t(launch_->in[i])].kind == ValueDesc::kWeight;
  }
  const Dims* declared_input_shape(size_t i) const override {
    return has_input(i) ? &m_.values[size_t(launch_->in[i])].shape : nullptr;
  }
  size_t num_outputs() const override { return launch_->out.size(); }
  kiln_dtype_t output_dtype(size_t i) const override {
    return m_.values[size_t(launch_->out[i])].dtype;
  }
  const Dims& declared_output_shape(size_t i) const override {
    return m_.values[size_t(launch_->out[i])].shape;
  }
  kiln_status_t allocate_output(size_t i, const Dims& shape, Tensor** out) override;
  bool can_alias(size_t out, size_t in) const override;
  kiln_status_t alias_output(size_t out, const Dims& shape, size_t in,
                             Tensor** result) override;
  const Attrs& attrs() const override { return launch_->attrs; }
  bool is_cache(size_t i) const override {
    return has_input(i) && m_.values[size_t(launch_->in[i])].kind == ValueDesc::kKvCache;
  }
  const KvCache& cache_input(size_t i) const override {
    return caches_[size_t(launch_->in[i])];
  }
  kiln_status_t append_cache(size_t out, size_t in, int64_t tokens, KvCache** result) override;

 private:
  kiln_status_t CheckDeclared(size_t i, const Dims& shape) const;
  /// Fills the cache inputs from their past tensors (or bound caches).
  kiln_status_t BindCacheInputs(const Tensor* inputs);
  /// Points the outputs at their values, presents at their caches.
  kiln_status_t CollectOutputs();

  /// Executor-owned storage of one cache input's chain of appends (unbound
  /// caches whose past tensors cannot be read in place, or that grew): rows
  /// and, for a paged layout, the block table.
  struct CacheStore {
    KvStorage storage;
    std::vector<int32_t> table;
  };
  /// Gives cache input `root` new storage for `tokens` rows per sequence
  /// holding `from`'s rows; `*grown` describes it (with from's length).
  kiln_status_t GrowStore(int root, const KvCache& from, int64_t tokens, KvCache* grown);

  const kiln_model_s* model_;
  const Manifest& m_;
  ThreadPool pool_;
  std::unique_ptr<Accelerator> accelerator_;
  AlignedBuffer arena_;
  std::vector<AlignedBuffer> slots_;
  std::vector<std::unique_ptr<AlignedBuffer>> overflow_;
  std::vector<Tensor> vals_;
  std::vector<QTensor> qvals_;
  std::vector<KvCache> caches_;       // per value; kv_cache values only
  std::vector<std::vector<int64_t>> ragged_lengths_;  // per value: a ragged append's lengths
  std::vector<int> cache_root_;       // per value: the cache input it appends to
  std::vector<std::unique_ptr<CacheStore>> stores_;  // per value; at unbound cache inputs
  std::vector<std::unique_ptr<CacheStore>> old_stores_;  // outgrown during this run
  std::vector<KvCache*> bound_;       // per value; cache inputs bound by the caller
  std::vector<Tensor> outputs_;       // per graph output, after a run
  std::vector<AlignedBuffer> present_;  // per graph output: a compacted present
  const LaunchDesc* launch_ = nullptr;
  Observer observer_;
  bool has_run_ = false;
  bool profile_ = false;
  std::vector<uint64_t> launch_ns_;  // per launch, accumulated
  std::vector<uint64_t> launch_calls_;
  std::vector<kiln_op_profile_t> profile_view_;
};

}  // namespace kiln

struct kiln_session_s {
  const kiln_model_s* model = nullptr;
  std::unique_ptr<kiln::Executor> executor;
  int64_t max_sequence_length = 0;
  kiln_device_kind_t device = KILN_DEVICE_CPU;
  std::string device_reason;  // see kiln_session_device
  /// Generation's paged KV storage and prefix cache (artifacts whose every
  /// layer has a paged cache); see kiln_session_kv_usage.
  kiln::PagedKvPool kv_pool;
  int64_t kv_cache_blocks = 0;  // 0: the pool grows as needed
  bool prefix_reuse = true;
  uint64_t kv_bytes = 0;        // the last generation's KV storage (no pool)
};

namespace kiln {

/// Picks the device for a session of `model`: `requested` itself, or for
/// KILN_DEVICE_AUTO the CUDA device when the artifact has kernels and a GPU
/// is present. Sets `*reason` as kiln_session_device documents; a requested
/// device that cannot be used is an error.
/// For CUDA, `*accelerator` is the backend that runs the covered launches.
kiln_status_t SelectDevice(const kiln_model_s& model, kiln_device_kind_t requested,
                           int32_t ordinal, kiln_device_kind_t* chosen, std::string* reason,
                           std::unique_ptr<Accelerator>* accelerator);

/// Copies `options` (NULL: the defaults) into `*out` and checks its values.
kiln_status_t ReadGenerateOptions(const kiln_generate_options_t* options,
                                  kiln_generate_options_t* out);

}  // namespace kiln

#endif  // KILN_RUNTIME_MODEL_H_
