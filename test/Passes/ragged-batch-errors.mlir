// RUN: kiln-opt %s --kiln-ragged-batch --split-input-file --verify-diagnostics

// A mask read from a weight is neither padding nor causal by position.
!c = !kiln.kv_cache<contiguous, f32, kv_heads = 2, head_dim = 16>
func.func @weight_mask(%ids: tensor<?x?xi64> {kiln.name = "input_ids"}, %q: tensor<1x?x4x16xf32>,
                       %c: !c, %m: tensor<1x1x?x?xi1> {kiln.name = "bias"}) -> tensor<1x?x4x16xf32> {
  // expected-error @+1 {{cannot run ragged batches: its attn_mask is neither padding (computed from attention_mask alone) nor causal by position}}
  %o = kiln.attention %q cache(%c) attn_mask(%m) {mask = #kiln.mask<causal>} : (tensor<1x?x4x16xf32>, !c, tensor<1x1x?x?xi1>) -> tensor<1x?x4x16xf32>
  return %o : tensor<1x?x4x16xf32>
}

// -----

// No mask at all and mask kind none: every key visible, not causal.
!c = !kiln.kv_cache<contiguous, f32, kv_heads = 2, head_dim = 16>
func.func @bidirectional(%ids: tensor<?x?xi64> {kiln.name = "input_ids"}, %q: tensor<1x?x4x16xf32>, %c: !c) -> tensor<1x?x4x16xf32> {
  // expected-error @+1 {{cannot run ragged batches: attention without a causal mask}}
  %o = kiln.attention %q cache(%c) {mask = #kiln.mask<none>} : (tensor<1x?x4x16xf32>, !c) -> tensor<1x?x4x16xf32>
  return %o : tensor<1x?x4x16xf32>
}

// -----

// A padding mask is dropped, but attention_mask read for anything but its
// shape is refused.
!c = !kiln.kv_cache<contiguous, f32, kv_heads = 2, head_dim = 16>
func.func @mask_read(%ids: tensor<?x?xi64> {kiln.name = "input_ids"},
                     %am: tensor<?x?xi64> {kiln.name = "attention_mask"},
                     %q: tensor<1x?x4x16xf32>, %c: !c) -> (tensor<1x?x4x16xf32>, tensor<?x?xi64>) {
  %m = kiln.cast %am : tensor<?x?xi64> to tensor<?x?xi1>
  %m4 = kiln.reshape %m : tensor<?x?xi1> -> tensor<1x1x1x?xi1>
  %o = kiln.attention %q cache(%c) attn_mask(%m4) {mask = #kiln.mask<causal>} : (tensor<1x?x4x16xf32>, !c, tensor<1x1x1x?xi1>) -> tensor<1x?x4x16xf32>
  // expected-error @+1 {{cannot run ragged batches: input attention_mask is still read}}
  %s = kiln.add %am, %am : (tensor<?x?xi64>, tensor<?x?xi64>) -> tensor<?x?xi64>
  return %o, %s : tensor<1x?x4x16xf32>, tensor<?x?xi64>
}

// -----

// No input_ids: not a language model's graph.
// expected-error @+1 {{cannot run ragged batches: no input_ids argument}}
func.func @no_ids(%q: tensor<1x?x4x16xf32>) -> tensor<1x?x4x16xf32> {
  return %q : tensor<1x?x4x16xf32>
}
