//===- ImporterImpl.h - shared state of the ONNX importer ----------*- C++ -*-===//
//
// The importer walks the graph in order; each node's converter reads its
// inputs and attributes through a NodeContext and defines its outputs. Small
// integer tensors (shapes, axes, indices) are tracked element by element so
// that shape computations fold at import even when batch and sequence are
// dynamic.
//
//===----------------------------------------------------------------------===//

#ifndef KILN_LIB_IMPORT_IMPORTERIMPL_H
#define KILN_LIB_IMPORT_IMPORTERIMPL_H

#include "kiln/Dialect/Kiln/IR/KilnOps.h"
#include "kiln/Import/OnnxImporter.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/Matchers.h"
#include "llvm/ADT/DenseMap.h"
#include "llvm/ADT/StringMap.h"

#include <onnx/onnx_pb.h>

#include <functional>
#include <optional>

namespace mlir::kiln::onnx_import {

/// One element of a small integer tensor: a constant, the size of a
/// dimension of some value (known symbolically), or unknown.
struct ShapeElem {
  enum Kind { Unknown, Const, Dim } kind = Unknown;
  int64_t value = 0;  ///< for Const
  Value source;       ///< for Dim
  int64_t dim = 0;    ///< for Dim

  static ShapeElem constant(int64_t v) { return {Const, v, {}, 0}; }
  static ShapeElem dimOf(Value v, int64_t d) { return {Dim, 0, v, d}; }
  bool isConst() const { return kind == Const; }
  bool operator==(const ShapeElem &o) const {
    return kind == o.kind && value == o.value && source == o.source &&
           dim == o.dim;
  }
};
using ShapeElems = SmallVector<ShapeElem, 4>;

class Importer;

/// What a converter sees of one node.
class NodeContext {
public:
  NodeContext(Importer &importer, const onnx::NodeProto &node, int64_t opset,
              Location loc, OpBuilder &builder)
      : importer(importer), node(node), opset(opset), loc(loc), b(builder) {}

  Importer &importer;
  const onnx::NodeProto &node;
  int64_t opset;
  Location loc;
  OpBuilder &b;

  unsigned numInputs() const { return node.input_size(); }
  bool hasInput(unsigned i) const {
    return i < static_cast<unsigned>(node.input_size()) &&
           !node.input(i).empty();
  }
  /// Input `i`; null when absent (an optional input left empty).
  Value input(unsigned i);
  RankedTensorType inputType(unsigned i) {
    return cast<RankedTensorType>(input(i).getType());
  }
  /// Input `i`, which must be present.
  llvm::Expected<Value> required(unsigned i);

  unsigned numOutputs() const { return node.output_size(); }
  bool hasOutput(unsigned i) const {
    return i < static_cast<unsigned>(node.output_size()) &&
           !node.output(i).empty();
  }
  void setOutput(unsigned i, Value value);

  const onnx::AttributeProto *attr(llvm::StringRef name) const;
  llvm::Expected<int64_t> intAttr(llvm::StringRef name,
                                  std::optional<int64_t> dflt = {}) const;
  llvm::Expected<float> floatAttr(llvm::StringRef name,
                                  std::optional<float> dflt = {}) const;
  llvm::Expected<std::string>
  stringAttr(llvm::StringRef name,
             std::optional<std::string> dflt = {}) const;
  /// Ints attribute; nullopt when absent.
  llvm::Expected<std::optional<SmallVector<int64_t>>>
  intsAttr(llvm::StringRef name) const;
  /// Axes given as an attribute (older opsets) or as input `inputIndex`
  /// (newer ones); nullopt when neither is given.
  llvm::Expected<std::optional<SmallVector<int64_t>>>
  axesFrom(llvm::StringRef attrName, unsigned inputIndex);
  /// The values of a small integer input that must be known at import.
  llvm::Expected<SmallVector<int64_t>> constInts(unsigned i,
                                                 llvm::StringRef what);

  /// An error naming the file, node, op type, domain and opset.
  llvm::Error error(const llvm::Twine &message) const;
  /// Fails on attributes the converter does not read (so no semantics are
  /// silently dropped). `known` lists the ones it handles.
  llvm::Error checkAttributes(llvm::ArrayRef<llvm::StringRef> known) const;
};

using Converter = std::function<llvm::Error(NodeContext &)>;

/// Registers every node converter, keyed "domain::OpType" ("" for ai.onnx),
/// with the opset range each supports.
struct ConverterEntry {
  Converter convert;
  int64_t minOpset = 1;
};
void registerConverters(llvm::StringMap<ConverterEntry> &table);

class Importer {
public:
  Importer(MLIRContext *context, llvm::StringRef path,
           const OnnxImportOptions &options);
  /// Imports the model at `path`.
  llvm::Expected<OwningOpRef<ModuleOp>> run();
  /// Imports serialized `model` bytes (the file name and directory set by the
  /// constructor's `path` are used for messages and external data).
  llvm::Expected<OwningOpRef<ModuleOp>> runOnBytes(std::string model);

