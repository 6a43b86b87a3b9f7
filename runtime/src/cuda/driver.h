// The CUDA driver API, loaded at run time.
//
// The runtime never links libcuda: it opens libcuda.so.1 with dlopen the
// first time a caller asks for a CUDA device, so one build runs on machines
// with and without a GPU, and a machine without one gets a status that says
// what was missing (no driver library, a driver without an entry point we
// need, cuInit failing because no device is present) instead of a loader
// error at startup.
//
// Thread-safety: Driver::Get is thread-safe (the library is opened once);
// the function pointers are immutable afterwards and the driver API itself
// is thread-safe.
#ifndef KILN_RUNTIME_CUDA_DRIVER_H_
#define KILN_RUNTIME_CUDA_DRIVER_H_

#include <cuda.h>

#include <string>

#include "kiln/runtime/api.h"

namespace kiln::cuda {

/// Every driver entry point the runtime calls, by its cuda.h name (the
/// macros there pick the versioned symbol, e.g. cuMemAlloc_v2).
#define KILN_CUDA_DRIVER_FUNCTIONS(X) \
  X(cuInit)                           \
  X(cuDriverGetVersion)               \
  X(cuGetErrorName)                   \
  X(cuGetErrorString)                 \
  X(cuDeviceGetCount)                 \
  X(cuDeviceGet)                      \
  X(cuDeviceGetName)                  \
  X(cuDeviceGetAttribute)             \
  X(cuDeviceTotalMem)                 \
  X(cuDevicePrimaryCtxRetain)         \
  X(cuDevicePrimaryCtxRelease)        \
  X(cuCtxSetCurrent)                  \
  X(cuCtxSynchronize)                 \
  X(cuMemGetInfo)                     \
  X(cuMemAlloc)                       \
  X(cuMemFree)                        \
  X(cuMemAllocHost)                   \
  X(cuMemFreeHost)                    \
  X(cuMemcpyHtoD)                     \
  X(cuMemcpyDtoH)                     \
  X(cuMemcpyHtoDAsync)                \
  X(cuMemcpyDtoHAsync)                \
  X(cuMemcpyDtoDAsync)                \
  X(cuMemsetD8Async)                  \
  X(cuModuleLoadDataEx)               \
  X(cuModuleUnload)                   \
  X(cuModuleGetFunction)              \
  X(cuFuncGetAttribute)               \
  X(cuFuncSetAttribute)               \
  X(cuLaunchKernel)                   \
  X(cuStreamCreate)                   \
  X(cuStreamDestroy)                  \
  X(cuStreamSynchronize)              \
  X(cuStreamBeginCapture)             \
  X(cuStreamEndCapture)               \
  X(cuGraphInstantiate)               \
  X(cuGraphLaunch)                    \
  X(cuGraphDestroy)                   \
  X(cuGraphExecDestroy)               \
  X(cuEventCreate)                    \
  X(cuEventRecord)                    \
  X(cuEventSynchronize)               \
  X(cuEventElapsedTime)               \
  X(cuEventDestroy)

/// The opened driver: one function pointer per entry point.
struct Driver {
#define KILN_CUDA_DECLARE(name) decltype(&::name) name = nullptr;
  KILN_CUDA_DRIVER_FUNCTIONS(KILN_CUDA_DECLARE)
#undef KILN_CUDA_DECLARE

  /// The path dlopen was given and the driver's CUDA version (e.g. 13000).
  std::string library;
  int version = 0;

  /// Opens the driver once and calls cuInit(0). On failure returns nullptr
  /// and sets *status to UNAVAILABLE with what was missing; later calls give
  /// the same answer. The library is $KILN_CUDA_DRIVER when set (tests point
  /// it at a library that is not a driver), else libcuda.so.1.
  static const Driver* Get(kiln_status_t* status);

  /// "CUDA_ERROR_OUT_OF_MEMORY (out of memory)" for a driver result.
  std::string Describe(CUresult result) const;
};

/// A status of `code` whose message is `what` followed by the driver's
/// description of `result`, e.g. "cuMemAlloc of 1024 bytes:
/// CUDA_ERROR_OUT_OF_MEMORY (out of memory)".
kiln_status_t DriverError(const Driver& driver, CUresult result, kiln_status_code_t code,
                          const std::string& what);

}  // namespace kiln::cuda

#endif  // KILN_RUNTIME_CUDA_DRIVER_H_
