// RUN: kiln-opt %s '--kiln-quantize-weights=scheme=w4a4' | FileCheck %s --check-prefix=ROT
// RUN: kiln-opt %s '--kiln-quantize-weights=scheme=w4a4 rotation=none' | FileCheck %s --check-prefix=PLAIN
// RUN: not kiln-opt %s '--kiln-quantize-weights=scheme=w4a4 rotation=givens' 2>&1 | FileCheck %s --check-prefix=BADROT
// RUN: not kiln-opt %s '--kiln-quantize-weights=scheme=w8a16 rotation=hadamard' 2>&1 | FileCheck %s --check-prefix=ROTW8
// RUN: %python %S/../Tools/Inputs/write_rotation.py %t.r64.safetensors 64
// RUN: kiln-opt %s "--kiln-quantize-weights=scheme=w4a4 rotation=%t.r64.safetensors" | FileCheck %s --check-prefix=FILE
// RUN: %python %S/../Tools/Inputs/write_rotation.py %t.skew.safetensors 64 --skew
// RUN: not kiln-opt %s "--kiln-quantize-weights=scheme=w4a4 rotation=%t.skew.safetensors" 2>&1 | FileCheck %s --check-prefix=SKEW
// RUN: printf 'not a safetensors file' > %t.bad.safetensors
// RUN: not kiln-opt %s "--kiln-quantize-weights=scheme=w4a4 rotation=%t.bad.safetensors" 2>&1 | FileCheck %s --check-prefix=BADFILE
// RUN: not kiln-opt %s "--kiln-quantize-weights=scheme=w4a4 rotation=%t.missing.safetensors" 2>&1 | FileCheck %s --check-prefix=MISSING

// w4a4: int4 weights per output channel and int4 activations per token.
// With the Hadamard rotation, K is rotated on both sides of each matmul
// (blocks of the largest power of two dividing K: 64 for K = 64, 32 for
// K = 96): the weight after it is made output-major, the input online.

// ROT-DAG: #[[W:.*]] = #kiln.quant<storage = i4, expressed = f32, block = [1, 0], scale = f32>
// ROT-DAG: #[[A:.*]] = #kiln.quant<storage = i4, expressed = f32, block = [1, 1, 0], scale = f32>
// ROT-LABEL: func.func @projections
// ROT: %[[T:.*]] = kiln.transpose %{{.*}} [1, 0] : tensor<64x96xf32> -> tensor<96x64xf32>
// ROT: %[[HW:.*]] = kiln.hadamard %[[T]] {block = 64 : i64} : tensor<96x64xf32>
// ROT: %[[QW:.*]] = kiln.quantize %[[HW]] : tensor<96x64xf32> -> !kiln.qtensor<96x64, #[[W]]>
// ROT: %[[HX:.*]] = kiln.hadamard %arg0 {block = 64 : i64} : tensor<?x?x64xf32>
// ROT: %[[QX:.*]] = kiln.quantize %[[HX]] : tensor<?x?x64xf32> -> !kiln.qtensor<?x?x64, #[[A]]>
// ROT: kiln.matmul %[[QX]], %[[QW]] {transpose_b}
// ROT: kiln.hadamard %{{.*}} {block = 32 : i64} : tensor<40x96xf32>
// ROT: kiln.hadamard %{{.*}} {block = 32 : i64} : tensor<?x?x96xf32>
// PLAIN-LABEL: func.func @projections
// PLAIN-NOT: kiln.hadamard
// PLAIN: kiln.quantize %arg0 : tensor<?x?x64xf32> -> !kiln.qtensor<?x?x64, #{{.*}}>
// BADROT: error: rotation='givens': expected hadamard, none or a .safetensors file of rotations
// ROTW8: error: rotation applies to w4a4 (scheme is w8a16)

// With a file of rotations (SpinQuant's), K = 64 is rotated by the 64x64
// matrix (kiln.rotate with a constant), K = 96, which no matrix divides,
// falls back to Hadamard blocks of 32.
// FILE-LABEL: func.func @projections
// FILE: %[[R:.*]] = arith.constant dense<{{.*}}> : tensor<64x64xf32>
// FILE: kiln.rotate %{{.*}}, %[[R]] : tensor<96x64xf32>, tensor<64x64xf32> -> tensor<96x64xf32>
// FILE: kiln.rotate %arg0, %{{.*}} : tensor<?x?x64xf32>, tensor<64x64xf32> -> tensor<?x?x64xf32>
// FILE: kiln.hadamard %{{.*}} {block = 32 : i64} : tensor<40x96xf32>
// FILE: kiln.hadamard %{{.*}} {block = 32 : i64} : tensor<?x?x96xf32>
// SKEW: error: rotation file '{{.*}}skew.safetensors': tensor 'R1' is not orthogonal: R R^T differs from the identity by
// BADFILE: error: rotation file '{{.*}}bad.safetensors': the header claims
// MISSING: error: rotation file '{{.*}}missing.safetensors': No such file or directory
module {
  kiln.weight_decl @up : tensor<64x96xf32>
  kiln.weight_decl @down : tensor<40x96xf32>
  func.func @projections(%x: tensor<?x?x64xf32>) -> tensor<?x?x40xf32> {
    %u = kiln.weight @up : tensor<64x96xf32>
    %y = kiln.matmul %x, %u : tensor<?x?x64xf32>, tensor<64x96xf32> -> tensor<?x?x96xf32>
    %d = kiln.weight @down : tensor<40x96xf32>
    %z = kiln.matmul %y, %d {transpose_b} : tensor<?x?x96xf32>, tensor<40x96xf32> -> tensor<?x?x40xf32>
    return %z : tensor<?x?x40xf32>
  }
}
