//===- FormKvCache.cpp - past/present concats into in-place cache appends -===//
//
// Every exporter writes one layer's KV cache the same way: the graph takes
// the past keys and values as tensors [B, Hkv, P, D], concatenates the new
// ones after them along the sequence axis and returns the result as the
// present, which the next step passes back in. Run as written, each step
// copies the whole cache (and attention, which reads BSHD, transposes it
// once more).
//
// This pass gives such a layer one `!kiln.kv_cache` argument and result
// instead of its four tensors: the new keys and values are written with
// `kiln.kv_cache_append` (in place: the runtime owns the storage) and the
// attention reads `cache(...)` directly. The ONNX tensors are not lost: the
// cache argument keeps the past tensors' attributes and types under
// `kiln.cache_io`, and the result the presents', so the compiler still lists
// past_key_values.N.key etc. as the artifact's inputs and outputs (the
// runtime fills the cache from them, or generation binds its own).
//
// A layer is converted only when nothing else reads its tensors: the past
// only by the concat (and shape_of, which the cache answers), the present
// only by the return and by BSHD transposes that feed attention as its keys
// or values. Windowed caches (a fixed capacity compacted by the graph) and
// anything else stay tensors.
//
//===----------------------------------------------------------------------===//

#include "Match.h"
#include "kiln/Passes/Passes.h"

#include "llvm/ADT/BitVector.h"
#include "llvm/ADT/SetVector.h"

namespace mlir::kiln {
#define GEN_PASS_DEF_FORMKVCACHEPASS
#include "kiln/Passes/Passes.h.inc"
} // namespace mlir::kiln

using namespace mlir;
using namespace mlir::kiln;
using namespace mlir::kiln::match;

