#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <string>

#include "cpu/kernels.h"

namespace kiln {

namespace {

const std::vector<KernelEntry>& Table() {
  static const std::vector<KernelEntry> table = [] {
    std::vector<KernelEntry> t;
    AppendElementwiseKernels(t);
    AppendMovementKernels(t);
    AppendLlmKernels(t);
    AppendKvCacheKernels(t);
    std::sort(t.begin(), t.end(), [](const KernelEntry& a, const KernelEntry& b) {
      return a.op < b.op;
    });
    return t;
  }();
  return table;
}

}  // namespace

KernelFn LookupCpuKernel(std::string_view op) {
  const auto& t = Table();
  auto it = std::lower_bound(t.begin(), t.end(), op,
                             [](const KernelEntry& e, std::string_view v) { return e.op < v; });
  return it != t.end() && it->op == op ? it->fn : nullptr;
}

std::vector<std::string_view> CpuKernelNames() {
  std::vector<std::string_view> names;
  for (const KernelEntry& e : Table()) names.push_back(e.op);
  return names;
}

kiln_status_t KernelError(const KernelContext& ctx, kiln_status_code_t code,
                          const char* format, ...) {
  char message[1024];
  va_list args;
  va_start(args, format);
  vsnprintf(message, sizeof(message), format, args);
  va_end(args);
  const char* loc = ctx.location();
  if (loc && *loc)
    return kiln_status_allocate(code, nullptr, 0, "kiln.%s at '%s': %s", ctx.op(), loc,
                                message);
  return kiln_status_allocate(code, nullptr, 0, "kiln.%s: %s", ctx.op(), message);
}

}  // namespace kiln
