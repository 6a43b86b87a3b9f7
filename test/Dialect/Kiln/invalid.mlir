// RUN: kiln-opt %s --split-input-file --verify-diagnostics

// One case per verifier diagnostic of every kiln op.

// expected-error @+1 {{weight type must have a static shape, found 'tensor<?x4xf32>'}}
kiln.weight_decl @w : tensor<?x4xf32>

// -----

// expected-error @+1 {{external storage length 15 does not match the 16 bytes of 'tensor<2x2xf32>'}}
kiln.weight_decl @w : tensor<2x2xf32> at #kiln.external<"w.bin", offset = 0, length = 15>

// -----

// Packed i4: three rows of five nibbles are 3 * 3 bytes, not 8.
// expected-error @+1 {{external storage length 8 does not match the 9 bytes of 'tensor<3x5xi4>'}}
kiln.weight_decl @w : tensor<3x5xi4> at #kiln.external<"w.bin", offset = 0, length = 8>

// -----

// expected-error @+1 {{cannot size weight of type 'tensor<4294967296x4294967296x16xf32>': the storage size of a rank-3 f32 tensor overflows 64 bits}}
kiln.weight_decl @huge : tensor<4294967296x4294967296x16xf32>

// -----

func.func @f() {
  // expected-error @+1 {{'kiln.weight_decl' op expects parent op 'builtin.module'}}
  kiln.weight_decl @w : tensor<2xf32>
  return
}

// -----

func.func @f() -> tensor<2xf32> {
  // expected-error @+1 {{'missing' does not name a kiln.weight_decl}}
  %0 = kiln.weight @missing : tensor<2xf32>
  return %0 : tensor<2xf32>
}

// -----

kiln.weight_decl @w : tensor<2xf32>
func.func @f() -> tensor<2xf16> {
  // expected-error @+1 {{type 'tensor<2xf16>' does not match the declared type 'tensor<2xf32>' of @w}}
  %0 = kiln.weight @w : tensor<2xf16>
  return %0 : tensor<2xf16>
}

// -----

func.func @f(%d: tensor<64x64xi8>, %s: tensor<64x2xf16>) {
  // expected-error @+1 {{data type 'tensor<64x64xi8>' does not match the expected 'tensor<64x64xi4>'}}
  %0 = kiln.make_qtensor %d, %s : tensor<64x64xi8>, tensor<64x2xf16> -> !kiln.qtensor<64x64, #kiln.quant<storage = i4, expressed = f16, block = [1, 32], scale = f16>>
  return
}

// -----

func.func @f(%d: tensor<64x64xi4>, %s: tensor<64x4xf16>) {
  // expected-error @+1 {{scales type 'tensor<64x4xf16>' does not match the expected 'tensor<64x2xf16>'}}
  %0 = kiln.make_qtensor %d, %s : tensor<64x64xi4>, tensor<64x4xf16> -> !kiln.qtensor<64x64, #kiln.quant<storage = i4, expressed = f16, block = [1, 32], scale = f16>>
  return
}

// -----

func.func @f(%d: tensor<64x64xi4>, %s: tensor<64x2xf16>) {
  // expected-error @+1 {{zero points given for a symmetric scheme}}
  %0 = kiln.make_qtensor %d, %s, %d : tensor<64x64xi4>, tensor<64x2xf16>, tensor<64x64xi4> -> !kiln.qtensor<64x64, #kiln.quant<storage = i4, expressed = f16, block = [1, 32], scale = f16>>
  return
}

// -----

func.func @f(%d: tensor<64x64xui4>, %s: tensor<64x2xf16>) {
  // expected-error @+1 {{zero points missing for an asymmetric scheme}}
  %0 = kiln.make_qtensor %d, %s : tensor<64x64xui4>, tensor<64x2xf16> -> !kiln.qtensor<64x64, #kiln.quant<storage = ui4, expressed = f16, block = [1, 32], scale = f16, zero_point = ui4>>
  return
}

// -----

func.func @f(%d: tensor<64x64xui4>, %s: tensor<64x2xf16>, %z: tensor<64x2xi8>) {
  // expected-error @+1 {{zero points type 'tensor<64x2xi8>' does not match the expected 'tensor<64x2xui4>'}}
  %0 = kiln.make_qtensor %d, %s, %z : tensor<64x64xui4>, tensor<64x2xf16>, tensor<64x2xi8> -> !kiln.qtensor<64x64, #kiln.quant<storage = ui4, expressed = f16, block = [1, 32], scale = f16, zero_point = ui4>>
  return
}

// -----

func.func @f(%x: tensor<4x64xf32>) {
  // expected-error @+1 {{input type 'tensor<4x64xf32>' does not match the expected 'tensor<4x64xf16>'}}
  %0 = kiln.quantize %x : tensor<4x64xf32> -> !kiln.qtensor<4x64, #kiln.quant<storage = i8, expressed = f16, block = [1, 0], scale = f16>>
  return
}

// -----

func.func @f(%x: tensor<4x64xf16>, %s: tensor<4x2xf16>) {
  // expected-error @+1 {{scales type 'tensor<4x2xf16>' does not match the expected 'tensor<4x1xf16>'}}
  %0 = kiln.quantize %x scales(%s : tensor<4x2xf16>) : tensor<4x64xf16> -> !kiln.qtensor<4x64, #kiln.quant<storage = i8, expressed = f16, block = [1, 0], scale = f16>>
  return
}

// -----

func.func @f(%x: tensor<4x64xf16>, %s: tensor<4x1xf16>, %z: tensor<4x1xi8>) {
  // expected-error @+1 {{zero points given for a symmetric scheme}}
  %0 = kiln.quantize %x scales(%s : tensor<4x1xf16>) zero_points(%z : tensor<4x1xi8>) : tensor<4x64xf16> -> !kiln.qtensor<4x64, #kiln.quant<storage = i8, expressed = f16, block = [1, 0], scale = f16>>
  return
}

// -----

func.func @f(%x: tensor<4x64xf16>, %s: tensor<4x1xf16>) {
  // expected-error @+1 {{static scales of an asymmetric scheme need zero points}}
  %0 = kiln.quantize %x scales(%s : tensor<4x1xf16>) : tensor<4x64xf16> -> !kiln.qtensor<4x64, #kiln.quant<storage = ui8, expressed = f16, block = [1, 0], scale = f16, zero_point = ui8>>
  return
}

// -----

func.func @f(%x: tensor<4x64xf16>, %z: tensor<4x1xui8>) {
  // expected-error @+1 {{zero points need static scales}}
  %0 = "kiln.quantize"(%x, %z) {operandSegmentSizes = array<i32: 1, 0, 1>} : (tensor<4x64xf16>, tensor<4x1xui8>) -> !kiln.qtensor<4x64, #kiln.quant<storage = ui8, expressed = f16, block = [1, 0], scale = f16, zero_point = ui8>>
  return
}

// -----

func.func @f(%q: !kiln.qtensor<4x64, #kiln.quant<storage = i8, expressed = f16, block = [1, 0], scale = f16>>) {
  // expected-error @+1 {{result type 'tensor<4x64xf32>' does not match the expected 'tensor<4x64xf16>'}}
  %0 = kiln.dequantize %q : !kiln.qtensor<4x64, #kiln.quant<storage = i8, expressed = f16, block = [1, 0], scale = f16>> -> tensor<4x64xf32>
  return
}

// -----

func.func @f(%q: !kiln.qtensor<4x64, #kiln.quant<storage = i8, expressed = f16, block = [1, 0], scale = f16>>) {
  // expected-error @+1 {{result type 'tensor<4x64xui8>' does not match the expected 'tensor<4x64xi8>'}}
  %0 = kiln.qtensor_data %q : !kiln.qtensor<4x64, #kiln.quant<storage = i8, expressed = f16, block = [1, 0], scale = f16>> -> tensor<4x64xui8>
  return
}

// -----

func.func @f(%c: tensor<2x4x16x8xf32>, %u: tensor<2x4x1x8xf32>) {
  // expected-error @+1 {{axis 4 is out of range for rank 4}}
  %0 = kiln.tensor_scatter %c, %u {axis = 4 : i64} : tensor<2x4x16x8xf32>, tensor<2x4x1x8xf32>
  return
}

// -----

func.func @f(%c: tensor<2x4x16x8xf32>, %u: tensor<2x4x1x8xf16>) {
  // expected-error @+1 {{update 'tensor<2x4x1x8xf16>' must have the cache's rank and element type ('tensor<2x4x16x8xf32>')}}
  %0 = kiln.tensor_scatter %c, %u {axis = 2 : i64} : tensor<2x4x16x8xf32>, tensor<2x4x1x8xf16>
  return
}