namespace {

constexpr int64_t kBshd[] = {0, 2, 1, 3};
constexpr llvm::StringLiteral kIoIndex = "kiln.io_index";

/// One layer's KV tensors as the function declares them.
struct LayerIo {
  int64_t layer = -1;
  BlockArgument pastKey, pastValue;
  int presentKey = -1, presentValue = -1; // result indices
};

/// What converting a layer rewrites.
struct LayerPlan {
  ConcatOp key, value;
  SmallVector<AttentionOp> attentions;
  SmallVector<ShapeOfOp> keyShapes, valueShapes; // of the pasts
  SmallVector<ShapeOfOp> presentShapes;           // of the presents
  /// The append goes after this op (the later of the new keys' and values'
  /// definitions; null: at the top).
  Operation *after = nullptr;
  KvCacheType type;
};

bool isBshdTranspose(Operation *op) {
  auto t = dyn_cast<TransposeOp>(op);
  return t && t.getPermutation() == ArrayRef<int64_t>(kBshd);
}

/// `kiln.kv = {kind, layer, role}` of an argument or result, when it is a
/// plain (not windowed) KV tensor with that role.
std::optional<std::pair<StringRef, int64_t>> kvRole(DictionaryAttr attrs,
                                                    StringRef role) {
  auto kv = attrs ? attrs.getAs<DictionaryAttr>("kiln.kv") : DictionaryAttr();
  if (!kv)
    return std::nullopt;
  auto r = kv.getAs<StringAttr>("role");
  auto kind = kv.getAs<StringAttr>("kind");
  auto layer = kv.getAs<IntegerAttr>("layer");
  if (!r || r.getValue() != role || !kind || !layer)
    return std::nullopt;
  if (auto w = kv.getAs<IntegerAttr>("window"); w && w.getInt() != 0)
    return std::nullopt;
  return std::make_pair(kind.getValue(), layer.getInt());
}

/// The concat `past ++ new` along the sequence axis of a [B, H, T, D]
/// tensor, or null.
ConcatOp pastConcat(Value past, Operation *user) {
  auto c = dyn_cast<ConcatOp>(user);
  if (!c || c.getInputs().size() != 2 || c.getInputs()[0] != past)
    return ConcatOp();
  auto t = dyn_cast<RankedTensorType>(c.getType());
  if (!t || t.getRank() != 4)
    return ConcatOp();
  int64_t axis = static_cast<int64_t>(c.getAxis());
  if (axis < 0)
    axis += 4;
  return axis == 2 ? c : ConcatOp();
}

/// Checks that layer `io` can use a cache; the reason it cannot otherwise.
std::string planLayer(const LayerIo &io, func::ReturnOp ret, LayerPlan &plan) {
  std::string where = "layer " + std::to_string(io.layer);
  // The pasts: one concat each, plus shape queries.
  for (auto [past, concat, shapes, what] :
       {std::tuple<Value, ConcatOp *, SmallVector<ShapeOfOp> *, StringRef>{
            io.pastKey, &plan.key, &plan.keyShapes, "key"},
        {io.pastValue, &plan.value, &plan.valueShapes, "value"}}) {
    for (Operation *user : past.getUsers()) {
      if (auto s = dyn_cast<ShapeOfOp>(user)) {
        shapes->push_back(s);
        continue;
      }
      ConcatOp c = pastConcat(past, user);
      if (!c || (*concat && *concat != c))
        return where + ": the past " + what.str() + " is read by " +
               user->getName().getStringRef().str() +
               ", not only by one concat along the sequence and shape_of";
      *concat = c;
    }
    if (!*concat)
      return where + ": the past " + what.str() + " is not concatenated";
  }
  if (ret.getOperand(io.presentKey) != plan.key.getResult() ||
      ret.getOperand(io.presentValue) != plan.value.getResult())
    return where + ": the presents are not the concats of the pasts";

  auto kt = cast<RankedTensorType>(plan.key.getType());
  auto vt = cast<RankedTensorType>(plan.value.getType());
  Type et = kt.getElementType();
  if (ShapedType::isDynamic(kt.getDimSize(1)) ||
      ShapedType::isDynamic(kt.getDimSize(3)) ||
      ShapedType::isDynamic(vt.getDimSize(3)) ||
      kt.getDimSize(1) != vt.getDimSize(1) || vt.getElementType() != et ||
      !(et.isF32() || et.isF16() || et.isBF16()))
    return where + ": the presents are not f32/f16/bf16 [B, H, T, D] with "
                   "static heads and head dims";
  if (!plan.valueShapes.empty() && kt.getDimSize(3) != vt.getDimSize(3))
    return where + ": shape_of reads a past value whose head dim differs from "
                   "the key's";
  plan.type = KvCacheType::get(ret.getContext(), KvLayout::contiguous, 0, et,
                               kt.getDimSize(1), kt.getDimSize(3),
                               vt.getDimSize(3), QuantAttr());

  // The presents: returned once, and otherwise only transposed to BSHD for
  // attention (keys as keys, values as values, of the same attention).
  llvm::SetVector<Operation *> attentions;
  for (auto [concat, isKey] : {std::pair<ConcatOp, bool>{plan.key, true},
                               {plan.value, false}}) {
    for (OpOperand &use : concat->getUses()) {
      Operation *user = use.getOwner();
      if (user == ret.getOperation()) {
        int index = isKey ? io.presentKey : io.presentValue;
        if (int(use.getOperandNumber()) != index)
          return where + ": a present is returned twice";
        continue;
      }
      if (auto shape = dyn_cast<ShapeOfOp>(user)) {
        if (!isKey && kt.getDimSize(3) != vt.getDimSize(3))
          return where + ": shape_of reads a present value whose head dim "
                         "differs from the key's";
        plan.presentShapes.push_back(shape);
        continue;
      }
      if (!isBshdTranspose(user))
        return where + ": the present is read by " +
               user->getName().getStringRef().str() +
               ", not only by attention";
      for (Operation *reader : user->getUsers()) {
        auto a = dyn_cast<AttentionOp>(reader);
        Value mine = isKey ? (a ? a.getKey() : Value())
                           : (a ? a.getValue() : Value());
        if (!a || mine != user->getResult(0) ||
            (a.getAttnMask() == user->getResult(0)))
          return where + ": the transposed present is read by " +
                 reader->getName().getStringRef().str() +
                 ", not as attention's keys or values";
        attentions.insert(a);
      }
    }
  }
  if (attentions.empty())
    return where + ": no attention reads the cache";
  // The append needs both new tensors and must precede every reader.
  Operation *dk = plan.key.getInputs()[1].getDefiningOp();
  Operation *dv = plan.value.getInputs()[1].getDefiningOp();
  plan.after = !dk ? dv : !dv ? dk : dk->isBeforeInBlock(dv) ? dv : dk;
  auto ready = [&](Operation *reader) {
    return !plan.after || plan.after->isBeforeInBlock(reader);
  };
  if (!llvm::all_of(attentions, ready) ||
      !llvm::all_of(plan.presentShapes,
                    [&](ShapeOfOp s) { return ready(s.getOperation()); }))
    return where + ": a present is read before both new keys and values exist";
  for (Operation *op : attentions) {
    auto a = cast<AttentionOp>(op);
    auto kd = def<TransposeOp>(a.getKey()), vd = def<TransposeOp>(a.getValue());
    if (!kd || !vd || kd.getInput() != plan.key.getResult() ||
        vd.getInput() != plan.value.getResult())
      return where + ": an attention reads the key cache with other values";
    plan.attentions.push_back(a);
  }
  return "";
}

/// BSHD view of a [B, H, S, D] tensor.
Value toBshd(OpBuilder &b, Location loc, Value v) {
  auto t = cast<RankedTensorType>(v.getType());
  auto type = t.clone({t.getDimSize(0), t.getDimSize(2), t.getDimSize(1),
                       t.getDimSize(3)});
  return TransposeOp::create(b, loc, type, v, b.getDenseI64ArrayAttr(kBshd));
}

DictionaryAttr cacheIo(MLIRContext *ctx, DictionaryAttr keyAttrs, Type keyType,
                       DictionaryAttr valueAttrs, Type valueType) {
  Builder b(ctx);
  auto orEmpty = [&](DictionaryAttr d) { return d ? d : b.getDictionaryAttr({}); };
  return b.getDictionaryAttr(
      {b.getNamedAttr("key", orEmpty(keyAttrs)),
       b.getNamedAttr("key_type", TypeAttr::get(keyType)),
       b.getNamedAttr("value", orEmpty(valueAttrs)),
       b.getNamedAttr("value_type", TypeAttr::get(valueType))});
}

/// The layers whose KV tensors `func` declares (kiln.kv roles past and
/// present), by layer; `windowed` collects windowed layers' past keys.
std::map<int64_t, LayerIo> collectLayers(func::FuncOp func,
                                         SmallVector<BlockArgument> *windowed) {
  std::map<int64_t, LayerIo> layers;
  for (BlockArgument arg : func.getArguments()) {
    DictionaryAttr attrs = func.getArgAttrDict(arg.getArgNumber());
    if (auto kv = kvRole(attrs, "past")) {
      LayerIo &io = layers[kv->second];
      io.layer = kv->second;
      (kv->first == "key" ? io.pastKey : io.pastValue) = arg;
    } else if (auto kvw = attrs ? attrs.getAs<DictionaryAttr>("kiln.kv")
                                : DictionaryAttr();
               windowed && kvw && kvw.get("window") &&
               kvw.getAs<StringAttr>("kind") &&
               kvw.getAs<StringAttr>("kind").getValue() == "key") {
      windowed->push_back(arg);
    }
  }
  for (unsigned i = 0; i < func.getNumResults(); ++i)
    if (auto kv = kvRole(func.getResultAttrDict(i), "present")) {
      LayerIo &io = layers[kv->second];
      io.layer = kv->second;
      (kv->first == "key" ? io.presentKey : io.presentValue) = int(i);
    }
  return layers;
}

struct FormKvCachePass
    : public kiln::impl::FormKvCachePassBase<FormKvCachePass> {
  using FormKvCachePassBase::FormKvCachePassBase;
  void runOnOperation() override {
    func::FuncOp func = getOperation();
    if (!func.getBody().hasOneBlock())
      return;
    Block &body = func.getBody().front();
    auto ret = dyn_cast<func::ReturnOp>(body.getTerminator());
    if (!ret)
      return;
    MLIRContext *ctx = &getContext();

    std::map<int64_t, LayerIo> layers = collectLayers(func, nullptr);
    if (layers.empty())
      return;

    // Every argument and result remembers its position in the source
    // model, so the artifact lists a cache's tensors where they were.
    Builder ib(ctx);
    auto indexed = [&](DictionaryAttr attrs, unsigned i) {
      NamedAttrList list(attrs);
      if (!list.get(kIoIndex))
        list.set(kIoIndex, ib.getI64IntegerAttr(i));
      return list.getDictionary(ctx);
    };
    for (unsigned i = 0; i < func.getNumArguments(); ++i)
      func.setArgAttrs(i, indexed(func.getArgAttrDict(i), i));
    for (unsigned i = 0; i < func.getNumResults(); ++i)
      func.setResultAttrs(i, indexed(func.getResultAttrDict(i), i));
    SmallVector<Attribute> argAttrs(func.getNumArguments());
    for (unsigned i = 0; i < func.getNumArguments(); ++i)
      argAttrs[i] = func.getArgAttrDict(i);
    SmallVector<Value> results(ret.getOperands());
    SmallVector<Attribute> resultAttrs(func.getNumResults());
    for (unsigned i = 0; i < func.getNumResults(); ++i)
      resultAttrs[i] = func.getResultAttrDict(i);
    llvm::BitVector dropResults(results.size());
    SmallVector<BlockArgument> dropArgs;
    // New cache arguments go after the existing ones, then take the past
    // key's place when the pasts are erased.
    SmallVector<std::pair<unsigned, BlockArgument>> placed;

    for (auto &[layer, io] : layers) {
      if (!io.pastKey || !io.pastValue || io.presentKey < 0 ||
          io.presentValue < 0)
        continue;
      LayerPlan plan;
      std::string why = planLayer(io, ret, plan);
      if (!why.empty()) {
        if (verbose)
          mlir::emitRemark(io.pastKey.getLoc()) << "KV cache not formed: " << why;
        continue;
      }
      // The cache argument, with the past tensors' attributes and types.
      Location argLoc = io.pastKey.getLoc();
      BlockArgument cache = body.addArgument(plan.type, argLoc);
      Builder b(ctx);
      auto kvAttr = [&](StringRef role) {
        return b.getNamedAttr(
            "kiln.kv",
            b.getDictionaryAttr({b.getNamedAttr("layer", b.getI64IntegerAttr(layer)),
                                 b.getNamedAttr("role", b.getStringAttr(role))}));
      };
      argAttrs.push_back(b.getDictionaryAttr(
          {kvAttr("cache"),
           b.getNamedAttr("kiln.cache_io",
                          cacheIo(ctx, func.getArgAttrDict(io.pastKey.getArgNumber()),
                                  io.pastKey.getType(),
                                  func.getArgAttrDict(io.pastValue.getArgNumber()),
                                  io.pastValue.getType()))}));
      placed.push_back({io.pastKey.getArgNumber(), cache});

      // Shape queries of the pasts: the cache's [B, T, H, D] permuted back,
      // computed at the top (before the append).
      OpBuilder top = OpBuilder::atBlockBegin(&body);
      Value perm;
      for (ShapeOfOp s : llvm::concat<ShapeOfOp>(plan.keyShapes, plan.valueShapes)) {
        if (!perm)
          perm = arith::ConstantOp::create(
              top, s.getLoc(),
              DenseElementsAttr::get(RankedTensorType::get({4}, top.getI64Type()),
                                     ArrayRef<int64_t>(kBshd)));
        Value shape = ShapeOfOp::create(top, s.getLoc(), s.getType(), cache);
        Value permuted = GatherOp::create(top, s.getLoc(), s.getType(), shape,
                                          perm, top.getI64IntegerAttr(0));
        s.replaceAllUsesWith(permuted);
        s.erase();
      }

      // The append, as soon as both new tensors exist.
      OpBuilder at = OpBuilder::atBlockBegin(&body);
      if (plan.after)
        at.setInsertionPointAfter(plan.after);
      Location loc = fusionLoc(ctx, {plan.key.getLoc(), plan.value.getLoc()});
      Value k = toBshd(at, plan.key.getLoc(), plan.key.getInputs()[1]);
      Value v = toBshd(at, plan.value.getLoc(), plan.value.getInputs()[1]);
      Value appended = KvCacheAppendOp::create(at, loc, plan.type, cache, k, v,
                                               Value(), Value());
      // Shape queries of the presents: the appended cache's, permuted.
      for (ShapeOfOp s : plan.presentShapes) {
        if (!perm)
          perm = arith::ConstantOp::create(
              top, s.getLoc(),
              DenseElementsAttr::get(RankedTensorType::get({4}, top.getI64Type()),
                                     ArrayRef<int64_t>(kBshd)));
        Value shape = ShapeOfOp::create(at, s.getLoc(), s.getType(), appended);
        Value permuted = GatherOp::create(at, s.getLoc(), s.getType(), shape,
                                          perm, at.getI64IntegerAttr(0));
        s.replaceAllUsesWith(permuted);
        s.erase();
      }
      for (AttentionOp a : plan.attentions) {
        OpBuilder ab(a);
        auto fresh = AttentionOp::create(
            ab, a.getLoc(), a.getType(), a.getQuery(), Value(), Value(),
            appended, a.getAttnMask(), a.getTreeMask(), a.getSparseIndex(),
            a.getMaskAttr(), a.getScaleAttr(), a.getSoftcapAttr(),
            a.getSparsityAttr());
        Operation *tk = a.getKey().getDefiningOp();
        Operation *tv = a.getValue().getDefiningOp();
        a.replaceAllUsesWith(fresh.getResult());
        a.erase();
        for (Operation *t : {tk, tv})
          if (t && t->use_empty())
            t->erase();
      }

      // One cache result in the present key's place (re-read: the shape
      // rewrites above may have replaced returned values).
      results.assign(ret.getOperands().begin(), ret.getOperands().end());
      results[io.presentKey] = appended;
      results[io.presentValue] = appended; // dropped below
      resultAttrs[io.presentKey] = b.getDictionaryAttr(
          {kvAttr("cache"),
           b.getNamedAttr("kiln.cache_io",
                          cacheIo(ctx, func.getResultAttrDict(io.presentKey),
                                  plan.key.getType(),
                                  func.getResultAttrDict(io.presentValue),
                                  plan.value.getType()))});
      dropResults.set(io.presentValue);
      ret->setOperands(results);
      plan.key.erase();
      plan.value.erase();
      dropArgs.push_back(io.pastKey);
      dropArgs.push_back(io.pastValue);
      ++numFormed;
    }
    if (dropArgs.empty())
      return;

    // Results: the converted layers' present values go.
    results.assign(ret.getOperands().begin(), ret.getOperands().end());
    SmallVector<Value> keptResults;
    SmallVector<Attribute> keptResultAttrs;
    for (unsigned i = 0; i < results.size(); ++i)
      if (!dropResults.test(i)) {
        keptResults.push_back(results[i]);
        keptResultAttrs.push_back(resultAttrs[i]);
      }
    ret->setOperands(keptResults);

    // Arguments: each cache moves to its past key's place, the pasts go.
    unsigned oldCount = func.getFunctionType().getNumInputs();
    SmallVector<std::pair<BlockArgument, Attribute>> order;
    for (unsigned i = 0; i < oldCount; ++i) {
      for (auto &[pos, cache] : placed)
        if (pos == i)
          order.push_back({cache, argAttrs[cache.getArgNumber()]});
      BlockArgument arg = body.getArgument(i);
      if (!llvm::is_contained(dropArgs, arg))
        order.push_back({arg, argAttrs[i]});
    }
    // Rebuild the block's argument list in that order.
    SmallVector<Type> argTypes;
    SmallVector<Location> argLocs;
    for (auto &[arg, attr] : order) {
      argTypes.push_back(arg.getType());
      argLocs.push_back(arg.getLoc());
    }
    unsigned total = body.getNumArguments();
    SmallVector<BlockArgument> fresh;
    for (auto [t, l] : llvm::zip(argTypes, argLocs))
      fresh.push_back(body.addArgument(t, l));
    for (auto [i, entry] : llvm::enumerate(order))
      entry.first.replaceAllUsesWith(fresh[i]);
    llvm::BitVector erase(body.getNumArguments());
    erase.set(0, total);
    body.eraseArguments(erase);

    SmallVector<Type> resultTypes;
    for (Value r : keptResults)
      resultTypes.push_back(r.getType());
    func.setType(FunctionType::get(ctx, argTypes, resultTypes));
    SmallVector<DictionaryAttr> newArgAttrs, newResultAttrs;
    auto dict = [&](Attribute a) {
      return a ? cast<DictionaryAttr>(a) : DictionaryAttr::get(ctx);
    };
    for (auto &[arg, attr] : order)
      newArgAttrs.push_back(dict(attr));
    for (Attribute a : keptResultAttrs)
      newResultAttrs.push_back(dict(a));
    func.setAllArgAttrs(newArgAttrs);
    func.setAllResultAttrs(newResultAttrs);
  }
};

} // namespace

