//===- KilnDialect.cpp - the kiln dialect ---------------------------------===//

#include "kiln/Dialect/Kiln/IR/KilnOps.h"

#include "mlir/IR/DialectImplementation.h"
#include "mlir/IR/OpImplementation.h"

using namespace mlir;
using namespace mlir::kiln;

#include "kiln/Dialect/Kiln/IR/KilnDialect.cpp.inc"

namespace {
/// Short aliases keep printed IR readable: a model's many identical quant
/// schemes and cache types print once at the top of the module.
struct KilnOpAsmInterface : public OpAsmDialectInterface {
  using OpAsmDialectInterface::OpAsmDialectInterface;

  AliasResult getAlias(Attribute attr, raw_ostream &os) const override {
    if (isa<QuantAttr>(attr)) {
      os << "quant";
      return AliasResult::OverridableAlias;
    }
    return AliasResult::NoAlias;
  }

  AliasResult getAlias(Type type, raw_ostream &os) const override {
    if (isa<KvCacheType>(type)) {
      os << "kv_cache";
      return AliasResult::OverridableAlias;
    }
    return AliasResult::NoAlias;
  }
};
} // namespace

void KilnDialect::initialize() {
  registerAttributes();
  registerTypes();
  addOperations<
#define GET_OP_LIST
#include "kiln/Dialect/Kiln/IR/KilnOps.cpp.inc"
      >();
  addInterfaces<KilnOpAsmInterface>();
}

Operation *KilnDialect::materializeConstant(OpBuilder &builder,
                                            Attribute value, Type type,
                                            Location loc) {
  if (auto elements = dyn_cast<DenseElementsAttr>(value);
      elements && elements.getType() == type)
    return arith::ConstantOp::create(builder, loc, type, elements);
  return nullptr;
}
