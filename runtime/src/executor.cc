// The CPU executor: binds inputs and weights, walks the launches in order,
// and places each result where the compile-time memory plan says (a fixed
// arena offset, a reusable slot, or a view of its source). Also the session
// half of the C API.
#include <algorithm>
#include <chrono>
#include <cstring>
#include <map>
#include <new>
#include <string>

#include "model.h"

namespace kiln {

bool AlignedBuffer::Reserve(uint64_t bytes) {
  if (bytes <= capacity_) return true;
  // Grow geometrically so a KV cache that gains one token per step is not
  // reallocated every step.
  uint64_t want = std::max<uint64_t>(bytes, capacity_ + capacity_ / 2);
  want = (want + 63) / 64 * 64;
  void* p = nullptr;
  if (posix_memalign(&p, 64, want) != 0) return false;
  std::free(data_);
  data_ = static_cast<uint8_t*>(p);
  capacity_ = want;
  return true;
}

Executor::Executor(const kiln_model_s* model, int threads, bool profile)
    : model_(model), m_(model->manifest), pool_(threads), profile_(profile) {
  if (profile_) {
    launch_ns_.assign(m_.launches.size(), 0);
    launch_calls_.assign(m_.launches.size(), 0);
  }
  slots_ = std::vector<AlignedBuffer>(size_t(m_.slots));
  vals_.resize(m_.values.size());
  qvals_.resize(m_.values.size());
  // Weights are bound once: they never change between runs.
  for (size_t v = 0; v < m_.values.size(); ++v) {
    const ValueDesc& d = m_.values[v];
    if (d.kind != ValueDesc::kWeight) continue;
    vals_[v].dtype = d.dtype;
    vals_[v].shape = d.shape;
    vals_[v].data = const_cast<void*>(model->weight_data[size_t(d.weight)]);
  }
}

kiln_status_t Executor::CheckDeclared(size_t i, const Dims& shape) const {
  const Dims& d = declared_output_shape(i);
  bool ok = d.rank == shape.rank;
  for (int k = 0; ok && k < d.rank; ++k) ok = shape[k] >= 0 && (d[k] < 0 || d[k] == shape[k]);
  if (!ok)
    return KernelError(*this, KILN_STATUS_INVALID_ARGUMENT,
                       "result %zu has shape %s at run time; the compiled type is %s", i,
                       shape.str().c_str(), d.str().c_str());
  return nullptr;
}

kiln_status_t Executor::allocate_output(size_t i, const Dims& shape, Tensor** out) {
  KILN_RETURN_IF_ERROR(CheckDeclared(i, shape));
  int v = launch_->out[i];
  const ValueDesc& d = m_.values[size_t(v)];
  uint64_t bytes = StorageBytes(d.dtype, shape);
  uint8_t* p;
  if (d.offset >= 0) {
    p = arena_.data() + d.offset;
  } else if (d.slot >= 0) {
    if (!slots_[size_t(d.slot)].Reserve(bytes))
      return KernelError(*this, KILN_STATUS_RESOURCE_EXHAUSTED,
                         "out of memory allocating %llu bytes for result %zu",
                         (unsigned long long)bytes, i);
    p = slots_[size_t(d.slot)].data();
  } else {
    // A planned view whose kernel chose to copy: give it its own memory for
    // this run.
    auto buf = std::unique_ptr<AlignedBuffer>(new (std::nothrow) AlignedBuffer);
    if (!buf || !buf->Reserve(bytes))
      return KernelError(*this, KILN_STATUS_RESOURCE_EXHAUSTED, "out of memory");
    p = buf->data();
    overflow_.push_back(std::move(buf));
  }
  Tensor& t = vals_[size_t(v)];
  t.dtype = d.dtype;
  t.shape = shape;
  t.data = p;
  *out = &t;
  return nullptr;
}

bool Executor::can_alias(size_t out, size_t in) const {
  for (const auto& [o, i] : launch_->alias)
    if (size_t(o) == out && size_t(i) == in)
      return m_.values[size_t(launch_->out[out])].view_of >= 0;
  return false;
}

kiln_status_t Executor::alias_output(size_t out, const Dims& shape, size_t in,
                                     Tensor** result) {
  if (!can_alias(out, in))
    return KernelError(*this, KILN_STATUS_INTERNAL, "result %zu may not alias operand %zu", out,
                       in);
  KILN_RETURN_IF_ERROR(CheckDeclared(out, shape));
  const Tensor& src = input(in);
  Tensor& t = vals_[size_t(launch_->out[out])];
  t.dtype = output_dtype(out);
  t.shape = shape;
  if (StorageBytes(t.dtype, shape) != src.bytes())
    return KernelError(*this, KILN_STATUS_INVALID_ARGUMENT,
                       "a view of %s %s as %s %s changes the byte size",
                       kiln_dtype_name(src.dtype), src.shape.str().c_str(),
                       kiln_dtype_name(t.dtype), shape.str().c_str());
  t.data = src.data;
  *result = &t;
  return nullptr;
}

kiln_status_t Executor::Run(const Tensor* inputs, size_t count) {
  has_run_ = false;
  overflow_.clear();
  for (size_t v = 0; v < m_.values.size(); ++v)
    if (m_.values[v].kind == ValueDesc::kTemp) vals_[v] = Tensor{};
  if (count != m_.inputs.size())
    return KILN_MAKE_STATUS(KILN_STATUS_INVALID_ARGUMENT,
                            "the model takes %zu inputs; %zu were given", m_.inputs.size(),
                            count);
  // Named dimensions must agree across inputs ("batch_size" is one number).
  std::map<std::string, std::pair<int64_t, size_t>> named;
  for (size_t i = 0; i < count; ++i) {
    const IoDesc& io = m_.inputs[i];
    const Tensor& t = inputs[i];
    if (t.dtype != io.dtype)
      return KILN_MAKE_STATUS(KILN_STATUS_INVALID_ARGUMENT,
                              "input %zu '%s' is %s; the model takes %s", i, io.name.c_str(),
                              kiln_dtype_name(t.dtype), kiln_dtype_name(io.dtype));
    bool ok = t.shape.rank == io.shape.rank;
    for (int k = 0; ok && k < io.shape.rank; ++k)
      ok = t.shape[k] >= 0 && (io.shape[k] < 0 || io.shape[k] == t.shape[k]);
    if (!ok)
      return KILN_MAKE_STATUS(KILN_STATUS_INVALID_ARGUMENT,
                              "input %zu '%s' has shape %s; the model takes %s", i,
                              io.name.c_str(), t.shape.str().c_str(), io.shape.str().c_str());
    for (int k = 0; k < io.shape.rank; ++k) {
      const std::string& name = io.dims[size_t(k)];
      if (name.empty()) continue;
      auto [it, fresh] = named.emplace(name, std::make_pair(t.shape[k], i));
      if (!fresh && it->second.first != t.shape[k])
        return KILN_MAKE_STATUS(
            KILN_STATUS_INVALID_ARGUMENT,
            "dimension '%s' is %lld in input %zu '%s' but %lld in input %zu '%s'", name.c_str(),
            (long long)t.shape[k], i, io.name.c_str(), (long long)it->second.first,
            it->second.second, m_.inputs[it->second.second].name.c_str());
    }
    if (!t.data && t.numel() > 0)
      return KILN_MAKE_STATUS(KILN_STATUS_INVALID_ARGUMENT,
                              "input %zu '%s' has %lld elements but no data", i, io.name.c_str(),
                              (long long)t.numel());
    vals_[size_t(io.value)] = t;
  }
  if (!arena_.Reserve(uint64_t(m_.arena_bytes)))
    return KILN_MAKE_STATUS(KILN_STATUS_RESOURCE_EXHAUSTED,
                            "out of memory for the %lld-byte arena", (long long)m_.arena_bytes);

  for (const LaunchDesc& l : m_.launches) {
    launch_ = &l;
    // Quantized operands are assembled from their components' current
    // tensors.
    for (int v : l.in) {
      if (v < 0) continue;
      const ValueDesc& d = m_.values[size_t(v)];
      if (d.kind != ValueDesc::kQTensor) continue;
      QTensor& q = qvals_[size_t(v)];
      q.data = vals_[size_t(d.q_data)];
      q.scales = vals_[size_t(d.q_scales)];
      q.zero_points = d.q_zero >= 0 ? vals_[size_t(d.q_zero)] : Tensor{};
      if (d.q_zero < 0) q.zero_points.data = nullptr;
      q.block = d.block;
      q.expressed = d.expressed;
    }
    std::chrono::steady_clock::time_point t0;
    if (profile_) t0 = std::chrono::steady_clock::now();
    kiln_status_t s = l.fn(*this);
    if (profile_) {
      size_t k = size_t(&l - m_.launches.data());
      launch_ns_[k] += uint64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                    std::chrono::steady_clock::now() - t0)
                                    .count());
      ++launch_calls_[k];
    }
    if (s) {
      launch_ = nullptr;
      return s;
    }
    for (size_t i = 0; i < l.out.size(); ++i)
      if (vals_[size_t(l.out[i])].dtype == KILN_DTYPE_INVALID) {
        kiln_status_t e = KernelError(*this, KILN_STATUS_INTERNAL, "result %zu was not produced", i);
        launch_ = nullptr;
        return e;
      }
  }
  launch_ = nullptr;
  has_run_ = true;
  return nullptr;
}

