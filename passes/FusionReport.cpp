//===- FusionReport.cpp - what the fusion passes did, and did not do ------===//
//
// `kiln-compile --report` reads the graph after the pipeline: every op the
// fusion passes created carries a FusedLoc of the ops it replaced, so their
// ONNX node names are at hand; every op that betrays an unfused subgraph (a
// softmax left standing is attention that was not recognized, a mean over
// the last axis a norm, ...) is explained by re-running the fusion patterns
// that should have consumed it, on a copy of the module, and keeping the
// reason they gave up.
//
//===----------------------------------------------------------------------===//

#include "kiln/Passes/Passes.h"

#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/Rewrite/FrozenRewritePatternSet.h"
#include "llvm/ADT/SetVector.h"
#include "llvm/Support/FormatVariadic.h"

#include <deque>

using namespace mlir;
using namespace mlir::kiln;

namespace {

/// ONNX node names in `loc`, in order, without repeats.
std::vector<std::string> nodeNames(Location loc) {
  llvm::SetVector<StringRef> names;
  loc->walk([&](Location l) {
    if (auto n = dyn_cast<NameLoc>(l))
      names.insert(n.getName().getValue());
    return WalkResult::advance();
  });
  return {names.begin(), names.end()};
}

/// Keeps the reasons patterns give for not matching.
struct FailureRecorder : public RewriterBase::Listener {
  std::string reason;
  void
  notifyMatchFailure(Location loc,
                     function_ref<void(Diagnostic &)> reasonCallback) override {
    Diagnostic diag(loc, DiagnosticSeverity::Remark);
    reasonCallback(diag);
    reason = diag.str();
  }
};

/// The fusion patterns that would consume an op of this kind, or none when
/// the op is not a leftover of a decomposed subgraph.
std::vector<StringRef> expectedPatterns(Operation *op) {
  if (isa<SoftmaxOp>(op))
    return {"FuseSdpa"};
  if (auto r = dyn_cast<ReduceOp>(op))
    if (r.getKind() == ReduceKind::mean)
      return {"FuseLayerNorm", "FuseRmsNorm"};
  if (auto a = dyn_cast<ActivationOp>(op))
    if (a.getKind() == ActivationKind::sigmoid)
      return {"FuseSilu"};
  if (isa<TanhOp>(op))
    return {"FuseGeluTanh", "FuseSdpa"};
  if (isa<ErfOp>(op))
    return {"FuseGeluErf"};
  if (isa<GluOp>(op))
    return {"FuseGatedMlp"};
  if (isa<NegOp>(op))
    return {"FuseRotaryEmbedding"};
  return {};
}

StringRef shortName(StringRef debugName) {
  size_t colon = debugName.rfind("::");
  return colon == StringRef::npos ? debugName : debugName.drop_front(colon + 2);
}

/// Why the patterns in `names` did not consume `leftover`: each is tried on
/// the ops within a few uses of it (where its anchor would be), and the
/// most specific reason is kept (generic ones start with "not ").
std::string explain(Operation *leftover, ArrayRef<StringRef> names,
                    const FrozenRewritePatternSet &patterns) {
  std::string generic;
  std::deque<std::pair<Operation *, int>> work{{leftover, 0}};
  llvm::SmallPtrSet<Operation *, 32> seen;
  while (!work.empty()) {
    auto [op, depth] = work.front();
    work.pop_front();
    if (!seen.insert(op).second)
      continue;
    for (const auto &pattern :
         patterns.getOpSpecificNativePatterns().lookup(op->getName())) {
      StringRef name = shortName(pattern->getDebugName());
      if (!llvm::is_contained(names, name))
        continue;
      FailureRecorder recorder;
      PatternRewriter rewriter(op->getContext());
      rewriter.setListener(&recorder);
      rewriter.setInsertionPoint(op);
      if (succeeded(pattern->matchAndRewrite(op, rewriter)))
        return (name + ": matches now (the pipeline stopped before it)").str();
      std::string reason = (name + ": " + recorder.reason).str();
      if (!StringRef(recorder.reason).starts_with("not "))
        return reason;
      if (generic.empty())
        generic = reason;
    }
    if (depth < 6)
      for (Operation *user : op->getUsers())
        work.push_back({user, depth + 1});
  }
  return generic.empty() ? "no fusion pattern is anchored near it" : generic;
}

} // namespace

