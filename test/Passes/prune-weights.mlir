// RUN: kiln-opt %s --kiln-prune-weights | FileCheck %s
// RUN: kiln-opt %s --pass-pipeline='builtin.module(kiln-prune-weights{keep=unused_but_kept})' | FileCheck %s --check-prefix=KEEP

// CHECK: kiln.weight_decl @used
// CHECK-NOT: kiln.weight_decl @unused
// CHECK-NOT: kiln.weight_decl @unused_but_kept
// KEEP: kiln.weight_decl @used
// KEEP-NOT: kiln.weight_decl @unused :
// KEEP: kiln.weight_decl @unused_but_kept
kiln.weight_decl @used : tensor<4xf32>
kiln.weight_decl @unused : tensor<4xf32>
kiln.weight_decl @unused_but_kept : tensor<4xf32>

func.func @f() -> tensor<4xf32> {
  %0 = kiln.weight @used : tensor<4xf32>
  return %0 : tensor<4xf32>
}
