#include "cpu/kernels.h"

namespace kiln {

void AppendElementwiseKernels(std::vector<KernelEntry>& out) { (void)out; }

}  // namespace kiln
