//===- OnnxImporter.cpp - ONNX ModelProto -> kiln dialect -----------------===//
//
// Model loading, opset checks, element types, initializers (inlined or turned
// into weights that point into the model's files), graph inputs and outputs,
// and the per-node dispatch. The node converters live in ConvertOps.cpp.
//
//===----------------------------------------------------------------------===//

#include "ImporterImpl.h"
#include "OnnxWire.h"

#include "kiln/Support/DType.h"

#include "mlir/IR/Verifier.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/Regex.h"

using namespace mlir;
using namespace mlir::kiln;
using namespace mlir::kiln::onnx_import;

namespace {
/// The ai.onnx opsets the converters are written against.
/// Opset 7 brought NumPy broadcasting; converters check the ops whose
/// inputs or attributes changed later (Slice, Squeeze, Reduce*, Softmax).
constexpr int64_t kMinOnnxOpset = 7;
constexpr int64_t kMaxOnnxOpset = 25;
/// Newest IR version whose fields we know (onnx 1.20+).
constexpr int64_t kMaxIrVersion = 13;

const char *dtypeName(int32_t dtype) {
  static const char *names[] = {
      "UNDEFINED",      "FLOAT",        "UINT8",        "INT8",
      "UINT16",         "INT16",        "INT32",        "INT64",
      "STRING",         "BOOL",         "FLOAT16",      "DOUBLE",
      "UINT32",         "UINT64",       "COMPLEX64",    "COMPLEX128",
      "BFLOAT16",       "FLOAT8E4M3FN", "FLOAT8E4M3FNUZ", "FLOAT8E5M2",
      "FLOAT8E5M2FNUZ", "UINT4",        "INT4",         "FLOAT4E2M1",
      "FLOAT8E8M0",     "UINT2",        "INT2"};
  if (dtype >= 0 && dtype < static_cast<int32_t>(std::size(names)))
    return names[dtype];
  return "unknown";
}
} // namespace

std::string mlir::kiln::onnx_import::mlirTypeStr(Type type) {
  std::string text;
  llvm::raw_string_ostream os(text);
  os << type;
  return text;
}

llvm::StringRef mlir::kiln::onnx_import::displayDomain(llvm::StringRef domain) {
  return domain.empty() ? "ai.onnx" : domain;
}

//===----------------------------------------------------------------------===//
// NodeContext
//===----------------------------------------------------------------------===//

Value NodeContext::input(unsigned i) {
  if (!hasInput(i))
    return {};
  return importer.lookup(node.input(i));
}

llvm::Expected<Value> NodeContext::required(unsigned i) {
  if (!hasInput(i))
    return error(llvm::formatv("input #{0} is required but missing", i));
  return input(i);
}

void NodeContext::setOutput(unsigned i, Value value) {
  if (hasOutput(i))
    importer.define(node.output(i), value);
}

const onnx::AttributeProto *NodeContext::attr(llvm::StringRef name) const {
  for (const onnx::AttributeProto &a : node.attribute())
    if (a.name() == name)
      return &a;
  return nullptr;
}

llvm::Expected<int64_t>
NodeContext::intAttr(llvm::StringRef name, std::optional<int64_t> dflt) const {
  const onnx::AttributeProto *a = attr(name);
  if (!a) {
    if (dflt)
      return *dflt;
    return error("required attribute '" + name + "' is missing");
  }
  if (a->type() != onnx::AttributeProto::INT)
    return error("attribute '" + name + "' must be an int");
  return a->i();
}

llvm::Expected<float> NodeContext::floatAttr(llvm::StringRef name,
                                             std::optional<float> dflt) const {
  const onnx::AttributeProto *a = attr(name);
  if (!a) {
    if (dflt)
      return *dflt;
    return error("required attribute '" + name + "' is missing");
  }
  if (a->type() != onnx::AttributeProto::FLOAT)
    return error("attribute '" + name + "' must be a float");
  return a->f();
}

llvm::Expected<std::string>
NodeContext::stringAttr(llvm::StringRef name,
                        std::optional<std::string> dflt) const {
  const onnx::AttributeProto *a = attr(name);
  if (!a) {
    if (dflt)
      return *dflt;
    return error("required attribute '" + name + "' is missing");
  }
  if (a->type() != onnx::AttributeProto::STRING)
    return error("attribute '" + name + "' must be a string");
  return a->s();
}

llvm::Expected<std::optional<SmallVector<int64_t>>>
NodeContext::intsAttr(llvm::StringRef name) const {
  const onnx::AttributeProto *a = attr(name);
  if (!a)
    return std::nullopt;
  if (a->type() != onnx::AttributeProto::INTS)
    return error("attribute '" + name + "' must be a list of ints");
  return SmallVector<int64_t>(a->ints().begin(), a->ints().end());
}

llvm::Expected<std::optional<SmallVector<int64_t>>>
NodeContext::axesFrom(llvm::StringRef attrName, unsigned inputIndex) {
  if (attr(attrName))
    return intsAttr(attrName);
  if (!hasInput(inputIndex))
    return std::nullopt;
  auto ints = constInts(inputIndex, attrName);
  if (!ints)
    return ints.takeError();
  return std::optional<SmallVector<int64_t>>(*ints);
}

