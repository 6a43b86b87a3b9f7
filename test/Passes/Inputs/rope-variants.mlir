// RoPE as exporters spell it, for the equivalence check
// (test/Passes/fuse-rope.mlir runs it): GPT-J's interleaved rotation on
// [B, S, H, D] heads with repeat_interleave'd tables, and Llama's rotate-half
// on [B, S, H, D] heads (tables [B, S, 1, D]). Angles are an input, so the
// check draws them at random.
func.func @forward(%x: tensor<2x5x4x8xf32> {kiln.name = "x"}, %ang: tensor<2x5x4xf32> {kiln.name = "angles"}) -> (tensor<2x5x4x8xf32> {kiln.name = "gptj"}, tensor<2x5x4x8xf32> {kiln.name = "llama"}) {
  // repeat_interleave(cos(ang), 2) and (sin) as [2, 5, 1, 8].
  %c = kiln.cos %ang : tensor<2x5x4xf32>
  %s = kiln.sin %ang : tensor<2x5x4xf32>
  %c1 = kiln.reshape %c : tensor<2x5x4xf32> -> tensor<2x5x4x1xf32>
  %s1 = kiln.reshape %s : tensor<2x5x4xf32> -> tensor<2x5x4x1xf32>
  %c2 = kiln.broadcast %c1 : tensor<2x5x4x1xf32> -> tensor<2x5x4x2xf32>
  %s2 = kiln.broadcast %s1 : tensor<2x5x4x1xf32> -> tensor<2x5x4x2xf32>
  %c3 = kiln.reshape %c2 : tensor<2x5x4x2xf32> -> tensor<2x5x8xf32>
  %s3 = kiln.reshape %s2 : tensor<2x5x4x2xf32> -> tensor<2x5x8xf32>
  %cp = kiln.reshape %c3 : tensor<2x5x8xf32> -> tensor<2x5x1x8xf32>
  %sp = kiln.reshape %s3 : tensor<2x5x8xf32> -> tensor<2x5x1x8xf32>
  // rotate_every_two(x) = flatten(stack(-x[..., 1::2], x[..., ::2]), -2).
  %x0 = kiln.slice %x {axes = array<i64: 3>, ends = array<i64: 9223372036854775807>, starts = array<i64: 0>, steps = array<i64: 2>} : tensor<2x5x4x8xf32> -> tensor<2x5x4x4xf32>
  %x1 = kiln.slice %x {axes = array<i64: 3>, ends = array<i64: 9223372036854775807>, starts = array<i64: 1>, steps = array<i64: 2>} : tensor<2x5x4x8xf32> -> tensor<2x5x4x4xf32>
  %n1 = kiln.neg %x1 : tensor<2x5x4x4xf32>
  %u1 = kiln.reshape %n1 : tensor<2x5x4x4xf32> -> tensor<2x5x4x4x1xf32>
  %u0 = kiln.reshape %x0 : tensor<2x5x4x4xf32> -> tensor<2x5x4x4x1xf32>
  %st = kiln.concat %u1, %u0 {axis = -1 : i64} : (tensor<2x5x4x4x1xf32>, tensor<2x5x4x4x1xf32>) -> tensor<2x5x4x4x2xf32>
  %rot = kiln.reshape %st : tensor<2x5x4x4x2xf32> -> tensor<2x5x4x8xf32>
  %a = kiln.mul %x, %cp : (tensor<2x5x4x8xf32>, tensor<2x5x1x8xf32>) -> tensor<2x5x4x8xf32>
  %b = kiln.mul %rot, %sp : (tensor<2x5x4x8xf32>, tensor<2x5x1x8xf32>) -> tensor<2x5x4x8xf32>
  %gptj = kiln.add %a, %b : (tensor<2x5x4x8xf32>, tensor<2x5x4x8xf32>) -> tensor<2x5x4x8xf32>
  // Rotate-half on the same heads: tables cos/sin(concat(ang, ang)).
  %e = kiln.concat %ang, %ang {axis = -1 : i64} : (tensor<2x5x4xf32>, tensor<2x5x4xf32>) -> tensor<2x5x8xf32>
  %ce = kiln.cos %e : tensor<2x5x8xf32>
  %se = kiln.sin %e : tensor<2x5x8xf32>
  %ch = kiln.reshape %ce : tensor<2x5x8xf32> -> tensor<2x5x1x8xf32>
  %sh = kiln.reshape %se : tensor<2x5x8xf32> -> tensor<2x5x1x8xf32>
  %h0 = kiln.slice %x {axes = array<i64: 3>, ends = array<i64: 4>, starts = array<i64: 0>, steps = array<i64: 1>} : tensor<2x5x4x8xf32> -> tensor<2x5x4x4xf32>
  %h1 = kiln.slice %x {axes = array<i64: 3>, ends = array<i64: 8>, starts = array<i64: 4>, steps = array<i64: 1>} : tensor<2x5x4x8xf32> -> tensor<2x5x4x4xf32>
  %hn = kiln.neg %h1 : tensor<2x5x4x4xf32>
  %hr = kiln.concat %hn, %h0 {axis = 3 : i64} : (tensor<2x5x4x4xf32>, tensor<2x5x4x4xf32>) -> tensor<2x5x4x8xf32>
  %ha = kiln.mul %x, %ch : (tensor<2x5x4x8xf32>, tensor<2x5x1x8xf32>) -> tensor<2x5x4x8xf32>
  %hb = kiln.mul %hr, %sh : (tensor<2x5x4x8xf32>, tensor<2x5x1x8xf32>) -> tensor<2x5x4x8xf32>
  %llama = kiln.add %ha, %hb : (tensor<2x5x4x8xf32>, tensor<2x5x4x8xf32>) -> tensor<2x5x4x8xf32>
  return %gptj, %llama : tensor<2x5x4x8xf32>, tensor<2x5x4x8xf32>
}
