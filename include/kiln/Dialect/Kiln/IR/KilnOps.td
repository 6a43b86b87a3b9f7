//===- KilnOps.td - operations of the kiln dialect ---------*- tablegen -*-===//
//
// The LLM building blocks: weights, quantization, matmul, elementwise math,
// norms, RoPE, attention, gated MLP, KV-cache access and shape ops.
//
//===----------------------------------------------------------------------===//

#ifndef KILN_DIALECT_KILN_IR_KILNOPS_TD
#define KILN_DIALECT_KILN_IR_KILNOPS_TD

include "kiln/Dialect/Kiln/IR/KilnTypes.td"
include "mlir/IR/SymbolInterfaces.td"
include "mlir/Interfaces/SideEffectInterfaces.td"
include "mlir/Interfaces/ControlFlowInterfaces.td"
include "mlir/IR/BuiltinAttributeInterfaces.td"
include "mlir/Interfaces/InferTypeOpInterface.td"

class Kiln_Op<string mnemonic, list<Trait> traits = []>
    : Op<Kiln_Dialect, mnemonic, traits>;

def Kiln_QTensor : Type<CPred<"::llvm::isa<::mlir::kiln::QTensorType>($_self)">,
                        "quantized tensor", "::mlir::kiln::QTensorType">;
def Kiln_KvCache : Type<CPred<"::llvm::isa<::mlir::kiln::KvCacheType>($_self)">,
                        "KV cache", "::mlir::kiln::KvCacheType">;
/// A weight-like operand: a float tensor or a quantized tensor.
def Kiln_FloatOrQTensor : AnyTypeOf<[Kiln_FloatTensor, Kiln_QTensor]>;

//===----------------------------------------------------------------------===//
// Weights
//===----------------------------------------------------------------------===//

def Kiln_WeightDeclOp : Kiln_Op<"weight_decl", [Symbol, HasParent<"ModuleOp">]> {
  let summary = "declares a named weight stored outside the IR";
  let description = [{
    Declares a weight tensor by name. Its bytes are never inlined: `storage`
    names an external file, offset and length, or is absent when the weight
    is bound by name at load time (one compiled artifact serving many weight
    sets). The length must equal the packed byte size of `type`.

    ```mlir
    kiln.weight_decl @"model.embed_tokens.weight" : tensor<32000x4096xbf16>
        at #kiln.external<"model.onnx.data", offset = 0, length = 262144000>
    kiln.weight_decl @lm_head : tensor<32000x4096xbf16>
    ```
  }];
  let arguments = (ins SymbolNameAttr:$sym_name,
                       TypeAttrOf<Kiln_AnyTensor>:$type,
                       OptionalAttr<Kiln_ExternalStorageAttr>:$storage);
  let assemblyFormat = [{
    $sym_name `:` $type (`at` qualified($storage)^)? attr-dict
  }];
  let hasVerifier = 1;
  let extraClassDeclaration = [{
    ::mlir::RankedTensorType getTensorType() {
      return ::llvm::cast<::mlir::RankedTensorType>(getType());
    }
  }];
}

def Kiln_WeightOp : Kiln_Op<"weight", [Pure,
    DeclareOpInterfaceMethods<SymbolUserOpInterface>]> {
  let summary = "reads a declared weight";
  let description = [{
    The value of the weight `name`, declared by a `kiln.weight_decl` in the
    enclosing module with the same type.

    ```mlir
    %w = kiln.weight @"model.layers.0.mlp.down_proj.weight" : tensor<11008x4096xbf16>
    ```
  }];
  let arguments = (ins FlatSymbolRefAttr:$name);
  let results = (outs Kiln_AnyTensor:$result);
  let assemblyFormat = "$name attr-dict `:` type($result)";
}

//===----------------------------------------------------------------------===//
// Quantization
//===----------------------------------------------------------------------===//

