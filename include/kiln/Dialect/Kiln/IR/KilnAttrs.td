//===- KilnAttrs.td - attributes of the kiln dialect -------*- tablegen -*-===//
//
// Quantization schemes, external weight storage, attention masks and
// sparsity-index formats.
//
//===----------------------------------------------------------------------===//

#ifndef KILN_DIALECT_KILN_IR_KILNATTRS_TD
#define KILN_DIALECT_KILN_IR_KILNATTRS_TD

include "kiln/Dialect/Kiln/IR/KilnBase.td"
include "kiln/Dialect/Kiln/IR/KilnEnums.td"

class Kiln_Attr<string name, string attrMnemonic, list<Trait> traits = []>
    : AttrDef<Kiln_Dialect, name, traits> {
  let mnemonic = attrMnemonic;
}

//===----------------------------------------------------------------------===//
// QuantAttr
//===----------------------------------------------------------------------===//

def Kiln_QuantAttr : Kiln_Attr<"Quant", "quant"> {
  let summary = "a block-wise affine quantization scheme";
  let description = [{
    Describes how stored values map to real values:
    `real = (stored - zero_point[blk]) * scale[blk]`, where `blk` is the block
    an element falls in.

    * `storage`: the stored element type: `i4`, `ui4`, `i8`, `ui8`,
      `f8E4M3FN` or `f8E5M2`. Sub-byte types are packed two per byte along the
      innermost dimension, element 0 in the low nibble.
    * `expressed`: the float type the values dequantize to (`f32`, `f16`,
      `bf16`).
    * `block`: for each dimension of the quantized tensor, how many
      consecutive elements share one scale; `0` means the whole dimension.
      The scale tensor's shape is `ceil(dim / block)` per dimension (`1` where
      the block is `0`). Per-tensor is all zeros, per-output-channel of an
      `[N, K]` weight is `[1, 0]`, group-wise with group 128 along K is
      `[1, 128]`, per-token KV scales of a `[B, S, H, D]` cache are
      `[1, 1, 1, 0]`.
    * `scale`: the scale element type.
    * `zero_point`: the zero-point element type, equal to `storage`; absent
      for a symmetric scheme (integer zero point 0). Float storage is always
      symmetric.

    ```mlir
    #w4 = #kiln.quant<storage = i4, expressed = bf16, block = [1, 128], scale = f16>
    #w4zp = #kiln.quant<storage = ui4, expressed = f16, block = [1, 32], scale = f16, zero_point = ui4>
    ```
  }];
  let parameters = (ins
    "::mlir::Type":$storageType,
    "::mlir::Type":$expressedType,
    ArrayRefParameter<"int64_t">:$block,
    "::mlir::Type":$scaleType,
    OptionalParameter<"::mlir::Type">:$zeroPointType);
  let hasCustomAssemblyFormat = 1;
  let genVerifyDecl = 1;
  let extraClassDeclaration = [{
    /// Bits per stored element.
    unsigned getBits() const;
    /// True when no zero point is stored.
    bool isSymmetric() const { return !getZeroPointType(); }
    /// The shape of the scale (and zero-point) tensor for data of `shape`;
    /// dynamic data dimensions give dynamic scale dimensions unless the block
    /// covers the whole dimension. Fails when the ranks differ.
    ::mlir::FailureOr<::llvm::SmallVector<int64_t>>
    getScaleShape(::llvm::ArrayRef<int64_t> shape) const;
  }];
}

//===----------------------------------------------------------------------===//
// ExternalStorageAttr
//===----------------------------------------------------------------------===//

def Kiln_ExternalStorageAttr : Kiln_Attr<"ExternalStorage", "external"> {
  let summary = "bytes of a weight stored in an external file";
  let description = [{
    Names the file (relative to the model's folder, as ONNX external data
    does), the byte offset and the byte length of a weight's data. The bytes
    are laid out as the runtime's packed storage rule says (little-endian,
    sub-byte types packed along the innermost dimension).

    ```mlir
    #kiln.external<"model.onnx.data", offset = 4096, length = 8192>
    ```
  }];
  let parameters = (ins
    StringRefParameter<"file path relative to the model">:$location,
    "uint64_t":$offset,
    "uint64_t":$length);
  let assemblyFormat = [{
    `<` $location `,` `offset` `=` $offset `,` `length` `=` $length `>`
  }];
  let genVerifyDecl = 1;
}

//===----------------------------------------------------------------------===//
// MaskAttr
//===----------------------------------------------------------------------===//

def Kiln_MaskAttr : Kiln_Attr<"Mask", "mask"> {
  let summary = "which keys each query of an attention may see";
  let description = [{
    Positions are absolute: a query's position counts the tokens before it in
    its sequence (cached or not), so masks are offset-aware
    ("bottom-right aligned") during decode and chunked prefill.

    * `none`: every key is visible.
    * `causal`: key `j` is visible to query `i` iff `j <= i`.
    * `sliding_window`: causal, and `i - j < window`; the first `sink` keys
      stay visible (attention sinks, StreamingLLM's and MInference's A-shape).
    * `tree`: every cached key is visible; among the new tokens, visibility is
      given by the attention's `tree_mask` operand (token-tree verification in
      speculative decoding).
    * `sparse`: exactly the keys the attention's sparsity index lists.

    ```mlir
    #kiln.mask<causal>
    #kiln.mask<sliding_window, window = 4096, sink = 4>
    ```
  }];
  let parameters = (ins
    EnumParameter<Kiln_MaskKind>:$kind,
    DefaultValuedParameter<"int64_t", "0">:$window,
    DefaultValuedParameter<"int64_t", "0">:$sink);
  let assemblyFormat = [{
    `<` $kind (`,` `window` `=` $window^)? (`,` `sink` `=` $sink^)? `>`
  }];
  let genVerifyDecl = 1;
}

//===----------------------------------------------------------------------===//
// SparsityAttr
//===----------------------------------------------------------------------===//

def Kiln_SparsityAttr : Kiln_Attr<"Sparsity", "sparsity"> {
  let summary = "the format of an attention's sparsity index";
  let description = [{
    A sparsity index restricts the keys each query visits, on top of the mask
    kind (for mask kind `sparse`, it alone decides). Index tensors are
    `i32`/`i64`; entries of `-1` are padding.

    * `block_sparse`: one index `[B, Hq, ceil(Sq / q_block), N]` listing, per
      query block, the key blocks (of `kv_block` keys) it visits.
    * `vertical_slash` (MInference): two indices, `[B, Hq, Nv]` key columns
      every query visits and `[B, Hq, Ns]` diagonal offsets `i - j` every
      query visits; kernels work in query blocks of `q_block`.
    * `token_topk` (retrieval attention): one index `[B, Hkv, Sq, K]` of key
      positions per query.

    ```mlir
    #kiln.sparsity<block_sparse, q_block = 64, kv_block = 64>
    #kiln.sparsity<vertical_slash, q_block = 64>
    #kiln.sparsity<token_topk>
    ```
  }];
  let parameters = (ins
    EnumParameter<Kiln_SparseFormat>:$format,
    DefaultValuedParameter<"int64_t", "0">:$qBlock,
    DefaultValuedParameter<"int64_t", "0">:$kvBlock);
  let assemblyFormat = [{
    `<` $format (`,` `q_block` `=` $qBlock^)? (`,` `kv_block` `=` $kvBlock^)? `>`
  }];
  let genVerifyDecl = 1;
  let extraClassDeclaration = [{
    /// How many index tensors the format takes.
    unsigned getNumIndices() const;
  }];
}

#endif // KILN_DIALECT_KILN_IR_KILNATTRS_TD
