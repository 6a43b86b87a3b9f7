// Version queries of the C API.
#include "kiln/runtime/api.h"

extern "C" {

const char* kiln_runtime_version_string(void) {
  return KILN_RUNTIME_VERSION_STRING;
}

uint32_t kiln_runtime_abi_version(void) { return 1; }

}  // extern "C"
