// libFuzzer target for the manifest decoder: any bytes must decode into a
// manifest that passes validation or fail with a status; never abort (the
// JSON library runs without exceptions), read out of bounds or leak.
#include <cstddef>
#include <cstdint>

#include "manifest.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  kiln::Manifest manifest;
  kiln_status_t status =
      kiln::ParseManifest(reinterpret_cast<const char*>(data), size, &manifest);
  kiln_status_free(status);
  return 0;
}