llvm::Expected<SmallVector<int64_t>> NodeContext::constInts(unsigned i,
                                                            llvm::StringRef what) {
  auto value = required(i);
  if (!value)
    return value.takeError();
  std::optional<ShapeElems> e = importer.elems(*value);
  SmallVector<int64_t> result;
  if (e) {
    for (const ShapeElem &el : *e) {
      if (!el.isConst()) {
        e.reset();
        break;
      }
      result.push_back(el.value);
    }
  }
  if (!e)
    return error("input #" + llvm::Twine(i) + " ('" + what +
                 "') must be known at import time, but it is computed at "
                 "run time");
  return result;
}

llvm::Error NodeContext::error(const llvm::Twine &message) const {
  std::string name = node.name().empty() ? "<unnamed>" : node.name();
  std::string version = opset ? std::to_string(opset) : "none";
  return llvm::createStringError(
      llvm::formatv("{0}: node '{1}' ({2}, domain {3}, opset {4}): {5}",
                    importer.fileName, name, node.op_type(),
                    displayDomain(node.domain()), version, message.str())
          .str());
}

llvm::Error
NodeContext::checkAttributes(llvm::ArrayRef<llvm::StringRef> known) const {
  for (const onnx::AttributeProto &a : node.attribute())
    if (!llvm::is_contained(known, a.name()))
      return error("unsupported attribute '" + a.name() + "'");
  return llvm::Error::success();
}

//===----------------------------------------------------------------------===//
// Importer: values and tracked integers
//===----------------------------------------------------------------------===//

Importer::Importer(MLIRContext *context, llvm::StringRef path,
                   const OnnxImportOptions &options)
    : ctx(context), path(path.str()), options(options), builder(context) {
  fileName = llvm::sys::path::filename(path).str();
  directory = llvm::sys::path::parent_path(path).str();
  registerConverters(converters);
}

llvm::Error Importer::fileError(const llvm::Twine &message) const {
  return llvm::createStringError(fileName + ": " + message.str());
}

Value Importer::lookup(llvm::StringRef name) {
  auto it = values.find(name);
  if (it != values.end())
    return it->second;
  if (initializers.count(name))
    return materializeInitializer(name);
  return {};
}

std::optional<ShapeElems> Importer::elems(Value value) {
  if (!value)
    return std::nullopt;
  auto it = tracked.find(value);
  if (it != tracked.end())
    return it->second;
  DenseIntElementsAttr attr;
  auto type = dyn_cast<RankedTensorType>(value.getType());
  if (!type || type.getRank() > 1 || !matchPattern(value, m_Constant(&attr)) ||
      attr.getNumElements() > 64)
    return std::nullopt;
  ShapeElems result;
  for (const APInt &v : attr.getValues<APInt>())
    result.push_back(ShapeElem::constant(
        type.getElementType().isUnsignedInteger() ? v.getZExtValue()
                                                  : v.getSExtValue()));
  return result;
}

Value Importer::constI64(OpBuilder &b, Location loc,
                         llvm::ArrayRef<int64_t> vals, bool scalar) {
  auto type = scalar ? RankedTensorType::get({}, b.getI64Type())
                     : RankedTensorType::get(
                           {static_cast<int64_t>(vals.size())}, b.getI64Type());
  Value v = arith::ConstantOp::create(b, loc, type,
                                      DenseIntElementsAttr::get(type, vals));
  return v;
}

SmallVector<int64_t> Importer::staticDims(const ShapeElems &e) {
  SmallVector<int64_t> dims;
  for (const ShapeElem &el : e) {
    if (el.isConst())
      dims.push_back(el.value);
    else if (el.kind == ShapeElem::Dim)
      dims.push_back(
          cast<RankedTensorType>(el.source.getType()).getDimSize(el.dim));
    else
      dims.push_back(ShapedType::kDynamic);
  }
  return dims;
}

Value Importer::materializeShape(OpBuilder &b, Location loc,
                                 const ShapeElems &e) {
  if (llvm::all_of(e, [](const ShapeElem &el) { return el.isConst(); })) {
    SmallVector<int64_t> vals;
    for (const ShapeElem &el : e)
      vals.push_back(el.value);
    return constI64(b, loc, vals);
  }
  SmallVector<Value> parts;
  auto i64x1 = RankedTensorType::get({1}, b.getI64Type());
  for (const ShapeElem &el : e) {
    if (el.kind == ShapeElem::Unknown)
      return {};
    if (el.isConst()) {
      parts.push_back(constI64(b, loc, {el.value}));
      continue;
    }
    auto srcType = cast<RankedTensorType>(el.source.getType());
    Value shape = ShapeOfOp::create(
        b, loc, RankedTensorType::get({srcType.getRank()}, b.getI64Type()),
        el.source);
    parts.push_back(SliceOp::create(b, loc, i64x1, shape,
                                    b.getDenseI64ArrayAttr({0}),
                                    b.getDenseI64ArrayAttr({el.dim}),
                                    b.getDenseI64ArrayAttr({el.dim + 1}),
                                    b.getDenseI64ArrayAttr({1})));
  }
  auto type = RankedTensorType::get({static_cast<int64_t>(parts.size())},
                                    b.getI64Type());
  Value result = ConcatOp::create(b, loc, type, parts, b.getI64IntegerAttr(0));
  setElems(result, e);
  return result;
}