// -----

func.func @f(%c: tensor<2x4x16x8xf32>, %u: tensor<2x3x1x8xf32>) {
  // expected-error @+1 {{update shape [2, 3, 1, 8] differs from the cache shape [2, 4, 16, 8] outside axis 2}}
  %0 = kiln.tensor_scatter %c, %u {axis = 2 : i64} : tensor<2x4x16x8xf32>, tensor<2x3x1x8xf32>
  return
}

// -----

func.func @f(%c: tensor<2x4x16x8xf32>, %u: tensor<2x4x1x8xf32>, %i: tensor<3xi64>) {
  // expected-error @+1 {{write_indices must be [batch], found [3]}}
  %0 = kiln.tensor_scatter %c, %u, %i {axis = 2 : i64} : tensor<2x4x16x8xf32>, tensor<2x4x1x8xf32>, tensor<3xi64>
  return
}

// -----

func.func @f(%t: tensor<64xf32>, %i: tensor<2xi64>) {
  // expected-error @+1 {{table must have rank 2 ([vocab, hidden]), found rank 1}}
  %0 = kiln.embedding %t, %i : tensor<64xf32>, tensor<2xi64> -> tensor<2xf32>
  return
}

// -----

func.func @f(%t: tensor<64x8xf32>, %i: tensor<2xi64>) {
  // expected-error @+1 {{result shape [2, 16] does not match the expected [2, 8]}}
  %0 = kiln.embedding %t, %i : tensor<64x8xf32>, tensor<2xi64> -> tensor<2x16xf32>
  return
}

// -----

func.func @f(%t: tensor<64x8xf32>, %i: tensor<2xi64>) {
  // expected-error @+1 {{result element type 'f16' does not match 'f32'}}
  %0 = kiln.embedding %t, %i : tensor<64x8xf32>, tensor<2xi64> -> tensor<2x8xf16>
  return
}

// -----

func.func @f(%x: tensor<5x3xf32>, %i: tensor<2xi64>) {
  // expected-error @+1 {{axis 2 is out of range for rank 2}}
  %0 = kiln.gather %x[%i] {axis = 2 : i64} : tensor<5x3xf32>, tensor<2xi64> -> tensor<2x3xf32>
  return
}

// -----

func.func @f(%x: tensor<5x3xf32>, %i: tensor<2xi64>) {
  // expected-error @+1 {{result shape [2, 5] does not match the expected [5, 2]}}
  %0 = kiln.gather %x[%i] {axis = 1 : i64} : tensor<5x3xf32>, tensor<2xi64> -> tensor<2x5xf32>
  return
}

// -----

func.func @f(%x: tensor<5x3xf32>, %i: tensor<2xi64>) {
  // expected-error @+1 {{result element type 'f16' does not match 'f32'}}
  %0 = kiln.gather %x[%i] {axis = 0 : i64} : tensor<5x3xf32>, tensor<2xi64> -> tensor<2x3xf16>
  return
}

// -----

func.func @f(%x: tensor<5x3xf32>, %i: tensor<2x?xi64>) {
  // expected-error @+1 {{indices need a static last dimension}}
  %0 = kiln.gather_nd %x[%i] : tensor<5x3xf32>, tensor<2x?xi64> -> tensor<2xf32>
  return
}

// -----

func.func @f(%x: tensor<5x3xf32>, %i: tensor<2x3xi64>) {
  // expected-error @+1 {{batch_dims 0 and index depth 3 do not fit input rank 2 and indices rank 2}}
  %0 = kiln.gather_nd %x[%i] : tensor<5x3xf32>, tensor<2x3xi64> -> tensor<2xf32>
  return
}

// -----

func.func @f(%x: tensor<2x5x3xf32>, %i: tensor<4x1xi64>) {
  // expected-error @+1 {{batch dimension 0 differs: 2 vs 4}}
  %0 = kiln.gather_nd %x[%i] {batch_dims = 1 : i64} : tensor<2x5x3xf32>, tensor<4x1xi64> -> tensor<4xf32>
  return
}

// -----

func.func @f(%x: tensor<5x3xf32>, %i: tensor<2x1xi64>) {
  // expected-error @+1 {{result shape [2] does not match the expected [2, 3]}}
  %0 = kiln.gather_nd %x[%i] : tensor<5x3xf32>, tensor<2x1xi64> -> tensor<2xf32>
  return
}

// -----

func.func @f(%x: tensor<5x3xf32>, %i: tensor<2x1xi64>) {
  // expected-error @+1 {{result element type 'f16' does not match 'f32'}}
  %0 = kiln.gather_nd %x[%i] : tensor<5x3xf32>, tensor<2x1xi64> -> tensor<2x3xf16>
  return
}

// -----

func.func @f(%a: tensor<8xf32>, %b: tensor<8x4xf32>) {
  // expected-error @+1 {{operands must have rank >= 2, found ranks 1 and 2}}
  %0 = kiln.matmul %a, %b : tensor<8xf32>, tensor<8x4xf32> -> tensor<4xf32>
  return
}

// -----

func.func @f(%a: tensor<2x8xf32>, %b: tensor<8x4xf16>) {
  // expected-error @+1 {{b element type 'f16' does not match 'f32'}}
  %0 = kiln.matmul %a, %b : tensor<2x8xf32>, tensor<8x4xf16> -> tensor<2x4xf32>
  return
}

// -----

func.func @f(%a: tensor<2x8xf32>, %b: tensor<8x4xf32>) {
  // expected-error @+1 {{contraction dimensions differ: a has K = 8, b has K = 4}}
  %0 = kiln.matmul %a, %b {transpose_b} : tensor<2x8xf32>, tensor<8x4xf32> -> tensor<2x8xf32>
  return
}

// -----

func.func @f(%a: tensor<3x2x8xf32>, %b: tensor<4x8x4xf32>) {
  // expected-error @+1 {{batch dimensions [3] and [4] are not broadcast-compatible}}
  %0 = kiln.matmul %a, %b : tensor<3x2x8xf32>, tensor<4x8x4xf32> -> tensor<3x2x4xf32>
  return
}

// -----

func.func @f(%a: tensor<2x8xf32>, %b: tensor<8x4xf32>) {
  // expected-error @+1 {{result shape [2, 8] does not match the expected [2, 4]}}
  %0 = kiln.matmul %a, %b : tensor<2x8xf32>, tensor<8x4xf32> -> tensor<2x8xf32>
  return
}

// -----

func.func @f(%a: tensor<2x8xf32>, %b: tensor<8x4xf32>, %c: tensor<8xf32>) {
  // expected-error @+1 {{bias shape [8] does not match [4]}}
  %0 = kiln.matmul %a, %b bias(%c) : tensor<2x8xf32>, tensor<8x4xf32>, tensor<8xf32> -> tensor<2x4xf32>
  return
}

// -----

func.func @f(%a: tensor<2x8xf32>, %b: tensor<8x4xf32>, %c: tensor<4xf16>) {
  // expected-error @+1 {{bias element type 'f16' does not match 'f32'}}
  %0 = kiln.matmul %a, %b bias(%c) : tensor<2x8xf32>, tensor<8x4xf32>, tensor<4xf16> -> tensor<2x4xf32>
  return
}

// -----

func.func @f(%a: tensor<2x8xf32>, %b: tensor<8xf16>) {
  // expected-error @+1 {{operand element types 'f32' and 'f16' differ}}
  %0 = kiln.add %a, %b : (tensor<2x8xf32>, tensor<8xf16>) -> tensor<2x8xf32>
  return
}

// -----

func.func @f(%a: tensor<2x8xf32>, %b: tensor<3xf32>) {
  // expected-error @+1 {{operand shapes [2, 8] and [3] are not broadcast-compatible}}
  %0 = kiln.mul %a, %b : (tensor<2x8xf32>, tensor<3xf32>) -> tensor<2x8xf32>
  return
}

// -----

func.func @f(%a: tensor<2x8xf32>, %b: tensor<8xf32>) {
  // expected-error @+1 {{result shape [2, 4] does not match the broadcast shape [2, 8]}}
  %0 = kiln.sub %a, %b : (tensor<2x8xf32>, tensor<8xf32>) -> tensor<2x4xf32>
  return
}

// -----

