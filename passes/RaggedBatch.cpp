//===- RaggedBatch.cpp - cached graphs that run ragged batches -----------===//
//
// Continuous batching runs one step over the new tokens of many sequences
// at once: a prefill chunk of one, a decode token of another, flattened as
// a [1, N] batch with no padding. Everything per token (embedding, norms,
// projections, MLPs, the LM head) already works on such a batch; what does
// not is what the exporters derive from the batch's shape: positions
// computed from the mask or the cache length, and the padding / causal
// masks built from `attention_mask`. This pass makes ropes read
// `position_ids` and drops the masks, leaving masking to attention's kind,
// which the runtime applies per sequence from the lengths it binds with the
// caches.
//
//===----------------------------------------------------------------------===//

#include "kiln/Passes/Passes.h"

#include "mlir/IR/Matchers.h"
#include "llvm/ADT/STLExtras.h"

namespace mlir::kiln {
#define GEN_PASS_DEF_RAGGEDBATCHPASS
#include "kiln/Passes/Passes.h.inc"
} // namespace mlir::kiln

using namespace mlir;
using namespace mlir::kiln;

namespace {

/// The argument named `name`, or null.
BlockArgument argNamed(func::FuncOp func, StringRef name) {
  for (BlockArgument a : func.getArguments())
    if (auto n = func.getArgAttrOfType<StringAttr>(a.getArgNumber(), "kiln.name"))
      if (n.getValue() == name)
        return a;
  return nullptr;
}

/// Looks through reshapes.
Value skipReshapes(Value v) {
  while (auto r = v.getDefiningOp<ReshapeOp>())
    v = r.getInput();
  return v;
}

bool isIntConstant(Value v, int64_t want) {
  DenseIntElementsAttr a;
  if (!matchPattern(v, m_Constant(&a)) || !a.isSplat())
    return false;
  return a.getSplatValue<APInt>().getSExtValue() == want;
}

/// Whether `v` is computed from `allowed` arguments, constants and shapes
/// alone (shape_of reads no data).
bool onlyFrom(Value v, const llvm::SmallPtrSetImpl<Value> &allowed) {
  SmallVector<Value> work{v};
  llvm::SmallPtrSet<Value, 32> seen;
  while (!work.empty()) {
    Value x = work.pop_back_val();
    if (!seen.insert(x).second)
      continue;
    if (isa<BlockArgument>(x)) {
      if (!allowed.contains(x))
        return false;
      continue;
    }
    Operation *op = x.getDefiningOp();
    if (isa<ShapeOfOp>(op) || op->hasTrait<OpTrait::ConstantLike>())
      continue;
    if (!isPure(op) || op->getNumRegions() != 0)
      return false;
    for (Value o : op->getOperands())
      work.push_back(o);
  }
  return true;
}

/// attn_mask = compare le (range(0, n, 1) as [1, 1, 1, K], positions as
/// [B, 1, S, 1]) with `positions` the query rope's: causal by position.
bool isCausalByPosition(Value mask, Value positions) {
  auto cmp = mask.getDefiningOp<CompareOp>();
  if (!cmp || !positions)
    return false;
  Value keys = skipReshapes(cmp.getLhs()), queries = skipReshapes(cmp.getRhs());
  if (cmp.getPredicate() == ComparePredicate::ge)
    std::swap(keys, queries);
  else if (cmp.getPredicate() != ComparePredicate::le)
    return false;
  auto range = keys.getDefiningOp<RangeOp>();
  return range && queries == positions && isIntConstant(range.getStart(), 0) &&
         isIntConstant(range.getDelta(), 1);
}

struct RaggedBatchPass
    : public mlir::kiln::impl::RaggedBatchPassBase<RaggedBatchPass> {
  void runOnOperation() override {
    func::FuncOp func = getOperation();
    if (func.isExternal())
      return;
    auto fail = [&](Operation *op, const Twine &why) {
      op->emitError() << "cannot run ragged batches: " << why;
      signalPassFailure();
    };
    BlockArgument ids = argNamed(func, "input_ids");
    if (!ids)
      return fail(func, "no input_ids argument");
    BlockArgument mask = argNamed(func, "attention_mask");
    BlockArgument positions = argNamed(func, "position_ids");

    SmallVector<AttentionOp> attentions;
    bool bad = false;
    func.walk([&](AttentionOp op) {
      attentions.push_back(op);
      if (!op.getCache() && !bad) {
        bad = true;
        fail(op, "attention reads kv(...) tensors, not a !kiln.kv_cache (every "
                 "layer needs an in-place cache)");
      }
    });
    if (bad)
      return;
    if (attentions.empty())
      return fail(func, "no attention");

    // Each attention's mask, decided before positions change.
    llvm::SmallPtrSet<Value, 4> padding;
    if (mask)
      padding.insert(mask);
    SmallVector<std::pair<AttentionOp, MaskKind>> masks;
    for (AttentionOp op : attentions) {
      Value m = op.getAttnMask();
      if (op.getTreeMask() || !op.getSparseIndex().empty())
        return fail(op, "tree and sparse attention are not ragged");
      MaskKind kind = op.getMask().getKind();
      if (!m) {
        if (kind != MaskKind::causal && kind != MaskKind::sliding_window)
          return fail(op, "attention without a causal mask");
        masks.push_back({op, kind});
        continue;
      }
      if ((kind == MaskKind::causal || kind == MaskKind::sliding_window) &&
          onlyFrom(m, padding)) {
        masks.push_back({op, kind});
        continue;
      }
      auto rope = op.getQuery().getDefiningOp<RopeOp>();
      if (kind == MaskKind::none && rope &&
          isCausalByPosition(m, rope.getPositions())) {
        masks.push_back({op, MaskKind::causal});
        continue;
      }
      return fail(op, "its attn_mask is neither padding (computed from "
                      "attention_mask alone) nor causal by position");
    }

    // Positions: one position_ids argument for every rope that takes them.
    SmallVector<RopeOp> ropes;
    func.walk([&](RopeOp op) {
      if (op.getPositions() && op.getPositions() != positions)
        ropes.push_back(op);
    });
    if (!ropes.empty() && !positions) {
      MLIRContext *ctx = &getContext();
      Type type = RankedTensorType::get({ShapedType::kDynamic, ShapedType::kDynamic},
                                        IntegerType::get(ctx, 64));
      int64_t next = 0;
      for (unsigned i = 0; i < func.getNumArguments(); ++i)
        if (auto idx = func.getArgAttrOfType<IntegerAttr>(i, "kiln.io_index"))
          next = std::max(next, idx.getInt() + 1);
      unsigned at = func.getNumArguments();
      if (failed(func.insertArgument(at, type, {}, func.getLoc())))
        return fail(func, "cannot add a position_ids argument");
      Builder b(ctx);
      func.setArgAttr(at, "kiln.name", b.getStringAttr("position_ids"));
      func.setArgAttr(at, "kiln.io_index", b.getI64IntegerAttr(next));
      func.setArgAttr(at, "kiln.dims",
                      b.getStrArrayAttr({"batch_size", "sequence_length"}));
      positions = func.getArgument(at);
    }
    for (RopeOp op : ropes)
      op.getPositionsMutable().assign(positions);
    for (auto [op, kind] : masks) {
      op.getAttnMaskMutable().clear();
      MaskAttr old = op.getMask();
      op.setMaskAttr(MaskAttr::get(&getContext(), kind, old.getWindow(), old.getSink()));
    }

    // A cache's shape reads [sequences, heads, length, dim], but the tokens
    // of a ragged batch are one row: exporters that take the batch size
    // from the past (torch dynamo's GPT-2 reshapes input_ids with it) must
    // read it from input_ids instead.
    SmallVector<ShapeOfOp> cacheShapes;
    func.walk([&](ShapeOfOp op) {
      if (isa<KvCacheType>(op.getInput().getType()) && !op.use_empty())
        cacheShapes.push_back(op);
    });
    for (ShapeOfOp op : cacheShapes) {
      OpBuilder b(op->getContext());
      b.setInsertionPointAfter(op);
      Location loc = op.getLoc();
      auto i64 = b.getI64Type();
      auto one = RankedTensorType::get({1}, i64);
      auto rest = RankedTensorType::get({3}, i64);
      auto idsShape = b.create<ShapeOfOp>(
          loc, RankedTensorType::get({2}, i64), ids);
      auto batch = b.create<SliceOp>(loc, one, idsShape, b.getDenseI64ArrayAttr({0}),
                                     b.getDenseI64ArrayAttr({0}), b.getDenseI64ArrayAttr({1}),
                                     b.getDenseI64ArrayAttr({1}));
      auto tail = b.create<SliceOp>(loc, rest, op.getResult(), b.getDenseI64ArrayAttr({0}),
                                    b.getDenseI64ArrayAttr({1}), b.getDenseI64ArrayAttr({4}),
                                    b.getDenseI64ArrayAttr({1}));
      auto shape = b.create<ConcatOp>(loc, op.getType(), ValueRange{batch, tail},
                                      b.getI64IntegerAttr(0));
      op.getResult().replaceAllUsesExcept(shape.getResult(), tail.getOperation());
    }

    // What the masks and derived positions read is dead now.
    // (The body is one block; walking it backwards erases users first.)
    for (Operation &op : llvm::make_early_inc_range(llvm::reverse(func.getBody().front())))
      if (op.use_empty() && op.getNumResults() > 0 && isPure(&op))
        op.erase();
    // Inputs other than ids and positions may still be read for shapes only.
    for (BlockArgument a : func.getArguments()) {
      if (a == ids || a == positions || isa<KvCacheType>(a.getType()))
        continue;
      for (Operation *user : a.getUsers())
        if (!isa<ShapeOfOp>(user))
          return fail(user, "input " +
                                func.getArgAttrOfType<StringAttr>(a.getArgNumber(), "kiln.name")
                                    .getValue() +
                                " is still read");
    }
    func->setAttr("kiln.ragged", UnitAttr::get(&getContext()));
  }
};

} // namespace
