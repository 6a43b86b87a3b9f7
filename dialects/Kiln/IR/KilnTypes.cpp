//===- KilnTypes.cpp - types of the kiln dialect --------------------------===//

#include "kiln/Dialect/Kiln/IR/KilnDialect.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/DialectImplementation.h"
#include "llvm/ADT/TypeSwitch.h"

using namespace mlir;
using namespace mlir::kiln;

#define GET_TYPEDEF_CLASSES
#include "kiln/Dialect/Kiln/IR/KilnTypes.cpp.inc"

void KilnDialect::registerTypes() {
  addTypes<
#define GET_TYPEDEF_LIST
#include "kiln/Dialect/Kiln/IR/KilnTypes.cpp.inc"
      >();
}

//===----------------------------------------------------------------------===//
// QTensorType
//===----------------------------------------------------------------------===//

LogicalResult QTensorType::verify(function_ref<InFlightDiagnostic()> emitError,
                                  ArrayRef<int64_t> shape, QuantAttr quant) {
  if (shape.empty())
    return emitError() << "qtensor must have rank >= 1";
  for (int64_t dim : shape)
    if (dim < 0 && !ShapedType::isDynamic(dim))
      return emitError() << "qtensor dimensions must be non-negative, found "
                         << dim;
  if (quant.getBlock().size() != shape.size())
    return emitError() << "quant block has " << quant.getBlock().size()
                       << " entries but the qtensor has rank " << shape.size();
  return success();
}

RankedTensorType QTensorType::getDataType() const {
  return RankedTensorType::get(getShape(), getStorageType());
}

RankedTensorType QTensorType::getScalesType() const {
  return RankedTensorType::get(*getQuant().getScaleShape(getShape()),
                               getQuant().getScaleType());
}

RankedTensorType QTensorType::getZeroPointsType() const {
  Type zeroPoint = getQuant().getZeroPointType();
  if (!zeroPoint)
    return nullptr;
  return RankedTensorType::get(*getQuant().getScaleShape(getShape()),
                               zeroPoint);
}

RankedTensorType QTensorType::getExpressedTensorType() const {
  return RankedTensorType::get(getShape(), getExpressedType());
}

// !kiln.qtensor<4096x11008, #kiln.quant<...>>
Type QTensorType::parse(AsmParser &parser) {
  SmallVector<int64_t> shape;
  QuantAttr quant;
  if (parser.parseLess() ||
      parser.parseDimensionList(shape, /*allowDynamic=*/true,
                                /*withTrailingX=*/false) ||
      parser.parseComma() || parser.parseAttribute(quant) ||
      parser.parseGreater())
    return {};
  return getChecked([&] { return parser.emitError(parser.getNameLoc()); },
                    parser.getContext(), shape, quant);
}

void QTensorType::print(AsmPrinter &printer) const {
  printer << "<";
  printer.printDimensionList(getShape());
  printer << ", " << getQuant() << ">";
}

//===----------------------------------------------------------------------===//
// KvCacheType
//===----------------------------------------------------------------------===//

LogicalResult KvCacheType::verify(function_ref<InFlightDiagnostic()> emitError,
                                  KvLayout layout, int64_t blockSize,
                                  Type elementType, int64_t numKvHeads,
                                  int64_t headDim, int64_t valueHeadDim,
                                  QuantAttr quant) {
  if (layout == KvLayout::paged && blockSize < 1)
    return emitError() << "paged KV cache needs a block size >= 1, found "
                       << blockSize;
  if (layout == KvLayout::contiguous && blockSize != 0)
    return emitError() << "contiguous KV cache has no block size, found "
                       << blockSize;
  if (numKvHeads < 1)
    return emitError() << "kv_heads must be positive, found " << numKvHeads;
  if (headDim < 1 || valueHeadDim < 1)
    return emitError() << "head dims must be positive, found head_dim = "
                       << headDim << ", v_head_dim = " << valueHeadDim;
  bool isFloat =
      elementType.isF32() || elementType.isF16() || elementType.isBF16();
  bool isQuantized = elementType.isSignlessInteger(8) ||
                     elementType.isSignlessInteger(4) ||
                     isa<Float8E4M3FNType, Float8E5M2Type>(elementType);
  if (!isFloat && !isQuantized)
    return emitError() << "KV cache element type must be f32, f16, bf16, i8, "
                          "i4, f8E4M3FN or f8E5M2, found "
                       << elementType;
  if (isFloat && quant)
    return emitError() << "a " << elementType
                       << " KV cache takes no quant scheme";
  if (isQuantized) {
    if (!quant)
      return emitError() << "a " << elementType
                         << " KV cache needs a quant scheme";
    if (quant.getStorageType() != elementType)
      return emitError() << "quant storage type " << quant.getStorageType()
                         << " does not match the cache element type "
                         << elementType;
    ArrayRef<int64_t> block = quant.getBlock();
    if (block.size() != 4)
      return emitError() << "KV quant block must have 4 entries ([batch, "
                            "tokens, kv_heads, head_dim]), found "
                         << block.size();
    // Scales are per head (block[2] == 1), either per token ([1, 1, 1, g])
    // or static ([0, 0, 1, g]); g (0: the whole head dim) must divide both
    // head dims so a group never straddles two heads.
    bool perToken = block[0] == 1 && block[1] == 1;
    bool isStatic = block[0] == 0 && block[1] == 0;
    if ((!perToken && !isStatic) || block[2] != 1)
      return emitError() << "KV quant block must be [1, 1, 1, g] (per token "
                            "and head) or [0, 0, 1, g] (static per head), "
                            "found ["
                         << block << "]";
    if (block[3] != 0 && (headDim % block[3] != 0 || valueHeadDim % block[3] != 0))
      return emitError() << "KV quant group " << block[3]
                         << " does not divide head_dim " << headDim
                         << " and v_head_dim " << valueHeadDim;
    if (quant.getBits() == 4 && (headDim % 2 != 0 || valueHeadDim % 2 != 0))
      return emitError() << "a 4-bit KV cache packs two values per byte and "
                            "needs even head dims, found "
                         << headDim << " and " << valueHeadDim;
    if (!quant.isSymmetric())
      return emitError() << "KV quantization is symmetric (no zero point)";
  }
  return success();
}

