//===- KilnTypes.td - types of the kiln dialect ------------*- tablegen -*-===//
//
// Quantized tensors and KV caches.
//
//===----------------------------------------------------------------------===//

#ifndef KILN_DIALECT_KILN_IR_KILNTYPES_TD
#define KILN_DIALECT_KILN_IR_KILNTYPES_TD

include "kiln/Dialect/Kiln/IR/KilnAttrs.td"

class Kiln_Type<string name, string typeMnemonic, list<Trait> traits = []>
    : TypeDef<Kiln_Dialect, name, traits> {
  let mnemonic = typeMnemonic;
}

def Kiln_QTensorType : Kiln_Type<"QTensor", "qtensor"> {
  let summary = "a quantized tensor: stored values plus their scales";
  let description = [{
    A tensor of `shape` whose elements are stored as `quant.storage` and
    dequantize with `quant`'s block-wise scales (and zero points). The value
    carries its data, scale and zero-point tensors together; the scale shape
    follows from `shape` and `quant.block`. Weights are assembled with
    `kiln.make_qtensor`; activations are produced by `kiln.quantize`.

    ```mlir
    !kiln.qtensor<4096x11008, #kiln.quant<storage = i4, expressed = bf16, block = [1, 128], scale = f16>>
    ```
  }];
  let parameters = (ins
    ArrayRefParameter<"int64_t">:$shape,
    Kiln_QuantAttr:$quant);
  let hasCustomAssemblyFormat = 1;
  let genVerifyDecl = 1;
  let extraClassDeclaration = [{
    int64_t getRank() const { return getShape().size(); }
    ::mlir::Type getStorageType() const { return getQuant().getStorageType(); }
    ::mlir::Type getExpressedType() const { return getQuant().getExpressedType(); }
    /// The stored values as a tensor type (`shape` x storage type).
    ::mlir::RankedTensorType getDataType() const;
    /// The scale tensor's type.
    ::mlir::RankedTensorType getScalesType() const;
    /// The zero-point tensor's type, or null when symmetric.
    ::mlir::RankedTensorType getZeroPointsType() const;
    /// The dequantized tensor's type (`shape` x expressed type).
    ::mlir::RankedTensorType getExpressedTensorType() const;
  }];
}

def Kiln_KvCacheType : Kiln_Type<"KvCache", "kv_cache"> {
  let summary = "one layer's key/value cache, owned by the runtime";
  let description = [{
    The keys and values of every sequence in the batch for one attention
    layer. Logically each of K and V is `[batch, tokens, kv_heads, head_dim]`
    (`v_head_dim` for V), with a per-sequence length the runtime tracks.

    * layout: `contiguous` (one slab per sequence) or `paged<N>` (blocks of N
      tokens addressed through a per-sequence block table; any N >= 1).
    * element type: `f32`, `f16`, `bf16`, or a quantized type `i8`, `i4`,
      `f8E4M3FN`, `f8E5M2`, which needs a `quant` scheme over the logical
      `[batch, tokens, kv_heads, head_dim]` shape: `[1, 1, 1, 0]` is
      per-token-per-head, `[0, 0, 1, 0]` one static scale per head,
      `[1, 1, 1, 32]` group-wise along head_dim. Scales that vary per token
      are computed on append and stored with the cache; static ones are
      passed to `kiln.kv_cache_append`.

    ```mlir
    !kiln.kv_cache<contiguous, bf16, kv_heads = 8, head_dim = 128>
    !kiln.kv_cache<paged<16>, i8, kv_heads = 8, head_dim = 128,
                   quant = #kiln.quant<storage = i8, expressed = bf16, block = [1, 1, 1, 0], scale = f32>>
    ```
  }];
  let parameters = (ins
    EnumParameter<Kiln_KvLayout>:$layout,
    "int64_t":$blockSize,
    "::mlir::Type":$elementType,
    "int64_t":$numKvHeads,
    "int64_t":$headDim,
    "int64_t":$valueHeadDim,
    OptionalParameter<"::mlir::kiln::QuantAttr">:$quant);
  let hasCustomAssemblyFormat = 1;
  let genVerifyDecl = 1;
  let extraClassDeclaration = [{
    bool isPaged() const { return getLayout() == ::mlir::kiln::KvLayout::paged; }
    bool isQuantized() const { return static_cast<bool>(getQuant()); }
    /// The float type attention sees after dequantization.
    ::mlir::Type getComputeType() const;
    /// True when the scales vary per token (computed on append), false when
    /// they are static (given to kiln.kv_cache_append).
    bool hasPerTokenScales() const;
    /// The type of a static K (or V) scale tensor; null unless quantized with
    /// static scales.
    ::mlir::RankedTensorType getStaticScaleType(bool forValue) const;
  }];
}

#endif // KILN_DIALECT_KILN_IR_KILNTYPES_TD
