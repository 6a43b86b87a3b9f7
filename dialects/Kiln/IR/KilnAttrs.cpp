//===- KilnAttrs.cpp - attributes of the kiln dialect ---------------------===//

#include "kiln/Dialect/Kiln/IR/KilnDialect.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/DialectImplementation.h"
#include "llvm/ADT/TypeSwitch.h"

using namespace mlir;
using namespace mlir::kiln;

#include "kiln/Dialect/Kiln/IR/KilnEnums.cpp.inc"

#define GET_ATTRDEF_CLASSES
#include "kiln/Dialect/Kiln/IR/KilnAttrs.cpp.inc"

void KilnDialect::registerAttributes() {
  addAttributes<
#define GET_ATTRDEF_LIST
#include "kiln/Dialect/Kiln/IR/KilnAttrs.cpp.inc"
      >();
}

//===----------------------------------------------------------------------===//
// QuantAttr
//===----------------------------------------------------------------------===//

static bool isIntegerStorage(Type type) {
  auto intType = dyn_cast<IntegerType>(type);
  return intType && !intType.isSigned() &&
         (intType.getWidth() == 4 || intType.getWidth() == 8);
}

static bool isFloatStorage(Type type) {
  return isa<Float8E4M3FNType, Float8E5M2Type>(type);
}

LogicalResult QuantAttr::verify(function_ref<InFlightDiagnostic()> emitError,
                                Type storage, Type expressed,
                                ArrayRef<int64_t> block, Type scale,
                                Type zeroPoint) {
  if (!isIntegerStorage(storage) && !isFloatStorage(storage))
    return emitError() << "storage type must be i4, ui4, i8, ui8, f8E4M3FN "
                          "or f8E5M2, found "
                       << storage;
  if (!expressed.isF32() && !expressed.isF16() && !expressed.isBF16())
    return emitError() << "expressed type must be f32, f16 or bf16, found "
                       << expressed;
  for (int64_t size : block)
    if (size < 0)
      return emitError() << "block sizes must be non-negative, found " << size;
  if (!isa<FloatType>(scale))
    return emitError() << "scale type must be a float type, found " << scale;
  if (zeroPoint) {
    if (isFloatStorage(storage))
      return emitError() << "float storage " << storage
                         << " takes no zero point";
    if (zeroPoint != storage)
      return emitError() << "zero point type " << zeroPoint
                         << " does not match storage type " << storage;
  }
  return success();
}

unsigned QuantAttr::getBits() const {
  return getStorageType().getIntOrFloatBitWidth();
}

FailureOr<SmallVector<int64_t>>
QuantAttr::getScaleShape(ArrayRef<int64_t> shape) const {
  ArrayRef<int64_t> block = getBlock();
  if (block.size() != shape.size())
    return failure();
  SmallVector<int64_t> result;
  for (auto [dim, size] : llvm::zip_equal(shape, block)) {
    if (size == 0)
      result.push_back(1);
    else if (ShapedType::isDynamic(dim))
      result.push_back(ShapedType::kDynamic);
    else
      result.push_back(llvm::divideCeil(dim, size));
  }
  return result;
}

// #kiln.quant<storage = i4, expressed = bf16, block = [1, 128], scale = f16
//             [, zero_point = i4]>
Attribute QuantAttr::parse(AsmParser &parser, Type) {
  Type storage, expressed, scale, zeroPoint;
  SmallVector<int64_t> block;
  auto parseKeyType = [&](StringRef key, Type &type) -> ParseResult {
    return failure(parser.parseKeyword(key) || parser.parseEqual() ||
                   parser.parseType(type));
  };
  if (parser.parseLess() || parseKeyType("storage", storage) ||
      parser.parseComma() || parseKeyType("expressed", expressed) ||
      parser.parseComma() || parser.parseKeyword("block") ||
      parser.parseEqual() ||
      parser.parseCommaSeparatedList(AsmParser::Delimiter::Square,
                                     [&]() -> ParseResult {
                                       return parser.parseInteger(
                                           block.emplace_back());
                                     }) ||
      parser.parseComma() || parseKeyType("scale", scale))
    return {};
  if (succeeded(parser.parseOptionalComma()) &&
      parseKeyType("zero_point", zeroPoint))
    return {};
  if (parser.parseGreater())
    return {};
  return getChecked([&] { return parser.emitError(parser.getNameLoc()); },
                    parser.getContext(), storage, expressed, block, scale,
                    zeroPoint);
}

void QuantAttr::print(AsmPrinter &printer) const {
  printer << "<storage = " << getStorageType()
          << ", expressed = " << getExpressedType() << ", block = [";
  llvm::interleaveComma(getBlock(), printer);
  printer << "], scale = " << getScaleType();
  if (Type zeroPoint = getZeroPointType())
    printer << ", zero_point = " << zeroPoint;
  printer << ">";
}

//===----------------------------------------------------------------------===//
// ExternalStorageAttr
//===----------------------------------------------------------------------===//

LogicalResult
ExternalStorageAttr::verify(function_ref<InFlightDiagnostic()> emitError,
                            StringRef location, uint64_t offset,
                            uint64_t length) {
  if (location.empty())
    return emitError() << "external storage location must not be empty";
  if (offset + length < offset)
    return emitError() << "external storage range offset " << offset
                       << " + length " << length << " overflows";
  return success();
}

//===----------------------------------------------------------------------===//
// MaskAttr
//===----------------------------------------------------------------------===//

LogicalResult MaskAttr::verify(function_ref<InFlightDiagnostic()> emitError,
                               MaskKind kind, int64_t window, int64_t sink) {
  if (window < 0 || sink < 0)
    return emitError() << "mask window and sink must be non-negative, found "
                       << "window = " << window << ", sink = " << sink;
  if (kind == MaskKind::sliding_window) {
    if (window == 0)
      return emitError() << "sliding_window mask needs window > 0";
    return success();
  }
  if (window != 0 || sink != 0)
    return emitError() << "window and sink apply only to a sliding_window "
                          "mask, not to "
                       << stringifyMaskKind(kind);
  return success();
}

//===----------------------------------------------------------------------===//
// SparsityAttr
//===----------------------------------------------------------------------===//

LogicalResult
SparsityAttr::verify(function_ref<InFlightDiagnostic()> emitError,
                     SparseFormat format, int64_t qBlock, int64_t kvBlock) {
  switch (format) {
  case SparseFormat::block_sparse:
    if (qBlock <= 0 || kvBlock <= 0)
      return emitError() << "block_sparse needs q_block > 0 and kv_block > 0, "
                         << "found q_block = " << qBlock
                         << ", kv_block = " << kvBlock;
    break;
  case SparseFormat::vertical_slash:
    if (qBlock <= 0 || kvBlock != 0)
      return emitError() << "vertical_slash needs q_block > 0 and no "
                         << "kv_block, found q_block = " << qBlock
                         << ", kv_block = " << kvBlock;
    break;
  case SparseFormat::token_topk:
    if (qBlock != 0 || kvBlock != 0)
      return emitError() << "token_topk takes no block sizes";
    break;
  }
  return success();
}

unsigned SparsityAttr::getNumIndices() const {
  return getFormat() == SparseFormat::vertical_slash ? 2 : 1;
}