const std::vector<kiln_op_profile_t>& Executor::Profile() {
  std::map<std::string, std::pair<uint64_t, uint64_t>> by_op;
  for (size_t k = 0; k < m_.launches.size() && k < launch_ns_.size(); ++k) {
    auto& e = by_op[m_.launches[k].op];
    e.first += launch_calls_[k];
    e.second += launch_ns_[k];
  }
  profile_view_.clear();
  for (const LaunchDesc& l : m_.launches) {
    auto it = by_op.find(l.op);
    if (it == by_op.end()) continue;
    profile_view_.push_back({l.op.c_str(), it->second.first, double(it->second.second) / 1e6});
    by_op.erase(it);
  }
  std::sort(profile_view_.begin(), profile_view_.end(),
            [](const kiln_op_profile_t& a, const kiln_op_profile_t& b) {
              return a.total_ms > b.total_ms;
            });
  return profile_view_;
}

kiln_status_t Executor::TakeOutput(size_t i, AlignedBuffer& buffer) {
  const Tensor& t = Output(i);
  uint64_t bytes = t.bytes();
  int v = m_.outputs[i].value;
  while (m_.values[size_t(v)].view_of >= 0) v = m_.values[size_t(v)].view_of;
  const ValueDesc& root = m_.values[size_t(v)];
  if (root.slot >= 0 && slots_[size_t(root.slot)].data() == t.data) {
    // No other output may share this slot, or the swap would hand one
    // buffer out twice.
    int users = 0;
    for (const IoDesc& o : m_.outputs) {
      int r = o.value;
      while (m_.values[size_t(r)].view_of >= 0) r = m_.values[size_t(r)].view_of;
      users += m_.values[size_t(r)].slot == root.slot;
    }
    if (users == 1) {
      buffer.Swap(slots_[size_t(root.slot)]);
      return nullptr;
    }
  }
  if (!buffer.Reserve(bytes))
    return KILN_MAKE_STATUS(KILN_STATUS_RESOURCE_EXHAUSTED, "out of memory");
  if (bytes) std::memcpy(buffer.data(), t.data, bytes);
  return nullptr;
}

}  // namespace kiln

