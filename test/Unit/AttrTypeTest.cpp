//===- AttrTypeTest.cpp - kiln attribute and type helpers -----------------===//

#include "kiln/Dialect/Kiln/IR/KilnOps.h"

#include "mlir/AsmParser/AsmParser.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/MLIRContext.h"
#include "gtest/gtest.h"

using namespace mlir;
using namespace mlir::kiln;

namespace {

class KilnTypes : public ::testing::Test {
protected:
  KilnTypes() { ctx.loadDialect<KilnDialect>(); }

  template <typename T> T parse(StringRef text) {
    return dyn_cast_or_null<T>(parseType(text, &ctx));
  }
  template <typename T> T parseAttr(StringRef text) {
    return dyn_cast_or_null<T>(parseAttribute(text, &ctx));
  }

  MLIRContext ctx;
};

TEST_F(KilnTypes, ScaleShapeFollowsBlocks) {
  auto quant = parseAttr<QuantAttr>(
      "#kiln.quant<storage = i4, expressed = bf16, block = [1, 128], "
      "scale = f16>");
  ASSERT_TRUE(quant);
  EXPECT_EQ(quant.getBits(), 4u);
  EXPECT_TRUE(quant.isSymmetric());
  auto shape = quant.getScaleShape({4096, 11008});
  ASSERT_TRUE(succeeded(shape));
  EXPECT_EQ(*shape, (SmallVector<int64_t>{4096, 86})); // ceil(11008 / 128)
  // Block 0 covers the whole dimension, even a dynamic one.
  auto perToken = parseAttr<QuantAttr>(
      "#kiln.quant<storage = f8E4M3FN, expressed = bf16, block = [1, 0], "
      "scale = f32>");
  ASSERT_TRUE(perToken);
  auto dyn = perToken.getScaleShape({ShapedType::kDynamic, 4096});
  ASSERT_TRUE(succeeded(dyn));
  EXPECT_EQ(*dyn, (SmallVector<int64_t>{ShapedType::kDynamic, 1}));
  EXPECT_TRUE(failed(perToken.getScaleShape({1, 2, 3})));
}

TEST_F(KilnTypes, QTensorPartTypes) {
  auto qt = parse<QTensorType>(
      "!kiln.qtensor<64x96, #kiln.quant<storage = ui4, expressed = f16, "
      "block = [1, 32], scale = f16, zero_point = ui4>>");
  ASSERT_TRUE(qt);
  EXPECT_EQ(qt.getDataType(), parseType("tensor<64x96xui4>", &ctx));
  EXPECT_EQ(qt.getScalesType(), parseType("tensor<64x3xf16>", &ctx));
  EXPECT_EQ(qt.getZeroPointsType(), parseType("tensor<64x3xui4>", &ctx));
  EXPECT_EQ(qt.getExpressedTensorType(), parseType("tensor<64x96xf16>", &ctx));
}

TEST_F(KilnTypes, KvCacheScales) {
  auto perHead = parse<KvCacheType>(
      "!kiln.kv_cache<paged<16>, f8E4M3FN, kv_heads = 4, head_dim = 64, "
      "v_head_dim = 32, quant = #kiln.quant<storage = f8E4M3FN, expressed = "
      "bf16, block = [0, 0, 1, 0], scale = f32>>");
  ASSERT_TRUE(perHead);
  EXPECT_TRUE(perHead.isPaged());
  EXPECT_EQ(perHead.getBlockSize(), 16);
  EXPECT_EQ(perHead.getValueHeadDim(), 32);
  EXPECT_FALSE(perHead.hasPerTokenScales());
  EXPECT_EQ(perHead.getComputeType(), BFloat16Type::get(&ctx));
  EXPECT_EQ(perHead.getStaticScaleType(false),
            parseType("tensor<1x1x4x1xf32>", &ctx));

  auto perToken = parse<KvCacheType>(
      "!kiln.kv_cache<contiguous, i8, kv_heads = 2, head_dim = 64, quant = "
      "#kiln.quant<storage = i8, expressed = f16, block = [1, 1, 1, 0], "
      "scale = f16>>");
  ASSERT_TRUE(perToken);
  EXPECT_TRUE(perToken.hasPerTokenScales());
  EXPECT_FALSE(perToken.getStaticScaleType(false));
  EXPECT_EQ(perToken.getValueHeadDim(), 64); // defaults to head_dim

  auto plain = parse<KvCacheType>(
      "!kiln.kv_cache<contiguous, bf16, kv_heads = 8, head_dim = 128>");
  ASSERT_TRUE(plain);
  EXPECT_FALSE(plain.isQuantized());
  EXPECT_EQ(plain.getComputeType(), BFloat16Type::get(&ctx));
}

// Verifier errors the textual syntax cannot express, built through the C++
// API the importer and passes use.
TEST_F(KilnTypes, CheckedConstructionReportsErrors) {
  std::string message;
  ScopedDiagnosticHandler handler(&ctx, [&](Diagnostic &diag) {
    message = diag.str();
    return success();
  });
  auto emit = [&] { return mlir::emitError(UnknownLoc::get(&ctx)); };
  Type bf16 = BFloat16Type::get(&ctx);
  EXPECT_FALSE(KvCacheType::getChecked(emit, &ctx, KvLayout::contiguous, int64_t{16},
                                       bf16, int64_t{2}, int64_t{64}, int64_t{64}, QuantAttr()));
  EXPECT_EQ(message, "contiguous KV cache has no block size, found 16");

  auto quant = QuantAttr::get(&ctx, IntegerType::get(&ctx, 8), bf16, ArrayRef<int64_t>{},
                              Float32Type::get(&ctx), Type());
  EXPECT_FALSE(QTensorType::getChecked(emit, &ctx, ArrayRef<int64_t>{}, quant));
  EXPECT_EQ(message, "qtensor must have rank >= 1");
  auto quant1 = QuantAttr::get(&ctx, IntegerType::get(&ctx, 8), bf16, ArrayRef<int64_t>{0},
                               Float32Type::get(&ctx), Type());
  EXPECT_FALSE(QTensorType::getChecked(emit, &ctx, ArrayRef<int64_t>{-7}, quant1));
  EXPECT_EQ(message, "qtensor dimensions must be non-negative, found -7");
}

} // namespace