std::map<std::string, int64_t> mlir::kiln::countOpKinds(ModuleOp module) {
  std::map<std::string, int64_t> counts;
  module.walk([&](func::FuncOp f) {
    f.walk([&](Operation *op) {
      if (op != f && !isa<func::ReturnOp>(op))
        ++counts[op->getName().getStringRef().str()];
    });
  });
  return counts;
}

FusionReport mlir::kiln::analyzeFusion(ModuleOp module) {
  FusionReport report;
  report.opsAfter = countOpKinds(module);
  // Explanations run the patterns, which may rewrite: work on a copy.
  OwningOpRef<ModuleOp> copy(module.clone());
  RewritePatternSet set(module.getContext());
  populateFuseNormsPatterns(set);
  populateFuseActivationsPatterns(set);
  populateFuseGatedMlpPatterns(set);
  populateFuseRopePatterns(set);
  populateFuseAttentionPatterns(set);
  FrozenRewritePatternSet patterns(std::move(set));
  SmallVector<Operation *> leftovers;
  copy->walk([&](Operation *op) {
    if (isa<FusedLoc>(op->getLoc()))
      report.fused.push_back(
          {op->getName().getStringRef().str(), nodeNames(op->getLoc())});
    else if (!expectedPatterns(op).empty())
      leftovers.push_back(op);
  });
  for (Operation *op : leftovers) {
    std::vector<std::string> names = nodeNames(op->getLoc());
    report.unfused.push_back({op->getName().getStringRef().str(),
                              names.empty() ? "" : names.front(),
                              explain(op, expectedPatterns(op), patterns)});
  }
  // KV caches left as tensors (copied by a concat each step).
  for (auto func : module.getOps<func::FuncOp>())
    for (auto &[name, why] : explainTensorKvLayers(func))
      report.unfused.push_back({"kv tensors", name, "FormKvCache: " + why});
  return report;
}

void mlir::kiln::printFusionReport(const FusionReport &r, raw_ostream &os) {
  auto total = [](const std::map<std::string, int64_t> &m) {
    int64_t n = 0;
    for (auto &[k, v] : m)
      n += v;
    return n;
  };
  os << llvm::formatv("fusion report: {0} ops before, {1} after\n",
                      total(r.opsBefore), total(r.opsAfter));
  std::set<std::string> kinds;
  for (auto &[k, v] : r.opsBefore)
    kinds.insert(k);
  for (auto &[k, v] : r.opsAfter)
    kinds.insert(k);
  os << "  op counts (before -> after):\n";
  for (const std::string &k : kinds) {
    auto get = [&](const std::map<std::string, int64_t> &m) {
      auto it = m.find(k);
      return it == m.end() ? int64_t(0) : it->second;
    };
    int64_t b = get(r.opsBefore), a = get(r.opsAfter);
    os << llvm::formatv("    {0,-24} {1,5} -> {2,5}\n", k, b, a);
  }
  os << llvm::formatv("  fused ({0}):\n", r.fused.size());
  for (const auto &f : r.fused) {
    os << "    " << f.op << " <- ";
    for (size_t i = 0; i < f.nodes.size(); ++i)
      os << (i ? ", " : "") << "'" << f.nodes[i] << "'";
    if (f.nodes.empty())
      os << "(no ONNX nodes)";
    os << "\n";
  }
  os << llvm::formatv("  left unfused ({0}):\n", r.unfused.size());
  for (const auto &u : r.unfused)
    os << "    " << u.op
       << (u.node.empty() ? std::string() : " at '" + u.node + "'") << ": "
       << u.reason << "\n";
}