void Importer::markKvCache(Value cache, Value updated) {
  scatteredCaches.emplace_back(cache, updated);
}

void Importer::markWindowedCache(Value past, Value present, int64_t window) {
  windowedCaches.push_back({past, present, window});
}

Importer::DimKey Importer::findDim(DimKey key) {
  auto it = dimParent.find(key);
  if (it == dimParent.end() || it->second == key)
    return key;
  DimKey root = findDim(it->second);
  dimParent[key] = root;
  return root;
}

void Importer::unifyDims(Value a, int64_t da, Value b, int64_t db) {
  auto ta = cast<RankedTensorType>(a.getType());
  auto tb = cast<RankedTensorType>(b.getType());
  if (!ta.isDynamicDim(da) || !tb.isDynamicDim(db))
    return;
  DimKey ra = findDim({a.getAsOpaquePointer(), da});
  DimKey rb = findDim({b.getAsOpaquePointer(), db});
  if (ra != rb)
    dimParent[ra] = rb;
}

bool Importer::sameDim(Value a, int64_t da, Value b, int64_t db) {
  if (a == b && da == db)
    return true;
  return findDim({a.getAsOpaquePointer(), da}) ==
         findDim({b.getAsOpaquePointer(), db});
}

void Importer::unifyElementwise(Value result, llvm::ArrayRef<Value> operands) {
  auto rt = cast<RankedTensorType>(result.getType());
  for (Value operand : operands) {
    if (!operand)
      continue;
    auto ot = cast<RankedTensorType>(operand.getType());
    int64_t offset = rt.getRank() - ot.getRank();
    for (int64_t d = 0; d < ot.getRank(); ++d)
      if (d + offset >= 0)
        unifyDims(result, d + offset, operand, d);
  }
}

//===----------------------------------------------------------------------===//
// Types
//===----------------------------------------------------------------------===//

llvm::Expected<Type> Importer::elementType(int32_t dtype,
                                           const llvm::Twine &what) {
  Type t;
  switch (dtype) {
  case 1: t = Float32Type::get(ctx); break;
  case 2: t = IntegerType::get(ctx, 8, IntegerType::Unsigned); break;
  case 3: t = IntegerType::get(ctx, 8); break;
  case 4: t = IntegerType::get(ctx, 16, IntegerType::Unsigned); break;
  case 5: t = IntegerType::get(ctx, 16); break;
  case 6: t = IntegerType::get(ctx, 32); break;
  case 7: t = IntegerType::get(ctx, 64); break;
  case 9: t = IntegerType::get(ctx, 1); break;
  case 10: t = Float16Type::get(ctx); break;
  case 11: t = Float64Type::get(ctx); break;
  case 12: t = IntegerType::get(ctx, 32, IntegerType::Unsigned); break;
  case 13: t = IntegerType::get(ctx, 64, IntegerType::Unsigned); break;
  case 16: t = BFloat16Type::get(ctx); break;
  case 17: t = Float8E4M3FNType::get(ctx); break;
  case 19: t = Float8E5M2Type::get(ctx); break;
  case 21: t = IntegerType::get(ctx, 4, IntegerType::Unsigned); break;
  case 22: t = IntegerType::get(ctx, 4); break;
  default:
    return fileError(llvm::formatv("{0} has element type {1} ({2}), which "
                                   "kiln does not support",
                                   what.str(), dtypeName(dtype), dtype)
                         .str());
  }
  return t;
}

llvm::Expected<RankedTensorType>
Importer::tensorType(const onnx::TypeProto &type, const llvm::Twine &what,
                     SmallVectorImpl<std::string> *dimNames) {
  if (!type.has_tensor_type())
    return fileError(what + " is not a tensor (sequences, maps and optionals "
                            "are not supported)");
  const onnx::TypeProto_Tensor &tensor = type.tensor_type();
  auto et = elementType(tensor.elem_type(), what);
  if (!et)
    return et.takeError();
  if (!tensor.has_shape())
    return fileError(what + " has no shape; kiln needs at least the rank");
  SmallVector<int64_t> dims;
  for (const onnx::TensorShapeProto_Dimension &d : tensor.shape().dim()) {
    if (d.has_dim_value()) {
      if (d.dim_value() < 0 || d.dim_value() >= (int64_t{1} << 48))
        return fileError(what + " has an invalid dimension " +
                         llvm::Twine(d.dim_value()));
      dims.push_back(d.dim_value());
      if (dimNames)
        dimNames->push_back("");
    } else {
      dims.push_back(ShapedType::kDynamic);
      if (dimNames)
        dimNames->push_back(d.has_dim_param() ? d.dim_param() : "");
    }
  }
  return RankedTensorType::get(dims, *et);
}

//===----------------------------------------------------------------------===//
// Loading
//===----------------------------------------------------------------------===//

llvm::Error Importer::load() {
  auto buffer = llvm::MemoryBuffer::getFile(path, /*IsText=*/false,
                                            /*RequiresNullTerminator=*/false);
  if (!buffer)
    return llvm::createStringError(path + ": cannot read the model: " +
                                   buffer.getError().message());
  bytes = (*buffer)->getBuffer().str();
  return parse();
}

