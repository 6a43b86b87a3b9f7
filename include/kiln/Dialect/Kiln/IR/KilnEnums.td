//===- KilnEnums.td - enumerations of the kiln dialect -----*- tablegen -*-===//
//
// Enumerations used by kiln attributes and types.
//
//===----------------------------------------------------------------------===//

#ifndef KILN_DIALECT_KILN_IR_KILNENUMS_TD
#define KILN_DIALECT_KILN_IR_KILNENUMS_TD

include "kiln/Dialect/Kiln/IR/KilnBase.td"

def Kiln_KvLayout : I32EnumAttr<"KvLayout", "storage layout of a KV cache", [
    I32EnumAttrCase<"contiguous", 0>,
    I32EnumAttrCase<"paged", 1>]> {
  let genSpecializedAttr = 0;
  let cppNamespace = "::mlir::kiln";
}

def Kiln_MaskKind : I32EnumAttr<"MaskKind", "attention mask kind", [
    I32EnumAttrCase<"none", 0>,
    I32EnumAttrCase<"causal", 1>,
    I32EnumAttrCase<"sliding_window", 2>,
    I32EnumAttrCase<"tree", 3>,
    I32EnumAttrCase<"sparse", 4>]> {
  let genSpecializedAttr = 0;
  let cppNamespace = "::mlir::kiln";
}

def Kiln_SparseFormat : I32EnumAttr<"SparseFormat",
    "how a sparsity index lists the keys a query visits", [
    I32EnumAttrCase<"block_sparse", 0>,
    I32EnumAttrCase<"vertical_slash", 1>,
    I32EnumAttrCase<"token_topk", 2>]> {
  let genSpecializedAttr = 0;
  let cppNamespace = "::mlir::kiln";
}

def Kiln_ActivationKind : I32EnumAttr<"ActivationKind", "activation function", [
    I32EnumAttrCase<"relu", 0>,
    I32EnumAttrCase<"silu", 1>,
    I32EnumAttrCase<"gelu", 2>,
    I32EnumAttrCase<"gelu_tanh", 3>,
    I32EnumAttrCase<"sigmoid", 4>]> {
  let cppNamespace = "::mlir::kiln";
}

def Kiln_ReduceKind : I32EnumAttr<"ReduceKind", "reduction", [
    I32EnumAttrCase<"sum", 0>,
    I32EnumAttrCase<"mean", 1>,
    I32EnumAttrCase<"max", 2>,
    I32EnumAttrCase<"min", 3>,
    I32EnumAttrCase<"prod", 4>]> {
  let cppNamespace = "::mlir::kiln";
}

def Kiln_ComparePredicate : I32EnumAttr<"ComparePredicate",
    "elementwise comparison", [
    I32EnumAttrCase<"eq", 0>,
    I32EnumAttrCase<"ne", 1>,
    I32EnumAttrCase<"lt", 2>,
    I32EnumAttrCase<"le", 3>,
    I32EnumAttrCase<"gt", 4>,
    I32EnumAttrCase<"ge", 5>]> {
  let cppNamespace = "::mlir::kiln";
}

#endif // KILN_DIALECT_KILN_IR_KILNENUMS_TD
