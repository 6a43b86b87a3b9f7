//===- VerifierTest.cpp - building kiln IR from C++ -----------------------===//
//
// The importer and passes build ops through the C++ API, not text; these
// tests build IR that way and check that verification accepts good IR and
// reports bad IR with the expected message.
//
//===----------------------------------------------------------------------===//

#include "kiln/Dialect/Kiln/IR/KilnOps.h"

#include "mlir/AsmParser/AsmParser.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/IR/Verifier.h"
#include "gtest/gtest.h"

using namespace mlir;
using namespace mlir::kiln;

namespace {

class KilnBuild : public ::testing::Test {
protected:
  KilnBuild() : builder(&ctx) {
    ctx.loadDialect<KilnDialect, func::FuncDialect, arith::ArithDialect>();
    module = ModuleOp::create(builder.getUnknownLoc());
    builder.setInsertionPointToEnd(module->getBody());
  }

  RankedTensorType tensor(ArrayRef<int64_t> shape, Type et) {
    return RankedTensorType::get(shape, et);
  }

  /// Verifies the module, returning the first diagnostic ("" when none).
  std::string verifyModule() {
    std::string message;
    ScopedDiagnosticHandler handler(&ctx, [&](Diagnostic &diag) {
      if (message.empty())
        message = diag.str();
      return success();
    });
    (void)verify(*module);
    return message;
  }

  MLIRContext ctx;
  OpBuilder builder;
  OwningOpRef<ModuleOp> module;
};

TEST_F(KilnBuild, AttentionBlockVerifies) {
  Location loc = builder.getUnknownLoc();
  Type bf16 = builder.getBF16Type();
  int64_t dyn = ShapedType::kDynamic;
  auto cacheType =
      KvCacheType::get(&ctx, KvLayout::paged, 16, bf16, 2, 64, 64, nullptr);
  WeightDeclOp::create(builder, loc, builder.getStringAttr("wq"),
                       TypeAttr::get(tensor({256, 512}, bf16)),
                       ExternalStorageAttr::get(&ctx, "w.bin", 0, 256 * 512 * 2));
  auto hidden = tensor({dyn, dyn, 256}, bf16);
  auto fn = func::FuncOp::create(
      builder, loc, "block",
      builder.getFunctionType(
          {hidden, cacheType, tensor({4}, builder.getI64Type()),
           tensor({3}, builder.getI64Type())},
          {tensor({dyn, dyn, 8, 64}, bf16)}));
  OpBuilder::InsertionGuard guard(builder);
  builder.setInsertionPointToStart(fn.addEntryBlock());
  Value x = fn.getArgument(0), cache = fn.getArgument(1);
  Value wq = WeightOp::create(builder, loc, tensor({256, 512}, bf16), "wq");
  Value q = MatmulOp::create(builder, loc, tensor({dyn, dyn, 512}, bf16), x, wq,
                             Value());
  Value shape = fn.getArgument(2), badShape = fn.getArgument(3);
  Value q4 = ReshapeOp::create(builder, loc, tensor({dyn, dyn, 8, 64}, bf16), q,
                               badShape);
  auto mask = MaskAttr::get(&ctx, MaskKind::causal, 0, 0);
  auto attn = AttentionOp::create(
      builder, loc, tensor({dyn, dyn, 8, 64}, bf16), q4, Value(), Value(), cache,
      Value(), Value(), ValueRange(), mask, nullptr, nullptr, nullptr);
  func::ReturnOp::create(builder, loc, attn.getResult());

  EXPECT_EQ(verifyModule(), "'kiln.reshape' op shape operand has 3 entries but "
                            "the result has rank 4");
  q4.getDefiningOp()->setOperands({q, shape});
  EXPECT_EQ(verifyModule(), "");
  // Without a shape operand the two dynamic dims map in order.
  q4.getDefiningOp()->setOperands({q});
  EXPECT_EQ(verifyModule(), "");
}

TEST_F(KilnBuild, MatmulRejectsMismatchedContraction) {
  Location loc = builder.getUnknownLoc();
  Type f32 = builder.getF32Type();
  auto fn = func::FuncOp::create(
      builder, loc, "mm",
      builder.getFunctionType({tensor({4, 8}, f32), tensor({16, 3}, f32)},
                              {tensor({4, 3}, f32)}));
  OpBuilder::InsertionGuard guard(builder);
  builder.setInsertionPointToStart(fn.addEntryBlock());
  Value mm = MatmulOp::create(builder, loc, tensor({4, 3}, f32),
                              fn.getArgument(0), fn.getArgument(1), Value());
  func::ReturnOp::create(builder, loc, mm);
  EXPECT_EQ(verifyModule(), "'kiln.matmul' op contraction dimensions differ: "
                            "a has K = 8, b has K = 16");
}

TEST_F(KilnBuild, ShapeOfFoldsStaticShapes) {
  Location loc = builder.getUnknownLoc();
  Type f32 = builder.getF32Type();
  auto fn = func::FuncOp::create(
      builder, loc, "s",
      builder.getFunctionType({tensor({2, 7, 5}, f32)}, {}));
  OpBuilder::InsertionGuard guard(builder);
  builder.setInsertionPointToStart(fn.addEntryBlock());
  auto op = ShapeOfOp::create(builder, loc, tensor({3}, builder.getI64Type()),
                              fn.getArgument(0));
  SmallVector<OpFoldResult> folded;
  ASSERT_TRUE(succeeded(op->fold(folded)));
  ASSERT_EQ(folded.size(), 1u);
  auto attr = dyn_cast_or_null<DenseElementsAttr>(
      dyn_cast<Attribute>(folded[0]));
  ASSERT_TRUE(attr);
  EXPECT_EQ(SmallVector<int64_t>(attr.getValues<int64_t>()),
            (SmallVector<int64_t>{2, 7, 5}));
}

} // namespace
