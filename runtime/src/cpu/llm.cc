#include "cpu/kernels.h"

namespace kiln {

void AppendLlmKernels(std::vector<KernelEntry>& out) { (void)out; }

}  // namespace kiln
