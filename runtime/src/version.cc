// Version queries of the C API.
#include "kiln/runtime/api.h"

// CMake passes the project's version so that it is written in one place.
#ifndef KILN_RUNTIME_VERSION
#error "KILN_RUNTIME_VERSION must be defined by the build (see CMakeLists.txt)"
#endif

extern "C" {

const char* kiln_runtime_version_string(void) { return KILN_RUNTIME_VERSION; }

uint32_t kiln_runtime_abi_version(void) { return KILN_RUNTIME_ABI_VERSION; }

}  // extern "C"