llvm::Error Importer::parse() {
  if (bytes.size() > static_cast<size_t>(INT32_MAX))
    return fileError("the model file is over 2 GiB; protobuf cannot parse it "
                     "(store the weights as external data)");
  if (!model.ParseFromString(bytes))
    return fileError("not a valid ONNX model: the protobuf does not parse "
                     "(truncated or corrupt file?)");
  if (!model.has_graph())
    return fileError("the model has no graph");
  if (model.ir_version() < 3)
    return fileError(llvm::formatv("IR version {0} is older than the oldest "
                                   "supported (3)",
                                   model.ir_version())
                         .str());
  if (model.ir_version() > kMaxIrVersion)
    return fileError(llvm::formatv("IR version {0} is newer than the newest "
                                   "supported ({1})",
                                   model.ir_version(), kMaxIrVersion)
                         .str());
  return llvm::Error::success();
}

llvm::Error Importer::checkOpsets() {
  for (const onnx::OperatorSetIdProto &id : model.opset_import()) {
    std::string domain = id.domain() == "ai.onnx" ? "" : id.domain();
    opsets[domain] = id.version();
    if (domain.empty() &&
        (id.version() < kMinOnnxOpset || id.version() > kMaxOnnxOpset))
      return fileError(llvm::formatv("ai.onnx opset {0} is not supported "
                                     "(kiln imports opsets {1} to {2})",
                                     id.version(), kMinOnnxOpset,
                                     kMaxOnnxOpset)
                           .str());
    if (domain == "com.microsoft" && id.version() != 1)
      return fileError(llvm::formatv("com.microsoft opset {0} is not "
                                     "supported (kiln imports version 1)",
                                     id.version())
                           .str());
  }
  if (!opsets.count(""))
    return fileError("the model imports no ai.onnx opset");
  return llvm::Error::success();
}

//===----------------------------------------------------------------------===//
// Initializers
//===----------------------------------------------------------------------===//

/// Bytes ONNX uses to store `n` elements of `type` (4-bit types pack two per
/// byte across the whole tensor; bool takes a byte).
static uint64_t onnxStorageBytes(Type et, int64_t n) {
  unsigned bits = et.getIntOrFloatBitWidth();
  if (bits == 4)
    return (n + 1) / 2;
  return n * std::max(1u, bits / 8);
}

llvm::Expected<std::string>
Importer::readExternal(const onnx::TensorProto &tensor, RankedTensorType type,
                       ExternalStorageAttr &storage) {
  std::string location;
  std::optional<uint64_t> offset, length;
  std::string what = "initializer '" + tensor.name() + "'";
  for (const onnx::StringStringEntryProto &kv : tensor.external_data()) {
    auto parseNumber = [&](std::optional<uint64_t> &out) -> llvm::Error {
      uint64_t v;
      if (!llvm::to_integer(kv.value(), v, 10))
        return fileError(what + ": external data " + kv.key() + " '" +
                         kv.value() + "' is not a number");
      out = v;
      return llvm::Error::success();
    };
    if (kv.key() == "location")
      location = kv.value();
    else if (kv.key() == "offset") {
      if (llvm::Error err = parseNumber(offset))
        return std::move(err);
    } else if (kv.key() == "length") {
      if (llvm::Error err = parseNumber(length))
        return std::move(err);
    }
  }
  if (location.empty())
    return fileError(what + ": external data has no location");
  if (llvm::sys::path::is_absolute(location) ||
      llvm::any_of(llvm::make_range(llvm::sys::path::begin(location),
                                    llvm::sys::path::end(location)),
                   [](llvm::StringRef part) { return part == ".."; }))
    return fileError(what + ": external data location '" + location +
                     "' must be relative to the model's folder and stay "
                     "inside it");
  SmallString<256> full(directory);
  llvm::sys::path::append(full, location);
  uint64_t fileSize = 0;
  if (std::error_code ec = llvm::sys::fs::file_size(full, fileSize))
    return fileError(what + ": cannot open external data file '" + location +
                     "': " + ec.message());
  uint64_t expected = onnxStorageBytes(type.getElementType(),
                                       type.getNumElements());
  uint64_t begin = offset.value_or(0);
  uint64_t size = length.value_or(expected);
  if (size != expected)
    return fileError(llvm::formatv("{0}: external data length {1} does not "
                                   "match the {2} bytes of its type",
                                   what, size, expected)
                         .str());
  if (begin > fileSize || size > fileSize - begin)
    return fileError(llvm::formatv("{0}: external data range [{1}, {2}) lies "
                                   "outside '{3}' ({4} bytes)",
                                   what, begin, begin + size, location,
                                   fileSize)
                         .str());
  storage = ExternalStorageAttr::get(ctx, location, begin, size);
  // Only inlined tensors need their bytes.
  if (type.getNumElements() > options.maxInlineIntegerElements)
    return std::string();
  auto file = llvm::MemoryBuffer::getFileSlice(full, size, begin);
  if (!file)
    return fileError(what + ": cannot read external data: " +
                     file.getError().message());
  return (*file)->getBuffer().str();
}

/// Elementwise values as APInts of the element type's width.
static APInt bitsOf(uint64_t raw, unsigned width) { return APInt(width, raw); }

