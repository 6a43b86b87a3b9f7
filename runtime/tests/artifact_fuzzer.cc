// libFuzzer target for the artifact reader: any bytes must open cleanly or
// fail with a status, never read out of bounds.
#include <cstddef>
#include <cstdint>

#include "kiln/runtime/api.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  kiln_artifact_t artifact = nullptr;
  kiln_status_t status = kiln_artifact_open_memory(data, size, &artifact);
  if (status) {
    kiln_status_free(status);
    return 0;
  }
  // Touch every byte of every section so ASan checks the bounds.
  volatile uint8_t sink = 0;
  for (size_t i = 0; i < kiln_artifact_section_count(artifact); ++i) {
    kiln_section_info_t info;
    kiln_status_t s = kiln_artifact_section(artifact, i, &info);
    if (s) {
      kiln_status_free(s);
      continue;
    }
    const uint8_t* bytes = static_cast<const uint8_t*>(info.data);
    for (uint64_t k = 0; k < info.size; ++k) sink = sink ^ bytes[k];
  }
  kiln_artifact_release(artifact);
  return 0;
}