  // --- used by converters ---------------------------------------------------
  MLIRContext *ctx;
  std::string path;       ///< as given
  std::string fileName;   ///< the model's file name, for messages
  std::string directory;  ///< where external data is looked up
  const OnnxImportOptions &options;

  Value lookup(llvm::StringRef name);
  void define(llvm::StringRef name, Value value) { values[name] = value; }

  /// Elements of a small integer tensor, when tracked or constant.
  std::optional<ShapeElems> elems(Value value);
  void setElems(Value value, ShapeElems e) { tracked[value] = std::move(e); }
  /// A tensor<Nxi64> (or scalar) constant, recorded as tracked.
  Value constI64(OpBuilder &b, Location loc, llvm::ArrayRef<int64_t> values,
                 bool scalar = false);
  /// Materializes `elems` as a 1-D i64 shape tensor in IR.
  Value materializeShape(OpBuilder &b, Location loc, const ShapeElems &elems);
  /// The shape a tracked shape tensor describes, `?` where not constant.
  SmallVector<int64_t> staticDims(const ShapeElems &elems);

  /// Marks `cache` (when it is a graph input) and the value that updates it
  /// as a KV cache for the runtime to own, when the names did not already.
  void markKvCache(Value cache, Value updated);
  /// Marks the graph input `past` and the output `present` (when they are KV
  /// caches) as a windowed cache of `window` tokens: fixed capacity, the
  /// resident positions compacted at row 0 (GroupQueryAttention's
  /// sliding_window_cache).
  void markWindowedCache(Value past, Value present, int64_t window);

  /// Dynamic dimensions known to be equal at run time (same ONNX dim_param,
  /// or carried through an op), kept as a union-find over (value, dim).
  void unifyDims(Value a, int64_t da, Value b, int64_t db);
  bool sameDim(Value a, int64_t da, Value b, int64_t db);
  /// Result dims of an elementwise op equal the operands' aligned dynamic
  /// dims (NumPy broadcasting assumes a dynamic dim is not a stretched 1).
  void unifyElementwise(Value result, llvm::ArrayRef<Value> operands);

  llvm::Expected<Type> elementType(int32_t dtype, const llvm::Twine &what);
  llvm::Error fileError(const llvm::Twine &message) const;
  /// The values of a tensor (raw, typed fields or external) as an attribute.
  llvm::Expected<DenseElementsAttr>
  decodeTensor(const onnx::TensorProto &tensor, RankedTensorType type,
               const llvm::Twine &what);

private:
  llvm::Error load();
  llvm::Error parse();
  llvm::Expected<OwningOpRef<ModuleOp>> build();
  llvm::Error checkOpsets();
  llvm::Error importInitializers();
  llvm::Error importGraph();
  llvm::Expected<RankedTensorType>
  tensorType(const onnx::TypeProto &type, const llvm::Twine &what,
             SmallVectorImpl<std::string> *dimNames = nullptr);
  llvm::Error importNode(const onnx::NodeProto &node, unsigned index);
  Value materializeInitializer(llvm::StringRef name);
  llvm::Expected<std::string> readExternal(const onnx::TensorProto &tensor,
                                           RankedTensorType type,
                                           ExternalStorageAttr &storage);

  std::string bytes; ///< the serialized model
  onnx::ModelProto model;
  llvm::StringMap<int64_t> opsets;
  llvm::StringMap<ConverterEntry> converters;
  OwningOpRef<ModuleOp> module;
  func::FuncOp func;
  OpBuilder builder;

  struct Initializer {
    const onnx::TensorProto *tensor;
    RankedTensorType type;
    Value value;        ///< set once materialized
    std::string symbol; ///< weight_decl name, when not inlined
    DenseElementsAttr inlined;
  };
  llvm::StringMap<Initializer> initializers;
  llvm::StringMap<Value> values;
  DenseMap<Value, ShapeElems> tracked;
  /// Graph inputs updated by a TensorScatter, and their updated values.
  SmallVector<std::pair<Value, Value>> scatteredCaches;
  struct WindowedCache {
    Value past, present;
    int64_t window;
  };
  SmallVector<WindowedCache> windowedCaches;
  using DimKey = std::pair<void *, int64_t>;
  DenseMap<DimKey, DimKey> dimParent;
  DimKey findDim(DimKey key);
};

/// A type as MLIR prints it, for messages.
std::string mlirTypeStr(Type type);

/// "ai.onnx" for the default domain.
llvm::StringRef displayDomain(llvm::StringRef domain);

} // namespace mlir::kiln::onnx_import

#endif // KILN_LIB_IMPORT_IMPORTERIMPL_H