func.func @f(%a: tensor<2x8xf32>, %b: tensor<8xf32>) {
  // expected-error @+1 {{result element type 'f16' does not match 'f32'}}
  %0 = kiln.div %a, %b : (tensor<2x8xf32>, tensor<8xf32>) -> tensor<2x8xf16>
  return
}

// -----

func.func @f(%a: tensor<2x8xi32>, %b: tensor<8xi32>) {
  // expected-error @+1 {{operand #0 must be ranked tensor of 32-bit float or 16-bit float or bfloat16 type values}}
  %0 = kiln.pow %a, %b : (tensor<2x8xi32>, tensor<8xi32>) -> tensor<2x8xi32>
  return
}

// -----

func.func @f(%a: tensor<2x8xi1>, %b: tensor<2xi1>) {
  // expected-error @+1 {{operand shapes [2, 8] and [2] are not broadcast-compatible}}
  %0 = kiln.and %a, %b : (tensor<2x8xi1>, tensor<2xi1>) -> tensor<2x8xi1>
  return
}

// -----

func.func @f(%a: tensor<4xi64>, %b: tensor<4xi32>) {
  // expected-error @+1 {{operand element types 'i64' and 'i32' differ}}
  %0 = kiln.compare eq, %a, %b : (tensor<4xi64>, tensor<4xi32>) -> tensor<4xi1>
  return
}

// -----

func.func @f(%a: tensor<4xi64>, %b: tensor<4xi64>) {
  // expected-error @+1 {{result shape [3] does not match the broadcast shape [4]}}
  %0 = kiln.compare eq, %a, %b : (tensor<4xi64>, tensor<4xi64>) -> tensor<3xi1>
  return
}

// -----

func.func @f(%c: tensor<4xi1>, %a: tensor<4xf32>, %b: tensor<4xf16>) {
  // expected-error @+1 {{on_true and on_false element types 'f32' and 'f16' differ}}
  %0 = kiln.select %c, %a, %b : (tensor<4xi1>, tensor<4xf32>, tensor<4xf16>) -> tensor<4xf32>
  return
}

// -----

func.func @f(%c: tensor<4xi1>, %a: tensor<4xf32>) {
  // expected-error @+1 {{result element type 'f16' does not match 'f32'}}
  %0 = kiln.select %c, %a, %a : (tensor<4xi1>, tensor<4xf32>, tensor<4xf32>) -> tensor<4xf16>
  return
}

// -----

func.func @f(%c: tensor<3xi1>, %a: tensor<4xf32>) {
  // expected-error @+1 {{operand shapes [3] and [4] are not broadcast-compatible}}
  %0 = kiln.select %c, %a, %a : (tensor<3xi1>, tensor<4xf32>, tensor<4xf32>) -> tensor<4xf32>
  return
}

// -----

func.func @f(%a: tensor<4xf32>) {
  // expected-error @+1 {{requires the same type for all operands and results}}
  %0 = "kiln.exp"(%a) : (tensor<4xf32>) -> tensor<4xf16>
  return
}

// -----

func.func @f(%a: tensor<4xf32>) {
  // expected-error @+1 {{input must have rank >= 2, found rank 1}}
  %0 = kiln.trilu %a : tensor<4xf32>
  return
}

// -----

func.func @f(%a: tensor<4x3xi64>) {
  // expected-error @+1 {{axis 2 is out of range for rank 2}}
  %0 = kiln.cumsum %a {axis = 2 : i64} : tensor<4x3xi64>
  return
}

// -----

func.func @f(%a: tensor<4xf32>) {
  // expected-error @+1 {{input shape [4] and result shape [5] differ}}
  %0 = kiln.cast %a : tensor<4xf32> to tensor<5xf16>
  return
}

// -----

func.func @f(%a: tensor<4x8xf32>) {
  // expected-error @+1 {{needs at least one axis}}
  %0 = kiln.reduce sum %a {axes = array<i64>} : tensor<4x8xf32> -> tensor<4x8xf32>
  return
}

// -----

func.func @f(%a: tensor<4x8xf32>) {
  // expected-error @+1 {{axis -3 is out of range for rank 2}}
  %0 = kiln.reduce sum %a {axes = array<i64: -3>} : tensor<4x8xf32> -> tensor<4xf32>
  return
}

// -----

func.func @f(%a: tensor<4x8xf32>) {
  // expected-error @+1 {{axis -1 is listed twice}}
  %0 = kiln.reduce sum %a {axes = array<i64: 1, -1>} : tensor<4x8xf32> -> tensor<4xf32>
  return
}

// -----

func.func @f(%a: tensor<4x8xf32>) {
  // expected-error @+1 {{result shape [4] does not match the expected [4, 1]}}
  %0 = kiln.reduce max %a {axes = array<i64: 1>, keep_dims} : tensor<4x8xf32> -> tensor<4xf32>
  return
}

// -----

func.func @f(%a: tensor<4x8xf32>) {
  // expected-error @+1 {{result element type 'f16' does not match 'f32'}}
  %0 = kiln.reduce max %a {axes = array<i64: 1>} : tensor<4x8xf32> -> tensor<4xf16>
  return
}

// -----

func.func @f(%a: tensor<4x8xf32>) {
  // expected-error @+1 {{axis 2 is out of range for rank 2}}
  %0 = kiln.softmax %a {axis = 2 : i64} : tensor<4x8xf32>
  return
}

// -----

func.func @f(%x: tensor<4x8xf32>, %w: tensor<4xf32>) {
  // expected-error @+1 {{weight shape [4] does not match the normalized dimensions [8]}}
  %0 = kiln.rms_norm %x, %w {epsilon = 1.0e-6 : f32} : tensor<4x8xf32>, tensor<4xf32> -> tensor<4x8xf32>
  return
}

// -----

func.func @f(%x: tensor<4x8xf32>, %w: tensor<8xf32>) {
  // expected-error @+1 {{result type 'tensor<4x8xf16>' does not match input type 'tensor<4x8xf32>'}}
  %0 = kiln.rms_norm %x, %w {epsilon = 1.0e-6 : f32} : tensor<4x8xf32>, tensor<8xf32> -> tensor<4x8xf16>
  return
}

// -----

func.func @f(%x: tensor<4x8xf32>, %w: tensor<8xf32>) {
  // expected-error @+1 {{epsilon must be non-negative}}
  %0 = kiln.rms_norm %x, %w {epsilon = -1.0 : f32} : tensor<4x8xf32>, tensor<8xf32> -> tensor<4x8xf32>
  return
}

// -----

func.func @f(%x: tensor<4x8xf32>, %w: tensor<4xf32>) {
  // expected-error @+1 {{weight shape [4] does not match the normalized dimensions [8]}}
  %0:2 = kiln.add_rms_norm %x, %x, %w {epsilon = 1.0e-6 : f32} : tensor<4x8xf32>, tensor<4xf32>
  return
}

// -----

func.func @f(%x: tensor<4x8xf32>, %w: tensor<8xf32>) {
  // expected-error @+1 {{epsilon must be non-negative}}
  %0:2 = kiln.add_rms_norm %x, %x, %w {epsilon = -1.0 : f32} : tensor<4x8xf32>, tensor<8xf32>
  return
}

// -----

func.func @f(%x: tensor<4x8xf32>, %r: tensor<4x8xf16>, %w: tensor<8xf32>) {
  // expected-error @+1 {{all of {input, residual, sum, result} have same type}}
  %0:2 = "kiln.add_rms_norm"(%x, %r, %w) {epsilon = 1.0e-6 : f32} : (tensor<4x8xf32>, tensor<4x8xf16>, tensor<8xf32>) -> (tensor<4x8xf32>, tensor<4x8xf32>)
  return
}

// -----

func.func @f(%x: tensor<4x8xf32>, %w: tensor<8xf32>) {
  // expected-error @+1 {{axis 2 is out of range for rank 2}}
  %0 = kiln.rms_norm %x, %w {epsilon = 1.0e-6 : f32, axis = 2 : i64} : tensor<4x8xf32>, tensor<8xf32> -> tensor<4x8xf32>
  return
}

// -----

func.func @f(%x: tensor<4x8xf32>, %w: tensor<8xf32>, %b: tensor<4xf32>) {
  // expected-error @+1 {{bias shape [4] does not match the normalized dimensions [8]}}
  %0 = kiln.layer_norm %x, %w, %b {epsilon = 1.0e-5 : f32} : tensor<4x8xf32>, tensor<8xf32>, tensor<4xf32> -> tensor<4x8xf32>
  return
}

// -----