llvm::Expected<DenseElementsAttr>
Importer::decodeTensor(const onnx::TensorProto &tensor, RankedTensorType type,
                       const llvm::Twine &what) {
  Type et = type.getElementType();
  unsigned width = et.getIntOrFloatBitWidth();
  int64_t n = type.getNumElements();
  SmallVector<APInt> words;
  words.reserve(n);
  std::string external;
  const std::string *raw = nullptr;
  if (tensor.data_location() == onnx::TensorProto::EXTERNAL) {
    ExternalStorageAttr storage;
    auto data = readExternal(tensor, type, storage);
    if (!data)
      return data.takeError();
    external = std::move(*data);
    raw = &external;
  } else if (tensor.has_raw_data()) {
    raw = &tensor.raw_data();
  }
  if (raw) {
    uint64_t expected = onnxStorageBytes(et, n);
    if (raw->size() != expected)
      return fileError(llvm::formatv("{0} holds {1} bytes but its type needs "
                                     "{2}",
                                     what.str(), raw->size(), expected)
                           .str());
    const auto *p = reinterpret_cast<const uint8_t *>(raw->data());
    unsigned byteWidth = std::max(1u, width / 8);
    for (int64_t i = 0; i < n; ++i) {
      uint64_t v = 0;
      if (width == 4)
        v = (p[i / 2] >> ((i % 2) * 4)) & 0xf;
      else
        for (unsigned k = 0; k < byteWidth; ++k)
          v |= static_cast<uint64_t>(p[i * byteWidth + k]) << (8 * k);
      words.push_back(bitsOf(width == 1 ? (v != 0) : v, width));
    }
  } else {
    // Typed fields: which one holds the values depends on the type.
    auto fromList = [&](const auto &list, auto toBits) -> llvm::Error {
      int64_t count = list.size();
      int64_t perEntry = width == 4 ? 2 : 1;
      if (count * perEntry < n || (count - 1) * perEntry >= n)
        return fileError(llvm::formatv("{0} has {1} values but its type "
                                       "holds {2}",
                                       what.str(), count * perEntry, n)
                             .str());
      for (int64_t i = 0; i < n; ++i) {
        uint64_t v = toBits(list.Get(i / perEntry));
        if (width == 4)
          v = (v >> ((i % 2) * 4)) & 0xf;
        words.push_back(bitsOf(width == 1 ? (v != 0) : v, width));
      }
      return llvm::Error::success();
    };
    llvm::Error err = llvm::Error::success();
    if (et.isF32())
      err = fromList(tensor.float_data(), [](float f) {
        return static_cast<uint64_t>(llvm::bit_cast<uint32_t>(f));
      });
    else if (et.isF64())
      err = fromList(tensor.double_data(), [](double d) {
        return llvm::bit_cast<uint64_t>(d);
      });
    else if (et.isInteger(64) && !et.isUnsignedInteger())
      err = fromList(tensor.int64_data(),
                     [](int64_t v) { return static_cast<uint64_t>(v); });
    else if (et.isUnsignedInteger(32) || et.isUnsignedInteger(64))
      err = fromList(tensor.uint64_data(), [](uint64_t v) { return v; });
    else
      err = fromList(tensor.int32_data(), [&](int32_t v) {
        return static_cast<uint64_t>(static_cast<uint32_t>(v)) &
               (width >= 64 ? ~0ull : ((1ull << width) - 1));
      });
    if (err)
      return std::move(err);
  }
  if (auto ft = dyn_cast<FloatType>(et)) {
    SmallVector<APFloat> floats;
    for (const APInt &w : words)
      floats.emplace_back(ft.getFloatSemantics(), w);
    return DenseElementsAttr::get(type, floats);
  }
  return DenseElementsAttr::get(type, words);
}

llvm::Error Importer::importInitializers() {
  const onnx::GraphProto &graph = model.graph();
  auto spans = onnx_wire::findInitializerData(bytes);
  if (!spans)
    return fileError(llvm::toString(spans.takeError()));
  if (spans->size() != static_cast<size_t>(graph.initializer_size()))
    return fileError("initializer count mismatch while locating tensor data");
  builder.setInsertionPointToStart(module->getBody());
  for (auto [index, tensor] : llvm::enumerate(graph.initializer())) {
    std::string what = "initializer '" + tensor.name() + "'";
    if (tensor.name().empty())
      return fileError(llvm::formatv("initializer #{0} has no name", index)
                           .str());
    auto et = elementType(tensor.data_type(), what);
    if (!et)
      return et.takeError();
    SmallVector<int64_t> dims(tensor.dims().begin(), tensor.dims().end());
    if (llvm::any_of(dims, [](int64_t d) { return d < 0; }))
      return fileError(what + " has a negative dimension");
    uint64_t count = 1;
    for (int64_t d : dims)
      if (__builtin_mul_overflow(count, static_cast<uint64_t>(d), &count))
        count = UINT64_MAX;
    if (llvm::is_contained(dims, 0))
      count = 0;
    if (count > (uint64_t{1} << 48))
      return fileError(what + " has too many elements");
    auto type = RankedTensorType::get(dims, *et);
    Initializer init{&tensor, type, {}, "", {}};
    int64_t n = type.getNumElements();
    bool isInt = isa<IntegerType>(*et);
    // Scalars, and 1-D integer tables (shapes, axes, indices) so that shape
    // computations fold; everything else is a weight.
    bool inlined = n <= options.maxInlineElements ||
                   (isInt && type.getRank() <= 1 &&
                    n <= options.maxInlineIntegerElements);
    if (inlined) {
      auto attr = decodeTensor(tensor, type, what);
      if (!attr)
        return attr.takeError();
      init.inlined = *attr;
    } else {
      ExternalStorageAttr storage;
      if (tensor.data_location() == onnx::TensorProto::EXTERNAL) {
        auto ignored = readExternal(tensor, type, storage);
        if (!ignored)
          return ignored.takeError();
      } else if (const std::optional<onnx_wire::Span> &span = (*spans)[index]) {
        uint64_t expected = onnxStorageBytes(*et, n);
        if (span->length != expected)
          return fileError(llvm::formatv("{0} holds {1} bytes but its type "
                                         "needs {2}",
                                         what, span->length, expected)
                               .str());
        storage = ExternalStorageAttr::get(ctx, fileName, span->offset,
                                           span->length);
      } else {
        return fileError(what + llvm::formatv(" stores {0} elements in typed "
                                              "fields; large initializers must "
                                              "use raw_data or external data",
                                              n)
                                    .str());
      }
      // The ONNX 4-bit layout packs across rows; kiln pads each row to a
      // byte. They agree exactly when the innermost dimension is even.
      if (et->getIntOrFloatBitWidth() == 4 && type.getRank() > 1 &&
          type.getShape().back() % 2)
        return fileError(what + " is a 4-bit tensor with an odd innermost "
                                "dimension, whose ONNX packing crosses rows");
      init.symbol = tensor.name();
      WeightDeclOp::create(builder,
                           NameLoc::get(StringAttr::get(ctx, tensor.name()),
                                        FileLineColLoc::get(ctx, fileName, 0,
                                                            0)),
                           builder.getStringAttr(tensor.name()),
                           TypeAttr::get(type), storage);
    }
    initializers[tensor.name()] = init;
  }
  return llvm::Error::success();
}

