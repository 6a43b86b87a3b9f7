//===- Compile.cpp - kiln IR -> .kiln artifact ----------------------------===//
//
// Walks the compiled function once, numbering every SSA value, turning each
// kiln op into a launch of the target's kernel, recording liveness for the
// memory plan and collecting weights and constants; then writes the manifest
// (docs/artifact-format.md) and the weights.
//
//===----------------------------------------------------------------------===//

#include "kiln/Compiler/Compile.h"

#include "cpu/hadamard.h"
#include "cpu/half.h"
#include "cpu/kernel.h"
#include "cpu/quantize.h"
#include "kiln/Compiler/ArtifactWriter.h"
#include "kiln/Compiler/MemoryPlan.h"
#ifdef KILN_HAVE_CUDA
#include "kiln/Codegen/Cuda.h"
#endif
#include "kiln/Dialect/Kiln/IR/KilnOps.h"
#include "kiln/Support/DType.h"
#include "kiln/runtime/artifact_format.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/Location.h"
#include "llvm/ADT/DenseMap.h"
#include "llvm/ADT/StringMap.h"
#include "llvm/ADT/TypeSwitch.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"

#include <chrono>
#include <numeric>

using namespace mlir;
using namespace mlir::kiln;
namespace json = llvm::json;

namespace {

/// Weights and constants are aligned so any tensor can be used in place by
/// vectorized kernels and by mmap-backed loads.
constexpr uint64_t kWeightAlignment = 64;
/// Weights sections start on a 64 KiB boundary (mmap granularity on every
/// platform we target), so the mapped file hands out tensors in place.
constexpr unsigned kWeightSectionAlignmentLog2 = 16;
/// Arena offsets are aligned for the widest vector loads.
constexpr int64_t kArenaAlignment = 64;
constexpr int kManifestSchemaVersion = 1;

llvm::Error err(const llvm::Twine &message) {
  return llvm::createStringError(llvm::inconvertibleErrorCode(), message);
}

/// The ONNX node name an op came from, or "".
std::string nodeName(Location loc) {
  std::string found;
  loc->walk([&](Location l) {
    if (auto name = dyn_cast<NameLoc>(l)) {
      found = name.getName().str();
      return WalkResult::interrupt();
    }
    return WalkResult::advance();
  });
  return found;
}

std::string describe(Operation *op) {
  std::string node = nodeName(op->getLoc());
  std::string s = op->getName().getStringRef().str();
  if (!node.empty())
    s += " (ONNX node '" + node + "')";
  return s;
}

json::Array shapeJson(ArrayRef<int64_t> shape) {
  json::Array a;
  for (int64_t d : shape)
    a.push_back(ShapedType::isDynamic(d) ? int64_t(-1) : d);
  return a;
}

void alignString(std::string &s, uint64_t alignment) {
  s.resize((s.size() + alignment - 1) / alignment * alignment, '\0');
}

/// A dense constant's bytes in the runtime's storage layout (little-endian;
/// i1 one byte per element; 4-bit types packed along the innermost dim).
llvm::Expected<std::string> denseBytes(DenseElementsAttr attr, Operation *op) {
  auto type = cast<RankedTensorType>(attr.getType());
  std::string why;
  FailureOr<uint64_t> size = getStorageSizeInBytes(type, &why);
  if (failed(size))
    return err(describe(op) + ": " + why);
  std::string out(*size, '\0');
  Type et = type.getElementType();
  int64_t n = type.getNumElements();
  auto put = [&](uint64_t at, const llvm::APInt &bits, unsigned bytes) {
    for (unsigned b = 0; b < bytes; ++b)
      out[at * bytes + b] = char(bits.extractBitsAsZExtValue(8, 8 * b));
  };
  if (auto ft = dyn_cast<FloatType>(et)) {
    unsigned bytes = ft.getWidth() / 8;
    int64_t i = 0;
    for (const llvm::APFloat &v : attr.getValues<llvm::APFloat>())
      put(i++, v.bitcastToAPInt(), bytes);
    return out;
  }
  auto it = dyn_cast<IntegerType>(et);
  if (!it)
    return err(describe(op) + ": constant of unsupported element type");
  unsigned width = it.getWidth();
  int64_t inner = type.getRank() ? type.getShape().back() : 1;
  int64_t i = 0;
  for (const llvm::APInt &v : attr.getValues<llvm::APInt>()) {
    if (width == 1) {
      out[i] = v.isZero() ? 0 : 1;
    } else if (width == 4) {
      int64_t row = i / std::max<int64_t>(inner, 1), col = i % std::max<int64_t>(inner, 1);
      uint64_t at = row * ((inner + 1) / 2) + col / 2;
      uint8_t nib = uint8_t(v.getZExtValue() & 0xF);
      out[at] = char(uint8_t(out[at]) | (col % 2 ? nib << 4 : nib));
    } else {
      put(i, v, width / 8);
    }
    ++i;
  }
  (void)n;
  return out;
}

/// A kiln.elementwise body as the register program of artifact_format.h
/// (kiln_ew_opcode_t): "code", "constants", "result".
llvm::Error encodeElementwiseBody(ElementwiseOp op, json::Object &attrs) {
  Block &body = op.getBody().front();
  llvm::DenseMap<Value, int64_t> reg;
  for (BlockArgument a : body.getArguments())
    reg[a] = a.getArgNumber();
  int64_t next = body.getNumArguments();
  json::Array code, constants;
  auto operand = [&](Operation &o, unsigned i) -> int64_t {
    return i < o.getNumOperands() ? reg.lookup(o.getOperand(i)) : -1;
  };
  for (Operation &o : body.without_terminator()) {
    int64_t opcode = -1, a = operand(o, 0), b = operand(o, 1);
    if (auto c = dyn_cast<arith::ConstantOp>(o)) {
      opcode = KILN_EW_CONST;
      a = int64_t(constants.size());
      constants.push_back(cast<FloatAttr>(c.getValue()).getValueAsDouble());
    } else if (isa<arith::ExtFOp>(o)) {
      // Widening is exact: the register already holds the value.
      reg[o.getResult(0)] = a;
      continue;
    } else if (auto t = dyn_cast<arith::TruncFOp>(o)) {
      Type to = t.getType();
      if (to.isF32()) {
        reg[o.getResult(0)] = a;
        continue;
      }
      opcode = to.isBF16() ? KILN_EW_ROUND_BF16 : KILN_EW_ROUND_F16;
    } else {
      opcode = llvm::TypeSwitch<Operation *, int64_t>(&o)
                   .Case([](arith::AddFOp) { return KILN_EW_ADD; })
                   .Case([](arith::SubFOp) { return KILN_EW_SUB; })
                   .Case([](arith::MulFOp) { return KILN_EW_MUL; })
                   .Case([](arith::DivFOp) { return KILN_EW_DIV; })
                   .Case([](arith::MaximumFOp) { return KILN_EW_MAX; })
                   .Case([](arith::MinimumFOp) { return KILN_EW_MIN; })
                   .Case([](math::PowFOp) { return KILN_EW_POW; })
                   .Case([](arith::NegFOp) { return KILN_EW_NEG; })
                   .Case([](math::AbsFOp) { return KILN_EW_ABS; })
                   .Case([](math::ExpOp) { return KILN_EW_EXP; })
                   .Case([](math::LogOp) { return KILN_EW_LOG; })
                   .Case([](math::SqrtOp) { return KILN_EW_SQRT; })
                   .Case([](math::RsqrtOp) { return KILN_EW_RSQRT; })
                   .Case([](math::TanhOp) { return KILN_EW_TANH; })
                   .Case([](math::SinOp) { return KILN_EW_SIN; })
                   .Case([](math::CosOp) { return KILN_EW_COS; })
                   .Case([](math::ErfOp) { return KILN_EW_ERF; })
                   .Default([](Operation *) { return int64_t(-1); });
      if (opcode < 0)
        return err(describe(op) + ": body op " + o.getName().getStringRef() +
                   " has no elementwise opcode");
    }
    // A value of a narrower float type than f32 is rounded as the op
    // produces it, so the program sees what the body computes.
    for (int64_t x : {opcode, next, a, b})
      code.push_back(x);
    reg[o.getResult(0)] = next++;
    Type rt = o.getResult(0).getType();
    if ((rt.isBF16() || rt.isF16()) && !isa<arith::TruncFOp>(o) &&
        opcode != KILN_EW_CONST) {
      for (int64_t x : {int64_t(rt.isBF16() ? KILN_EW_ROUND_BF16 : KILN_EW_ROUND_F16),
                        next, next - 1, int64_t(-1)})
        code.push_back(x);
      reg[o.getResult(0)] = next++;
    }
  }
  attrs["code"] = std::move(code);
  attrs["constants"] = std::move(constants);
  attrs["result"] = reg.lookup(cast<YieldOp>(body.getTerminator()).getValue());
  return llvm::Error::success();
}

/// Encodes an op's inherent attributes for its kernel (names as in ODS).
llvm::Error encodeAttrs(Operation *op, json::Object &attrs) {
  if (auto ew = dyn_cast<ElementwiseOp>(op))
    if (auto e = encodeElementwiseBody(ew, attrs))
      return e;
  for (NamedAttribute na : op->getAttrs()) {
    StringRef name = na.getName().getValue();
    Attribute a = na.getValue();
    if (name == "operandSegmentSizes" || name.starts_with("kiln."))
      continue;
    // Enum attributes are IntegerAttrs that classof cannot tell apart (every
    // kiln enum is an i32 in range), so they are read through the op.
    if (auto r = dyn_cast<ReduceOp>(op); r && name == "kind") {
      attrs[name] = stringifyEnum(r.getKind()).str();
    } else if (auto act = dyn_cast<ActivationOp>(op); act && name == "kind") {
      attrs[name] = stringifyEnum(act.getKind()).str();
    } else if (auto glu = dyn_cast<GluOp>(op); glu && name == "activation") {
      attrs[name] = stringifyEnum(glu.getActivation()).str();
    } else if (auto mlp = dyn_cast<GatedMlpOp>(op); mlp && name == "activation") {
      attrs[name] = stringifyEnum(mlp.getActivation()).str();
    } else if (auto cmp = dyn_cast<CompareOp>(op); cmp && name == "predicate") {
      attrs[name] = stringifyEnum(cmp.getPredicate()).str();
    } else if (auto m = dyn_cast<MaskAttr>(a)) {
      attrs[name] = stringifyEnum(m.getKind()).str();
      attrs[(name + "_window").str()] = m.getWindow();
      attrs[(name + "_sink").str()] = m.getSink();
    } else if (auto s = dyn_cast<SparsityAttr>(a)) {
      attrs[name] = stringifyEnum(s.getFormat()).str();
      attrs["q_block"] = s.getQBlock();
      attrs["kv_block"] = s.getKvBlock();
    } else if (auto b = dyn_cast<BoolAttr>(a)) {
      attrs[name] = b.getValue();
    } else if (auto i = dyn_cast<IntegerAttr>(a)) {
      if (i.getType().isInteger(1))
        attrs[name] = i.getValue().getBoolValue();
      else if (i.getType().isUnsignedInteger())
        attrs[name] = int64_t(i.getValue().getZExtValue());
      else
        attrs[name] = i.getValue().getSExtValue();
    } else if (auto f = dyn_cast<FloatAttr>(a)) {
      attrs[name] = f.getValueAsDouble();
    } else if (isa<UnitAttr>(a)) {
      attrs[name] = true;
    } else if (auto arr = dyn_cast<DenseI64ArrayAttr>(a)) {
      json::Array v;
      for (int64_t x : arr.asArrayRef())
        v.push_back(x);
      attrs[name] = std::move(v);
    } else if (auto s = dyn_cast<StringAttr>(a)) {
      attrs[name] = s.getValue().str();
    } else {
      std::string text;
      llvm::raw_string_ostream os(text);
      a.print(os);
      return err(describe(op) + ": attribute '" + name + "' (" + text +
                 ") has no encoding in the manifest");
    }
  }
  return llvm::Error::success();
}

/// Model metadata the runtime's generation needs, from the config files an
/// exporter leaves next to the model.
struct ModelMeta {
  std::vector<int64_t> eos;
  std::optional<int64_t> bos, pad, maxSeq, vocab;
  std::string source; // which file supplied it
};

void readIds(const json::Value *v, std::vector<int64_t> &out) {
  if (!v)
    return;
  if (auto i = v->getAsInteger()) {
    out.push_back(*i);
  } else if (auto *a = v->getAsArray()) {
    for (const json::Value &x : *a)
      if (auto i = x.getAsInteger())
        out.push_back(*i);
  }
}

void readConfigs(StringRef dir, ModelMeta &meta) {
  auto load = [&](StringRef name) -> std::optional<json::Value> {
    llvm::SmallString<256> path(dir);
    llvm::sys::path::append(path, name);
    auto buf = llvm::MemoryBuffer::getFile(path);
    if (!buf)
      return std::nullopt;
    auto v = json::parse((*buf)->getBuffer());
    if (!v) {
      llvm::consumeError(v.takeError());
      return std::nullopt;
    }
    return std::move(*v);
  };
  // onnxruntime-genai's config.
  if (auto v = load("genai_config.json")) {
    if (auto *m = v->getAsObject() ? v->getAsObject()->getObject("model") : nullptr) {
      readIds(m->get("eos_token_id"), meta.eos);
      if (auto x = m->getInteger("bos_token_id")) meta.bos = *x;
      if (auto x = m->getInteger("pad_token_id")) meta.pad = *x;
      if (auto x = m->getInteger("context_length")) meta.maxSeq = *x;
      if (auto x = m->getInteger("vocab_size")) meta.vocab = *x;
      meta.source = "genai_config.json";
    }
  }
  // Hugging Face config.json and generation_config.json.
  for (StringRef name : {"generation_config.json", "config.json"}) {
    auto v = load(name);
    if (!v || !v->getAsObject())
      continue;
    json::Object &o = *v->getAsObject();
    if (meta.eos.empty())
      readIds(o.get("eos_token_id"), meta.eos);
    if (!meta.bos)
      if (auto x = o.getInteger("bos_token_id")) meta.bos = *x;
    if (!meta.pad)
      if (auto x = o.getInteger("pad_token_id")) meta.pad = *x;
    if (!meta.maxSeq)
      if (auto x = o.getInteger("max_position_embeddings")) meta.maxSeq = *x;
    if (!meta.vocab)
      if (auto x = o.getInteger("vocab_size")) meta.vocab = *x;
    if (meta.source.empty())
      meta.source = name.str();
  }
}

/// The whole compiled form before it is serialized.
struct Compiled {
  json::Object manifest;
  std::string weights; // the artifact's weights section
  std::string params;  // the parameter file's data (WeightMode::External)
  json::Array paramIndex;
  CompileStats stats;
#ifdef KILN_HAVE_CUDA
  std::vector<cuda::KernelSource> cudaKernels; // distinct, in first-use order
#endif
  std::string kernels; // the artifact's kernels section (target cuda)
};

/// One graph input or output for the manifest: name, value, type, the ONNX
/// dimension names and the role generation gives it. `kvPrefix` is "past_"
/// or "present_"; `named` lists the names that are roles of their own.
json::Object ioJson(StringRef name, int value, RankedTensorType type,
                    DictionaryAttr attrs, StringRef defaultRole,
                    StringRef kvPrefix, ArrayRef<StringRef> named) {
  json::Object o{{"name", name.str()},
                 {"value", value},
                 {"dtype", kiln_dtype_name(toRuntimeDType(type.getElementType()))},
                 {"shape", shapeJson(type.getShape())}};
  if (auto dims = attrs ? attrs.getAs<ArrayAttr>("kiln.dims") : ArrayAttr()) {
    json::Array d;
    for (Attribute a : dims)
      d.push_back(cast<StringAttr>(a).str());
    o["dims"] = std::move(d);
  }
  std::string role = defaultRole.str();
  if (auto kv = attrs ? attrs.getAs<DictionaryAttr>("kiln.kv") : DictionaryAttr()) {
    auto kind = kv.getAs<StringAttr>("kind");
    auto layer = kv.getAs<IntegerAttr>("layer");
    if (kind && layer) {
      role = (kvPrefix + kind.getValue()).str();
      o["layer"] = layer.getInt();
      if (auto window = kv.getAs<IntegerAttr>("window"))
        o["window"] = window.getInt();
    }
  } else if (llvm::is_contained(named, name)) {
    role = name.str();
  }
  o["role"] = role;
  return o;
}

class ManifestBuilder {
public:
  ManifestBuilder(ModuleOp module, const CompileOptions &options)
      : module(module), options(options) {}

