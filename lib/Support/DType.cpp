//===- DType.cpp - MLIR element types <-> the runtime's dtype codes -------===//

#include "kiln/Support/DType.h"

#include "mlir/IR/BuiltinTypes.h"
#include "llvm/Support/raw_ostream.h"

using namespace mlir;

kiln_dtype_t mlir::kiln::toRuntimeDType(Type type) {
  if (type.isF32())
    return KILN_DTYPE_F32;
  if (type.isF16())
    return KILN_DTYPE_F16;
  if (type.isBF16())
    return KILN_DTYPE_BF16;
  if (type.isF64())
    return KILN_DTYPE_F64;
  if (isa<Float8E4M3FNType>(type))
    return KILN_DTYPE_F8E4M3FN;
  if (isa<Float8E5M2Type>(type))
    return KILN_DTYPE_F8E5M2;
  auto intType = dyn_cast<IntegerType>(type);
  if (!intType || intType.isSigned())
    return KILN_DTYPE_INVALID;
  bool isUnsigned = intType.isUnsigned();
  switch (intType.getWidth()) {
  case 1:
    return isUnsigned ? KILN_DTYPE_INVALID : KILN_DTYPE_I1;
  case 4:
    return isUnsigned ? KILN_DTYPE_U4 : KILN_DTYPE_I4;
  case 8:
    return isUnsigned ? KILN_DTYPE_U8 : KILN_DTYPE_I8;
  case 16:
    return isUnsigned ? KILN_DTYPE_U16 : KILN_DTYPE_I16;
  case 32:
    return isUnsigned ? KILN_DTYPE_U32 : KILN_DTYPE_I32;
  case 64:
    return isUnsigned ? KILN_DTYPE_U64 : KILN_DTYPE_I64;
  default:
    return KILN_DTYPE_INVALID;
  }
}

Type mlir::kiln::fromRuntimeDType(MLIRContext *ctx, kiln_dtype_t dtype) {
  auto signless = [&](unsigned w) { return IntegerType::get(ctx, w); };
  auto unsig = [&](unsigned w) {
    return IntegerType::get(ctx, w, IntegerType::Unsigned);
  };
  switch (dtype) {
  case KILN_DTYPE_F32:
    return Float32Type::get(ctx);
  case KILN_DTYPE_F16:
    return Float16Type::get(ctx);
  case KILN_DTYPE_BF16:
    return BFloat16Type::get(ctx);
  case KILN_DTYPE_F64:
    return Float64Type::get(ctx);
  case KILN_DTYPE_F8E4M3FN:
    return Float8E4M3FNType::get(ctx);
  case KILN_DTYPE_F8E5M2:
    return Float8E5M2Type::get(ctx);
  case KILN_DTYPE_I1:
    return signless(1);
  case KILN_DTYPE_I4:
    return signless(4);
  case KILN_DTYPE_U4:
    return unsig(4);
  case KILN_DTYPE_I8:
    return signless(8);
  case KILN_DTYPE_U8:
    return unsig(8);
  case KILN_DTYPE_I16:
    return signless(16);
  case KILN_DTYPE_U16:
    return unsig(16);
  case KILN_DTYPE_I32:
    return signless(32);
  case KILN_DTYPE_U32:
    return unsig(32);
  case KILN_DTYPE_I64:
    return signless(64);
  case KILN_DTYPE_U64:
    return unsig(64);
  default:
    return nullptr;
  }
}

FailureOr<uint64_t>
mlir::kiln::getStorageSizeInBytes(RankedTensorType type, std::string *reason) {
  auto fail = [&](const Twine &why) -> FailureOr<uint64_t> {
    if (reason)
      *reason = why.str();
    return failure();
  };
  if (!type.hasStaticShape())
    return fail("the shape is dynamic");
  kiln_dtype_t dtype = toRuntimeDType(type.getElementType());
  if (dtype == KILN_DTYPE_INVALID) {
    std::string name;
    llvm::raw_string_ostream os(name);
    os << type.getElementType();
    return fail("element type " + name + " has no runtime dtype");
  }
  uint64_t bytes = 0;
  kiln_status_t status = kiln_dtype_storage_size(
      dtype, type.getShape().data(), type.getRank(), &bytes);
  if (status) {
    std::string message = kiln_status_message(status);
    kiln_status_free(status);
    return fail(message);
  }
  return bytes;
}
