// Devices: what kiln_device_count/kiln_device_info report, and how a session
// picks where it runs.
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>

#include "kiln/runtime/api.h"
#include "model.h"
#ifdef KILN_RUNTIME_WITH_CUDA
#include "cuda/backend.h"
#include "cuda/driver.h"
#endif

namespace kiln {
namespace {

std::string CpuModelName() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) != 0) continue;
    size_t colon = line.find(':');
    if (colon == std::string::npos) break;
    size_t start = line.find_first_not_of(" \t", colon + 1);
    return start == std::string::npos ? "cpu" : line.substr(start);
  }
  return "cpu";
}

kiln_status_t CudaCount(int32_t* count) {
  *count = 0;
#ifdef KILN_RUNTIME_WITH_CUDA
  kiln_status_t status = nullptr;
  const cuda::Driver* d = cuda::Driver::Get(&status);
  if (!d) return status;
  int n = 0;
  CUresult r = d->cuDeviceGetCount(&n);
  if (r != CUDA_SUCCESS)
    return cuda::DriverError(*d, r, KILN_STATUS_UNAVAILABLE, "cuDeviceGetCount");
  if (n == 0)
    return KILN_MAKE_STATUS(KILN_STATUS_UNAVAILABLE,
                            "no CUDA GPU found: the driver (%s) reports no devices",
                            d->library.c_str());
  *count = n;
  return nullptr;
#else
  return KILN_MAKE_STATUS(KILN_STATUS_UNAVAILABLE,
                          "this runtime was built without CUDA support (cuda.h was not "
                          "found when it was configured)");
#endif
}

kiln_status_t CudaInfo(int32_t ordinal, kiln_device_info_t* out) {
  int32_t count = 0;
  if (kiln_status_t s = CudaCount(&count)) return s;
  if (ordinal < 0 || ordinal >= count)
    return KILN_MAKE_STATUS(KILN_STATUS_OUT_OF_RANGE, "CUDA device %d, but there are %d",
                            ordinal, count);
#ifdef KILN_RUNTIME_WITH_CUDA
  const cuda::Driver* d = cuda::Driver::Get(nullptr);
  CUdevice dev = 0;
  CUresult r = d->cuDeviceGet(&dev, ordinal);
  int major = 0, minor = 0, sms = 0;
  size_t bytes = 0;
  if (r == CUDA_SUCCESS) r = d->cuDeviceGetName(out->name, int(sizeof(out->name)), dev);
  if (r == CUDA_SUCCESS)
    r = d->cuDeviceGetAttribute(&major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev);
  if (r == CUDA_SUCCESS)
    r = d->cuDeviceGetAttribute(&minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev);
  if (r == CUDA_SUCCESS)
    r = d->cuDeviceGetAttribute(&sms, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, dev);
  if (r == CUDA_SUCCESS) r = d->cuDeviceTotalMem(&bytes, dev);
  if (r != CUDA_SUCCESS) {
    std::memset(out, 0, sizeof(*out));
    return cuda::DriverError(*d, r, KILN_STATUS_INTERNAL,
                             "querying CUDA device " + std::to_string(ordinal));
  }
  out->kind = KILN_DEVICE_CUDA;
  out->ordinal = ordinal;
  out->compute_capability = major * 10 + minor;
  out->multiprocessors = sms;
  out->memory_bytes = bytes;
  out->driver_version = d->version;
#endif
  return nullptr;
}

}  // namespace

