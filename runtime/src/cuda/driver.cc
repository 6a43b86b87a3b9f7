#include "cuda/driver.h"

#include <dlfcn.h>

#include <cstdlib>
#include <string>
#include <vector>

#define KILN_CUDA_STR2(x) #x
// Expands the cuda.h macro first, so cuMemAlloc names "cuMemAlloc_v2".
#define KILN_CUDA_STR(x) KILN_CUDA_STR2(x)

namespace kiln::cuda {
namespace {

struct Loaded {
  Driver driver;
  void* handle = nullptr;
  kiln_status_code_t code = KILN_STATUS_OK;
  std::string error;
};

void Load(Loaded* l) {
  const char* env = std::getenv("KILN_CUDA_DRIVER");
  // The loader's search path first; then where container images mount the
  // driver when ld.so.cache does not list it.
  std::vector<std::string> candidates;
  if (env && *env)
    candidates = {env};
  else
    candidates = {"libcuda.so.1", "/usr/local/nvidia/lib64/libcuda.so.1",
                  "/usr/lib/x86_64-linux-gnu/libcuda.so.1", "/usr/lib64/libcuda.so.1"};
  std::string first_error;
  for (const std::string& path : candidates) {
    // RTLD_LOCAL: the driver's symbols stay out of the global namespace of
    // the product that embeds us.
    l->handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (l->handle) {
      l->driver.library = path;
      break;
    }
    const char* why = dlerror();
    if (first_error.empty()) first_error = why ? why : path;
  }
  if (!l->handle) {
    l->code = KILN_STATUS_UNAVAILABLE;
    l->error = "no CUDA driver: " + first_error +
               " (a GPU machine has it from the NVIDIA driver; set KILN_CUDA_DRIVER to "
               "its path if it is elsewhere)";
    return;
  }
  std::string missing;
#define KILN_CUDA_RESOLVE(name)                                                  \
  l->driver.name = reinterpret_cast<decltype(&::name)>(                          \
      dlsym(l->handle, KILN_CUDA_STR(name)));                                    \
  if (!l->driver.name) missing += (missing.empty() ? "" : ", ") + std::string(KILN_CUDA_STR(name));
  KILN_CUDA_DRIVER_FUNCTIONS(KILN_CUDA_RESOLVE)
#undef KILN_CUDA_RESOLVE
  if (!l->driver.cuInit) {
    l->code = KILN_STATUS_UNAVAILABLE;
    l->error = l->driver.library + " is not the CUDA driver (it has no cuInit)";
    dlclose(l->handle);
    l->handle = nullptr;
    return;
  }
  if (!missing.empty()) {
    l->code = KILN_STATUS_UNAVAILABLE;
    l->error = "the CUDA driver " + l->driver.library + " lacks " + missing +
               " (this runtime needs a driver for CUDA " + std::to_string(CUDA_VERSION / 1000) +
               "." + std::to_string(CUDA_VERSION % 1000 / 10) + " or newer)";
    dlclose(l->handle);
    l->handle = nullptr;
    return;
  }
  CUresult r = l->driver.cuInit(0);
  if (r != CUDA_SUCCESS) {
    l->code = KILN_STATUS_UNAVAILABLE;
    if (r == CUDA_ERROR_STUB_LIBRARY)
      l->error = "no CUDA driver: " + l->driver.library +
                 " is the CUDA toolkit's link stub, not the NVIDIA driver";
    else
      l->error = (r == CUDA_ERROR_NO_DEVICE ? "no CUDA GPU found: cuInit: " : "cuInit failed: ") +
                 l->driver.Describe(r);
    return;
  }
  if (l->driver.cuDriverGetVersion(&l->driver.version) != CUDA_SUCCESS) l->driver.version = 0;
}

}  // namespace

const Driver* Driver::Get(kiln_status_t* status) {
  static Loaded* loaded = [] {
    auto* l = new Loaded;  // never freed: the driver stays loaded
    Load(l);
    return l;
  }();
  if (loaded->code != KILN_STATUS_OK) {
    if (status) *status = KILN_MAKE_STATUS(loaded->code, "%s", loaded->error.c_str());
    return nullptr;
  }
  if (status) *status = nullptr;
  return &loaded->driver;
}

std::string Driver::Describe(CUresult result) const {
  const char* name = nullptr;
  const char* text = nullptr;
  if (cuGetErrorName) cuGetErrorName(result, &name);
  if (cuGetErrorString) cuGetErrorString(result, &text);
  // A failing lookup leaves the pointers unset (the stub library fails all).
  std::string out = name ? std::string(name) : "CUDA error " + std::to_string(int(result));
  if (text) out += std::string(" (") + text + ")";
  return out;
}

kiln_status_t DriverError(const Driver& driver, CUresult result, kiln_status_code_t code,
                          const std::string& what) {
  return KILN_MAKE_STATUS(code, "%s: %s", what.c_str(), driver.Describe(result).c_str());
}

}  // namespace kiln::cuda