  llvm::Expected<Compiled> run();

private:
  struct ValueInfo {
    std::string kind; // input, weight, constant, temp, qtensor
    Type type;
    int weight = -1;
    int def = -1, lastUse = -1;
    bool liveOut = false;
    int aliasOf = -1;
    int qData = -1, qScales = -1, qZero = -1;
    Operation *defOp = nullptr;
    bool cacheInput = false; // a kv_cache graph input
  };

  int valueId(Value v) {
    auto it = ids.find(v);
    return it == ids.end() ? -1 : it->second;
  }
  int addValue(Value v, ValueInfo info) {
    int id = int(values.size());
    info.type = v.getType();
    values.push_back(std::move(info));
    ids[v] = id;
    return id;
  }
  void use(int id, int step) {
    ValueInfo &vi = values[id];
    vi.lastUse = std::max(vi.lastUse, step);
    if (vi.kind == "qtensor") {
      for (int c : {vi.qData, vi.qScales, vi.qZero})
        if (c >= 0)
          use(c, step);
    }
  }

  /// `derived`: a parameter whose `bytes` the compiler computed (a
  /// quantized weight), written wherever parameters go.
  llvm::Error addWeight(Operation *op, StringRef name, RankedTensorType type,
                        std::string bytes, bool constant,
                        ExternalStorageAttr storage, int &index,
                        bool derived = false);
  llvm::Error visit(Operation *op);
  /// A concat of stored weights as a packed weight entry; its index, or
  /// nothing when `concat` is not one.
  std::optional<int> addPackedWeight(ConcatOp concat);
  llvm::Error visitQuantize(QuantizeOp op);
  /// kiln-quantize-weights' output: a kiln.quantize (scales from the data)
  /// of weights and constants, evaluated here; the ops that only feed such
  /// quantizes are not visited (their float data is not written).
  void findFoldedQuantizes(func::FuncOp func);
  llvm::Error foldQuantize(QuantizeOp op);
  /// A weight expression's values as floats (row-major) and its shape.
  llvm::Error evalWeight(Value v, std::vector<float> &out, SmallVector<int64_t> &shape,
                         std::string &name);
  llvm::DenseSet<Operation *> foldedQuantizes, foldedOnly;
  llvm::Error finishModelInfo(func::FuncOp func);