func.func @f(%x: tensor<4x8xf32>, %w: tensor<8xf32>) {
  // expected-error @+1 {{epsilon must be non-negative}}
  %0 = kiln.layer_norm %x, %w {epsilon = -1.0e-5 : f32} : tensor<4x8xf32>, tensor<8xf32> -> tensor<4x8xf32>
  return
}

// -----

func.func @f(%x: tensor<2x3x64xf32>, %c: tensor<16x32xf32>, %p: tensor<2x3xi64>) {
  // expected-error @+1 {{input must be [batch, seq, heads, head_dim], found rank 3}}
  %0 = kiln.rope %x, %c, %c positions(%p) : tensor<2x3x64xf32>, tensor<16x32xf32>, tensor<16x32xf32>, tensor<2x3xi64> -> tensor<2x3x64xf32>
  return
}

// -----

func.func @f(%x: tensor<2x3x4x64xf32>, %c: tensor<16x32xf32>, %p: tensor<2x3xi64>) {
  // expected-error @+1 {{result type 'tensor<2x3x4x64xf16>' does not match input type 'tensor<2x3x4x64xf32>'}}
  %0 = kiln.rope %x, %c, %c positions(%p) : tensor<2x3x4x64xf32>, tensor<16x32xf32>, tensor<16x32xf32>, tensor<2x3xi64> -> tensor<2x3x4x64xf16>
  return
}

// -----

func.func @f(%x: tensor<2x3x4x64xf32>, %c: tensor<16x32xf32>, %p: tensor<2x3xi64>) {
  // expected-error @+1 {{rotary_dim 33 must be even and at most head_dim 64}}
  %0 = kiln.rope %x, %c, %c positions(%p) {rotary_dim = 33 : i64} : tensor<2x3x4x64xf32>, tensor<16x32xf32>, tensor<16x32xf32>, tensor<2x3xi64> -> tensor<2x3x4x64xf32>
  return
}

// -----

func.func @f(%x: tensor<2x3x4x64xf32>, %c: tensor<16x32xf32>, %s: tensor<16x32xf16>, %p: tensor<2x3xi64>) {
  // expected-error @+1 {{cos type 'tensor<16x32xf32>' and sin type 'tensor<16x32xf16>' differ}}
  %0 = kiln.rope %x, %c, %s positions(%p) : tensor<2x3x4x64xf32>, tensor<16x32xf32>, tensor<16x32xf16>, tensor<2x3xi64> -> tensor<2x3x4x64xf32>
  return
}

// -----

func.func @f(%x: tensor<2x3x4x64xf32>, %c: tensor<16x32xf32>, %p: tensor<3x2xi64>) {
  // expected-error @+1 {{positions shape [3, 2] does not match [batch, seq] [2, 3]}}
  %0 = kiln.rope %x, %c, %c positions(%p) : tensor<2x3x4x64xf32>, tensor<16x32xf32>, tensor<16x32xf32>, tensor<3x2xi64> -> tensor<2x3x4x64xf32>
  return
}

// -----

func.func @f(%x: tensor<2x3x4x64xf32>, %c: tensor<16x64xf32>, %p: tensor<2x3xi64>) {
  // expected-error @+1 {{cos/sin shape [16, 64] does not match the expected [16, 32]}}
  %0 = kiln.rope %x, %c, %c positions(%p) : tensor<2x3x4x64xf32>, tensor<16x64xf32>, tensor<16x64xf32>, tensor<2x3xi64> -> tensor<2x3x4x64xf32>
  return
}

// -----

