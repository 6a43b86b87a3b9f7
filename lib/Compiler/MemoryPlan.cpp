//===- MemoryPlan.cpp - liveness-based placement of intermediate buffers --===//

#include "kiln/Compiler/MemoryPlan.h"

#include <algorithm>
#include <numeric>

using namespace mlir::kiln;

namespace {

int findRoot(const std::vector<PlanValue> &values, int v) {
  // Views of views resolve to the first value that owns storage. The chain
  // is acyclic because a view is defined after its source.
  while (values[v].aliasOf >= 0)
    v = values[v].aliasOf;
  return v;
}

int64_t alignUp(int64_t x, int64_t a) { return (x + a - 1) / a * a; }

} // namespace

MemoryPlan mlir::kiln::planMemory(const std::vector<PlanValue> &values,
                                  int64_t alignment) {
  const int n = int(values.size());
  MemoryPlan plan;
  plan.values.resize(n);

  // Lifetimes of storage owners, extended by their views.
  std::vector<int> begin(n), end(n);
  std::vector<bool> live(n, false);
  int lastStep = 0;
  for (int v = 0; v < n; ++v)
    if (!values[v].external)
      lastStep = std::max({lastStep, values[v].def, values[v].lastUse});
  for (int v = 0; v < n; ++v) {
    begin[v] = values[v].def;
    end[v] = values[v].liveOut ? lastStep + 1 : values[v].lastUse;
  }
  for (int v = 0; v < n; ++v) {
    if (values[v].aliasOf < 0)
      continue;
    int r = findRoot(values, v);
    plan.values[v].kind = MemoryPlan::Kind::View;
    plan.values[v].root = r;
    end[r] = std::max(end[r], end[v]);
  }

  std::vector<int> arenaValues, slotValues;
  for (int v = 0; v < n; ++v) {
    if (values[v].aliasOf >= 0)
      continue;
    if (values[v].external) {
      plan.values[v].kind = MemoryPlan::Kind::External;
      continue;
    }
    if (values[v].staticBytes >= 0) {
      arenaValues.push_back(v);
      plan.unplannedBytes += alignUp(values[v].staticBytes, alignment);
    } else {
      slotValues.push_back(v);
    }
  }
  auto overlaps = [&](int a, int b) {
    return begin[a] <= end[b] && begin[b] <= end[a];
  };

  // Static values: greedy by size into one arena.
  std::stable_sort(arenaValues.begin(), arenaValues.end(), [&](int a, int b) {
    return values[a].staticBytes > values[b].staticBytes;
  });
  std::vector<int> placed;
  for (int v : arenaValues) {
    int64_t size = alignUp(std::max<int64_t>(values[v].staticBytes, 1), alignment);
    // Intervals of memory taken by placed values live at the same time.
    std::vector<std::pair<int64_t, int64_t>> taken;
    for (int p : placed)
      if (overlaps(v, p))
        taken.push_back({plan.values[p].offset,
                         plan.values[p].offset +
                             alignUp(std::max<int64_t>(values[p].staticBytes, 1),
                                     alignment)});
    std::sort(taken.begin(), taken.end());
    int64_t offset = 0;
    for (auto [lo, hi] : taken) {
      if (lo >= offset + size)
        break;
      offset = std::max(offset, hi);
    }
    plan.values[v].kind = MemoryPlan::Kind::Arena;
    plan.values[v].offset = offset;
    plan.arenaBytes = std::max(plan.arenaBytes, offset + size);
    placed.push_back(v);
  }

  // Dynamic values: reuse a slot whose previous occupants are all dead.
  std::sort(slotValues.begin(), slotValues.end(),
            [&](int a, int b) { return begin[a] < begin[b]; });
  std::vector<int> slotFreeAfter; // the last step a slot's occupant is live
  for (int v : slotValues) {
    int chosen = -1;
    for (int s = 0; s < int(slotFreeAfter.size()); ++s)
      if (slotFreeAfter[s] < begin[v]) {
        chosen = s;
        break;
      }
    if (chosen < 0) {
      chosen = int(slotFreeAfter.size());
      slotFreeAfter.push_back(0);
    }
    slotFreeAfter[chosen] = end[v];
    plan.values[v].kind = MemoryPlan::Kind::Slot;
    plan.values[v].slot = chosen;
  }
  plan.slotCount = int(slotFreeAfter.size());
  return plan;
}