def Kiln_MakeQTensorOp : Kiln_Op<"make_qtensor", [Pure]> {
  let summary = "bundles stored values, scales and zero points";
  let description = [{
    Forms a `!kiln.qtensor` from its parts, typically weights read with
    `kiln.weight` (e.g. MatMulNBits' packed data, scales and zero points).
    The parts' shapes and element types must match the result's scheme.

    ```mlir
    %q = kiln.make_qtensor %data, %scales : tensor<4096x4096xi4>, tensor<4096x32xf16>
        -> !kiln.qtensor<4096x4096, #kiln.quant<storage = i4, expressed = f16, block = [1, 128], scale = f16>>
    ```
  }];
  let arguments = (ins Kiln_AnyTensor:$data, Kiln_AnyTensor:$scales,
                       Optional<Kiln_AnyTensor>:$zero_points);
  let results = (outs Kiln_QTensor:$result);
  let assemblyFormat = [{
    $data `,` $scales (`,` $zero_points^)? attr-dict `:` type($data) `,`
    type($scales) (`,` type($zero_points)^)? `->` qualified(type($result))
  }];
  let hasVerifier = 1;
}

def Kiln_QuantizeOp : Kiln_Op<"quantize", [Pure, AttrSizedOperandSegments]> {
  let summary = "quantizes a float tensor";
  let description = [{
    Quantizes `input` with the result type's scheme:
    `stored = saturate(round_half_even(x / scale) + zero_point)`. With
    `scales` given (static, e.g. from calibration) they are used; otherwise
    scales (and zero points, for an asymmetric scheme) are computed per block
    from the data (dynamic per-token or per-tensor quantization).

    ```mlir
    %q = kiln.quantize %x : tensor<?x4096xbf16>
        -> !kiln.qtensor<?x4096, #kiln.quant<storage = f8E4M3FN, expressed = bf16, block = [1, 0], scale = f32>>
    ```
  }];
  let arguments = (ins Kiln_FloatTensor:$input,
                       Optional<Kiln_FloatTensor>:$scales,
                       Optional<Kiln_AnyTensor>:$zero_points);
  let results = (outs Kiln_QTensor:$result);
  let assemblyFormat = [{
    $input (`scales` `(` $scales^ `:` type($scales) `)`)?
    (`zero_points` `(` $zero_points^ `:` type($zero_points) `)`)?
    attr-dict `:` type($input) `->` qualified(type($result))
  }];
  let hasVerifier = 1;
}

def Kiln_DequantizeOp : Kiln_Op<"dequantize", [Pure]> {
  let summary = "dequantizes a quantized tensor";
  let description = [{
    `real = (stored - zero_point) * scale`, block-wise. The result has the
    scheme's expressed element type. Passes keep dequantization next to its
    consumer so kernels dequantize in registers; the op exists for imported
    QDQ graphs and reference paths.

    ```mlir
    %w = kiln.dequantize %q : !kiln.qtensor<64x64, #kiln.quant<storage = i8, expressed = f32, block = [1, 0], scale = f32>> -> tensor<64x64xf32>
    ```
  }];
  let arguments = (ins Kiln_QTensor:$input);
  let results = (outs Kiln_FloatTensor:$result);
  let assemblyFormat = [{
    $input attr-dict `:` qualified(type($input)) `->` type($result)
  }];
  let hasVerifier = 1;
}

def Kiln_HadamardOp : Kiln_Op<"hadamard", [Pure, SameOperandsAndResultType]> {
  let summary = "an orthonormal Hadamard rotation along the last dimension";
  let description = [{
    Multiplies each consecutive `block` elements of the last dimension by
    the normalized Sylvester Hadamard matrix `H / sqrt(block)` (`block` a
    power of two dividing the dimension): a block-diagonal rotation, its
    own inverse. Computed in f32 with the fast Walsh-Hadamard transform.
    Rotating both a matmul's input and its output-major weight along K
    leaves the product unchanged while spreading outliers across the block,
    which is what 4-bit activation quantization (`w4a4`) needs; the weight's
    rotation is folded at compile time, the input's runs online.

    ```mlir
    %r = kiln.hadamard %x {block = 64 : i64} : tensor<?x?x4096xbf16>
    ```
  }];
  let arguments = (ins Kiln_FloatTensor:$input, I64Attr:$block);
  let results = (outs Kiln_FloatTensor:$result);
  let assemblyFormat = "$input attr-dict `:` type($result)";
  let hasVerifier = 1;
}

def Kiln_RotateOp : Kiln_Op<"rotate", [Pure]> {
  let summary = "multiplies blocks of the last dimension by a square matrix";
  let description = [{
    `result[..., b*n + i] = sum_j input[..., b*n + j] * rotation[j, i]` for
    every block `b` of `n` elements, `rotation` an `[n, n]` matrix and `n`
    dividing the last dimension: `input` times the block-diagonal matrix
    with `rotation` on its diagonal. Computed with f64 sums, rounded once.
    With an orthogonal `rotation` (`R R^T = I`, e.g. a learned SpinQuant
    rotation), rotating a matmul's input and its output-major weight leaves
    the product unchanged: `(x R)(W R)^T = x W^T`.

    ```mlir
    %r = kiln.rotate %x, %R : tensor<?x?x4096xbf16>, tensor<4096x4096xf32> -> tensor<?x?x4096xbf16>
    ```
  }];
  let arguments = (ins Kiln_FloatTensor:$input, Kiln_FloatTensor:$rotation);
  let results = (outs Kiln_FloatTensor:$result);
  let assemblyFormat = [{
    $input `,` $rotation attr-dict `:` type($input) `,` type($rotation) `->` type($result)
  }];
  let hasVerifier = 1;
}

def Kiln_QTensorDataOp : Kiln_Op<"qtensor_data", [Pure]> {
  let summary = "the stored values of a quantized tensor";
  let description = [{
    The integer (or float8) values a `!kiln.qtensor` stores, as a plain
    tensor of its storage type: ONNX QuantizeLinear's output.

    ```mlir
    %d = kiln.qtensor_data %q : !kiln.qtensor<4x64, #kiln.quant<storage = i8, expressed = f32, block = [1, 0], scale = f32>> -> tensor<4x64xi8>
    ```
  }];
  let arguments = (ins Kiln_QTensor:$input);
  let results = (outs Kiln_AnyTensor:$result);
  let assemblyFormat = [{
    $input attr-dict `:` qualified(type($input)) `->` type($result)
  }];
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// Embedding, gather, matmul
//===----------------------------------------------------------------------===//

def Kiln_EmbeddingOp : Kiln_Op<"embedding", [Pure]> {
  let summary = "looks up rows of an embedding table";
  let description = [{
    `result[..., :] = table[ids[...], :]` for a `[vocab, hidden]` table, which
    may be quantized. Ids out of range are an error at run time.

    ```mlir
    %h = kiln.embedding %table, %ids : tensor<32000x4096xbf16>, tensor<?x?xi64> -> tensor<?x?x4096xbf16>
    ```
  }];
  let arguments = (ins Kiln_FloatOrQTensor:$table, Kiln_IndexTensor:$ids);
  let results = (outs Kiln_FloatTensor:$result);
  let assemblyFormat = [{
    $table `,` $ids attr-dict `:` qualified(type($table)) `,` type($ids) `->`
    type($result)
  }];
  let hasVerifier = 1;
}

def Kiln_GatherOp : Kiln_Op<"gather", [Pure]> {
  let summary = "gathers slices along one axis (ONNX Gather)";
  let description = [{
    The result shape is `input.shape[:axis] + indices.shape +
    input.shape[axis+1:]`. Negative indices count from the end of the axis.

    ```mlir
    %r = kiln.gather %x[%i] {axis = 0 : i64} : tensor<50x32xf32>, tensor<2x3xi64> -> tensor<2x3x32xf32>
    ```
  }];
  let arguments = (ins Kiln_AnyTensor:$input, Kiln_IndexTensor:$indices,
                       I64Attr:$axis);
  let results = (outs Kiln_AnyTensor:$result);
  let assemblyFormat = [{
    $input `[` $indices `]` attr-dict `:` type($input) `,` type($indices) `->`
    type($result)
  }];
  let hasVerifier = 1;
}

def Kiln_GatherNdOp : Kiln_Op<"gather_nd", [Pure]> {
  let summary = "gathers slices addressed by index tuples (ONNX GatherND)";
  let description = [{
    The last dimension of `indices` (k, static) holds coordinates into the
    dimensions `[batch_dims, batch_dims + k)` of `input`; the leading
    `batch_dims` dimensions of both are matched. The result shape is
    `indices.shape[:-1] + input.shape[batch_dims + k:]`. Exporters emit it when
    building attention masks by advanced indexing.

    ```mlir
    %r = kiln.gather_nd %m[%i] : tensor<?x?xi1>, tensor<?x?x?x2xi64> -> tensor<?x?x?xi1>
    ```
  }];
  let arguments = (ins Kiln_AnyTensor:$input, Kiln_IndexTensor:$indices,
                       DefaultValuedAttr<I64Attr, "0">:$batch_dims);
  let results = (outs Kiln_AnyTensor:$result);
  let assemblyFormat = [{
    $input `[` $indices `]` attr-dict `:` type($input) `,` type($indices) `->`
    type($result)
  }];
  let hasVerifier = 1;
}

def Kiln_MatmulOp : Kiln_Op<"matmul", [Pure]> {
  let summary = "batched matrix product with optional bias";
  let description = [{
    `result = a @ b (+ bias)` over the last two dimensions, broadcasting
    leading (batch) dimensions. `b` is `[..., K, N]`, or `[..., N, K]` with
    `transpose_b` (output-major weights, as nn.Linear and MatMulNBits store
    them). Either operand may be a `!kiln.qtensor` (weight-only or
    weight-and-activation quantization); the result has the expressed type.
    `bias` has shape `[N]`.

    ```mlir
    %y = kiln.matmul %x, %w bias(%b) {transpose_b} : tensor<?x?x4096xbf16>, tensor<12288x4096xbf16>, tensor<12288xbf16> -> tensor<?x?x12288xbf16>
    ```
  }];
  let arguments = (ins Kiln_FloatOrQTensor:$a, Kiln_FloatOrQTensor:$b,
                       Optional<Kiln_FloatTensor>:$bias,
                       UnitAttr:$transpose_b);
  let results = (outs Kiln_FloatTensor:$result);
  let assemblyFormat = [{
    $a `,` $b (`bias` `(` $bias^ `)`)? attr-dict `:` qualified(type($a)) `,`
    qualified(type($b)) (`,` type($bias)^)? `->` type($result)
  }];
  let hasVerifier = 1;
  let hasCanonicalizer = 1;
}

//===----------------------------------------------------------------------===//
// Elementwise
//===----------------------------------------------------------------------===//

class Kiln_BinaryOp<string mnemonic, Type operandType, list<Trait> traits = []>
    : Kiln_Op<mnemonic, !listconcat(traits, [Pure])> {
  let arguments = (ins operandType:$lhs, operandType:$rhs);
  let results = (outs operandType:$result);
  let assemblyFormat = [{
    $lhs `,` $rhs attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
  let description = [{
    Elementwise with NumPy broadcasting: operand shapes are aligned at their
    trailing dimensions and size-1 dimensions stretch. Both operands and the
    result share one element type.
  }];
}

def Kiln_AddOp : Kiln_BinaryOp<"add", Kiln_NumericTensor, [Commutative]> {
  let summary = "elementwise addition";
}
def Kiln_SubOp : Kiln_BinaryOp<"sub", Kiln_NumericTensor> {
  let summary = "elementwise subtraction";
}
def Kiln_MulOp : Kiln_BinaryOp<"mul", Kiln_NumericTensor, [Commutative]> {
  let summary = "elementwise multiplication";
}
def Kiln_DivOp : Kiln_BinaryOp<"div", Kiln_NumericTensor> {
  let summary = "elementwise division (integers truncate toward zero)";
}
def Kiln_PowOp : Kiln_BinaryOp<"pow", Kiln_FloatTensor> {
  let summary = "elementwise power";
}
def Kiln_MaxOp : Kiln_BinaryOp<"max", Kiln_NumericTensor, [Commutative]> {
  let summary = "elementwise maximum";
}
def Kiln_MinOp : Kiln_BinaryOp<"min", Kiln_NumericTensor, [Commutative]> {
  let summary = "elementwise minimum";
}
def Kiln_AndOp : Kiln_BinaryOp<"and", Kiln_BoolTensor, [Commutative]> {
  let summary = "elementwise logical and";
}
def Kiln_OrOp : Kiln_BinaryOp<"or", Kiln_BoolTensor, [Commutative]> {
  let summary = "elementwise logical or";
}

def Kiln_CompareOp : Kiln_Op<"compare", [Pure]> {
  let summary = "elementwise comparison producing booleans";
  let description = [{
    Compares with NumPy broadcasting; the result is an `i1` tensor of the
    broadcast shape.

    ```mlir
    %m = kiln.compare le, %a, %b : (tensor<?x1xi64>, tensor<1x?xi64>) -> tensor<?x?xi1>
    ```
  }];
  let arguments = (ins Kiln_ComparePredicate:$predicate,
                       Kiln_NumericTensor:$lhs, Kiln_NumericTensor:$rhs);
  let results = (outs Kiln_BoolTensor:$result);
  let assemblyFormat = [{
    $predicate `,` $lhs `,` $rhs attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def Kiln_SelectOp : Kiln_Op<"select", [Pure]> {
  let summary = "elementwise choice (ONNX Where)";
  let description = [{
    `result = condition ? on_true : on_false` with NumPy broadcasting of all
    three operands.

    ```mlir
    %r = kiln.select %c, %a, %b : (tensor<1x1x?x?xi1>, tensor<f32>, tensor<f32>) -> tensor<1x1x?x?xf32>
    ```
  }];
  let arguments = (ins Kiln_BoolTensor:$condition, Kiln_AnyTensor:$on_true,
                       Kiln_AnyTensor:$on_false);
  let results = (outs Kiln_AnyTensor:$result);
  let assemblyFormat = [{
    $condition `,` $on_true `,` $on_false attr-dict `:`
    functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

class Kiln_UnaryOp<string mnemonic, Type type, list<Trait> traits = []>
    : Kiln_Op<mnemonic, !listconcat(traits, [Pure, SameOperandsAndResultType])> {
  let arguments = (ins type:$input);
  let results = (outs type:$result);
  let assemblyFormat = "$input attr-dict `:` type($result)";
}

def Kiln_NegOp : Kiln_UnaryOp<"neg", Kiln_NumericTensor> {
  let summary = "elementwise negation";
}
def Kiln_AbsOp : Kiln_UnaryOp<"abs", Kiln_NumericTensor> {
  let summary = "elementwise absolute value";
}
def Kiln_ExpOp : Kiln_UnaryOp<"exp", Kiln_FloatTensor> {
  let summary = "elementwise e^x";
}
def Kiln_LogOp : Kiln_UnaryOp<"log", Kiln_FloatTensor> {
  let summary = "elementwise natural logarithm";
}
def Kiln_SqrtOp : Kiln_UnaryOp<"sqrt", Kiln_FloatTensor> {
  let summary = "elementwise square root";
}
def Kiln_RsqrtOp : Kiln_UnaryOp<"rsqrt", Kiln_FloatTensor> {
  let summary = "elementwise reciprocal square root";
}
def Kiln_ReciprocalOp : Kiln_UnaryOp<"reciprocal", Kiln_FloatTensor> {
  let summary = "elementwise 1/x";
}
def Kiln_TanhOp : Kiln_UnaryOp<"tanh", Kiln_FloatTensor> {
  let summary = "elementwise hyperbolic tangent";
}
def Kiln_SinOp : Kiln_UnaryOp<"sin", Kiln_FloatTensor> {
  let summary = "elementwise sine";
}
def Kiln_CosOp : Kiln_UnaryOp<"cos", Kiln_FloatTensor> {
  let summary = "elementwise cosine";
}
def Kiln_ErfOp : Kiln_UnaryOp<"erf", Kiln_FloatTensor> {
  let summary = "elementwise error function";
}
def Kiln_NotOp : Kiln_UnaryOp<"not", Kiln_BoolTensor> {
  let summary = "elementwise logical not";
}

def Kiln_ActivationOp : Kiln_UnaryOp<"activation", Kiln_FloatTensor> {
  let summary = "an activation function";
  let description = [{
    `relu`: max(x, 0); `silu`: x * sigmoid(x); `gelu`: x * Phi(x) (erf form);
    `gelu_tanh`: the tanh approximation; `sigmoid`: 1 / (1 + e^-x).

    ```mlir
    %y = kiln.activation silu %x : tensor<?x11008xbf16>
    ```
  }];
  let arguments = (ins Kiln_ActivationKind:$kind, Kiln_FloatTensor:$input);
  let assemblyFormat = "$kind $input attr-dict `:` type($result)";
}

def Kiln_TriluOp : Kiln_Op<"trilu", [Pure, SameOperandsAndResultType]> {
  let summary = "keeps the upper or lower triangle of the last two dims (ONNX Trilu)";
  let description = [{
    Elements `[..., i, j]` with `j - i >= diagonal` (upper) or
    `j - i <= diagonal` (lower) are kept; the others become zero. Exporters
    build causal masks with it.

    ```mlir
    %m = kiln.trilu %x {upper, diagonal = 1 : i64} : tensor<?x?xf32>
    ```
  }];
  let arguments = (ins Kiln_AnyTensor:$input,
                       DefaultValuedAttr<I64Attr, "0">:$diagonal,
                       UnitAttr:$upper);
  let results = (outs Kiln_AnyTensor:$result);
  let assemblyFormat = "$input attr-dict `:` type($result)";
  let hasVerifier = 1;
}

def Kiln_CumsumOp : Kiln_Op<"cumsum", [Pure, SameOperandsAndResultType]> {
  let summary = "running sum along an axis (ONNX CumSum)";
  let description = [{
    With `exclusive` each element excludes itself; with `reverse` the sum
    runs from the end. Exporters derive position ids from attention masks
    with it.

    ```mlir
    %p = kiln.cumsum %mask {axis = 1 : i64} : tensor<?x?xi64>
    ```
  }];
  let arguments = (ins Kiln_NumericTensor:$input, I64Attr:$axis,
                       UnitAttr:$exclusive, UnitAttr:$reverse);
  let results = (outs Kiln_NumericTensor:$result);
  let assemblyFormat = "$input attr-dict `:` type($result)";
  let hasVerifier = 1;
}

def Kiln_CastOp : Kiln_Op<"cast", [Pure]> {
  let summary = "converts the element type";
  let description = [{
    Float-to-float rounds to nearest even; float-to-integer truncates toward
    zero; to `i1` is `x != 0`. Shapes must match.

    ```mlir
    %y = kiln.cast %x : tensor<?x4096xbf16> to tensor<?x4096xf32>
    ```
  }];
  let arguments = (ins Kiln_AnyTensor:$input);
  let results = (outs Kiln_AnyTensor:$result);
  let assemblyFormat = "$input attr-dict `:` type($input) `to` type($result)";
  let hasVerifier = 1;
  let hasFolder = 1;
}

def Kiln_ElementwiseOp : Kiln_Op<"elementwise", [Pure, IsolatedFromAbove]> {
  let summary = "a fused chain of elementwise ops: one pass over the data";
  let description = [{
    Applies its body to every element of the NumPy broadcast of its inputs
    (left-padded with unit dimensions to the result's rank): the body's block
    arguments are the inputs' elements, `kiln.yield` gives the result's. The
    body holds scalar float ops only: `arith` add, sub, mul, div, maximumf,
    minimumf, negf, extf, truncf and float constants; `math` powf, exp, log,
    sqrt, rsqrt, tanh, sin, cos, erf and absf. `kiln-fuse-elementwise` builds
    it from chains of kiln elementwise ops, so the chain reads its inputs and
    writes its result once instead of once per op. Kernels compute the body
    in f32, rounding a value of f16 or bf16 type to it where the body makes
    it (as the unfused ops would).

    ```mlir
    %y = kiln.elementwise %x : (tensor<?x256xf32>) -> tensor<?x256xf32> {
    ^bb0(%a: f32):
      %c = arith.constant 3.000000e+01 : f32
      %0 = arith.divf %a, %c : f32
      %1 = math.tanh %0 : f32
      %2 = arith.mulf %1, %c : f32
      kiln.yield %2 : f32
    }
    ```
  }];
  let arguments = (ins Variadic<Kiln_FloatTensor>:$inputs);
  let results = (outs Kiln_FloatTensor:$result);
  let regions = (region SizedRegion<1>:$body);
  let assemblyFormat = [{
    $inputs attr-dict `:` functional-type($inputs, results) $body
  }];
  let hasRegionVerifier = 1;
}

def Kiln_YieldOp : Kiln_Op<"yield", [Pure, Terminator, ReturnLike,
                                     HasParent<"ElementwiseOp">]> {
  let summary = "the element a kiln.elementwise body computes";
  let arguments = (ins AnyFloat:$value);
  let assemblyFormat = "$value attr-dict `:` type($value)";
}

//===----------------------------------------------------------------------===//
// Reductions and normalization
//===----------------------------------------------------------------------===//

def Kiln_ReduceOp : Kiln_Op<"reduce", [Pure]> {
  let summary = "reduces along axes";
  let description = [{
    Reduces `input` along `axes` (negative axes count from the end). With
    `keep_dims` reduced dimensions stay as size 1.

    ```mlir
    %m = kiln.reduce mean %x {axes = array<i64: -1>, keep_dims} : tensor<?x4096xf32> -> tensor<?x1xf32>
    ```
  }];
  let arguments = (ins Kiln_ReduceKind:$kind, Kiln_NumericTensor:$input,
                       DenseI64ArrayAttr:$axes, UnitAttr:$keep_dims);
  let results = (outs Kiln_NumericTensor:$result);
  let assemblyFormat = [{
    $kind $input attr-dict `:` type($input) `->` type($result)
  }];
  let hasVerifier = 1;
}

def Kiln_SoftmaxOp : Kiln_Op<"softmax", [Pure, SameOperandsAndResultType]> {
  let summary = "softmax along one axis";
  let description = [{
    ```mlir
    %p = kiln.softmax %s {axis = -1 : i64} : tensor<?x32x?x?xf32>
    ```
  }];
  let arguments = (ins Kiln_FloatTensor:$input,
                       DefaultValuedAttr<I64Attr, "-1">:$axis);
  let results = (outs Kiln_FloatTensor:$result);
  let assemblyFormat = "$input attr-dict `:` type($result)";
  let hasVerifier = 1;
}

def Kiln_RmsNormOp : Kiln_Op<"rms_norm", [Pure]> {
  let summary = "root-mean-square normalization";
  let description = [{
    `y = x / sqrt(mean(x^2 over dims [axis, rank)) + epsilon) * weight`,
    computed in f32. `weight` has the shape of the normalized dimensions; the
    result has the type of `input`.

    ```mlir
    %y = kiln.rms_norm %x, %w {epsilon = 1.0e-06 : f32} : tensor<?x?x4096xbf16>, tensor<4096xbf16> -> tensor<?x?x4096xbf16>
    ```
  }];
  let arguments = (ins Kiln_FloatTensor:$input, Kiln_FloatTensor:$weight,
                       F32Attr:$epsilon,
                       DefaultValuedAttr<I64Attr, "-1">:$axis);
  let results = (outs Kiln_FloatTensor:$result);
  let assemblyFormat = [{
    $input `,` $weight attr-dict `:` type($input) `,` type($weight) `->`
    type($result)
  }];
  let hasVerifier = 1;
}

def Kiln_AddRmsNormOp : Kiln_Op<"add_rms_norm", [Pure,
    AllTypesMatch<["input", "residual", "sum", "result"]>]> {
  let summary = "residual add fused with RMS normalization";
  let description = [{
    `sum = input + residual` and `result = rms_norm(sum, weight)` (as
    `kiln.rms_norm`: over dims `[axis, rank)`, in f32). A pre-norm decoder
    layer adds each block's output to the residual stream and normalizes the
    sum for the next block; this does both in one pass and returns both, the
    sum being the stream the next block adds to. Every operand and result
    but `weight` has the type of `input`.

    ```mlir
    %h, %n = kiln.add_rms_norm %x, %attn, %w {epsilon = 1.0e-06 : f32} : tensor<?x?x4096xbf16>, tensor<4096xbf16>
    ```
  }];
  let arguments = (ins Kiln_FloatTensor:$input, Kiln_FloatTensor:$residual,
                       Kiln_FloatTensor:$weight, F32Attr:$epsilon,
                       DefaultValuedAttr<I64Attr, "-1">:$axis);
  let results = (outs Kiln_FloatTensor:$sum, Kiln_FloatTensor:$result);
  let assemblyFormat = [{
    $input `,` $residual `,` $weight attr-dict `:` type($input) `,`
    type($weight)
  }];
  let hasVerifier = 1;
}

def Kiln_LayerNormOp : Kiln_Op<"layer_norm", [Pure]> {
  let summary = "layer normalization";
  let description = [{
    `y = (x - mean) / sqrt(var + epsilon) * weight (+ bias)` over dims
    `[axis, rank)`, computed in f32.

    ```mlir
    %y = kiln.layer_norm %x, %w, %b {epsilon = 1.0e-05 : f32} : tensor<?x?x768xf32>, tensor<768xf32>, tensor<768xf32> -> tensor<?x?x768xf32>
    ```
  }];
  let arguments = (ins Kiln_FloatTensor:$input, Kiln_FloatTensor:$weight,
                       Optional<Kiln_FloatTensor>:$bias, F32Attr:$epsilon,
                       DefaultValuedAttr<I64Attr, "-1">:$axis);
  let results = (outs Kiln_FloatTensor:$result);
  let assemblyFormat = [{
    $input `,` $weight (`,` $bias^)? attr-dict `:` type($input) `,`
    type($weight) (`,` type($bias)^)? `->` type($result)
  }];
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// Transformer blocks
//===----------------------------------------------------------------------===//

def Kiln_RopeOp : Kiln_Op<"rope", [Pure]> {
  let summary = "rotary position embedding";
  let description = [{
    Rotates the first `rotary_dim` channels (all when 0) of each head of a
    `[B, S, H, D]` input. With `positions` (`[B, S]`), `cos` and `sin` are
    caches `[max_position, rotary_dim / 2]` indexed by position; without,
    they are already gathered, `[B, S, rotary_dim / 2]` (or `[1, S, ...]`,
    shared by the whole batch).

    Non-interleaved (rotate-half, Llama): pairs are `(x[i], x[i + r/2])`.
    Interleaved (GPT-J): pairs are `(x[2i], x[2i + 1])`. Each pair becomes
    `(x1 * cos - x2 * sin, x1 * sin + x2 * cos)`.

    ```mlir
    %qr = kiln.rope %q, %cos, %sin positions(%pos) : tensor<?x?x32x128xbf16>, tensor<4096x64xf32>, tensor<4096x64xf32>, tensor<?x?xi64> -> tensor<?x?x32x128xbf16>
    ```
  }];
  let arguments = (ins Kiln_FloatTensor:$input, Kiln_FloatTensor:$cos,
                       Kiln_FloatTensor:$sin,
                       Optional<Kiln_IndexTensor>:$positions,
                       UnitAttr:$interleaved,
                       DefaultValuedAttr<I64Attr, "0">:$rotary_dim);
  let results = (outs Kiln_FloatTensor:$result);
  let assemblyFormat = [{
    $input `,` $cos `,` $sin (`positions` `(` $positions^ `)`)? attr-dict `:`
    type($input) `,` type($cos) `,` type($sin) (`,` type($positions)^)? `->`
    type($result)
  }];
  let hasVerifier = 1;
}

def Kiln_AttentionOp : Kiln_Op<"attention", [Pure, AttrSizedOperandSegments]> {
  let summary = "scaled dot-product attention with GQA, masks, caches and sparsity";
  let description = [{
    `softmax(softcap(scale * Q K^T) + mask) V` per head, with grouped-query
    attention: query head `h` reads KV head `h / (Hq / Hkv)`.

    Operands, all in BSHD layout:
    * `query` `[B, Sq, Hq, D]`.
    * keys and values from exactly one source: `kv(%k, %v)` tensors
      `[B, Skv, Hkv, D]` / `[B, Skv, Hkv, Dv]` (float or `!kiln.qtensor`), or
      `cache(%c)`, a `!kiln.kv_cache` of any layout and element type (the
      queries are then the last `Sq` tokens of each sequence in the cache).
    * `attn_mask(%m)`: optional explicit mask, additive float or boolean
      (true = visible), broadcastable to `[B, Hq, Sq, T]`, combined with the
      mask kind (padding masks, imported masks).
    * `tree_mask(%t)`: `i1` `[B, Sq, Sq]` (or `[Sq, Sq]`), required exactly
      when the mask kind is `tree`: which new tokens each new token sees.
    * `sparse_index(...)`: the index tensors of `sparsity`, which restrict
      the visited keys further (or alone, for mask kind `sparse`).

    Attributes: `mask` (`#kiln.mask`), `scale` (default `1/sqrt(D)`),
    `softcap` (`c * tanh(x / c)` before masking; 0 = off), `sparsity`.
    Without a cache, queries are aligned to the end of the keys: query `i` is
    at position `Skv - Sq + i`.

    ```mlir
    %o = kiln.attention %q, cache(%c) {mask = #kiln.mask<causal>} : (tensor<?x?x32x128xbf16>, !kiln.kv_cache<paged<16>, bf16, kv_heads = 8, head_dim = 128>) -> tensor<?x?x32x128xbf16>
    ```
  }];
  let arguments = (ins Kiln_FloatTensor:$query,
                       Optional<Kiln_FloatOrQTensor>:$key,
                       Optional<Kiln_FloatOrQTensor>:$value,
                       Optional<Kiln_KvCache>:$cache,
                       Optional<RankedTensorOf<[F32, F16, BF16, I1]>>:$attn_mask,
                       Optional<Kiln_BoolTensor>:$tree_mask,
                       Variadic<Kiln_IndexTensor>:$sparse_index,
                       Kiln_MaskAttr:$mask,
                       OptionalAttr<F32Attr>:$scale,
                       OptionalAttr<F32Attr>:$softcap,
                       OptionalAttr<Kiln_SparsityAttr>:$sparsity);
  let results = (outs Kiln_FloatTensor:$result);
  let assemblyFormat = [{
    $query (`kv` `(` $key^ `,` $value `)`)? (`cache` `(` $cache^ `)`)?
    (`attn_mask` `(` $attn_mask^ `)`)? (`tree_mask` `(` $tree_mask^ `)`)?
    (`sparse_index` `(` $sparse_index^ `)`)? attr-dict `:`
    functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def Kiln_GluOp : Kiln_Op<"glu", [Pure]> {
  let summary = "gated linear unit: act(gate) * up";
  let description = [{
    With two operands, `act(gate) * up`. With one, its last dimension holds
    `[gate, up]` halves (the output of a fused gate/up projection).

    ```mlir
    %h = kiln.glu silu %gu : tensor<?x22016xbf16> -> tensor<?x11008xbf16>
    %h2 = kiln.glu gelu_tanh %g, %u : tensor<?x11008xbf16>, tensor<?x11008xbf16> -> tensor<?x11008xbf16>
    ```
  }];
  let arguments = (ins Kiln_ActivationKind:$activation,
                       Kiln_FloatTensor:$gate, Optional<Kiln_FloatTensor>:$up);
  let results = (outs Kiln_FloatTensor:$result);
  let assemblyFormat = [{
    $activation $gate (`,` $up^)? attr-dict `:` type($gate) (`,` type($up)^)?
    `->` type($result)
  }];
  let hasVerifier = 1;
}

def Kiln_GatedMlpOp : Kiln_Op<"gated_mlp", [Pure, AttrSizedOperandSegments]> {
  let summary = "gated MLP: down(act(x W_gate) * (x W_up))";
  let description = [{
    The SwiGLU / GeGLU feed-forward block. Gate and up projections are given
    separately (`gate(%g) up(%u)`, each `[H, F]`) or fused
    (`gate_up(%gu)`, `[H, 2F]`, gate columns first); `down` is `[F, H]`. With
    `transpose_weights` every weight is output-major (`[F, H]`, `[2F, H]`,
    `[H, F]`). Weights may be quantized.

    ```mlir
    %y = kiln.gated_mlp silu %x, gate(%g) up(%u) down(%d) : (tensor<?x4096xbf16>, tensor<4096x11008xbf16>, tensor<4096x11008xbf16>, tensor<11008x4096xbf16>) -> tensor<?x4096xbf16>
    ```
  }];
  let arguments = (ins Kiln_ActivationKind:$activation,
                       Kiln_FloatTensor:$input,
                       Optional<Kiln_FloatOrQTensor>:$gate,
                       Optional<Kiln_FloatOrQTensor>:$up,
                       Optional<Kiln_FloatOrQTensor>:$gate_up,
                       Kiln_FloatOrQTensor:$down,
                       UnitAttr:$transpose_weights);
  let results = (outs Kiln_FloatTensor:$result);
  let assemblyFormat = [{
    $activation $input `,` (`gate` `(` $gate^ `)`)? (`up` `(` $up^ `)`)?
    (`gate_up` `(` $gate_up^ `)`)? `down` `(` $down `)` attr-dict `:`
    functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// KV cache
//===----------------------------------------------------------------------===//

def Kiln_KvCacheAppendOp : Kiln_Op<"kv_cache_append", [Pure,
    AttrSizedOperandSegments, AllTypesMatch<["cache", "result"]>]> {
  let summary = "appends new keys and values to a KV cache";
  let description = [{
    Writes `key` / `value` (`[B, S, Hkv, D]` / `[B, S, Hkv, Dv]`) after each
    sequence's current tokens and returns the updated cache. The runtime
    updates the storage in place. A quantized cache quantizes on append;
    when its scales are static (not per token) they are passed as
    `scales(%k_scale, %v_scale)`.

    ```mlir
    %c1 = kiln.kv_cache_append %c0, %k, %v : !kiln.kv_cache<contiguous, bf16, kv_heads = 8, head_dim = 128>, tensor<?x?x8x128xbf16>, tensor<?x?x8x128xbf16>
    ```
  }];
  let arguments = (ins Kiln_KvCache:$cache, Kiln_FloatTensor:$key,
                       Kiln_FloatTensor:$value,
                       Optional<Kiln_FloatTensor>:$key_scale,
                       Optional<Kiln_FloatTensor>:$value_scale);
  let results = (outs Kiln_KvCache:$result);
  let assemblyFormat = [{
    $cache `,` $key `,` $value
    (`scales` `(` $key_scale^ `,` $value_scale `:` type($key_scale) `,`
     type($value_scale) `)`)?
    attr-dict `:` qualified(type($cache)) `,` type($key) `,` type($value)
  }];
  let hasVerifier = 1;
}

def Kiln_TensorScatterOp : Kiln_Op<"tensor_scatter", [Pure,
    AllTypesMatch<["cache", "result"]>]> {
  let summary = "writes new entries into a fixed-size cache tensor (ONNX TensorScatter)";
  let description = [{
    `result` is `cache` with `update` written along `axis`, starting for batch
    row `b` at `write_indices[b]` (0 when absent); with `circular` positions
    wrap around the axis. This is how opset-24 models update a static KV cache
    in place; the importer marks such caches for the runtime.

    ```mlir
    %c1 = kiln.tensor_scatter %c0, %k, %pos {axis = 2 : i64} : tensor<?x8x4096x64xf16>, tensor<?x8x?x64xf16>, tensor<?xi64>
    ```
  }];
  let arguments = (ins Kiln_AnyTensor:$cache, Kiln_AnyTensor:$update,
                       Optional<Kiln_IndexTensor>:$write_indices,
                       I64Attr:$axis, UnitAttr:$circular);
  let results = (outs Kiln_AnyTensor:$result);
  let assemblyFormat = [{
    $cache `,` $update (`,` $write_indices^)? attr-dict `:` type($cache) `,`
    type($update) (`,` type($write_indices)^)?
  }];
  let hasVerifier = 1;
}

def Kiln_KvCacheReadOp : Kiln_Op<"kv_cache_read", [Pure]> {
  let summary = "reads a KV cache's keys and values as dense tensors";
  let description = [{
    Returns every cached key and value, `[B, T, Hkv, D]` / `[B, T, Hkv, Dv]`,
    dequantized to the cache's compute type. Used where an explicit `present`
    tensor is needed (single-forward ONNX outputs, reference paths); fused
    attention reads the cache directly.

    ```mlir
    %k, %v = kiln.kv_cache_read %c : !kiln.kv_cache<contiguous, f32, kv_heads = 2, head_dim = 64> -> tensor<?x?x2x64xf32>, tensor<?x?x2x64xf32>
    ```
  }];
  let arguments = (ins Kiln_KvCache:$cache);
  let results = (outs Kiln_FloatTensor:$key, Kiln_FloatTensor:$value);
  let assemblyFormat = [{
    $cache attr-dict `:` qualified(type($cache)) `->` type($key) `,`
    type($value)
  }];
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// Shape ops
//===----------------------------------------------------------------------===//

def Kiln_ReshapeOp : Kiln_Op<"reshape", [Pure]> {
  let summary = "changes the shape, keeping element order";
  let description = [{
    The result type gives the new shape. Its dynamic dimensions come from:

    * the optional 1-D `shape` operand, read as ONNX Reshape reads it: an
      entry of 0 copies the input dimension at the same index, one entry of
      -1 is inferred from the element count;
    * without it, when the result has one dynamic dimension, the element
      count;
    * otherwise the input's dynamic dimensions, in order (their counts must
      match), as when static dimensions are split, merged, inserted or
      removed around them.

    ```mlir
    %r = kiln.reshape %x : tensor<?x?x4096xbf16> -> tensor<?x?x32x128xbf16>
    %f = kiln.reshape %y : tensor<?x32x128xbf16> -> tensor<?x4096xbf16>
    %g = kiln.reshape %z shape(%s : tensor<3xi64>) : tensor<?x?x64xf32> -> tensor<?x?x?xf32>
    ```
  }];
  let arguments = (ins Kiln_AnyTensor:$input, Optional<Kiln_ShapeTensor>:$shape);
  let results = (outs Kiln_AnyTensor:$result);
  let assemblyFormat = [{
    $input (`shape` `(` $shape^ `:` type($shape) `)`)? attr-dict `:`
    type($input) `->` type($result)
  }];
  let hasVerifier = 1;
  let hasFolder = 1;
  let hasCanonicalizer = 1;
}

def Kiln_TransposeOp : Kiln_Op<"transpose", [Pure]> {
  let summary = "permutes dimensions";
  let description = [{
    `result.shape[i] = input.shape[permutation[i]]`.

    ```mlir
    %t = kiln.transpose %x [0, 2, 1, 3] : tensor<?x?x32x128xbf16> -> tensor<?x32x?x128xbf16>
    ```
  }];
  let arguments = (ins Kiln_AnyTensor:$input, DenseI64ArrayAttr:$permutation);
  let results = (outs Kiln_AnyTensor:$result);
  let assemblyFormat = [{
    $input $permutation attr-dict `:` type($input) `->` type($result)
  }];
  let hasVerifier = 1;
  let hasFolder = 1;
  let hasCanonicalizer = 1;
}

def Kiln_ConcatOp : Kiln_Op<"concat", [Pure]> {
  let summary = "concatenates along one axis";
  let description = [{
    ```mlir
    %c = kiln.concat %a, %b {axis = -1 : i64} : (tensor<?x64xf32>, tensor<?x64xf32>) -> tensor<?x128xf32>
    ```
  }];
  let arguments = (ins Variadic<Kiln_AnyTensor>:$inputs, I64Attr:$axis);
  let results = (outs Kiln_AnyTensor:$result);
  let assemblyFormat = [{
    $inputs attr-dict `:` functional-type($inputs, results)
  }];
  let hasVerifier = 1;
  let hasFolder = 1;
}

def Kiln_SliceOp : Kiln_Op<"slice", [Pure]> {
  let summary = "strided slice with static bounds (ONNX Slice)";
  let description = [{
    For each listed axis, takes `starts[i]` up to (excluding) `ends[i]` with
    step `steps[i]`, with ONNX's semantics: negative bounds count from the
    end, out-of-range bounds clamp (`INT64_MAX` means "to the end"), and a
    negative step walks backwards.

    ```mlir
    %s = kiln.slice %x {axes = array<i64: 3>, starts = array<i64: 0>, ends = array<i64: 64>, steps = array<i64: 1>} : tensor<?x?x32x128xf32> -> tensor<?x?x32x64xf32>
    ```
  }];
  let arguments = (ins Kiln_AnyTensor:$input, DenseI64ArrayAttr:$axes,
                       DenseI64ArrayAttr:$starts, DenseI64ArrayAttr:$ends,
                       DenseI64ArrayAttr:$steps);
  let results = (outs Kiln_AnyTensor:$result);
  let assemblyFormat = "$input attr-dict `:` type($input) `->` type($result)";
  let hasVerifier = 1;
  let hasFolder = 1;
}

def Kiln_BroadcastOp : Kiln_Op<"broadcast", [Pure]> {
  let summary = "broadcasts to a larger shape (ONNX Expand)";
  let description = [{
    NumPy broadcasting of `input` to the result shape. The optional `shape`
    operand gives the target as ONNX Expand reads it: it is broadcast with the
    input's shape (an entry of 1 keeps the input's dimension). Without it,
    each dynamic result dimension is the input's dynamic dimension aligned
    with it (from the right).

    ```mlir
    %e = kiln.broadcast %x : tensor<1x1x?x?xf32> -> tensor<?x32x?x?xf32>
    ```
  }];
  let arguments = (ins Kiln_AnyTensor:$input, Optional<Kiln_ShapeTensor>:$shape);
  let results = (outs Kiln_AnyTensor:$result);
  let assemblyFormat = [{
    $input (`shape` `(` $shape^ `:` type($shape) `)`)? attr-dict `:`
    type($input) `->` type($result)
  }];
  let hasVerifier = 1;
  let hasFolder = 1;
}

def Kiln_BitcastOp : Kiln_Op<"bitcast", [Pure]> {
  let summary = "reinterprets a tensor's stored bytes with another type";
  let description = [{
    The same bytes read with another static shape and element type, under
    the packed storage rule (sub-byte types two per byte along the innermost
    dimension, low nibble first). Both types must occupy the same number of
    bytes. Importers use it to view packed weights (MatMulNBits' uint8 blobs)
    as the 4-bit tensors they hold, without copying.

    ```mlir
    %q = kiln.bitcast %b : tensor<4096x32x64xui8> -> tensor<4096x4096xui4>
    ```
  }];
  let arguments = (ins Kiln_AnyTensor:$input);
  let results = (outs Kiln_AnyTensor:$result);
  let assemblyFormat = "$input attr-dict `:` type($input) `->` type($result)";
  let hasVerifier = 1;
  let hasFolder = 1;
}

def Kiln_ShapeOfOp : Kiln_Op<"shape_of", [Pure]> {
  let summary = "the shape of a tensor (or a KV cache) as a 1-D i64 tensor";
  let description = [{
    Folds to a constant when the input shape is static. Of a
    `!kiln.kv_cache`, the logical shape of its keys,
    `[batch, tokens, kv_heads, head_dim]` (tokens: those cached so far).

    ```mlir
    %s = kiln.shape_of %x : tensor<?x4096xf32> -> tensor<2xi64>
    %t = kiln.shape_of %c : !kiln.kv_cache<contiguous, f32, kv_heads = 2, head_dim = 16> -> tensor<4xi64>
    ```
  }];
  let arguments = (ins AnyTypeOf<[Kiln_AnyTensor, Kiln_KvCache]>:$input);
  let results = (outs Kiln_ShapeTensor:$result);
  let assemblyFormat = "$input attr-dict `:` type($input) `->` type($result)";
  let hasVerifier = 1;
  let hasFolder = 1;
}

def Kiln_RangeOp : Kiln_Op<"range", [Pure]> {
  let summary = "an arithmetic sequence (ONNX Range)";
  let description = [{
    `[start, start + delta, ...)` up to `limit` (exclusive); scalars in, a
    1-D tensor of `max(ceil((limit - start) / delta), 0)` elements out.

    ```mlir
    %r = kiln.range %start, %limit, %delta : (tensor<i64>, tensor<i64>, tensor<i64>) -> tensor<?xi64>
    ```
  }];
  let arguments = (ins Kiln_NumericTensor:$start, Kiln_NumericTensor:$limit,
                       Kiln_NumericTensor:$delta);
  let results = (outs Kiln_NumericTensor:$result);
  let assemblyFormat = [{
    $start `,` $limit `,` $delta attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def Kiln_FillOp : Kiln_Op<"fill", [Pure]> {
  let summary = "a tensor filled with one value (ONNX ConstantOfShape)";
  let description = [{
    The optional `shape` operand gives the dynamic dimensions.

    ```mlir
    %z = kiln.fill 0.000000e+00 : f32 shape(%s : tensor<2xi64>) : tensor<?x?xf32>
    ```
  }];
  let arguments = (ins TypedAttrInterface:$value,
                       Optional<Kiln_ShapeTensor>:$shape);
  let results = (outs Kiln_AnyTensor:$result);
  let assemblyFormat = [{
    $value (`shape` `(` $shape^ `:` type($shape) `)`)? attr-dict `:`
    type($result)
  }];
  let hasVerifier = 1;
}

#endif // KILN_DIALECT_KILN_IR_KILNOPS_TD
