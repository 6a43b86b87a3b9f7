#include "cpu/kernels.h"

namespace kiln {

void AppendMovementKernels(std::vector<KernelEntry>& out) { (void)out; }

}  // namespace kiln