std::vector<std::pair<std::string, std::string>>
mlir::kiln::explainTensorKvLayers(func::FuncOp func) {
  std::vector<std::pair<std::string, std::string>> out;
  if (!func.getBody().hasOneBlock())
    return out;
  auto ret = dyn_cast<func::ReturnOp>(func.getBody().front().getTerminator());
  if (!ret)
    return out;
  auto nameOf = [&](BlockArgument arg) {
    auto n = func.getArgAttrOfType<StringAttr>(arg.getArgNumber(), "kiln.name");
    return n ? n.str() : "argument " + std::to_string(arg.getArgNumber());
  };
  SmallVector<BlockArgument> windowed;
  for (auto &[layer, io] : collectLayers(func, &windowed)) {
    if (!io.pastKey || !io.pastValue || io.presentKey < 0 || io.presentValue < 0) {
      out.push_back({io.pastKey ? nameOf(io.pastKey) : "layer " + std::to_string(layer),
                     "layer " + std::to_string(layer) +
                         " lacks a past or present key or value"});
      continue;
    }
    LayerPlan plan;
    std::string why = planLayer(io, ret, plan);
    if (!why.empty())
      out.push_back({nameOf(io.pastKey), why});
  }
  for (BlockArgument arg : windowed)
    out.push_back({nameOf(arg), "a windowed cache of fixed capacity, which the "
                                "graph itself compacts"});
  return out;
}
