//===- KilnBase.td - the kiln dialect and its shared constraints -*- tablegen -*-===//
//
// The dialect definition and the type constraints every other .td file uses.
//
//===----------------------------------------------------------------------===//

#ifndef KILN_DIALECT_KILN_IR_KILNBASE_TD
#define KILN_DIALECT_KILN_IR_KILNBASE_TD

include "mlir/IR/OpBase.td"
include "mlir/IR/AttrTypeBase.td"
include "mlir/IR/EnumAttr.td"

def Kiln_Dialect : Dialect {
  let name = "kiln";
  let cppNamespace = "::mlir::kiln";
  let summary = "Operations, types and attributes for compiling LLM inference";
  let description = [{
    The `kiln` dialect describes decoder-only LLM inference graphs, from the
    form an ONNX model is imported in down to the canonical form that the
    quantization, KV-cache layout, speculation, sparsity and code generation
    stages work on.

    Design rules every op follows:

    * Values are ranked tensors with value semantics. Dynamic dimensions
      (`?`) stand for batch, sequence and past lengths; the runtime binds them.
    * Activations in attention and RoPE use the `[batch, seq, heads, head_dim]`
      (BSHD) layout. Matmul weights are `[K, N]`, or `[N, K]` with
      `transpose_b`, so both ONNX MatMul and output-major (nn.Linear,
      MatMulNBits) weights are used where they lie, never repacked.
    * Weights live outside the IR: `kiln.weight_decl` declares a named tensor
      and where its bytes are (an external file and offset, or bound at load
      time); `kiln.weight` reads it. Only small constants are inlined
      (`arith.constant`).
    * Quantized values have the type `!kiln.qtensor`, whose `#kiln.quant`
      attribute gives the storage type (i4, ui4, i8, f8E4M3FN, ...), the block
      shape each scale covers (per-tensor, per-channel and group-wise are all
      block shapes), the scale type and the optional zero-point type. Sub-byte
      storage is packed two elements per byte along the innermost dimension,
      element 0 in the low nibble, each innermost row padded to a whole byte.
    * The KV cache is a value of type `!kiln.kv_cache` (one per layer) whose
      parameters give its layout (contiguous, or paged with a block size), its
      element type, head count, head dim and quantization. The runtime owns the
      storage; `kiln.kv_cache_append` returns the updated cache.
    * `kiln.attention` composes every axis independently: mask kind (none,
      causal, sliding window with sinks, tree, sparse) x K/V source (tensors,
      quantized tensors, or a cache of any layout and dtype) x an optional
      sparsity index. Every combination is legal IR.
  }];
  let dependentDialects = ["::mlir::arith::ArithDialect",
                           "::mlir::math::MathDialect"];
  let useDefaultAttributePrinterParser = 1;
  let useDefaultTypePrinterParser = 1;
  let hasConstantMaterializer = 1;
  let extraClassDeclaration = [{
    void registerAttributes();
    void registerTypes();
  }];
}

//===----------------------------------------------------------------------===//
// Type constraints
//===----------------------------------------------------------------------===//

/// Floating-point types that kernels compute in.
def Kiln_ComputeFloat : AnyTypeOf<[F32, F16, BF16]>;
/// Integer types used for indices, positions and shapes.
def Kiln_IndexInt : AnyTypeOf<[I32, I64]>;

def Kiln_FloatTensor : RankedTensorOf<[F32, F16, BF16]>;
def Kiln_IndexTensor : RankedTensorOf<[I32, I64]>;
def Kiln_BoolTensor : RankedTensorOf<[I1]>;
/// A 1-D shape tensor, as ONNX shape computations produce.
def Kiln_ShapeTensor : 1DTensorOf<[I64]>;
/// Any element type a kiln tensor may hold.
def Kiln_AnyTensor : RankedTensorOf<[F32, F16, BF16, F64, F8E4M3FN, F8E5M2,
                                     I1, I<4>, UI<4>, I8, UI8, I16, UI16, I32,
                                     UI32, I64, UI64]>;
def Kiln_NumericTensor : RankedTensorOf<[F32, F16, BF16, F64, I8, UI8, I16,
                                         UI16, I32, UI32, I64, UI64]>;

#endif // KILN_DIALECT_KILN_IR_KILNBASE_TD