Value Importer::materializeInitializer(llvm::StringRef name) {
  Initializer &init = initializers[name];
  if (init.value)
    return init.value;
  // Weight reads and inlined constants go to the top of the function, where
  // every later node can use them.
  OpBuilder::InsertionGuard guard(builder);
  builder.setInsertionPointToStart(&func.getBody().front());
  Location loc = NameLoc::get(StringAttr::get(ctx, name),
                              FileLineColLoc::get(ctx, fileName, 0, 0));
  if (init.inlined)
    init.value = arith::ConstantOp::create(builder, loc, init.type,
                                           init.inlined);
  else
    init.value = WeightOp::create(builder, loc, init.type, init.symbol);
  return init.value;
}

//===----------------------------------------------------------------------===//
// Graph
//===----------------------------------------------------------------------===//

/// KV-cache tensors by the names optimum and onnxruntime-genai give them.
static std::optional<NamedAttrList> kvCacheRole(MLIRContext *ctx,
                                                llvm::StringRef name) {
  static const llvm::Regex pattern(
      "^(past_key_values|past|present|present_key_values)[._]([0-9]+)[._]"
      "(key|value)$");
  SmallVector<llvm::StringRef> m;
  if (!pattern.match(name, &m))
    return std::nullopt;
  Builder b(ctx);
  NamedAttrList attrs;
  attrs.append("layer", b.getI64IntegerAttr(std::stoll(m[2].str())));
  attrs.append("kind", b.getStringAttr(m[3]));
  attrs.append("role", b.getStringAttr(m[1].starts_with("past") ? "past"
                                                                : "present"));
  return attrs;
}

llvm::Error Importer::importNode(const onnx::NodeProto &node, unsigned index) {
  std::string domain = node.domain() == "ai.onnx" ? "" : node.domain();
  std::string name =
      node.name().empty() ? llvm::formatv("{0}_{1}", node.op_type(), index).str()
                          : node.name();
  Location loc = NameLoc::get(StringAttr::get(ctx, name),
                              FileLineColLoc::get(ctx, fileName, 0, 0));
  auto opsetIt = opsets.find(domain);
  int64_t opset = opsetIt == opsets.end() ? 0 : opsetIt->second;
  NodeContext nc(*this, node, opset, loc, builder);
  if (opsetIt == opsets.end())
    return nc.error("the model imports no opset for domain '" +
                    displayDomain(domain) + "'");
  auto it = converters.find(domain + "::" + node.op_type());
  if (it == converters.end()) {
    if (domain != "" && domain != "com.microsoft")
      return nc.error("unsupported domain '" + domain + "'");
    return nc.error("unsupported op");
  }
  if (opset < it->second.minOpset)
    return nc.error(llvm::formatv("this op is supported from opset {0} on",
                                  it->second.minOpset));
  for (auto [i, input] : llvm::enumerate(node.input()))
    if (!input.empty() && !lookup(input))
      return nc.error(llvm::formatv("input #{0} '{1}' is not defined before "
                                    "this node (the graph must be "
                                    "topologically sorted)",
                                    i, input));
  if (llvm::Error err = it->second.convert(nc))
    return err;
  for (auto [i, output] : llvm::enumerate(node.output()))
    if (!output.empty() && !values.count(output))
      return nc.error(llvm::formatv("output #{0} '{1}' is not supported by "
                                    "the importer",
                                    i, output));
  return llvm::Error::success();
}

