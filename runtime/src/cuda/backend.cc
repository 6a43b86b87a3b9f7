#include "cuda/backend.h"

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "cpu/kernel_util.h"

namespace kiln::cuda {
namespace {

/// "sm_90a" -> (90, true); "compute_90" -> (90, false); -1 when malformed.
int ArchNumber(const std::string& arch, bool* specific) {
  size_t at = arch.find('_');
  *specific = !arch.empty() && arch.back() == 'a';
  if (at == std::string::npos) return -1;
  int n = 0, digits = 0;
  for (size_t i = at + 1; i < arch.size() && arch[i] >= '0' && arch[i] <= '9'; ++i, ++digits)
    n = n * 10 + (arch[i] - '0');
  return digits ? n : -1;
}

/// NumPy broadcast of `a` and `b`; false when they do not broadcast.
bool Broadcast(const Dims& a, const Dims& b, Dims* out) {
  Dims r;
  r.rank = std::max(a.rank, b.rank);
  for (int i = 0; i < r.rank; ++i) {
    int ia = a.rank - r.rank + i, ib = b.rank - r.rank + i;
    int64_t x = ia >= 0 ? a.d[ia] : 1, y = ib >= 0 ? b.d[ib] : 1;
    if (x != y && x != 1 && y != 1) return false;
    r.d[i] = x == 1 ? y : x;
  }
  *out = r;
  return true;
}

/// Every index in `t` (i32 or i64) must be in [0, limit), as the CPU kernels
/// require; checked on the host before a kernel could read out of bounds.
kiln_status_t CheckIndices(const KernelContext& ctx, const Tensor& t, int64_t limit,
                           const char* what, const char* where) {
  for (int64_t j = 0; j < t.numel(); ++j) {
    int64_t v = t.dtype == KILN_DTYPE_I32 ? t.as<int32_t>()[j] : t.as<int64_t>()[j];
    if (v < 0 || v >= limit)
      return KernelError(ctx, KILN_STATUS_INVALID_ARGUMENT,
                         "%s %lld at index %lld is outside %s [0, %lld)", what, (long long)v,
                         (long long)j, where, (long long)limit);
  }
  return nullptr;
}

}  // namespace

const CudaImageDesc* PickImage(const CudaKernelDesc& kernel, int cc) {
  const CudaImageDesc* best = nullptr;
  int best_n = -1;
  for (const CudaImageDesc& im : kernel.images) {
    bool specific = false;
    int n = ArchNumber(im.arch, &specific);
    if (im.ptx || n < 0) continue;
    bool fits = specific ? n == cc : (n / 10 == cc / 10 && n <= cc);
    // Prefer the closest minor; at equal capability the arch-specific one.
    if (fits && (n > best_n || (n == best_n && specific))) {
      best = &im;
      best_n = n;
    }
  }
  if (best) return best;
  for (const CudaImageDesc& im : kernel.images) {
    bool specific = false;
    int n = ArchNumber(im.arch, &specific);
    if (im.ptx && n > 0 && !specific && n <= cc && n > best_n) {
      best = &im;
      best_n = n;
    }
  }
  return best;
}

kiln_status_t Backend::Create(const kiln_model_s& model, int ordinal,
                              std::unique_ptr<Backend>* out) {
  out->reset();
  kiln_status_t status = nullptr;
  const Driver* d = Driver::Get(&status);
  if (!d) return status;
  std::unique_ptr<Backend> b(new (std::nothrow) Backend);
  if (!b) return KILN_MAKE_STATUS(KILN_STATUS_RESOURCE_EXHAUSTED, "out of memory");
  b->model_ = &model;
  b->d_ = d;
  int count = 0;
  CUresult r = d->cuDeviceGetCount(&count);
  if (r != CUDA_SUCCESS) return DriverError(*d, r, KILN_STATUS_UNAVAILABLE, "cuDeviceGetCount");
  if (ordinal < 0 || ordinal >= count)
    return KILN_MAKE_STATUS(KILN_STATUS_OUT_OF_RANGE, "CUDA device %d, but there are %d",
                            ordinal, count);
  r = d->cuDeviceGet(&b->device_, ordinal);
  int major = 0, minor = 0;
  char name[128] = {};
  if (r == CUDA_SUCCESS)
    r = d->cuDeviceGetAttribute(&major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, b->device_);
  if (r == CUDA_SUCCESS)
    r = d->cuDeviceGetAttribute(&minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, b->device_);
  if (r == CUDA_SUCCESS) r = d->cuDeviceGetName(name, int(sizeof(name)), b->device_);
  if (r != CUDA_SUCCESS)
    return DriverError(*d, r, KILN_STATUS_UNAVAILABLE,
                       "querying CUDA device " + std::to_string(ordinal));
  const int cc = major * 10 + minor;
  b->description_ = std::string(name) + " (sm_" + std::to_string(cc) + ")";
  r = d->cuDevicePrimaryCtxRetain(&b->context_, b->device_);
  if (r != CUDA_SUCCESS) {
    b->context_ = nullptr;
    return DriverError(*d, r, KILN_STATUS_UNAVAILABLE, "cuDevicePrimaryCtxRetain");
  }
  r = d->cuCtxSetCurrent(b->context_);
  if (r == CUDA_SUCCESS) r = d->cuStreamCreate(&b->stream_, CU_STREAM_NON_BLOCKING);
  if (r != CUDA_SUCCESS) return DriverError(*d, r, KILN_STATUS_UNAVAILABLE, "creating a stream");

  kiln_section_info_t section{};
  if (kiln_status_t s = kiln_artifact_find_section(model.artifact, KILN_SECTION_KERNELS, &section))
    return s;
  const auto* base = static_cast<const uint8_t*>(section.data);
  for (const CudaKernelDesc& k : model.manifest.cuda_kernels) {
    const CudaImageDesc* im = PickImage(k, cc);
    if (!im)
      return KILN_MAKE_STATUS(KILN_STATUS_FAILED_PRECONDITION,
                              "CUDA kernel %s has no image for %s: recompile with "
                              "kiln-compile --cuda-arch=sm_%d (or ship PTX with --cuda-ptx)",
                              k.entry.c_str(), b->description_.c_str(), cc);
    // Cubins are 256-byte aligned in the section; PTX is NUL-terminated.
    CUmodule module = nullptr;
    r = d->cuModuleLoadDataEx(&module, base + im->offset, 0, nullptr, nullptr);
    if (r != CUDA_SUCCESS)
      return DriverError(*d, r, KILN_STATUS_FAILED_PRECONDITION,
                         "loading the " + im->arch + " image of CUDA kernel " + k.entry);
    b->modules_.push_back(module);
    CUfunction fn = nullptr;
    r = d->cuModuleGetFunction(&fn, module, k.entry.c_str());
    if (r != CUDA_SUCCESS)
      return DriverError(*d, r, KILN_STATUS_DATA_LOSS,
                         "the " + im->arch + " image of CUDA kernel " + k.entry +
                             " lacks its entry point");
    b->functions_.push_back(fn);
  }
  b->scratch_.resize(16);
  *out = std::move(b);
  return nullptr;
}

Backend::~Backend() {
  if (!d_ || !context_) return;
  d_->cuCtxSetCurrent(context_);
  if (stream_) d_->cuStreamSynchronize(stream_);
  for (auto& [host, dev] : resident_) d_->cuMemFree(dev);
  for (Buffer& b : scratch_)
    if (b.ptr) d_->cuMemFree(b.ptr);
  for (CUmodule m : modules_) d_->cuModuleUnload(m);
  if (stream_) d_->cuStreamDestroy(stream_);
  d_->cuDevicePrimaryCtxRelease(device_);
}

kiln_status_t Backend::Scratch(int slot, uint64_t bytes, CUdeviceptr* out) {
  Buffer& b = scratch_[size_t(slot)];
  if (b.capacity < bytes) {
    if (b.ptr) d_->cuMemFree(b.ptr);
    b = Buffer{};
    uint64_t want = std::max<uint64_t>(bytes, 256);
    CUresult r = d_->cuMemAlloc(&b.ptr, want);
    if (r != CUDA_SUCCESS)
      return DriverError(*d_, r, KILN_STATUS_RESOURCE_EXHAUSTED,
                         "cuMemAlloc of " + std::to_string(want) + " bytes");
    b.capacity = want;
  }
  *out = b.ptr;
  return nullptr;
}

kiln_status_t Backend::Upload(KernelContext& ctx, size_t i, int slot, CUdeviceptr* out) {
  const Tensor& t = ctx.input(i);
  const uint64_t bytes = t.bytes();
  if (ctx.is_weight(i)) {
    auto it = resident_.find(t.data);
    if (it != resident_.end()) {
      *out = it->second;
      return nullptr;
    }
    CUdeviceptr p = 0;
    CUresult r = d_->cuMemAlloc(&p, std::max<uint64_t>(bytes, 256));
    if (r == CUDA_SUCCESS && bytes) r = d_->cuMemcpyHtoD(p, t.data, bytes);
    if (r != CUDA_SUCCESS) {
      if (p) d_->cuMemFree(p);
      return DriverError(*d_, r, KILN_STATUS_RESOURCE_EXHAUSTED,
                         "uploading a " + std::to_string(bytes) + "-byte weight");
    }
    resident_[t.data] = p;
    *out = p;
    return nullptr;
  }
  KILN_RETURN_IF_ERROR(Scratch(slot, bytes, out));
  if (bytes) {
    CUresult r = d_->cuMemcpyHtoDAsync(*out, t.data, bytes, stream_);
    if (r != CUDA_SUCCESS)
      return DriverError(*d_, r, KILN_STATUS_INTERNAL, "copying an operand to the GPU");
  }
  return nullptr;
}

kiln_status_t Backend::Launch(KernelContext& ctx, const LaunchDesc& l) {
  const CudaKernelDesc& k = model_->manifest.cuda_kernels[size_t(l.cuda)];
  auto fail = [&](kiln_status_code_t code, const std::string& what) {
    return KernelError(ctx, code, "CUDA kernel %s: %s", k.entry.c_str(), what.c_str());
  };
  const size_t n_in = ctx.num_inputs(), n_out = ctx.num_outputs();
  if (n_in + n_out > 8) return fail(KILN_STATUS_INTERNAL, "more than 8 tensors");
  for (size_t i = 0; i < n_in; ++i)
    if (!ctx.has_input(i) || ctx.is_quantized(i) || ctx.is_cache(i))
      return fail(KILN_STATUS_INTERNAL, "operand " + std::to_string(i) +
                                            " is absent, quantized or a cache");

  // Result shapes, as the CPU kernels derive them.
  std::vector<Dims> shapes(n_out);
  const std::string& op = l.op;
  if (op == "rms_norm" || op == "layer_norm" || op == "add_rms_norm" || op == "rope") {
    for (Dims& s : shapes) s = ctx.input(0).shape;
    if (op == "rope" && n_in > 3) {
      // Positions index the cos/sin cache: checked here, as the CPU kernel
      // does, so a bad one is an error rather than an out-of-bounds read.
      KILN_RETURN_IF_ERROR(CheckIndices(ctx, ctx.input(3), ctx.input(1).shape[0], "position",
                                        "the cos/sin cache"));
    }
  } else if (op == "embedding") {
    Dims s = ctx.input(1).shape;
    if (s.rank >= kMaxRank || ctx.input(0).shape.rank != 2)
      return fail(KILN_STATUS_INVALID_ARGUMENT, "ids or table of an unexpected rank");
    s.d[s.rank++] = ctx.input(0).shape[1];
    shapes[0] = s;
    // Ids are checked here, as the CPU kernel does, so a bad id is an error
    // naming it rather than a NaN row.
    KILN_RETURN_IF_ERROR(CheckIndices(ctx, ctx.input(1), ctx.input(0).shape[0], "token id",
                                      "the vocabulary"));
  } else {
    Dims s = ctx.input(0).shape;
    for (size_t i = 1; i < n_in; ++i)
      if (!Broadcast(s, ctx.input(i).shape, &s))
        return fail(KILN_STATUS_INVALID_ARGUMENT, "operand shapes do not broadcast");
    shapes[0] = s;
  }

  CUresult r = d_->cuCtxSetCurrent(context_);
  if (r != CUDA_SUCCESS) return DriverError(*d_, r, KILN_STATUS_INTERNAL, "cuCtxSetCurrent");
  DeviceArgs args;
  std::memset(&args, 0, sizeof(args));
  auto describe = [](DeviceTensor* dt, const Dims& shape, CUdeviceptr p) {
    dt->data = p;
    dt->rank = shape.rank;
    for (int d = 0; d < shape.rank; ++d) dt->dims[d] = shape.d[d];
  };
  for (size_t i = 0; i < n_in; ++i) {
    CUdeviceptr p = 0;
    KILN_RETURN_IF_ERROR(Upload(ctx, i, int(i), &p));
    describe(&args.t[i], ctx.input(i).shape, p);
  }
  std::vector<Tensor*> results(n_out);
  for (size_t o = 0; o < n_out; ++o) {
    KILN_RETURN_IF_ERROR(ctx.allocate_output(o, shapes[o], &results[o]));
    CUdeviceptr p = 0;
    KILN_RETURN_IF_ERROR(Scratch(int(n_in + o), results[o]->bytes(), &p));
    describe(&args.t[n_in + o], shapes[o], p);
  }

  const int64_t elements = shapes.empty() ? 0 : shapes[0].numel();
  int64_t blocks = 0;
  if (k.grid_rule == "rows") {
    if (elements % k.grid_cols)
      return fail(KILN_STATUS_INTERNAL, "result of " + std::to_string(elements) +
                                            " elements is not whole rows of " +
                                            std::to_string(k.grid_cols));
    blocks = elements / k.grid_cols;
  } else {
    // The kernel strides over the grid, so a cap keeps any size launchable.
    blocks = std::min<int64_t>((elements + k.block - 1) / k.block, int64_t(1) << 20);
  }
  if (blocks > 0) {
    void* params[] = {&args};
    r = d_->cuLaunchKernel(functions_[size_t(l.cuda)], unsigned(blocks), 1, 1,
                           unsigned(k.block), 1, 1, 0, stream_, params, nullptr);
    if (r != CUDA_SUCCESS) return DriverError(*d_, r, KILN_STATUS_INTERNAL, "cuLaunchKernel " + k.entry);
  }
  for (size_t o = 0; o < n_out; ++o) {
    const uint64_t bytes = results[o]->bytes();
    if (!bytes) continue;
    r = d_->cuMemcpyDtoHAsync(results[o]->data, args.t[n_in + o].data, bytes, stream_);
    if (r != CUDA_SUCCESS) return DriverError(*d_, r, KILN_STATUS_INTERNAL, "copying a result back");
  }
  r = d_->cuStreamSynchronize(stream_);
  if (r != CUDA_SUCCESS)
    return DriverError(*d_, r, KILN_STATUS_INTERNAL,
                       "running CUDA kernel " + k.entry + " (kiln." + op + " at '" +
                           ctx.location() + "')");
  return nullptr;
}

}  // namespace kiln::cuda