  ModuleOp module;
  const CompileOptions &options;
  Compiled out;
  llvm::DenseMap<Value, int> ids;
  std::vector<ValueInfo> values;
  llvm::StringMap<int> weightBySymbol;
  json::Array weights, launches, inputs, outputs;
  int steps = 0;
  json::Object model;
  llvm::StringMap<size_t> cudaKernelByEntry;
  llvm::StringMap<size_t> cudaMissingByOp;

  /// target cuda: the launch's kernel (shared with equal instantiations),
  /// or the reason the op has none, counted for the report.
  void noteCudaKernel(Operation *op, StringRef opName, json::Object &launch) {
    if (options.target != "cuda")
      return;
#ifdef KILN_HAVE_CUDA
    std::string why;
    std::optional<cuda::KernelSource> k = op ? cuda::generateKernel(op, &why) : std::nullopt;
    if (!op)
      why = "no kernel in the CUDA library yet";
    if (!k) {
      auto [it, fresh] =
          cudaMissingByOp.try_emplace(opName, out.stats.cudaMissing.size());
      if (fresh)
        out.stats.cudaMissing.push_back({opName.str(), why});
      ++out.stats.cudaMissing[it->second].launches;
      return;
    }
    auto [it, fresh] = cudaKernelByEntry.try_emplace(k->entry, out.cudaKernels.size());
    if (fresh) {
      CudaKernelStats ks;
      ks.entry = k->entry;
      ks.op = k->op;
      out.stats.cudaKernels.push_back(std::move(ks));
      out.cudaKernels.push_back(std::move(*k));
    }
    ++out.stats.cudaKernels[it->second].launches;
    ++out.stats.cudaLaunches;
    launch["cuda"] = int64_t(it->second);
#endif
  }
};

llvm::Error ManifestBuilder::addWeight(Operation *op, StringRef name,
                               RankedTensorType type, std::string bytes,
                               bool constant, ExternalStorageAttr storage,
                               int &index, bool derived) {
  kiln_dtype_t dt = toRuntimeDType(type.getElementType());
  std::string why;
  FailureOr<uint64_t> size = getStorageSizeInBytes(type, &why);
  if (dt == KILN_DTYPE_INVALID || failed(size))
    return err(describe(op) + ": weight '" + name +
               "' has no runtime storage: " + (why.empty() ? "element type" : why));
  json::Object w{{"name", name.str()},
                 {"dtype", kiln_dtype_name(dt)},
                 {"shape", shapeJson(type.getShape())},
                 {"size", int64_t(*size)},
                 {"kind", constant ? "constant" : "parameter"}};
  bool embed = constant || options.weights == WeightMode::Embed ||
               (derived && options.weights == WeightMode::Reference);
  if (!constant && !derived && !storage && options.weights != WeightMode::External)
    return err("weight '" + name +
               "' has no stored data in the model; compile with "
               "--weights=external and bind a parameter file at load time");
  if (derived && bytes.size() != *size)
    return err(llvm::formatv("weight '{0}': {1} bytes computed for {2} bytes", name,
                             bytes.size(), *size)
                   .str());
  if (!constant && !derived && storage && storage.getLength() != *size)
    return err(llvm::formatv("weight '{0}' stores {1} bytes in '{2}' but its "
                             "type {3} needs {4}",
                             name, storage.getLength(), storage.getLocation(),
                             type, *size)
                   .str());
  std::unique_ptr<llvm::MemoryBuffer> fileData;
  if (!constant && !derived && (embed || options.weights == WeightMode::External)) {
    llvm::SmallString<256> path(options.weightsDir);
    llvm::sys::path::append(path, storage.getLocation());
    auto buf = llvm::MemoryBuffer::getFileSlice(path, storage.getLength(),
                                                storage.getOffset());
    if (!buf)
      return err("cannot read weight '" + name + "' from '" + path + "' at offset " +
                 llvm::Twine(storage.getOffset()) + ": " +
                 buf.getError().message());
    if ((*buf)->getBufferSize() != *size)
      return err("weight '" + name + "': '" + path + "' is truncated");
    fileData = std::move(*buf);
  }
  // Bytes are appended straight from the file buffer: weights are copied
  // once, into the section that is then written out.
  llvm::StringRef data = fileData ? fileData->getBuffer() : llvm::StringRef(bytes);
  if (embed) {
    alignString(out.weights, kWeightAlignment);
    w["location"] = "embedded";
    w["offset"] = int64_t(out.weights.size());
    out.weights += data;
    (constant ? out.stats.constantBytes : out.stats.weightBytes) += *size;
  } else if (options.weights == WeightMode::External) {
    alignString(out.params, kWeightAlignment);
    w["location"] = "params";
    json::Object entry{{"name", name.str()},
                       {"dtype", kiln_dtype_name(dt)},
                       {"shape", shapeJson(type.getShape())},
                       {"offset", int64_t(out.params.size())},
                       {"size", int64_t(*size)}};
    out.paramIndex.push_back(std::move(entry));
    out.params += data;
    out.stats.weightBytes += *size;
  } else {
    w["location"] = "file";
    w["file"] = storage.getLocation().str();
    w["offset"] = int64_t(storage.getOffset());
    out.stats.weightBytes += *size;
  }
  index = int(weights.size());
  weights.push_back(std::move(w));
  return llvm::Error::success();
}

std::optional<int> ManifestBuilder::addPackedWeight(ConcatOp concat) {
  SmallVector<int> parts;
  bool allConstant = true;
  std::string name;
  for (Value in : concat.getInputs()) {
    int id = valueId(in);
    if (id < 0 || values[id].kind != "weight")
      return std::nullopt;
    int w = values[id].weight;
    parts.push_back(w);
    const json::Object &entry = *weights[w].getAsObject();
    if (*entry.getString("location") == "packed")
      return std::nullopt;
    allConstant &= *entry.getString("kind") == "constant";
    name += (name.empty() ? "" : "+") + entry.getString("name")->str();
  }
  auto type = cast<RankedTensorType>(concat.getType());
  kiln_dtype_t dt = toRuntimeDType(type.getElementType());
  std::string why;
  FailureOr<uint64_t> size = getStorageSizeInBytes(type, &why);
  if (parts.size() < 2 || !type.hasStaticShape() || failed(size) ||
      dt == KILN_DTYPE_INVALID || kiln_dtype_bit_width(dt) < 8)
    return std::nullopt;
  int64_t axis = concat.getAxis() < 0 ? concat.getAxis() + type.getRank()
                                      : concat.getAxis();
  json::Array partList;
  for (int p : parts)
    partList.push_back(p);
  weights.push_back(json::Object{{"name", name},
                                 {"dtype", kiln_dtype_name(dt)},
                                 {"shape", shapeJson(type.getShape())},
                                 {"size", int64_t(*size)},
                                 {"kind", allConstant ? "constant" : "parameter"},
                                 {"location", "packed"},
                                 {"parts", std::move(partList)},
                                 {"axis", axis}});
  return int(weights.size()) - 1;
}

llvm::Error ManifestBuilder::visit(Operation *op) {
  if (foldedOnly.contains(op))
    return llvm::Error::success();
  if (auto w = dyn_cast<WeightOp>(op)) {
    auto it = weightBySymbol.find(w.getName());
    int index;
    if (it == weightBySymbol.end()) {
      auto decl = SymbolTable::lookupNearestSymbolFrom<WeightDeclOp>(
          op, w.getNameAttr());
      if (!decl)
        return err(describe(op) + ": no weight_decl @" + w.getName());
      if (auto e = addWeight(op, w.getName(),
                             cast<RankedTensorType>(decl.getType()), {}, false,
                             decl.getStorageAttr(), index))
        return e;
      weightBySymbol[w.getName()] = index;
    } else {
      index = it->second;
    }
    ValueInfo vi;
    vi.kind = "weight";
    vi.weight = index;
    addValue(w.getResult(), vi);
    return llvm::Error::success();
  }
  if (auto c = dyn_cast<arith::ConstantOp>(op)) {
    auto dense = dyn_cast<DenseElementsAttr>(c.getValue());
    if (!dense)
      return err(describe(op) + ": only dense tensor constants are supported");
    auto bytes = denseBytes(dense, op);
    if (!bytes)
      return bytes.takeError();
    int index;
    if (auto e = addWeight(op, ("__constant_" + llvm::Twine(weights.size())).str(),
                           cast<RankedTensorType>(dense.getType()), *bytes,
                           true, {}, index))
      return e;
    ValueInfo vi;
    vi.kind = "weight";
    vi.weight = index;
    addValue(c.getResult(), vi);
    return llvm::Error::success();
  }
  // A concat of weights (sibling projections fused by the graph stage) is
  // not a launch: the runtime packs the parts once, at load, from whatever
  // storage they have (so --weights=reference and bound parameter files
  // keep working by their original names).
  if (auto concat = dyn_cast<ConcatOp>(op))
    if (std::optional<int> w = addPackedWeight(concat)) {
      ValueInfo vi;
      vi.kind = "weight";
      vi.weight = *w;
      addValue(concat.getResult(), vi);
      return llvm::Error::success();
    }
  if (auto mq = dyn_cast<MakeQTensorOp>(op)) {
    ValueInfo vi;
    vi.kind = "qtensor";
    vi.qData = valueId(mq.getData());
    vi.qScales = valueId(mq.getScales());
    vi.qZero = mq.getZeroPoints() ? valueId(mq.getZeroPoints()) : -1;
    vi.def = steps; // available from the next launch on
    addValue(mq.getResult(), vi);
    return llvm::Error::success();
  }
  if (auto q = dyn_cast<QuantizeOp>(op))
    return foldedQuantizes.contains(op) ? foldQuantize(q) : visitQuantize(q);
  if (auto ret = dyn_cast<func::ReturnOp>(op)) {
    for (Value v : ret.getOperands()) {
      int id = valueId(v);
      values[id].liveOut = true;
      use(id, steps);
    }
    return llvm::Error::success();
  }
  if (op->getDialect() != op->getContext()->getLoadedDialect<KilnDialect>())
    return err(describe(op) + ": op from outside the kiln dialect cannot be "
                              "compiled (run the graph pipeline first)");

  StringRef opName = op->getName().stripDialect();
  // Every target keeps the CPU kernels: they are the reference and the
  // fallback where no GPU is present.
  if (!::kiln::LookupCpuKernel(opName.str()))
    return err(describe(op) + ": no kernel for this op on target 'cpu'");

  // Operands in ODS order; absent optional operands of ops with several
  // optional groups are written as null so positions stay fixed.
  json::Array in;
  auto addOperand = [&](Value v) -> llvm::Error {
    int id = valueId(v);
    if (id < 0)
      return err(describe(op) + ": operand defined outside the function");
    use(id, steps);
    in.push_back(id);
    return llvm::Error::success();
  };
  DenseI32ArrayAttr segments;
  if (auto props = op->getPropertiesAsAttribute())
    if (auto dict = dyn_cast<DictionaryAttr>(props))
      segments = dict.getAs<DenseI32ArrayAttr>("operandSegmentSizes");
  if (segments) {
    unsigned next = 0;
    for (int32_t count : segments.asArrayRef()) {
      if (count == 0)
        in.push_back(nullptr);
      for (int32_t i = 0; i < count; ++i)
        if (auto e = addOperand(op->getOperand(next++)))
          return e;
    }
  } else {
    for (Value v : op->getOperands())
      if (auto e = addOperand(v))
        return e;
  }

  json::Array outIds;
  for (Value r : op->getResults()) {
    if (auto cache = dyn_cast<KvCacheType>(r.getType())) {
      if (cache.isQuantized() && !cache.hasPerTokenScales())
        return err(describe(op) + ": KV caches with static per-head scales are "
                                  "not supported by target '" + options.target +
                   "' yet (use per-token scales)");
      ValueInfo vi;
      vi.kind = "kv_cache";
      vi.def = steps;
      vi.lastUse = steps;
      vi.defOp = op;
      outIds.push_back(addValue(r, vi));
      continue;
    }
    auto type = dyn_cast<RankedTensorType>(r.getType());
    if (!type)
      return err(describe(op) + ": result of type that target '" +
                 options.target + "' cannot hold in a buffer");
    if (toRuntimeDType(type.getElementType()) == KILN_DTYPE_INVALID)
      return err(describe(op) + ": result element type has no runtime dtype");
    ValueInfo vi;
    vi.kind = "temp";
    vi.def = steps;
    vi.lastUse = steps;
    vi.defOp = op;
    outIds.push_back(addValue(r, vi));
  }

  json::Object launch{{"op", opName.str()}, {"in", std::move(in)},
                      {"out", std::move(outIds)}};
  json::Object attrs;
  if (auto e = encodeAttrs(op, attrs))
    return e;
  if (!attrs.empty())
    launch["attrs"] = std::move(attrs);
  std::string node = nodeName(op->getLoc());
  if (!node.empty())
    launch["loc"] = node;
  // Views: the result may share the input's storage.
  if (isa<ReshapeOp, BitcastOp>(op)) {
    int src = valueId(op->getOperand(0));
    int dst = valueId(op->getResult(0));
    values[dst].aliasOf = src;
    launch["alias"] = json::Array{json::Array{0, 0}};
  }
  noteCudaKernel(op, opName, launch);
  launches.push_back(std::move(launch));
  out.stats.launchOps.push_back(op);
  ++steps;
  return llvm::Error::success();
}

/// Whether `v` is computed from weights with data and constants alone.
static bool isWeightExpr(Value v) {
  Operation *def = v.getDefiningOp();
  if (!def)
    return false;
  if (isa<WeightOp>(def))
    return true;
  if (auto c = dyn_cast<arith::ConstantOp>(def))
    return isa<DenseElementsAttr>(c.getValue());
  if (auto t = dyn_cast<TransposeOp>(def))
    return t.getPermutation().size() == 2 && t.getPermutation()[0] == 1 &&
           isWeightExpr(t.getInput());
  if (auto c = dyn_cast<ConcatOp>(def))
    return llvm::all_of(c.getInputs(), isWeightExpr);
  if (auto h = dyn_cast<HadamardOp>(def))
    return isWeightExpr(h.getInput());
  if (auto r = dyn_cast<RotateOp>(def))
    return isWeightExpr(r.getInput()) && isWeightExpr(r.getRotation());
  return false;
}

void ManifestBuilder::findFoldedQuantizes(func::FuncOp func) {
  Block &body = func.getBody().front();
  for (Operation &op : body)
    if (auto q = dyn_cast<QuantizeOp>(&op))
      if (!q.getScales() && q.getType().getShape().size() == 2 &&
          isWeightExpr(q.getInput()))
        foldedQuantizes.insert(&op);
  // Users come after their operands: walk backwards.
  for (Operation &op : llvm::reverse(body)) {
    if (!isa<WeightOp, arith::ConstantOp, TransposeOp, ConcatOp, HadamardOp, RotateOp>(op) ||
        op.getNumResults() != 1 || op.use_empty() || !isWeightExpr(op.getResult(0)))
      continue;
    if (llvm::all_of(op.getUsers(), [&](Operation *u) {
          return foldedQuantizes.contains(u) || foldedOnly.contains(u);
        }))
      foldedOnly.insert(&op);
  }
}

/// Element `i` of `bytes` holding `type`'s values (f32, f16, bf16) as float.
static bool floatsOf(StringRef bytes, Type type, std::vector<float> &out) {
  size_t n;
  if (type.isF32()) {
    n = bytes.size() / 4;
    out.resize(n);
    std::memcpy(out.data(), bytes.data(), n * 4);
    return true;
  }
  if (!type.isF16() && !type.isBF16())
    return false;
  n = bytes.size() / 2;
  out.resize(n);
  for (size_t i = 0; i < n; ++i) {
    uint16_t h;
    std::memcpy(&h, bytes.data() + 2 * i, 2);
    out[i] = type.isF16() ? ::kiln::HalfToFloat(h) : ::kiln::BF16ToFloat(h);
  }
  return true;
}

llvm::Error ManifestBuilder::evalWeight(Value v, std::vector<float> &out,
                                        SmallVector<int64_t> &shape, std::string &name) {
  Operation *def = v.getDefiningOp();
  auto type = cast<RankedTensorType>(v.getType());
  shape.assign(type.getShape().begin(), type.getShape().end());
  if (auto w = dyn_cast<WeightOp>(def)) {
    auto decl = SymbolTable::lookupNearestSymbolFrom<WeightDeclOp>(def, w.getNameAttr());
    if (!decl)
      return err(describe(def) + ": no weight_decl @" + w.getName());
    name = w.getName().str();
    ExternalStorageAttr storage = decl.getStorageAttr();
    if (!storage)
      return err("weight '" + name +
                 "' is bound at load time, but quantizing it (--quant) needs its values "
                 "at compile time");
    llvm::SmallString<256> path(options.weightsDir);
    llvm::sys::path::append(path, storage.getLocation());
    auto buf = llvm::MemoryBuffer::getFileSlice(path, storage.getLength(), storage.getOffset());
    if (!buf)
      return err("cannot read weight '" + name + "' from '" + path + "' at offset " +
                 llvm::Twine(storage.getOffset()) + ": " + buf.getError().message());
    if ((*buf)->getBufferSize() != storage.getLength())
      return err("weight '" + name + "': '" + path + "' is truncated");
    if (!floatsOf((*buf)->getBuffer(), type.getElementType(), out) ||
        int64_t(out.size()) != type.getNumElements())
      return err("weight '" + name + "' of type " + llvm::formatv("{0}", type).str() +
                 " cannot be quantized (f32, f16 or bf16 with " +
                 llvm::Twine(type.getNumElements()) + " values)");
    return llvm::Error::success();
  }
  if (auto c = dyn_cast<arith::ConstantOp>(def)) {
    auto bytes = denseBytes(cast<DenseElementsAttr>(c.getValue()), def);
    if (!bytes)
      return bytes.takeError();
    name = "__constant";
    if (!floatsOf(*bytes, type.getElementType(), out) ||
        int64_t(out.size()) != type.getNumElements())
      return err(describe(def) + ": a constant of type " + llvm::formatv("{0}", type).str() +
                 " cannot be quantized");
    return llvm::Error::success();
  }
  if (auto t = dyn_cast<TransposeOp>(def)) {
    std::vector<float> in;
    SmallVector<int64_t> inShape;
    if (auto e = evalWeight(t.getInput(), in, inShape, name))
      return e;
    int64_t r = inShape[0], cols = inShape[1];
    out.resize(in.size());
    for (int64_t i = 0; i < r; ++i)
      for (int64_t j = 0; j < cols; ++j)
        out[size_t(j * r + i)] = in[size_t(i * cols + j)];
    return llvm::Error::success();
  }
  if (auto h = dyn_cast<HadamardOp>(def)) {
    // The runtime's own transform (kiln::FastHadamard), block by block.
    if (auto e = evalWeight(h.getInput(), out, shape, name))
      return e;
    int64_t block = h.getBlock();
    for (size_t at = 0; at + size_t(block) <= out.size(); at += size_t(block))
      ::kiln::FastHadamard(&out[at], block);
    return llvm::Error::success();
  }
  if (auto rot = dyn_cast<RotateOp>(def)) {
    // The runtime's own block rotation (kiln::RotateBlock).
    std::vector<float> in, r;
    SmallVector<int64_t> rShape;
    std::string rName;
    if (auto e = evalWeight(rot.getInput(), in, shape, name))
      return e;
    if (auto e = evalWeight(rot.getRotation(), r, rShape, rName))
      return e;
    int64_t n = rShape[0];
    out.resize(in.size());
    for (size_t at = 0; at + size_t(n) <= in.size(); at += size_t(n))
      ::kiln::RotateBlock(&in[at], r.data(), n, &out[at]);
    return llvm::Error::success();
  }
  auto concat = cast<ConcatOp>(def);
  int64_t axis = concat.getAxis() < 0 ? concat.getAxis() + type.getRank() : concat.getAxis();
  int64_t outer = 1, total = type.getDimSize(int(axis));
  for (int64_t d = 0; d < axis; ++d)
    outer *= type.getDimSize(int(d));
  int64_t inner = 1;
  for (int64_t d = axis + 1; d < type.getRank(); ++d)
    inner *= type.getDimSize(int(d));
  out.assign(size_t(type.getNumElements()), 0.f);
  int64_t at = 0;
  for (Value in : concat.getInputs()) {
    std::vector<float> part;
    SmallVector<int64_t> partShape;
    std::string partName;
    if (auto e = evalWeight(in, part, partShape, partName))
      return e;
    name += (name.empty() ? "" : "+") + partName;
    int64_t len = partShape[size_t(axis)];
    for (int64_t o = 0; o < outer; ++o)
      std::memcpy(&out[size_t((o * total + at) * inner)], &part[size_t(o * len * inner)],
                  size_t(len * inner) * sizeof(float));
    at += len;
  }
  return llvm::Error::success();
}

/// Evaluates a kiln.quantize of weights at compile time with the runtime's
/// own arithmetic (kiln::QuantizeBlocks) and records the stored values,
/// scales and zero points as parameters; the qtensor is assembled from them.
llvm::Error ManifestBuilder::foldQuantize(QuantizeOp op) {
  QTensorType type = op.getType();
  std::vector<float> floats;
  SmallVector<int64_t> shape;
  std::string name;
  if (auto e = evalWeight(op.getInput(), floats, shape, name))
    return e;
  ::kiln::Tensor x;
  x.dtype = KILN_DTYPE_F32;
  x.shape = ::kiln::Dims::FromArray(shape.data(), int(shape.size()));
  x.data = floats.data();
  ::kiln::Dims block;
  block.rank = int(shape.size());
  ArrayRef<int64_t> b = type.getQuant().getBlock();
  for (size_t d = 0; d < shape.size(); ++d)
    block[int(d)] = b[d] == 0 ? std::max<int64_t>(shape[d], 1) : b[d];
  struct Part {
    RankedTensorType type;
    std::string suffix, bytes;
    ::kiln::Tensor t;
  };
  SmallVector<Part, 3> parts;
  auto addPart = [&](RankedTensorType t, StringRef suffix) {
    Part p{t, suffix.str(), {}, {}};
    p.t.dtype = toRuntimeDType(t.getElementType());
    p.t.shape = ::kiln::Dims::FromArray(t.getShape().data(), int(t.getRank()));
    p.bytes.assign(size_t(p.t.bytes()), '\0');
    parts.push_back(std::move(p));
  };
  addPart(type.getDataType(), ".qdata");
  addPart(type.getScalesType(), ".qscales");
  bool zero = !type.getQuant().isSymmetric();
  if (zero)
    addPart(type.getZeroPointsType(), ".qzero");
  for (Part &p : parts)
    p.t.data = p.bytes.data();
  kiln_status_t st = ::kiln::QuantizeBlocks(x, block, /*compute_scales=*/true, parts[0].t,
                                            parts[1].t, zero ? &parts[2].t : nullptr);
  if (st) {
    std::string why = kiln_status_message(st);
    kiln_status_free(st);
    return err(describe(op) + ": cannot quantize weight '" + name + "': " + why);
  }
  ValueInfo qv;
  qv.kind = "qtensor";
  int *slots[3] = {&qv.qData, &qv.qScales, &qv.qZero};
  for (auto [i, p] : llvm::enumerate(parts)) {
    int index;
    if (auto e = addWeight(op, name + p.suffix, p.type, std::move(p.bytes), false, {}, index,
                           /*derived=*/true))
      return e;
    ValueInfo vi;
    vi.kind = "weight";
    vi.weight = index;
    vi.type = p.type;
    values.push_back(vi);
    *slots[i] = int(values.size()) - 1;
  }
  ++out.stats.quantizedWeights;
  auto inType = cast<RankedTensorType>(op.getInput().getType());
  out.stats.quantizedFromBytes +=
      uint64_t(inType.getNumElements()) * (inType.getElementTypeBitWidth() / 8);
  for (const Part &p : parts)
    out.stats.quantizedBytes += p.t.bytes();
  qv.def = steps;
  addValue(op.getResult(), qv);
  return llvm::Error::success();
}

/// kiln.quantize yields a !kiln.qtensor, which no buffer holds: it becomes
/// a launch whose results are the stored values and, when the scheme is
/// dynamic, the scales (and zero points) computed from the data; the qtensor
/// value is then assembled from those results and the static operands.
llvm::Error ManifestBuilder::visitQuantize(QuantizeOp op) {
  if (!::kiln::LookupCpuKernel("quantize"))
    return err(describe(op) + ": no kernel for this op on target 'cpu'");
  QTensorType type = op.getType();
  json::Array in;
  for (Value v : {op.getInput(), op.getScales(), op.getZeroPoints()}) {
    if (!v) {
      in.push_back(nullptr);
      continue;
    }
    int id = valueId(v);
    use(id, steps);
    in.push_back(id);
  }
  auto result = [&](RankedTensorType t) -> llvm::Expected<int> {
    if (toRuntimeDType(t.getElementType()) == KILN_DTYPE_INVALID)
      return err(describe(op) + ": quantized part of type " +
                 llvm::formatv("{0}", t).str() + " has no runtime dtype");
    ValueInfo vi;
    vi.kind = "temp";
    vi.def = steps;
    vi.lastUse = steps;
    vi.defOp = op;
    values.push_back(vi);
    values.back().type = t;
    return int(values.size() - 1);
  };
  json::Array outIds;
  ValueInfo qv;
  qv.kind = "qtensor";
  auto data = result(type.getDataType());
  if (!data)
    return data.takeError();
  outIds.push_back(*data);
  qv.qData = *data;
  if (op.getScales()) {
    qv.qScales = valueId(op.getScales());
    qv.qZero = op.getZeroPoints() ? valueId(op.getZeroPoints()) : -1;
  } else {
    auto scales = result(type.getScalesType());
    if (!scales)
      return scales.takeError();
    outIds.push_back(*scales);
    qv.qScales = *scales;
    if (!type.getQuant().isSymmetric()) {
      auto zero = result(type.getZeroPointsType());
      if (!zero)
        return zero.takeError();
      outIds.push_back(*zero);
      qv.qZero = *zero;
    }
  }
  json::Array block;
  for (int64_t b : type.getQuant().getBlock())
    block.push_back(b);
  json::Object launch{{"op", "quantize"},
                      {"in", std::move(in)},
                      {"out", std::move(outIds)},
                      {"attrs", json::Object{{"block", std::move(block)}}}};
  std::string node = nodeName(op.getLoc());
  if (!node.empty())
    launch["loc"] = node;
  noteCudaKernel(nullptr, "quantize", launch);
  launches.push_back(std::move(launch));
  out.stats.launchOps.push_back(op);
  ++steps;
  qv.def = steps;
  addValue(op.getResult(), qv);
  return llvm::Error::success();
}

/// Roles of graph inputs and outputs for generation, and the model facts
/// the runtime needs to drive it.
llvm::Error ManifestBuilder::finishModelInfo(func::FuncOp func) {
  ModelMeta meta;
  readConfigs(options.weightsDir, meta);
  if (!options.eosTokenIds.empty())
    meta.eos = options.eosTokenIds;
  if (options.bosTokenId)
    meta.bos = options.bosTokenId;
  if (options.maxSequenceLength)
    meta.maxSeq = options.maxSequenceLength;

  bool hasIds = false, hasMask = false, hasPositions = false, hasLogits = false;
  std::map<int64_t, std::array<int, 4>> layers; // past k, past v, present k, v
  int64_t vocab = -1;
  json::Object kv;
  for (json::Value &v : inputs) {
    json::Object &o = *v.getAsObject();
    StringRef role = *o.getString("role");
    hasIds |= role == "input_ids";
    hasMask |= role == "attention_mask";
    hasPositions |= role == "position_ids";
  }
  for (json::Value &v : outputs) {
    json::Object &o = *v.getAsObject();
    if (*o.getString("role") == "logits") {
      hasLogits = true;
      const json::Array &shape = *o.getArray("shape");
      if (!shape.empty())
        vocab = *shape.back().getAsInteger();
    }
  }
  auto collect = [&](json::Array &list, int base) {
    for (size_t i = 0; i < list.size(); ++i) {
      json::Object &o = *list[i].getAsObject();
      StringRef role = *o.getString("role");
      if (role != "past_key" && role != "past_value" && role != "present_key" &&
          role != "present_value")
        continue;
      int64_t layer = *o.getInteger("layer");
      auto &slot = layers.try_emplace(layer, std::array<int, 4>{-1, -1, -1, -1})
                       .first->second;
      int which = base + (role.ends_with("value") ? 1 : 0);
      slot[which] = int(i);
    }
  };
  collect(inputs, 0);
  collect(outputs, 2);
  bool kvComplete = true;
  for (auto &[layer, s] : layers)
    for (int x : s)
      kvComplete &= x >= 0;

  std::string why;
  if (!hasIds)
    why = "no input_ids input";
  else if (!hasLogits)
    why = "no logits output";
  else if (!kvComplete)
    why = "a layer lacks one of past/present key/value";
  else if (vocab <= 0)
    why = "the logits' vocabulary dimension is not static";
  if (meta.vocab && vocab > 0 && *meta.vocab != vocab && why.empty())
    why = llvm::formatv("config vocab_size {0} differs from the logits' {1}",
                        *meta.vocab, vocab)
              .str();

  // KV geometry from the first layer: past [B, Hkv, T, D] and present.
  if (why.empty() && !layers.empty()) {
    auto &first = layers.begin()->second;
    json::Object &pastK = *inputs[first[0]].getAsObject();
    json::Object &presK = *outputs[first[2]].getAsObject();
    json::Object &presV = *outputs[first[3]].getAsObject();
    const json::Array &ps = *presK.getArray("shape");
    const json::Array &pv = *presV.getArray("shape");
    if (ps.size() != 4 || pv.size() != 4 || *ps[1].getAsInteger() < 0 ||
        *ps[3].getAsInteger() < 0 || *pv[3].getAsInteger() < 0) {
      why = "present key/value are not [batch, kv_heads, seq, head_dim] with "
            "static heads and head_dim";
    } else {
      kv["layout"] = "bhsd";
      kv["dtype"] = *pastK.getString("dtype");
      kv["kv_heads"] = *ps[1].getAsInteger();
      kv["head_dim"] = *ps[3].getAsInteger();
      kv["v_head_dim"] = *pv[3].getAsInteger();
      kv["layers"] = int64_t(layers.size());
    }
  }
  model["generation"] = why.empty();
  if (!why.empty())
    model["generation_unsupported"] = why;
  if (vocab > 0)
    model["vocab_size"] = vocab;
  json::Array eos;
  for (int64_t e : meta.eos)
    eos.push_back(e);
  model["eos_token_ids"] = std::move(eos);
  if (meta.bos)
    model["bos_token_id"] = *meta.bos;
  if (meta.pad)
    model["pad_token_id"] = *meta.pad;
  model["max_sequence_length"] = meta.maxSeq ? *meta.maxSeq : int64_t(2048);
  model["max_sequence_length_source"] =
      options.maxSequenceLength ? "option"
      : meta.maxSeq            ? meta.source
                               : "default";
  if (!meta.source.empty())
    model["config"] = meta.source;
  // Sequences of different lengths share a batch by left padding when the
  // graph takes an attention mask and explicit positions; otherwise the
  // runtime batches sequences of equal length together.
  // kiln-ragged-batch ran: one run may take many sequences' tokens
  // flattened, with their lengths bound to the caches. Its attention no
  // longer reads the padding mask, so padded batches are out.
  const bool ragged = func->hasAttr("kiln.ragged");
  model["padding"] = hasMask && hasPositions && !ragged ? "left" : "none";
  if (ragged)
    model["ragged"] = true;
  if (!kv.empty())
    model["kv_cache"] = std::move(kv);
  out.stats.generation = why.empty();
  return llvm::Error::success();
}

llvm::Expected<Compiled> ManifestBuilder::run() {
  if (options.target != "cpu" && options.target != "cuda")
    return err("unknown target '" + options.target + "' (the targets are 'cpu' and 'cuda')");
  auto func = module.lookupSymbol<func::FuncOp>(options.functionName);
  if (!func)
    return err("the module has no function @" + options.functionName);
  if (!func.getBody().hasOneBlock())
    return err("@" + options.functionName + " must have a single block");

  // Reserve the weights section once: a multi-GB model must not be moved
  // by repeated growth.
  uint64_t expected = 0;
  module.walk([&](WeightDeclOp decl) {
    if (auto storage = decl.getStorageAttr())
      expected += storage.getLength() + kWeightAlignment;
  });
  (options.weights == WeightMode::External ? out.params : out.weights)
      .reserve(options.weights == WeightMode::Reference ? 0 : expected);

  // Inputs and outputs keep the source model's order: kiln.io_index (set by
  // passes that regroup arguments), else their position.
  std::vector<int64_t> inputOrder, outputOrder;
  auto order = [&](json::Array &list, DictionaryAttr attrs) {
    auto &o = &list == &inputs ? inputOrder : outputOrder;
    auto index = attrs ? attrs.getAs<IntegerAttr>("kiln.io_index") : IntegerAttr();
    o.push_back(index ? index.getInt() : int64_t(list.size() - 1));
  };
  auto sortByOrder = [](json::Array &list, const std::vector<int64_t> &o) {
    std::vector<size_t> perm(list.size());
    std::iota(perm.begin(), perm.end(), 0);
    std::stable_sort(perm.begin(), perm.end(),
                     [&](size_t a, size_t b) { return o[a] < o[b]; });
    json::Array sorted;
    for (size_t i : perm)
      sorted.push_back(std::move(list[i]));
    list = std::move(sorted);
  };

  // A KV cache's two tensors as the artifact lists them: the ONNX past (or
  // present) key and value the cache stands for, with a "part".
  auto addCacheIo = [&](json::Array &list, int id, DictionaryAttr attrs,
                        StringRef kvPrefix, StringRef what) -> llvm::Error {
    auto io = attrs ? attrs.getAs<DictionaryAttr>("kiln.cache_io") : DictionaryAttr();
    for (StringRef part : {"key", "value"}) {
      auto dict = io ? io.getAs<DictionaryAttr>(part) : DictionaryAttr();
      auto typeAttr = io ? io.getAs<TypeAttr>((part + "_type").str()) : TypeAttr();
      auto type = typeAttr ? dyn_cast<RankedTensorType>(typeAttr.getValue())
                           : RankedTensorType();
      auto name = dict ? dict.getAs<StringAttr>("kiln.name") : StringAttr();
      if (!type || !name)
        return err(what + " KV cache lacks kiln.cache_io." + part +
                   " (name and type of the tensor it stands for)");
      json::Object o = ioJson(name.getValue(), id, type, dict, "input", kvPrefix, {});
      o["part"] = part.str();
      list.push_back(std::move(o));
      order(list, dict);
    }
    return llvm::Error::success();
  };

  // Graph inputs.
  for (BlockArgument arg : func.getArguments()) {
    auto type = dyn_cast<RankedTensorType>(arg.getType());
    unsigned i = arg.getArgNumber();
    if (isa<KvCacheType>(arg.getType())) {
      ValueInfo vi;
      vi.kind = "kv_cache";
      vi.cacheInput = true;
      int id = addValue(arg, vi);
      if (auto e = addCacheIo(inputs, id, func.getArgAttrDict(i), "past_",
                              "graph input " + std::to_string(i) + ":"))
        return std::move(e);
      continue;
    }
    auto nameAttr = func.getArgAttrOfType<StringAttr>(i, "kiln.name");
    std::string name = nameAttr ? nameAttr.str() : ("input_" + llvm::Twine(i)).str();
    if (!type || toRuntimeDType(type.getElementType()) == KILN_DTYPE_INVALID)
      return err("graph input '" + name + "' has a type the runtime cannot pass");
    ValueInfo vi;
    vi.kind = "input";
    int id = addValue(arg, vi);
    json::Object in = ioJson(name, id, type, func.getArgAttrDict(i), "input",
                             "past_",
                             {"input_ids", "attention_mask", "position_ids"});
    inputs.push_back(std::move(in));
    order(inputs, func.getArgAttrDict(i));
  }
  sortByOrder(inputs, inputOrder);

  findFoldedQuantizes(func);
  for (Operation &op : func.getBody().front())
    if (auto e = visit(&op))
      return std::move(e);

  // Graph outputs.
  auto ret = cast<func::ReturnOp>(func.getBody().front().getTerminator());
  for (auto [i, v] : llvm::enumerate(ret.getOperands())) {
    if (isa<KvCacheType>(v.getType())) {
      values[valueId(v)].liveOut = true;
      if (auto e = addCacheIo(outputs, valueId(v), func.getResultAttrDict(i),
                              "present_", "graph output " + std::to_string(i) + ":"))
        return std::move(e);
      continue;
    }
    auto type = cast<RankedTensorType>(v.getType());
    auto nameAttr = func.getResultAttrOfType<StringAttr>(i, "kiln.name");
    std::string name = nameAttr ? nameAttr.str() : ("output_" + llvm::Twine(i)).str();
    json::Object o = ioJson(name, valueId(v), type, func.getResultAttrDict(i),
                            "output", "present_", {"logits"});
    outputs.push_back(std::move(o));
    order(outputs, func.getResultAttrDict(i));
  }
  sortByOrder(outputs, outputOrder);

  // Memory plan.
  std::vector<PlanValue> planValues(values.size());
  for (size_t i = 0; i < values.size(); ++i) {
    const ValueInfo &vi = values[i];
    PlanValue &pv = planValues[i];
    pv.external = vi.kind != "temp"; // KV caches live in runtime storage
    pv.def = std::max(vi.def, 0);
    pv.lastUse = std::max(vi.lastUse, pv.def);
    pv.liveOut = vi.liveOut;
    pv.aliasOf = vi.aliasOf;
    if (auto t = dyn_cast<RankedTensorType>(vi.type); t && t.hasStaticShape()) {
      FailureOr<uint64_t> size = getStorageSizeInBytes(t);
      pv.staticBytes = succeeded(size) ? int64_t(*size) : -1;
    }
  }
  MemoryPlan plan = planMemory(planValues, kArenaAlignment);

  json::Array valueList;
  for (size_t i = 0; i < values.size(); ++i) {
    const ValueInfo &vi = values[i];
    json::Object o;
    if (auto cache = dyn_cast<KvCacheType>(vi.type)) {
      o["kind"] = "kv_cache";
      // dtype: what appends take and attention reads; storage: what the
      // runtime keeps (a quantized type, with one scale per token, head and
      // `group` elements).
      o["dtype"] = kiln_dtype_name(toRuntimeDType(cache.getComputeType()));
      o["storage"] = kiln_dtype_name(toRuntimeDType(cache.getElementType()));
      o["shape"] = shapeJson({ShapedType::kDynamic, ShapedType::kDynamic,
                              cache.getNumKvHeads(), cache.getHeadDim()});
      o["layout"] = cache.isPaged() ? "paged" : "contiguous";
      if (cache.isPaged())
        o["block_size"] = cache.getBlockSize();
      if (QuantAttr q = cache.getQuant()) {
        o["scale_dtype"] = kiln_dtype_name(toRuntimeDType(q.getScaleType()));
        o["group"] = q.getBlock()[3];
      }
      o["kv_heads"] = cache.getNumKvHeads();
      o["head_dim"] = cache.getHeadDim();
      o["v_head_dim"] = cache.getValueHeadDim();
      if (vi.cacheInput)
        o["input"] = true;
    } else if (vi.kind == "qtensor") {
      auto qt = cast<QTensorType>(vi.type);
      QuantAttr q = qt.getQuant();
      o["kind"] = "qtensor";
      o["dtype"] = kiln_dtype_name(toRuntimeDType(q.getStorageType()));
      o["expressed"] = kiln_dtype_name(toRuntimeDType(q.getExpressedType()));
      o["shape"] = shapeJson(qt.getShape());
      json::Array block;
      for (int64_t b : q.getBlock())
        block.push_back(b);
      o["block"] = std::move(block);
      o["data"] = vi.qData;
      o["scales"] = vi.qScales;
      o["zero_points"] = vi.qZero >= 0 ? json::Value(vi.qZero) : json::Value(nullptr);
    } else {
      auto t = cast<RankedTensorType>(vi.type);
      o["kind"] = vi.kind == "temp" ? "temp" : vi.kind;
      o["dtype"] = kiln_dtype_name(toRuntimeDType(t.getElementType()));
      o["shape"] = shapeJson(t.getShape());
      if (vi.weight >= 0)
        o["weight"] = vi.weight;
      const MemoryPlan::Placement &p = plan.values[i];
      switch (p.kind) {
      case MemoryPlan::Kind::Arena:
        o["offset"] = p.offset;
        break;
      case MemoryPlan::Kind::Slot:
        o["slot"] = p.slot;
        break;
      case MemoryPlan::Kind::View:
        o["view_of"] = p.root;
        break;
      case MemoryPlan::Kind::External:
        break;
      }
    }
    valueList.push_back(std::move(o));
  }

  if (auto e = finishModelInfo(func))
    return std::move(e);

  json::Object source;
  if (auto attr = module->getAttrOfType<DictionaryAttr>("kiln.source")) {
    for (NamedAttribute na : attr) {
      if (auto s = dyn_cast<StringAttr>(na.getValue()))
        source[na.getName().getValue()] = s.str();
      else if (auto i = dyn_cast<IntegerAttr>(na.getValue()))
        source[na.getName().getValue()] = i.getInt();
    }
  }
  if (!options.sourcePath.empty())
    source["path"] = options.sourcePath;

  json::Object &m = out.manifest;
  m["format"] = "kiln-manifest";
  m["schema_version"] = kManifestSchemaVersion;
  m["producer"] = json::Object{{"name", "kiln-compile"},
                               {"version", KILN_VERSION_STRING}};
  m["source"] = std::move(source);
  m["target"] = options.target;
  m["function"] = options.functionName;
  m["model"] = std::move(model);
  m["inputs"] = std::move(inputs);
  m["outputs"] = std::move(outputs);
  size_t weightCount = weights.size();
  m["weights"] = std::move(weights);
  m["values"] = std::move(valueList);
  m["memory_plan"] = json::Object{{"alignment", kArenaAlignment},
                                  {"arena_bytes", plan.arenaBytes},
                                  {"slots", plan.slotCount},
                                  {"unplanned_bytes", plan.unplannedBytes}};
  m["launches"] = std::move(launches);
  if (options.weights == WeightMode::External) {
    m["params"] = json::Object{
        {"file", llvm::sys::path::filename(options.paramsPath).str()},
        {"tensors", int64_t(out.paramIndex.size())},
        {"bytes", int64_t(out.params.size())}};
  }

  out.stats.launches = size_t(steps);
  out.stats.values = values.size();
  out.stats.weights = weightCount;
  out.stats.arenaBytes = plan.arenaBytes;
  out.stats.unplannedArenaBytes = plan.unplannedBytes;
  out.stats.slots = plan.slotCount;
  return std::move(out);
}

std::string toJson(const json::Object &o) {
  std::string text;
  llvm::raw_string_ostream os(text);
  os << llvm::formatv("{0:2}", json::Value(json::Object(o)));
  return text;
}

/// target cuda: compiles the kernels the manifest builder collected, lays
/// their images out in the kernels section and describes them in the
/// manifest's "cuda" object.
llvm::Error attachCudaKernels(Compiled &c, const CompileOptions &options) {
  if (options.target != "cuda")
    return llvm::Error::success();
#ifndef KILN_HAVE_CUDA
  return err("target 'cuda' needs a kiln-compile built with the CUDA Toolkit (NVRTC); "
             "this one was built without it");
#else
  cuda::CompileOptions co;
  co.archs = options.cudaArchs;
  co.ptxArch = options.cudaPtxArch;
  co.cacheDir = options.kernelCacheDir;
  co.maxSpillBytes = options.cudaMaxSpillBytes;
  if (options.kernelProgress)
    co.progress = [&](size_t done, size_t total, const cuda::KernelSource &k) {
      options.kernelProgress(done + 1, total, k.entry);
    };
  if (co.archs.empty() && co.ptxArch.empty())
    return err("target 'cuda' needs at least one architecture or PTX");
  cuda::CompileStats cs;
  auto images = cuda::compileKernels(c.cudaKernels, co, &cs);
  if (!images)
    return images.takeError();
  json::Array kernels;
  constexpr size_t kImageAlignment = 256;
  for (size_t i = 0; i < c.cudaKernels.size(); ++i) {
    const cuda::KernelSource &k = c.cudaKernels[i];
    json::Array list;
    CudaKernelStats &ks = c.stats.cudaKernels[i];
    for (const cuda::Image &im : (*images)[i]) {
      c.kernels.resize((c.kernels.size() + kImageAlignment - 1) / kImageAlignment *
                           kImageAlignment,
                       '\0');
      json::Object o{{"arch", im.arch},
                     {"format", im.ptx ? "ptx" : "cubin"},
                     {"offset", int64_t(c.kernels.size())},
                     {"size", int64_t(im.bytes.size())}};
      if (!im.ptx) {
        o["registers"] = im.resources.registers;
        o["spill_bytes"] = im.resources.spillStoreBytes + im.resources.spillLoadBytes;
        o["shared_bytes"] = im.resources.sharedBytes;
        o["stack_bytes"] = im.resources.stackBytes;
        ks.images.push_back({im.arch, im.resources.registers,
                             im.resources.spillStoreBytes + im.resources.spillLoadBytes,
                             im.resources.sharedBytes});
      }
      c.kernels += im.bytes;
      list.push_back(std::move(o));
    }
    kernels.push_back(json::Object{{"entry", k.entry},
                                   {"op", k.op},
                                   {"block", k.block},
                                   {"grid", json::Object(k.grid)},
                                   {"images", std::move(list)}});
  }
  json::Array archs;
  for (const std::string &a : options.cudaArchs)
    archs.push_back(a);
  c.manifest["cuda"] = json::Object{{"nvrtc", cuda::nvrtcVersion()},
                                    {"archs", std::move(archs)},
                                    {"ptx", options.cudaPtxArch},
                                    {"kernels", std::move(kernels)}};
  c.stats.cudaImagesCompiled = cs.compiled;
  c.stats.cudaImagesCached = cs.cached;
  c.stats.cudaImageBytes = c.kernels.size();
  c.stats.cudaCompileMs = cs.ms;
  return llvm::Error::success();
#endif
}

} // namespace

