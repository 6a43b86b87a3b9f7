//===- DTypeTest.cpp - MLIR types <-> runtime dtype codes -----------------===//

#include "kiln/Support/DType.h"

#include "mlir/AsmParser/AsmParser.h"
#include "mlir/IR/MLIRContext.h"
#include "gtest/gtest.h"

using namespace mlir;
using namespace mlir::kiln;

namespace {

TEST(DType, EveryRuntimeDTypeRoundTrips) {
  MLIRContext ctx;
  int mapped = 0;
  for (int code = KILN_DTYPE_INVALID + 1; code <= KILN_DTYPE_U64; ++code) {
    auto dtype = static_cast<kiln_dtype_t>(code);
    Type type = fromRuntimeDType(&ctx, dtype);
    ASSERT_TRUE(type) << "dtype " << code << " has no MLIR type";
    EXPECT_EQ(toRuntimeDType(type), dtype) << "dtype " << code;
    // The runtime's name is the MLIR spelling.
    EXPECT_EQ(parseType(kiln_dtype_name(dtype), &ctx), type);
    ++mapped;
  }
  EXPECT_EQ(mapped, 17);
  EXPECT_EQ(toRuntimeDType(IntegerType::get(&ctx, 8, IntegerType::Signed)),
            KILN_DTYPE_INVALID);
  EXPECT_EQ(toRuntimeDType(IndexType::get(&ctx)), KILN_DTYPE_INVALID);
  EXPECT_FALSE(fromRuntimeDType(&ctx, KILN_DTYPE_INVALID));
}

TEST(DType, StorageSizePacksSubByteTypes) {
  MLIRContext ctx;
  auto size = [&](StringRef type) {
    auto t = cast<RankedTensorType>(parseType(type, &ctx));
    return getStorageSizeInBytes(t);
  };
  EXPECT_EQ(*size("tensor<4096x4096xbf16>"), 4096u * 4096u * 2u);
  EXPECT_EQ(*size("tensor<3x5xi4>"), 9u); // rows padded to whole bytes
  EXPECT_EQ(*size("tensor<8x128xui4>"), 512u);
  EXPECT_EQ(*size("tensor<f32>"), 4u);
  EXPECT_EQ(*size("tensor<7xi1>"), 7u);
  EXPECT_EQ(*size("tensor<0x16xf16>"), 0u);
  std::string reason;
  auto dynamic = cast<RankedTensorType>(parseType("tensor<?x4xf32>", &ctx));
  EXPECT_TRUE(failed(getStorageSizeInBytes(dynamic, &reason)));
  EXPECT_EQ(reason, "the shape is dynamic");
}

} // namespace