extern "C" {

void kiln_session_options_init(kiln_session_options_t* options) {
  if (!options) return;
  std::memset(options, 0, sizeof(*options));
  options->struct_size = sizeof(*options);
}

kiln_status_t kiln_session_create(kiln_model_t model, const kiln_session_options_t* options,
                                  kiln_session_t* out_session) {
  if (out_session) *out_session = nullptr;
  if (!model || !out_session)
    return KILN_MAKE_STATUS(KILN_STATUS_INVALID_ARGUMENT,
                            "model and out_session must not be NULL");
  kiln_session_options_t opts;
  kiln_session_options_init(&opts);
  if (options) {
    if (options->struct_size < sizeof(size_t) || options->struct_size > sizeof(opts))
      return KILN_MAKE_STATUS(KILN_STATUS_INVALID_ARGUMENT,
                              "kiln_session_options_t.struct_size is %zu; initialize the "
                              "options with kiln_session_options_init",
                              options->struct_size);
    std::memcpy(&opts, options, options->struct_size);
  }
  if (opts.num_threads < 0 || opts.num_threads > 4096)
    return KILN_MAKE_STATUS(KILN_STATUS_INVALID_ARGUMENT, "num_threads %d is out of range",
                            opts.num_threads);
  if (opts.max_sequence_length < 0)
    return KILN_MAKE_STATUS(KILN_STATUS_INVALID_ARGUMENT,
                            "max_sequence_length %lld is negative",
                            (long long)opts.max_sequence_length);
  auto* session = new (std::nothrow) kiln_session_s;
  if (!session) return KILN_MAKE_STATUS(KILN_STATUS_RESOURCE_EXHAUSTED, "out of memory");
  session->model = model;
  session->max_sequence_length = opts.max_sequence_length
                                     ? opts.max_sequence_length
                                     : model->manifest.model.max_sequence_length;
  session->executor.reset(
      new (std::nothrow) kiln::Executor(model, opts.num_threads, opts.profile != 0));
  if (!session->executor) {
    delete session;
    return KILN_MAKE_STATUS(KILN_STATUS_RESOURCE_EXHAUSTED, "out of memory");
  }
  *out_session = session;
  return nullptr;
}

void kiln_session_release(kiln_session_t session) { delete session; }

kiln_status_t kiln_session_run(kiln_session_t session, const kiln_tensor_view_t* inputs,
                               size_t count) {
  if (!session || (!inputs && count))
    return KILN_MAKE_STATUS(KILN_STATUS_INVALID_ARGUMENT, "session and inputs must not be NULL");
  std::vector<kiln::Tensor> tensors(count);
  for (size_t i = 0; i < count; ++i) {
    const kiln_tensor_view_t& in = inputs[i];
    if (in.rank > size_t(kiln::kMaxRank) || (in.rank && !in.shape))
      return KILN_MAKE_STATUS(KILN_STATUS_INVALID_ARGUMENT,
                              "input %zu has rank %zu (at most %d, with a shape array)", i,
                              in.rank, kiln::kMaxRank);
    tensors[i].dtype = in.dtype;
    tensors[i].shape = kiln::Dims::FromArray(in.shape, int(in.rank));
    for (size_t k = 0; k < in.rank; ++k)
      if (in.shape[k] < 0 || in.shape[k] > (int64_t(1) << 40))
        return KILN_MAKE_STATUS(KILN_STATUS_INVALID_ARGUMENT,
                                "input %zu has dimension %zu of size %lld", i, k,
                                (long long)in.shape[k]);
    tensors[i].data = const_cast<void*>(in.data);
  }
  return session->executor->Run(tensors.data(), count);
}

kiln_status_t kiln_session_output(kiln_session_t session, size_t index,
                                  kiln_tensor_view_t* out) {
  if (out) std::memset(out, 0, sizeof(*out));
  if (!session || !out)
    return KILN_MAKE_STATUS(KILN_STATUS_INVALID_ARGUMENT, "session and out_tensor must not be NULL");
  const kiln::Executor& e = *session->executor;
  if (!e.has_run())
    return KILN_MAKE_STATUS(KILN_STATUS_FAILED_PRECONDITION,
                            "the session has no outputs: its last run failed or none ran");
  if (index >= e.manifest().outputs.size())
    return KILN_MAKE_STATUS(KILN_STATUS_OUT_OF_RANGE, "output %zu, but the model has %zu",
                            index, e.manifest().outputs.size());
  const kiln::Tensor& t = e.Output(index);
  out->dtype = t.dtype;
  out->rank = size_t(t.shape.rank);
  out->shape = t.shape.d;
  out->data = t.data;
  return nullptr;
}

kiln_status_t kiln_session_profile(kiln_session_t session, const kiln_op_profile_t** out_entries,
                                   size_t* out_count) {
  if (out_entries) *out_entries = nullptr;
  if (out_count) *out_count = 0;
  if (!session || !out_entries || !out_count)
    return KILN_MAKE_STATUS(KILN_STATUS_INVALID_ARGUMENT,
                            "session, out_entries and out_count must not be NULL");
  if (!session->executor->profiling())
    return KILN_MAKE_STATUS(KILN_STATUS_FAILED_PRECONDITION,
                            "the session was created without profiling (set "
                            "kiln_session_options_t.profile)");
  const auto& p = session->executor->Profile();
  *out_entries = p.data();
  *out_count = p.size();
  return nullptr;
}

}  // extern "C"
