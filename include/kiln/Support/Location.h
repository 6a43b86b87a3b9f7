//===- Location.h - ONNX node names in MLIR locations ------------*- C++ -*-===//
//
// The importer gives each op a NameLoc of its ONNX node; fusion passes fuse
// the locations of the ops they replace. Diagnostics, the manifest and the
// reports name ops by these node names.
//
//===----------------------------------------------------------------------===//

#ifndef KILN_SUPPORT_LOCATION_H
#define KILN_SUPPORT_LOCATION_H

#include "mlir/IR/Location.h"
#include "llvm/ADT/SmallVector.h"

#include <string>

namespace mlir::kiln {

/// The first ONNX node name in `loc` (depth first through fused
/// locations), or "".
inline std::string onnxNodeName(Location loc) {
  if (auto f = dyn_cast<FusedLoc>(loc))
    for (Location l : f.getLocations())
      if (std::string n = onnxNodeName(l); !n.empty())
        return n;
  if (auto n = dyn_cast<NameLoc>(loc))
    return n.getName().str();
  return "";
}

/// Every ONNX node name in `loc`, in order.
inline void onnxNodeNames(Location loc, llvm::SmallVectorImpl<std::string> &out) {
  if (auto f = dyn_cast<FusedLoc>(loc))
    for (Location l : f.getLocations())
      onnxNodeNames(l, out);
  if (auto n = dyn_cast<NameLoc>(loc))
    out.push_back(n.getName().str());
}

} // namespace mlir::kiln

#endif // KILN_SUPPORT_LOCATION_H