kiln_status_t SelectDevice(const kiln_model_s& model, kiln_device_kind_t requested,
                           int32_t ordinal, kiln_device_kind_t* chosen, std::string* reason,
                           std::unique_ptr<Accelerator>* accelerator) {
  *chosen = KILN_DEVICE_CPU;
  accelerator->reset();
  if (requested == KILN_DEVICE_CPU) {
    if (ordinal != 0)
      return KILN_MAKE_STATUS(KILN_STATUS_INVALID_ARGUMENT,
                              "device_ordinal %d: there is one CPU device (0)", ordinal);
    *reason = "requested";
    return nullptr;
  }
  if (requested != KILN_DEVICE_CUDA && requested != KILN_DEVICE_AUTO)
    return KILN_MAKE_STATUS(KILN_STATUS_INVALID_ARGUMENT, "unknown device kind %d",
                            int(requested));
  // Why CUDA cannot run this session, or empty when it can.
  std::string why;
  kiln_status_code_t code = KILN_STATUS_OK;
  if (model.manifest.cuda_kernels.empty()) {
    code = KILN_STATUS_FAILED_PRECONDITION;
    why = "the artifact has no CUDA kernels (compile it with kiln-compile --target=cuda)";
  } else {
    int32_t count = 0;
    if (kiln_status_t s = CudaCount(&count)) {
      code = kiln_status_code(s);
      why = kiln_status_message(s);
      kiln_status_free(s);
    } else if (ordinal < 0 || ordinal >= count) {
      code = KILN_STATUS_OUT_OF_RANGE;
      why = "CUDA device " + std::to_string(ordinal) + ", but there are " +
            std::to_string(count);
    } else {
#ifdef KILN_RUNTIME_WITH_CUDA
      std::unique_ptr<cuda::Backend> backend;
      if (kiln_status_t s = cuda::Backend::Create(model, ordinal, &backend)) {
        code = kiln_status_code(s);
        why = kiln_status_message(s);
        kiln_status_free(s);
      } else {
        size_t covered = 0;
        for (const LaunchDesc& l : model.manifest.launches) covered += l.cuda >= 0;
        *reason = backend->description() + ": " + std::to_string(covered) + " of " +
                  std::to_string(model.manifest.launches.size()) +
                  " launches on the GPU, the others on the CPU";
        *chosen = KILN_DEVICE_CUDA;
        *accelerator = std::move(backend);
        return nullptr;
      }
#endif
    }
  }
  if (requested == KILN_DEVICE_AUTO) {
    *reason = why;
    return nullptr;
  }
  return KILN_MAKE_STATUS(code, "device cuda: %s", why.c_str());
}

}  // namespace kiln

extern "C" {

const char* kiln_device_kind_name(kiln_device_kind_t kind) {
  switch (kind) {
    case KILN_DEVICE_AUTO: return "auto";
    case KILN_DEVICE_CPU: return "cpu";
    case KILN_DEVICE_CUDA: return "cuda";
  }
  return nullptr;
}

kiln_status_t kiln_device_count(kiln_device_kind_t kind, int32_t* out_count) {
  if (out_count) *out_count = 0;
  if (!out_count)
    return KILN_MAKE_STATUS(KILN_STATUS_INVALID_ARGUMENT, "out_count must not be NULL");
  switch (kind) {
    case KILN_DEVICE_CPU: *out_count = 1; return nullptr;
    case KILN_DEVICE_CUDA: return kiln::CudaCount(out_count);
    default:
      return KILN_MAKE_STATUS(KILN_STATUS_INVALID_ARGUMENT,
                              "device kind %d: ask for KILN_DEVICE_CPU or KILN_DEVICE_CUDA",
                              int(kind));
  }
}

kiln_status_t kiln_device_info(kiln_device_kind_t kind, int32_t ordinal,
                               kiln_device_info_t* out) {
  if (out) std::memset(out, 0, sizeof(*out));
  if (!out) return KILN_MAKE_STATUS(KILN_STATUS_INVALID_ARGUMENT, "out_info must not be NULL");
  switch (kind) {
    case KILN_DEVICE_CPU: {
      if (ordinal != 0)
        return KILN_MAKE_STATUS(KILN_STATUS_OUT_OF_RANGE, "CPU device %d, but there is 1",
                                ordinal);
      out->kind = KILN_DEVICE_CPU;
      std::snprintf(out->name, sizeof(out->name), "%s", kiln::CpuModelName().c_str());
      out->multiprocessors = int32_t(std::thread::hardware_concurrency());
      long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
      out->memory_bytes = pages > 0 && page > 0 ? uint64_t(pages) * uint64_t(page) : 0;
      return nullptr;
    }
    case KILN_DEVICE_CUDA: return kiln::CudaInfo(ordinal, out);
    default:
      return KILN_MAKE_STATUS(KILN_STATUS_INVALID_ARGUMENT,
                              "device kind %d: ask for KILN_DEVICE_CPU or KILN_DEVICE_CUDA",
                              int(kind));
  }
}

kiln_device_kind_t kiln_session_device(kiln_session_t session, const char** out_reason) {
  if (out_reason) *out_reason = session ? session->device_reason.c_str() : "";
  return session ? session->device : KILN_DEVICE_CPU;
}

}  // extern "C"