llvm::Error Importer::importGraph() {
  const onnx::GraphProto &graph = model.graph();
  SmallVector<Type> argTypes;
  SmallVector<DictionaryAttr> argAttrs;
  SmallVector<const onnx::ValueInfoProto *> args;
  for (const onnx::ValueInfoProto &input : graph.input()) {
    if (initializers.count(input.name()))
      continue; // IR < 4 lists initializers as inputs too
    SmallVector<std::string> dimNames;
    auto type = tensorType(input.type(), "graph input '" + input.name() + "'",
                           &dimNames);
    if (!type)
      return type.takeError();
    NamedAttrList attrs;
    attrs.append("kiln.name", builder.getStringAttr(input.name()));
    if (llvm::any_of(dimNames, [](const std::string &s) { return !s.empty(); }))
      attrs.append("kiln.dims", builder.getStrArrayAttr(SmallVector<StringRef>(
                                    dimNames.begin(), dimNames.end())));
    if (auto kv = kvCacheRole(ctx, input.name()))
      attrs.append("kiln.kv", kv->getDictionary(ctx));
    argTypes.push_back(*type);
    argAttrs.push_back(attrs.getDictionary(ctx));
    args.push_back(&input);
  }
  builder.setInsertionPointToEnd(module->getBody());
  func = func::FuncOp::create(builder,
                              FileLineColLoc::get(ctx, fileName, 0, 0),
                              options.functionName,
                              builder.getFunctionType(argTypes, {}));
  Block *entry = func.addEntryBlock();
  for (auto [i, attrs] : llvm::enumerate(argAttrs))
    func.setArgAttrs(i, attrs);
  for (auto [i, input] : llvm::enumerate(args))
    define(input->name(), entry->getArgument(i));
  // Inputs that name a dimension alike (batch_size, sequence_length) share it.
  llvm::StringMap<std::pair<Value, int64_t>> namedDims;
  for (auto [i, attrs] : llvm::enumerate(argAttrs)) {
    auto names = attrs.getAs<ArrayAttr>("kiln.dims");
    if (!names)
      continue;
    for (auto [d, name] : llvm::enumerate(names.getAsValueRange<StringAttr>())) {
      if (name.empty())
        continue;
      auto [it, inserted] = namedDims.try_emplace(
          name, std::make_pair(entry->getArgument(i), static_cast<int64_t>(d)));
      if (!inserted)
        unifyDims(entry->getArgument(i), d, it->second.first,
                  it->second.second);
    }
  }
  builder.setInsertionPointToEnd(entry);

  for (auto [index, node] : llvm::enumerate(graph.node()))
    if (llvm::Error err = importNode(node, index))
      return err;

  SmallVector<Value> results;
  SmallVector<Type> resultTypes;
  SmallVector<DictionaryAttr> resultAttrs;
  for (const onnx::ValueInfoProto &output : graph.output()) {
    Value v = lookup(output.name());
    if (!v)
      return fileError("graph output '" + output.name() +
                       "' is not produced by any node");
    NamedAttrList attrs;
    attrs.append("kiln.name", builder.getStringAttr(output.name()));
    if (output.has_type() && output.type().has_tensor_type() &&
        output.type().tensor_type().has_shape()) {
      SmallVector<std::string> dimNames;
      auto declared = tensorType(output.type(),
                                 "graph output '" + output.name() + "'",
                                 &dimNames);
      if (!declared)
        return declared.takeError();
      auto produced = cast<RankedTensorType>(v.getType());
      if (declared->getElementType() != produced.getElementType() ||
          failed(verifyCompatibleShape(*declared, produced)))
        return fileError(llvm::formatv(
                             "graph output '{0}' is declared {1} but computes "
                             "{2}",
                             output.name(), mlirTypeStr(*declared),
                             mlirTypeStr(produced))
                             .str());
      if (llvm::any_of(dimNames,
                       [](const std::string &s) { return !s.empty(); }))
        attrs.append("kiln.dims",
                     builder.getStrArrayAttr(SmallVector<StringRef>(
                         dimNames.begin(), dimNames.end())));
    }
    if (auto kv = kvCacheRole(ctx, output.name()))
      attrs.append("kiln.kv", kv->getDictionary(ctx));
    results.push_back(v);
    resultTypes.push_back(v.getType());
    resultAttrs.push_back(attrs.getDictionary(ctx));
  }
  // Caches updated in place (TensorScatter) are KV caches whatever their
  // names: mark the input and the output that returns the update.
  for (auto [cache, updated] : scatteredCaches) {
    auto arg = dyn_cast<BlockArgument>(cache);
    if (!arg || arg.getOwner() != entry)
      continue;
    NamedAttrList attrs(argAttrs[arg.getArgNumber()]);
    if (!attrs.get("kiln.kv")) {
      NamedAttrList kv;
      kv.append("role", builder.getStringAttr("static"));
      attrs.append("kiln.kv", kv.getDictionary(ctx));
      argAttrs[arg.getArgNumber()] = attrs.getDictionary(ctx);
      func.setArgAttrs(arg.getArgNumber(), argAttrs[arg.getArgNumber()]);
    }
    for (auto [i, r] : llvm::enumerate(results)) {
      if (r != updated)
        continue;
      NamedAttrList rattrs(resultAttrs[i]);
      if (!rattrs.get("kiln.kv")) {
        NamedAttrList kv;
        kv.append("role", builder.getStringAttr("static"));
        kv.append("input", builder.getI64IntegerAttr(arg.getArgNumber()));
        rattrs.append("kiln.kv", kv.getDictionary(ctx));
        resultAttrs[i] = rattrs.getDictionary(ctx);
      }
    }
  }
  // Windowed caches: the runtime gives them a fixed capacity (at least the
  // window) instead of a growing length.
  auto addWindow = [&](DictionaryAttr &attrs, int64_t window) {
    auto kv = attrs.getAs<DictionaryAttr>("kiln.kv");
    if (!kv)
      return;
    NamedAttrList kvAttrs(kv);
    kvAttrs.set("window", builder.getI64IntegerAttr(window));
    NamedAttrList all(attrs);
    all.set("kiln.kv", kvAttrs.getDictionary(ctx));
    attrs = all.getDictionary(ctx);
  };
  for (const WindowedCache &w : windowedCaches) {
    auto arg = dyn_cast<BlockArgument>(w.past);
    if (arg && arg.getOwner() == entry) {
      addWindow(argAttrs[arg.getArgNumber()], w.window);
      func.setArgAttrs(arg.getArgNumber(), argAttrs[arg.getArgNumber()]);
    }
    for (auto [i, r] : llvm::enumerate(results))
      if (r == w.present)
        addWindow(resultAttrs[i], w.window);
  }
  func::ReturnOp::create(builder, FileLineColLoc::get(ctx, fileName, 0, 0),
                         results);
  func.setFunctionType(builder.getFunctionType(argTypes, resultTypes));
  // Shape computations folded at import leave their original ops unused.
  tracked.clear();
  dimParent.clear();
  scatteredCaches.clear();
  Block &body = func.getBody().front();
  for (Operation &op : llvm::make_early_inc_range(llvm::reverse(body)))
    if (isOpTriviallyDead(&op))
      op.erase();
  for (auto [i, attrs] : llvm::enumerate(resultAttrs))
    func.setResultAttrs(i, attrs);
  return llvm::Error::success();
}