llvm::Expected<std::string>
mlir::kiln::buildManifestJson(ModuleOp module, const CompileOptions &options) {
  CompileOptions o = options;
  if (o.weights != WeightMode::Reference)
    o.weights = WeightMode::Reference; // the manifest alone reads no weights
  ManifestBuilder builder(module, o);
  auto compiled = builder.run();
  if (!compiled)
    return compiled.takeError();
  if (auto e = attachCudaKernels(*compiled, o))
    return std::move(e);
  return toJson(compiled->manifest);
}

llvm::Error mlir::kiln::compileModule(ModuleOp module,
                                      const CompileOptions &options,
                                      llvm::StringRef outputPath,
                                      CompileStats *stats) {
  ManifestBuilder builder(module, options);
  auto compiled = builder.run();
  if (!compiled)
    return compiled.takeError();
  if (auto e = attachCudaKernels(*compiled, options))
    return e;

  auto writeStart = std::chrono::steady_clock::now();
  if (options.weights == WeightMode::External) {
    ArtifactWriter params;
    json::Object index;
    index["format"] = "kiln-params";
    index["schema_version"] = 1;
    index["tensors"] = std::move(compiled->paramIndex);
    if (auto e = params.addSection(KILN_SECTION_MANIFEST, toJson(index), 3))
      return e;
    if (auto e = params.addSection(KILN_SECTION_WEIGHTS,
                                   std::move(compiled->params),
                                   kWeightSectionAlignmentLog2))
      return e;
    auto size = params.writeFile(options.paramsPath);
    if (!size)
      return size.takeError();
    compiled->stats.paramsBytes = *size;
  }

  ArtifactWriter writer;
  if (auto e = writer.addSection(KILN_SECTION_MANIFEST,
                                 toJson(compiled->manifest), 3))
    return e;
  if (auto e = writer.addSection(KILN_SECTION_WEIGHTS,
                                 std::move(compiled->weights),
                                 kWeightSectionAlignmentLog2))
    return e;
  if (options.target == "cuda")
    if (auto e = writer.addSection(KILN_SECTION_KERNELS, std::move(compiled->kernels),
                                   /*alignment 4 KiB*/ 12))
      return e;
  auto size = writer.writeFile(outputPath);
  if (!size)
    return size.takeError();
  compiled->stats.artifactBytes = *size;
  compiled->stats.writeMs = std::chrono::duration<double, std::milli>(
                                std::chrono::steady_clock::now() - writeStart)
                                .count();
  if (stats)
    *stats = compiled->stats;
  return llvm::Error::success();
}
