//===- MemoryPlan.h - liveness-based placement of intermediate buffers -*- C++ -*-===//
//
// Every intermediate value of the graph needs memory from the step that
// defines it to the last step that reads it. The plan places values whose
// size is known at compile time at fixed offsets of one static arena
// (greedy by size: the largest values first, each at the lowest offset that
// does not overlap a value live at the same time), and gives values whose
// size depends on run-time dimensions a *slot*: a buffer the runtime sizes
// on demand and reuses for values with disjoint lifetimes.
//
// Views (reshape, bitcast) share their source's storage: the source's
// lifetime is extended to the view's last use and the view is not placed.
//
//===----------------------------------------------------------------------===//

#ifndef KILN_COMPILER_MEMORYPLAN_H
#define KILN_COMPILER_MEMORYPLAN_H

#include <cstdint>
#include <vector>

namespace mlir::kiln {

/// What the planner knows of one value. Steps are launch indices; values
/// that are not launch results (inputs, weights, constants) are `external`
/// and never placed.
struct PlanValue {
  bool external = false;
  /// Bytes when the shape is static, -1 when it depends on run-time dims.
  int64_t staticBytes = -1;
  /// The launch that defines the value (ignored for external values).
  int def = 0;
  /// The last launch that reads it (def when never read).
  int lastUse = 0;
  /// A graph output: live until the end of the run.
  bool liveOut = false;
  /// When >= 0, this value is a view of value `aliasOf`.
  int aliasOf = -1;
};

struct MemoryPlan {
  enum class Kind { External, Arena, Slot, View };
  struct Placement {
    Kind kind = Kind::External;
    int64_t offset = 0;  // Arena: byte offset
    int slot = -1;       // Slot: slot index
    int root = -1;       // View: the value whose storage it shares
  };
  std::vector<Placement> values;
  /// Bytes of the static arena.
  int64_t arenaBytes = 0;
  /// Number of dynamically sized slots.
  int slotCount = 0;
  /// Bytes the static values would take without reuse (for reports).
  int64_t unplannedBytes = 0;
};

/// Plans `values`; offsets are multiples of `alignment` (a power of two).
MemoryPlan planMemory(const std::vector<PlanValue> &values, int64_t alignment);

} // namespace mlir::kiln

#endif // KILN_COMPILER_MEMORYPLAN_H