Type KvCacheType::getComputeType() const {
  if (QuantAttr quant = getQuant())
    return quant.getExpressedType();
  return getElementType();
}

bool KvCacheType::hasPerTokenScales() const {
  QuantAttr quant = getQuant();
  return quant && (quant.getBlock()[0] != 0 || quant.getBlock()[1] != 0);
}

RankedTensorType KvCacheType::getStaticScaleType(bool forValue) const {
  QuantAttr quant = getQuant();
  if (!quant || hasPerTokenScales())
    return nullptr;
  int64_t dim = forValue ? getValueHeadDim() : getHeadDim();
  SmallVector<int64_t> logical = {ShapedType::kDynamic, ShapedType::kDynamic,
                                  getNumKvHeads(), dim};
  return RankedTensorType::get(*quant.getScaleShape(logical),
                               quant.getScaleType());
}

// !kiln.kv_cache<contiguous | paged<N>, elementType, kv_heads = H,
//                head_dim = D [, v_head_dim = Dv] [, quant = #kiln.quant<..>]>
Type KvCacheType::parse(AsmParser &parser) {
  SMLoc loc = parser.getCurrentLocation();
  StringRef layoutName;
  int64_t blockSize = 0, heads = 0, headDim = 0;
  std::optional<int64_t> valueHeadDim;
  Type elementType;
  QuantAttr quant;
  if (parser.parseLess() || parser.parseKeyword(&layoutName))
    return {};
  KvLayout layout;
  if (layoutName == "contiguous") {
    layout = KvLayout::contiguous;
  } else if (layoutName == "paged") {
    layout = KvLayout::paged;
    if (parser.parseLess() || parser.parseInteger(blockSize) ||
        parser.parseGreater())
      return {};
  } else {
    parser.emitError(loc, "expected KV layout 'contiguous' or 'paged<N>', "
                          "found '")
        << layoutName << "'";
    return {};
  }
  if (parser.parseComma() || parser.parseType(elementType) ||
      parser.parseComma() || parser.parseKeyword("kv_heads") ||
      parser.parseEqual() || parser.parseInteger(heads) ||
      parser.parseComma() || parser.parseKeyword("head_dim") ||
      parser.parseEqual() || parser.parseInteger(headDim))
    return {};
  while (succeeded(parser.parseOptionalComma())) {
    if (succeeded(parser.parseOptionalKeyword("v_head_dim"))) {
      if (parser.parseEqual() ||
          parser.parseInteger(valueHeadDim.emplace()))
        return {};
    } else if (succeeded(parser.parseOptionalKeyword("quant"))) {
      if (parser.parseEqual() || parser.parseAttribute(quant))
        return {};
    } else {
      parser.emitError(parser.getCurrentLocation(),
                       "expected 'v_head_dim' or 'quant'");
      return {};
    }
  }
  if (parser.parseGreater())
    return {};
  return getChecked([&] { return parser.emitError(loc); },
                    parser.getContext(), layout, blockSize, elementType, heads,
                    headDim, valueHeadDim.value_or(headDim), quant);
}

void KvCacheType::print(AsmPrinter &printer) const {
  printer << "<";
  if (isPaged())
    printer << "paged<" << getBlockSize() << ">";
  else
    printer << "contiguous";
  printer << ", " << getElementType() << ", kv_heads = " << getNumKvHeads()
          << ", head_dim = " << getHeadDim();
  if (getValueHeadDim() != getHeadDim())
    printer << ", v_head_dim = " << getValueHeadDim();
  if (QuantAttr quant = getQuant())
    printer << ", quant = " << quant;
  printer << ">";
}
