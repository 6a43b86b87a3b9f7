// The CUDA backend: runs the launches that have a CUDA kernel on a GPU.
//
// This first backend is per launch: values stay in host memory (the CPU
// executor's plan), and a covered launch copies its operands to the device
// (weights once, then kept), runs the kernel and copies its results back.
// That makes every launch's GPU kernel checkable against its CPU kernel on
// any model, with the rest of the graph on the CPU; a device-resident
// executor (one arena, CUDA graphs) replaces the copies next.
//
// Thread-safety: one call at a time, like the session that owns it; it
// makes its context current on the calling thread at each launch.
#ifndef KILN_RUNTIME_CUDA_BACKEND_H_
#define KILN_RUNTIME_CUDA_BACKEND_H_

#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "cuda/driver.h"
#include "model.h"

namespace kiln::cuda {

/// The host mirror of kiln::Tensor / kiln::Args in
/// lib/Codegen/cuda/kiln/common.cuh (the kernels' parameter).
struct DeviceTensor {
  CUdeviceptr data;
  long long dims[6];
  int rank;
  int reserved;
};
struct DeviceArgs {
  DeviceTensor t[8];
};
static_assert(sizeof(DeviceTensor) == 64 && sizeof(DeviceArgs) == 512, "kernel ABI");

/// The image of `kernel` to load on a device of compute capability `cc`
/// (major * 10 + minor): a cubin of the same major and the highest minor at
/// most the device's (an arch-specific "a" cubin only on its exact
/// capability), else PTX of a virtual architecture at most `cc`; nullptr
/// when none fits.
const CudaImageDesc* PickImage(const CudaKernelDesc& kernel, int cc);

class Backend final : public Accelerator {
 public:
  /// Opens device `ordinal`, loads every kernel's image for it. Errors:
  /// UNAVAILABLE (no driver or GPU), OUT_OF_RANGE (ordinal),
  /// FAILED_PRECONDITION (a kernel with no image for this GPU).
  static kiln_status_t Create(const kiln_model_s& model, int ordinal,
                              std::unique_ptr<Backend>* out);
  ~Backend() override;

  bool Covers(const LaunchDesc& launch) const override { return launch.cuda >= 0; }
  kiln_status_t Launch(KernelContext& ctx, const LaunchDesc& launch) override;

  /// "NVIDIA H100 80GB HBM3 (sm_90)" for messages.
  const std::string& description() const { return description_; }

 private:
  Backend() = default;
  kiln_status_t Upload(KernelContext& ctx, size_t i, int slot, CUdeviceptr* out);
  kiln_status_t Scratch(int slot, uint64_t bytes, CUdeviceptr* out);

  const kiln_model_s* model_ = nullptr;
  const Driver* d_ = nullptr;
  CUdevice device_ = 0;
  CUcontext context_ = nullptr;
  CUstream stream_ = nullptr;
  std::vector<CUmodule> modules_;    // per manifest CUDA kernel
  std::vector<CUfunction> functions_;
  /// Weights on the device, by host address (stable for the model's life).
  std::unordered_map<const void*, CUdeviceptr> resident_;
  struct Buffer {
    CUdeviceptr ptr = 0;
    uint64_t capacity = 0;
  };
  std::vector<Buffer> scratch_;  // per operand/result position of a launch
  std::string description_;
};

}  // namespace kiln::cuda

#endif  // KILN_RUNTIME_CUDA_BACKEND_H_