func.func @f(%q: tensor<2x3x64xf32>, %k: tensor<2x5x2x64xf32>) {
  // expected-error @+1 {{query must be [batch, seq, heads, head_dim], found rank 3}}
  %0 = kiln.attention %q kv(%k, %k) {mask = #kiln.mask<causal>} : (tensor<2x3x64xf32>, tensor<2x5x2x64xf32>, tensor<2x5x2x64xf32>) -> tensor<2x3x64xf32>
  return
}

// -----

func.func @f(%q: tensor<2x3x8x64xf32>) {
  // expected-error @+1 {{needs keys and values from exactly one source: kv(...) or cache(...)}}
  %0 = kiln.attention %q {mask = #kiln.mask<causal>} : (tensor<2x3x8x64xf32>) -> tensor<2x3x8x64xf32>
  return
}

// -----

func.func @f(%q: tensor<2x3x8x64xf32>, %k: tensor<2x5x2x64xf32>, %c: !kiln.kv_cache<contiguous, f32, kv_heads = 2, head_dim = 64>) {
  // expected-error @+1 {{needs keys and values from exactly one source: kv(...) or cache(...)}}
  %0 = kiln.attention %q kv(%k, %k) cache(%c) {mask = #kiln.mask<causal>} : (tensor<2x3x8x64xf32>, tensor<2x5x2x64xf32>, tensor<2x5x2x64xf32>, !kiln.kv_cache<contiguous, f32, kv_heads = 2, head_dim = 64>) -> tensor<2x3x8x64xf32>
  return
}

// -----

func.func @f(%q: tensor<2x3x8x64xf32>, %k: tensor<2x5x2x64xf32>) {
  // expected-error @+1 {{kv(...) needs both a key and a value}}
  %0 = "kiln.attention"(%q, %k) {mask = #kiln.mask<causal>, operandSegmentSizes = array<i32: 1, 1, 0, 0, 0, 0, 0>} : (tensor<2x3x8x64xf32>, tensor<2x5x2x64xf32>) -> tensor<2x3x8x64xf32>
  return
}

// -----

func.func @f(%q: tensor<2x3x8x64xf32>, %k: tensor<2x5x128xf32>) {
  // expected-error @+1 {{key and value must be [batch, seq, kv_heads, head_dim], found ranks 3 and 3}}
  %0 = kiln.attention %q kv(%k, %k) {mask = #kiln.mask<causal>} : (tensor<2x3x8x64xf32>, tensor<2x5x128xf32>, tensor<2x5x128xf32>) -> tensor<2x3x8x64xf32>
  return
}

// -----

func.func @f(%q: tensor<2x3x8x64xf32>, %k: tensor<3x5x2x64xf32>) {
  // expected-error @+1 {{key/value batch 3/3 does not match query batch 2}}
  %0 = kiln.attention %q kv(%k, %k) {mask = #kiln.mask<causal>} : (tensor<2x3x8x64xf32>, tensor<3x5x2x64xf32>, tensor<3x5x2x64xf32>) -> tensor<2x3x8x64xf32>
  return
}

// -----

func.func @f(%q: tensor<2x3x8x64xf32>, %k: tensor<2x5x2x64xf32>, %v: tensor<2x6x2x64xf32>) {
  // expected-error @+1 {{key shape [2, 5, 2, 64] and value shape [2, 6, 2, 64] differ in length or heads}}
  %0 = kiln.attention %q kv(%k, %v) {mask = #kiln.mask<causal>} : (tensor<2x3x8x64xf32>, tensor<2x5x2x64xf32>, tensor<2x6x2x64xf32>) -> tensor<2x3x8x64xf32>
  return
}

// -----

func.func @f(%q: tensor<2x3x8x64xf32>, %k: tensor<2x5x2x64xf16>) {
  // expected-error @+1 {{key element type 'f16' does not match 'f32'}}
  %0 = kiln.attention %q kv(%k, %k) {mask = #kiln.mask<causal>} : (tensor<2x3x8x64xf32>, tensor<2x5x2x64xf16>, tensor<2x5x2x64xf16>) -> tensor<2x3x8x64xf32>
  return
}

// -----

func.func @f(%q: tensor<2x3x8x64xf32>, %c: !kiln.kv_cache<contiguous, bf16, kv_heads = 2, head_dim = 64>) {
  // expected-error @+1 {{cache compute type 'bf16' does not match query element type 'f32'}}
  %0 = kiln.attention %q cache(%c) {mask = #kiln.mask<causal>} : (tensor<2x3x8x64xf32>, !kiln.kv_cache<contiguous, bf16, kv_heads = 2, head_dim = 64>) -> tensor<2x3x8x64xf32>
  return
}

// -----

func.func @f(%q: tensor<2x3x8x64xf32>, %c: !kiln.kv_cache<contiguous, f32, kv_heads = 2, head_dim = 128>) {
  // expected-error @+1 {{key head_dim 128 does not match query head_dim 64}}
  %0 = kiln.attention %q cache(%c) {mask = #kiln.mask<causal>} : (tensor<2x3x8x64xf32>, !kiln.kv_cache<contiguous, f32, kv_heads = 2, head_dim = 128>) -> tensor<2x3x8x64xf32>
  return
}

// -----

// Mismatched head counts: 8 query heads cannot share 3 KV heads.
func.func @f(%q: tensor<2x3x8x64xf32>, %c: !kiln.kv_cache<paged<16>, f32, kv_heads = 3, head_dim = 64>) {
  // expected-error @+1 {{query heads 8 are not a multiple of KV heads 3}}
  %0 = kiln.attention %q cache(%c) {mask = #kiln.mask<causal>} : (tensor<2x3x8x64xf32>, !kiln.kv_cache<paged<16>, f32, kv_heads = 3, head_dim = 64>) -> tensor<2x3x8x64xf32>
  return
}

// -----

func.func @f(%q: tensor<2x3x8x64xf32>, %c: !kiln.kv_cache<contiguous, f32, kv_heads = 2, head_dim = 64, v_head_dim = 32>) {
  // expected-error @+1 {{result type 'tensor<2x3x8x64xf32>' does not match the expected shape [2, 3, 8, 32] of 'f32'}}
  %0 = kiln.attention %q cache(%c) {mask = #kiln.mask<causal>} : (tensor<2x3x8x64xf32>, !kiln.kv_cache<contiguous, f32, kv_heads = 2, head_dim = 64, v_head_dim = 32>) -> tensor<2x3x8x64xf32>
  return
}

// -----

func.func @f(%q: tensor<2x3x8x64xf16>, %k: tensor<2x5x2x64xf16>, %m: tensor<2x1x3x5xbf16>) {
  // expected-error @+1 {{attn_mask element type 'bf16' must be i1, f32 or the query's 'f16'}}
  %0 = kiln.attention %q kv(%k, %k) attn_mask(%m) {mask = #kiln.mask<none>} : (tensor<2x3x8x64xf16>, tensor<2x5x2x64xf16>, tensor<2x5x2x64xf16>, tensor<2x1x3x5xbf16>) -> tensor<2x3x8x64xf16>
  return
}

// -----

func.func @f(%q: tensor<2x3x8x64xf32>, %k: tensor<2x5x2x64xf32>, %m: tensor<2x1x3x7xf32>) {
  // expected-error @+1 {{attn_mask shape [2, 1, 3, 7] does not broadcast to [batch, heads, q, k] [2, 8, 3, 5]}}
  %0 = kiln.attention %q kv(%k, %k) attn_mask(%m) {mask = #kiln.mask<none>} : (tensor<2x3x8x64xf32>, tensor<2x5x2x64xf32>, tensor<2x5x2x64xf32>, tensor<2x1x3x7xf32>) -> tensor<2x3x8x64xf32>
  return
}

// -----

func.func @f(%q: tensor<2x3x8x64xf32>, %k: tensor<2x5x2x64xf32>, %t: tensor<3x3xi1>) {
  // expected-error @+1 {{tree_mask given but the mask kind is causal}}
  %0 = kiln.attention %q kv(%k, %k) tree_mask(%t) {mask = #kiln.mask<causal>} : (tensor<2x3x8x64xf32>, tensor<2x5x2x64xf32>, tensor<2x5x2x64xf32>, tensor<3x3xi1>) -> tensor<2x3x8x64xf32>
  return
}

// -----

func.func @f(%q: tensor<2x3x8x64xf32>, %k: tensor<2x5x2x64xf32>, %t: tensor<3x4xi1>) {
  // expected-error @+1 {{tree_mask shape [3, 4] must be [batch, q, q] or [q, q] for [2, 3, 3]}}
  %0 = kiln.attention %q kv(%k, %k) tree_mask(%t) {mask = #kiln.mask<tree>} : (tensor<2x3x8x64xf32>, tensor<2x5x2x64xf32>, tensor<2x5x2x64xf32>, tensor<3x4xi1>) -> tensor<2x3x8x64xf32>
  return
}

// -----

func.func @f(%q: tensor<2x3x8x64xf32>, %k: tensor<2x5x2x64xf32>) {
  // expected-error @+1 {{mask kind tree needs a tree_mask operand}}
  %0 = kiln.attention %q kv(%k, %k) {mask = #kiln.mask<tree>} : (tensor<2x3x8x64xf32>, tensor<2x5x2x64xf32>, tensor<2x5x2x64xf32>) -> tensor<2x3x8x64xf32>
  return
}

// -----

func.func @f(%q: tensor<2x3x8x64xf32>, %k: tensor<2x5x2x64xf32>, %i: tensor<2x8x1x4xi32>) {
  // expected-error @+1 {{sparse_index given without a sparsity attribute}}
  %0 = kiln.attention %q kv(%k, %k) sparse_index(%i) {mask = #kiln.mask<causal>} : (tensor<2x3x8x64xf32>, tensor<2x5x2x64xf32>, tensor<2x5x2x64xf32>, tensor<2x8x1x4xi32>) -> tensor<2x3x8x64xf32>
  return
}

// -----

func.func @f(%q: tensor<2x3x8x64xf32>, %k: tensor<2x5x2x64xf32>) {
  // expected-error @+1 {{mask kind sparse needs a sparsity attribute and sparse_index}}
  %0 = kiln.attention %q kv(%k, %k) {mask = #kiln.mask<sparse>} : (tensor<2x3x8x64xf32>, tensor<2x5x2x64xf32>, tensor<2x5x2x64xf32>) -> tensor<2x3x8x64xf32>
  return
}

// -----

func.func @f(%q: tensor<2x3x8x64xf32>, %k: tensor<2x5x2x64xf32>, %i: tensor<2x8x4xi32>) {
  // expected-error @+1 {{sparsity #kiln.sparsity<vertical_slash, q_block = 64> needs 2 sparse_index tensor(s), found 1}}
  %0 = kiln.attention %q kv(%k, %k) sparse_index(%i) {mask = #kiln.mask<causal>, sparsity = #kiln.sparsity<vertical_slash, q_block = 64>} : (tensor<2x3x8x64xf32>, tensor<2x5x2x64xf32>, tensor<2x5x2x64xf32>, tensor<2x8x4xi32>) -> tensor<2x3x8x64xf32>
  return
}

// -----

func.func @f(%q: tensor<2x3x8x64xf32>, %k: tensor<2x5x2x64xf32>, %i: tensor<2x8x4xi32>) {
  // expected-error @+1 {{sparse_index #0 must have rank 4 for block_sparse, found rank 3}}
  %0 = kiln.attention %q kv(%k, %k) sparse_index(%i) {mask = #kiln.mask<sparse>, sparsity = #kiln.sparsity<block_sparse, q_block = 64, kv_block = 64>} : (tensor<2x3x8x64xf32>, tensor<2x5x2x64xf32>, tensor<2x5x2x64xf32>, tensor<2x8x4xi32>) -> tensor<2x3x8x64xf32>
  return
}

// -----

func.func @f(%q: tensor<2x3x8x64xf32>, %k: tensor<2x5x2x64xf32>) {
  // expected-error @+1 {{scale must be positive, found -1}}
  %0 = kiln.attention %q kv(%k, %k) {mask = #kiln.mask<causal>, scale = -1.0 : f32} : (tensor<2x3x8x64xf32>, tensor<2x5x2x64xf32>, tensor<2x5x2x64xf32>) -> tensor<2x3x8x64xf32>
  return
}

// -----

func.func @f(%q: tensor<2x3x8x64xf32>, %k: tensor<2x5x2x64xf32>) {
  // expected-error @+1 {{softcap must be non-negative, found -3}}
  %0 = kiln.attention %q kv(%k, %k) {mask = #kiln.mask<causal>, softcap = -3.0 : f32} : (tensor<2x3x8x64xf32>, tensor<2x5x2x64xf32>, tensor<2x5x2x64xf32>) -> tensor<2x3x8x64xf32>
  return
}

// -----

func.func @f(%g: tensor<4x10xf32>) {
  // expected-error @+1 {{result element type 'f16' does not match gate element type 'f32'}}
  %0 = kiln.glu silu %g : tensor<4x10xf32> -> tensor<4x5xf16>
  return
}

// -----

func.func @f(%g: tensor<4x10xf32>, %u: tensor<4x8xf32>) {
  // expected-error @+1 {{up type 'tensor<4x8xf32>' does not match gate type 'tensor<4x10xf32>'}}
  %0 = kiln.glu silu %g, %u : tensor<4x10xf32>, tensor<4x8xf32> -> tensor<4x10xf32>
  return
}

// -----

func.func @f(%g: tensor<4x9xf32>) {
  // expected-error @+1 {{fused gate/up last dimension 9 is odd}}
  %0 = kiln.glu silu %g : tensor<4x9xf32> -> tensor<4x4xf32>
  return
}

// -----

func.func @f(%g: tensor<4x10xf32>) {
  // expected-error @+1 {{result shape [4, 10] does not match the expected [4, 5]}}
  %0 = kiln.glu silu %g : tensor<4x10xf32> -> tensor<4x10xf32>
  return
}

// -----

func.func @f(%g: tensor<f32>) {
  // expected-error @+1 {{a fused gate/up operand needs rank >= 1}}
  %0 = kiln.glu silu %g : tensor<f32> -> tensor<f32>
  return
}

// -----

func.func @f(%x: tensor<4x8xf32>, %g: tensor<8x16xf32>, %d: tensor<16x8xf32>) {
  // expected-error @+1 {{needs either gate(...) and up(...), or gate_up(...)}}
  %0 = kiln.gated_mlp silu %x, gate(%g) down(%d) : (tensor<4x8xf32>, tensor<8x16xf32>, tensor<16x8xf32>) -> tensor<4x8xf32>
  return
}

// -----

func.func @f(%x: tensor<4x8xf32>, %g: tensor<8x16xf32>, %d: tensor<16x8xf32>) {
  // expected-error @+1 {{result type 'tensor<4x8xf16>' does not match input type 'tensor<4x8xf32>'}}
  %0 = kiln.gated_mlp silu %x, gate(%g) up(%g) down(%d) : (tensor<4x8xf32>, tensor<8x16xf32>, tensor<8x16xf32>, tensor<16x8xf32>) -> tensor<4x8xf16>
  return
}

// -----

func.func @f(%x: tensor<f32>, %g: tensor<8x16xf32>, %d: tensor<16x8xf32>) {
  // expected-error @+1 {{input needs rank >= 1}}
  %0 = kiln.gated_mlp silu %x, gate(%g) up(%g) down(%d) : (tensor<f32>, tensor<8x16xf32>, tensor<8x16xf32>, tensor<16x8xf32>) -> tensor<f32>
  return
}

// -----

func.func @f(%x: tensor<4x8xf32>, %g: tensor<8x16x1xf32>, %d: tensor<16x8xf32>) {
  // expected-error @+1 {{gate weight must have rank 2, found rank 3}}
  %0 = kiln.gated_mlp silu %x, gate(%g) up(%g) down(%d) : (tensor<4x8xf32>, tensor<8x16x1xf32>, tensor<8x16x1xf32>, tensor<16x8xf32>) -> tensor<4x8xf32>
  return
}

// -----

func.func @f(%x: tensor<4x8xf32>, %g: tensor<8x16xf16>, %d: tensor<16x8xf32>) {
  // expected-error @+1 {{gate element type 'f16' does not match 'f32'}}
  %0 = kiln.gated_mlp silu %x, gate(%g) up(%g) down(%d) : (tensor<4x8xf32>, tensor<8x16xf16>, tensor<8x16xf16>, tensor<16x8xf32>) -> tensor<4x8xf32>
  return
}

// -----

// Output-major weights without transpose_weights: the hidden size is on the wrong side.
func.func @f(%x: tensor<4x8xf32>, %g: tensor<16x8xf32>, %d: tensor<8x16xf32>) {
  // expected-error @+1 {{gate weight shape [16, 8] does not match hidden size 8}}
  %0 = kiln.gated_mlp silu %x, gate(%g) up(%g) down(%d) : (tensor<4x8xf32>, tensor<16x8xf32>, tensor<16x8xf32>, tensor<8x16xf32>) -> tensor<4x8xf32>
  return
}

// -----

func.func @f(%x: tensor<4x8xf32>, %g: tensor<8x16xf32>, %u: tensor<8x12xf32>, %d: tensor<16x8xf32>) {
  // expected-error @+1 {{gate and up widths 16 and 12 differ}}
  %0 = kiln.gated_mlp silu %x, gate(%g) up(%u) down(%d) : (tensor<4x8xf32>, tensor<8x16xf32>, tensor<8x12xf32>, tensor<16x8xf32>) -> tensor<4x8xf32>
  return
}

// -----

func.func @f(%x: tensor<4x8xf32>, %gu: tensor<8x15xf32>, %d: tensor<16x8xf32>) {
  // expected-error @+1 {{gate_up width 15 is odd}}
  %0 = kiln.gated_mlp silu %x, gate_up(%gu) down(%d) : (tensor<4x8xf32>, tensor<8x15xf32>, tensor<16x8xf32>) -> tensor<4x8xf32>
  return
}

// -----

func.func @f(%x: tensor<4x8xf32>, %gu: tensor<8x32xf32>, %d: tensor<12x8xf32>) {
  // expected-error @+1 {{down weight width 12 does not match the MLP width 16}}
  %0 = kiln.gated_mlp silu %x, gate_up(%gu) down(%d) : (tensor<4x8xf32>, tensor<8x32xf32>, tensor<12x8xf32>) -> tensor<4x8xf32>
  return
}

// -----

func.func @f(%c: !kiln.kv_cache<contiguous, f32, kv_heads = 2, head_dim = 64>, %k: tensor<1x3x4x64xf32>) {
  // expected-error @+1 {{key shape [1, 3, 4, 64] does not match the cache's [?, ?, 2, 64]}}
  %0 = kiln.kv_cache_append %c, %k, %k : !kiln.kv_cache<contiguous, f32, kv_heads = 2, head_dim = 64>, tensor<1x3x4x64xf32>, tensor<1x3x4x64xf32>
  return
}

// -----

func.func @f(%c: !kiln.kv_cache<contiguous, f32, kv_heads = 2, head_dim = 64>, %k: tensor<1x3x2x64xf16>) {
  // expected-error @+1 {{key element type 'f16' does not match 'f32'}}
  %0 = kiln.kv_cache_append %c, %k, %k : !kiln.kv_cache<contiguous, f32, kv_heads = 2, head_dim = 64>, tensor<1x3x2x64xf16>, tensor<1x3x2x64xf16>
  return
}

// -----

func.func @f(%c: !kiln.kv_cache<contiguous, f32, kv_heads = 2, head_dim = 64>, %k: tensor<1x3x2x64xf32>, %v: tensor<1x4x2x64xf32>) {
  // expected-error @+1 {{key and value batch/length differ: [1, 3, 2, 64] vs [1, 4, 2, 64]}}
  %0 = kiln.kv_cache_append %c, %k, %v : !kiln.kv_cache<contiguous, f32, kv_heads = 2, head_dim = 64>, tensor<1x3x2x64xf32>, tensor<1x4x2x64xf32>
  return
}

// -----

func.func @f(%c: !kiln.kv_cache<contiguous, f32, kv_heads = 2, head_dim = 64>, %k: tensor<1x3x2x64xf32>, %s: tensor<1x1x2x1xf32>) {
  // expected-error @+1 {{scales(...) given, but the cache is not quantized}}
  %0 = kiln.kv_cache_append %c, %k, %k scales(%s, %s : tensor<1x1x2x1xf32>, tensor<1x1x2x1xf32>) : !kiln.kv_cache<contiguous, f32, kv_heads = 2, head_dim = 64>, tensor<1x3x2x64xf32>, tensor<1x3x2x64xf32>
  return
}

// -----

func.func @f(%c: !kiln.kv_cache<contiguous, i8, kv_heads = 2, head_dim = 64, quant = #kiln.quant<storage = i8, expressed = f32, block = [1, 1, 1, 0], scale = f32>>, %k: tensor<1x3x2x64xf32>, %s: tensor<1x1x2x1xf32>) {
  // expected-error @+1 {{scales(...) given, but the cache computes per-token scales}}
  %0 = kiln.kv_cache_append %c, %k, %k scales(%s, %s : tensor<1x1x2x1xf32>, tensor<1x1x2x1xf32>) : !kiln.kv_cache<contiguous, i8, kv_heads = 2, head_dim = 64, quant = #kiln.quant<storage = i8, expressed = f32, block = [1, 1, 1, 0], scale = f32>>, tensor<1x3x2x64xf32>, tensor<1x3x2x64xf32>
  return
}

// -----

func.func @f(%c: !kiln.kv_cache<contiguous, i8, kv_heads = 2, head_dim = 64, quant = #kiln.quant<storage = i8, expressed = f32, block = [0, 0, 1, 0], scale = f32>>, %k: tensor<1x3x2x64xf32>) {
  // expected-error @+1 {{a cache with static scales needs scales(...)}}
  %0 = kiln.kv_cache_append %c, %k, %k : !kiln.kv_cache<contiguous, i8, kv_heads = 2, head_dim = 64, quant = #kiln.quant<storage = i8, expressed = f32, block = [0, 0, 1, 0], scale = f32>>, tensor<1x3x2x64xf32>, tensor<1x3x2x64xf32>
  return
}

// -----

func.func @f(%c: !kiln.kv_cache<contiguous, i8, kv_heads = 2, head_dim = 64, quant = #kiln.quant<storage = i8, expressed = f32, block = [0, 0, 1, 0], scale = f32>>, %k: tensor<1x3x2x64xf32>, %s: tensor<2xf32>) {
  // expected-error @+1 {{key scale type 'tensor<2xf32>' does not match the expected 'tensor<1x1x2x1xf32>'}}
  %0 = kiln.kv_cache_append %c, %k, %k scales(%s, %s : tensor<2xf32>, tensor<2xf32>) : !kiln.kv_cache<contiguous, i8, kv_heads = 2, head_dim = 64, quant = #kiln.quant<storage = i8, expressed = f32, block = [0, 0, 1, 0], scale = f32>>, tensor<1x3x2x64xf32>, tensor<1x3x2x64xf32>
  return
}

// -----

func.func @f(%c: !kiln.kv_cache<contiguous, f32, kv_heads = 2, head_dim = 64>) {
  // expected-error @+1 {{value shape [?, ?, 2, 32] does not match the cache's [?, ?, 2, 64]}}
  %k, %v = kiln.kv_cache_read %c : !kiln.kv_cache<contiguous, f32, kv_heads = 2, head_dim = 64> -> tensor<?x?x2x64xf32>, tensor<?x?x2x32xf32>
  return
}

// -----

func.func @f(%c: !kiln.kv_cache<contiguous, i8, kv_heads = 2, head_dim = 64, quant = #kiln.quant<storage = i8, expressed = f16, block = [1, 1, 1, 0], scale = f32>>) {
  // expected-error @+1 {{key element type 'f32' does not match 'f16'}}
  %k, %v = kiln.kv_cache_read %c : !kiln.kv_cache<contiguous, i8, kv_heads = 2, head_dim = 64, quant = #kiln.quant<storage = i8, expressed = f16, block = [1, 1, 1, 0], scale = f32>> -> tensor<?x?x2x64xf32>, tensor<?x?x2x64xf32>
  return
}

// -----

func.func @f(%x: tensor<4x8xf32>) {
  // expected-error @+1 {{result element type 'f16' does not match 'f32'}}
  %0 = kiln.reshape %x : tensor<4x8xf32> -> tensor<32xf16>
  return
}

// -----

func.func @f(%x: tensor<?x?x256xf32>, %s: tensor<3xi64>) {
  // expected-error @+1 {{shape operand has 3 entries but the result has rank 4}}
  %0 = kiln.reshape %x shape(%s : tensor<3xi64>) : tensor<?x?x256xf32> -> tensor<?x?x8x32xf32>
  return
}

// -----

func.func @f(%x: tensor<?x256xf32>) {
  // expected-error @+1 {{result 'tensor<?x?x8x32xf32>' has 2 dynamic dimensions but the input has 1; a shape operand must give them}}
  %0 = kiln.reshape %x : tensor<?x256xf32> -> tensor<?x?x8x32xf32>
  return
}

// -----

func.func @f(%x: tensor<4x8xf32>) {
  // expected-error @+1 {{cannot reshape 32 elements into 30}}
  %0 = kiln.reshape %x : tensor<4x8xf32> -> tensor<5x6xf32>
  return
}

// -----

func.func @f(%x: tensor<2x3x4xf32>) {
  // expected-error @+1 {{permutation [0, 1, 1] is not a permutation of 0..2}}
  %0 = kiln.transpose %x [0, 1, 1] : tensor<2x3x4xf32> -> tensor<2x3x3xf32>
  return
}

// -----

func.func @f(%x: tensor<2x3x4xf32>) {
  // expected-error @+1 {{result shape [2, 3, 4] does not match the permuted input shape [2, 4, 3]}}
  %0 = kiln.transpose %x [0, 2, 1] : tensor<2x3x4xf32> -> tensor<2x3x4xf32>
  return
}

// -----

func.func @f(%x: tensor<2x3x4xf32>) {
  // expected-error @+1 {{result element type 'f16' does not match 'f32'}}
  %0 = kiln.transpose %x [0, 2, 1] : tensor<2x3x4xf32> -> tensor<2x4x3xf16>
  return
}

// -----

func.func @f() {
  // expected-error @+1 {{needs at least one input}}
  %0 = kiln.concat {axis = 0 : i64} : () -> tensor<2xf32>
  return
}

// -----

func.func @f(%a: tensor<2x3xf32>) {
  // expected-error @+1 {{axis 2 is out of range for rank 2}}
  %0 = kiln.concat %a, %a {axis = 2 : i64} : (tensor<2x3xf32>, tensor<2x3xf32>) -> tensor<2x6xf32>
  return
}

// -----

func.func @f(%a: tensor<2x3xf32>, %b: tensor<3xf32>) {
  // expected-error @+1 {{input #1 has rank 1 but the result has rank 2}}
  %0 = kiln.concat %a, %b {axis = 1 : i64} : (tensor<2x3xf32>, tensor<3xf32>) -> tensor<2x6xf32>
  return
}

// -----

func.func @f(%a: tensor<2x3xf32>, %b: tensor<2x3xf16>) {
  // expected-error @+1 {{input element type 'f16' does not match 'f32'}}
  %0 = kiln.concat %a, %b {axis = 1 : i64} : (tensor<2x3xf32>, tensor<2x3xf16>) -> tensor<2x6xf32>
  return
}

// -----

func.func @f(%a: tensor<2x3xf32>, %b: tensor<4x3xf32>) {
  // expected-error @+1 {{input #1 shape [4, 3] does not match the result shape [2, 6] outside axis 1}}
  %0 = kiln.concat %a, %b {axis = 1 : i64} : (tensor<2x3xf32>, tensor<4x3xf32>) -> tensor<2x6xf32>
  return
}

// -----

func.func @f(%a: tensor<2x3xf32>) {
  // expected-error @+1 {{result dimension 7 along axis 1 does not match the inputs' total 6}}
  %0 = kiln.concat %a, %a {axis = 1 : i64} : (tensor<2x3xf32>, tensor<2x3xf32>) -> tensor<2x7xf32>
  return
}

// -----

func.func @f(%x: tensor<4x8xf32>) {
  // expected-error @+1 {{axes, starts, ends and steps must have equal lengths, found 1, 2, 1, 1}}
  %0 = kiln.slice %x {axes = array<i64: 1>, starts = array<i64: 0, 0>, ends = array<i64: 4>, steps = array<i64: 1>} : tensor<4x8xf32> -> tensor<4x4xf32>
  return
}

// -----

func.func @f(%x: tensor<4x8xf32>) {
  // expected-error @+1 {{axis 2 is out of range for rank 2}}
  %0 = kiln.slice %x {axes = array<i64: 2>, starts = array<i64: 0>, ends = array<i64: 4>, steps = array<i64: 1>} : tensor<4x8xf32> -> tensor<4x4xf32>
  return
}

// -----

func.func @f(%x: tensor<4x8xf32>) {
  // expected-error @+1 {{axis -1 is listed twice}}
  %0 = kiln.slice %x {axes = array<i64: 1, -1>, starts = array<i64: 0, 0>, ends = array<i64: 4, 4>, steps = array<i64: 1, 1>} : tensor<4x8xf32> -> tensor<4x4xf32>
  return
}

// -----

func.func @f(%x: tensor<4x8xf32>) {
  // expected-error @+1 {{step for axis 1 must be non-zero}}
  %0 = kiln.slice %x {axes = array<i64: 1>, starts = array<i64: 0>, ends = array<i64: 4>, steps = array<i64: 0>} : tensor<4x8xf32> -> tensor<4x4xf32>
  return
}

// -----

// Near miss of ONNX clamping: end 100 clamps to 8, so 6 elements remain, not 100 - 2.
func.func @f(%x: tensor<4x8xf32>) {
  // expected-error @+1 {{result shape [4, 98] does not match the sliced shape [4, 6]}}
  %0 = kiln.slice %x {axes = array<i64: 1>, starts = array<i64: 2>, ends = array<i64: 100>, steps = array<i64: 1>} : tensor<4x8xf32> -> tensor<4x98xf32>
  return
}

// -----

func.func @f(%x: tensor<4x8xf32>) {
  // expected-error @+1 {{result element type 'f16' does not match 'f32'}}
  %0 = kiln.slice %x {axes = array<i64: 1>, starts = array<i64: 0>, ends = array<i64: 4>, steps = array<i64: 1>} : tensor<4x8xf32> -> tensor<4x4xf16>
  return
}

// -----

func.func @f(%x: tensor<1x8xf32>) {
  // expected-error @+1 {{result element type 'f16' does not match 'f32'}}
  %0 = kiln.broadcast %x : tensor<1x8xf32> -> tensor<4x8xf16>
  return
}

// -----

func.func @f(%x: tensor<2x1x8xf32>) {
  // expected-error @+1 {{cannot broadcast rank 3 to the lower rank 2}}
  %0 = kiln.broadcast %x : tensor<2x1x8xf32> -> tensor<4x8xf32>
  return
}

// -----

func.func @f(%x: tensor<3x8xf32>) {
  // expected-error @+1 {{input shape [3, 8] does not broadcast to [4, 8]}}
  %0 = kiln.broadcast %x : tensor<3x8xf32> -> tensor<4x8xf32>
  return
}

// -----

func.func @f(%x: tensor<1x8xf32>) {
  // expected-error @+1 {{result dimension 0 is dynamic but the input's aligned dimension is not; a shape operand must give it}}
  %0 = kiln.broadcast %x : tensor<1x8xf32> -> tensor<?x8xf32>
  return
}

// -----

func.func @f(%x: tensor<1x8xf32>, %s: tensor<3xi64>) {
  // expected-error @+1 {{shape operand has 3 entries but the result has rank 2}}
  %0 = kiln.broadcast %x shape(%s : tensor<3xi64>) : tensor<1x8xf32> -> tensor<?x8xf32>
  return
}

// -----

func.func @f(%x: tensor<?x8xui8>) {
  // expected-error @+1 {{needs static shapes, found 'tensor<?x8xui8>' and 'tensor<4x16xui4>'}}
  %0 = kiln.bitcast %x : tensor<?x8xui8> -> tensor<4x16xui4>
  return
}

// -----

func.func @f(%x: tensor<4x8xui8>) {
  // expected-error @+1 {{'tensor<4x8xui8>' and 'tensor<4x17xui4>' occupy different numbers of bytes (32 vs 36)}}
  %0 = kiln.bitcast %x : tensor<4x8xui8> -> tensor<4x17xui4>
  return
}

// -----

func.func @f(%x: tensor<?x8xf32>) {
  // expected-error @+1 {{result has 3 entries but the input has rank 2}}
  %0 = kiln.shape_of %x : tensor<?x8xf32> -> tensor<3xi64>
  return
}

// -----

func.func @f(%s: tensor<1xi64>) {
  // expected-error @+1 {{start must be a scalar (rank 0), found rank 1}}
  %0 = kiln.range %s, %s, %s : (tensor<1xi64>, tensor<1xi64>, tensor<1xi64>) -> tensor<?xi64>
  return
}

// -----

func.func @f(%s: tensor<i64>, %t: tensor<i32>) {
  // expected-error @+1 {{delta element type 'i32' does not match 'i64'}}
  %0 = kiln.range %s, %s, %t : (tensor<i64>, tensor<i64>, tensor<i32>) -> tensor<?xi64>
  return
}

// -----

func.func @f(%s: tensor<i64>) {
  // expected-error @+1 {{result must have rank 1, found rank 2}}
  %0 = kiln.range %s, %s, %s : (tensor<i64>, tensor<i64>, tensor<i64>) -> tensor<?x?xi64>
  return
}

// -----

func.func @f() {
  // expected-error @+1 {{fill value type 'f32' does not match element type 'bf16'}}
  %0 = kiln.fill 0.0 : f32 : tensor<2xbf16>
  return
}

// -----

func.func @f() {
  // expected-error @+1 {{dynamic result 'tensor<?xf32>' needs a shape operand}}
  %0 = kiln.fill 0.0 : f32 : tensor<?xf32>
  return
}

// -----

func.func @f(%x: tensor<4xf32>) -> tensor<4xf32> {
  // expected-error @+1 {{body takes 2 arguments for 1 inputs}}
  %0 = kiln.elementwise %x : (tensor<4xf32>) -> tensor<4xf32> {
  ^bb0(%a: f32, %b: f32):
    kiln.yield %a : f32
  }
  return %0 : tensor<4xf32>
}

// -----

func.func @f(%x: tensor<4xbf16>) -> tensor<4xf32> {
  // expected-error @+1 {{body argument 0 is 'f32' but input 0 has elements of 'bf16'}}
  %0 = kiln.elementwise %x : (tensor<4xbf16>) -> tensor<4xf32> {
  ^bb0(%a: f32):
    kiln.yield %a : f32
  }
  return %0 : tensor<4xf32>
}

// -----

func.func @f(%x: tensor<4xf32>) -> tensor<4xf16> {
  // expected-error @+1 {{body yields 'f32' for a result of 'f16'}}
  %0 = kiln.elementwise %x : (tensor<4xf32>) -> tensor<4xf16> {
  ^bb0(%a: f32):
    kiln.yield %a : f32
  }
  return %0 : tensor<4xf16>
}

// -----

func.func @f(%x: tensor<4xf32>) -> tensor<4xf32> {
  %0 = kiln.elementwise %x : (tensor<4xf32>) -> tensor<4xf32> {
  ^bb0(%a: f32):
    // expected-error @+1 {{is not a scalar float op a kiln.elementwise body may hold}}
    %c = math.floor %a : f32
    kiln.yield %c : f32
  }
  return %0 : tensor<4xf32>
}

// -----

func.func @f(%x: tensor<2x4xf32>) -> tensor<4xf32> {
  // expected-error @+1 {{input 'tensor<2x4xf32>' has a higher rank than the result 'tensor<4xf32>'}}
  %0 = kiln.elementwise %x : (tensor<2x4xf32>) -> tensor<4xf32> {
  ^bb0(%a: f32):
    kiln.yield %a : f32
  }
  return %0 : tensor<4xf32>
}

// -----

func.func @f(%x: f32) {
  // expected-error @+1 {{expects parent op 'kiln.elementwise'}}
  kiln.yield %x : f32
}

// -----

func.func @f(%x: tensor<4x48xf32>) -> tensor<4x48xf32> {
  // expected-error @+1 {{block 24 is not a power of two}}
  %0 = kiln.hadamard %x {block = 24 : i64} : tensor<4x48xf32>
  return %0 : tensor<4x48xf32>
}

// -----

func.func @f(%x: tensor<4x48xf32>) -> tensor<4x48xf32> {
  // expected-error @+1 {{block 32 does not divide the last dimension (48)}}
  %0 = kiln.hadamard %x {block = 32 : i64} : tensor<4x48xf32>
  return %0 : tensor<4x48xf32>
}

// -----

func.func @f(%x: tensor<4x?xf32>) -> tensor<4x?xf32> {
  // expected-error @+1 {{the last dimension must be static}}
  %0 = kiln.hadamard %x {block = 16 : i64} : tensor<4x?xf32>
  return %0 : tensor<4x?xf32>
}

// -----

func.func @f(%x: tensor<4x48xf32>, %r: tensor<32x32xf32>) -> tensor<4x48xf32> {
  // expected-error @+1 {{rotation size 32 does not divide the last dimension (48)}}
  %0 = kiln.rotate %x, %r : tensor<4x48xf32>, tensor<32x32xf32> -> tensor<4x48xf32>
  return %0 : tensor<4x48xf32>
}

// -----

func.func @f(%x: tensor<4x48xf32>, %r: tensor<16x8xf32>) -> tensor<4x48xf32> {
  // expected-error @+1 {{rotation must be a static square matrix, found 'tensor<16x8xf32>'}}
  %0 = kiln.rotate %x, %r : tensor<4x48xf32>, tensor<16x8xf32> -> tensor<4x48xf32>
  return %0 : tensor<4x48xf32>
}

// -----

func.func @f(%x: tensor<4x48xf32>, %r: tensor<16x16xf32>) -> tensor<4x48xf16> {
  // expected-error @+1 {{result type 'tensor<4x48xf16>' differs from the input's 'tensor<4x48xf32>'}}
  %0 = kiln.rotate %x, %r : tensor<4x48xf32>, tensor<16x16xf32> -> tensor<4x48xf16>
  return %0 : tensor<4x48xf16>
}