llvm::Expected<OwningOpRef<ModuleOp>> Importer::run() {
  if (llvm::Error err = load())
    return std::move(err);
  return build();
}

llvm::Expected<OwningOpRef<ModuleOp>> Importer::runOnBytes(std::string model) {
  bytes = std::move(model);
  if (llvm::Error err = parse())
    return std::move(err);
  return build();
}

llvm::Expected<OwningOpRef<ModuleOp>> Importer::build() {
  if (llvm::Error err = checkOpsets())
    return std::move(err);
  module = ModuleOp::create(FileLineColLoc::get(ctx, fileName, 0, 0));
  Builder b(ctx);
  NamedAttrList info;
  info.append("file", b.getStringAttr(fileName));
  info.append("ir_version", b.getI64IntegerAttr(model.ir_version()));
  if (!model.producer_name().empty())
    info.append("producer", b.getStringAttr(model.producer_name() + " " +
                                            model.producer_version()));
  SmallVector<NamedAttribute> opsetAttrs;
  for (auto &entry : opsets)
    opsetAttrs.push_back(b.getNamedAttr(
        displayDomain(entry.first()), b.getI64IntegerAttr(entry.second)));
  info.append("opsets", b.getDictionaryAttr(opsetAttrs));
  (*module)->setAttr("kiln.source", info.getDictionary(ctx));

  if (llvm::Error err = importInitializers())
    return std::move(err);
  if (llvm::Error err = importGraph())
    return std::move(err);

  std::string diagnostics;
  {
    ScopedDiagnosticHandler handler(ctx, [&](Diagnostic &diag) {
      llvm::raw_string_ostream os(diagnostics);
      os << diag.getLocation() << ": " << diag << "\n";
      return success();
    });
    if (failed(verify(*module)))
      return fileError("the imported IR does not verify (an importer bug):\n" +
                       diagnostics);
  }
  return std::move(module);
}

llvm::Expected<OwningOpRef<ModuleOp>>
mlir::kiln::importOnnxModel(MLIRContext *context, llvm::StringRef path,
                            const OnnxImportOptions &options) {
  context->loadDialect<KilnDialect, arith::ArithDialect, func::FuncDialect>();
  Importer importer(context, path, options);
  return importer.run();
}

std::vector<std::pair<std::string, int64_t>> mlir::kiln::supportedOnnxOps() {
  llvm::StringMap<ConverterEntry> table;
  registerConverters(table);
  std::vector<std::pair<std::string, int64_t>> ops;
  for (auto &entry : table)
    ops.emplace_back(entry.first().str(), entry.second.minOpset);
  llvm::sort(ops);
  return ops;
}

llvm::Expected<OwningOpRef<ModuleOp>> mlir::kiln::importOnnxModelFromBuffer(
    MLIRContext *context, llvm::StringRef bytes, llvm::StringRef name,
    llvm::StringRef directory, const OnnxImportOptions &options) {
  context->loadDialect<KilnDialect, arith::ArithDialect, func::FuncDialect>();
  SmallString<256> path(directory);
  llvm::sys::path::append(path, name);
  Importer importer(context, path, options);
  return importer.runOnBytes(bytes.str());
}

void mlir::kiln::registerOnnxImportDialects(DialectRegistry &registry) {
  registry.insert<KilnDialect, arith::ArithDialect, func::FuncDialect>();
}
