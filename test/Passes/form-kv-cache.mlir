// RUN: kiln-opt %s --kiln-form-kv-cache --split-input-file | FileCheck %s
// RUN: kiln-opt %s --kiln-form-kv-cache="verbose=true" --split-input-file -o /dev/null 2>&1 | FileCheck %s --check-prefix=WHY

// One layer as the torch exporters write it: past ++ new along the sequence,
// transposed to BSHD for attention, returned as the present; the past's
// shape read for positions. One cache argument and result replace the four
// tensors; attention reads the appended cache; the shape comes from it.
// CHECK-LABEL: func.func @torch_layer
// CHECK-SAME: (%[[Q:.+]]: tensor<?x?x4x16xf32> {kiln.io_index = 0 : i64}, %[[C:.+]]: !kv_cache {kiln.cache_io = {key = {kiln.io_index = 1 : i64, kiln.kv = {kind = "key", layer = 0 : i64, role = "past"}, kiln.name = "past.0.key"}, key_type = tensor<?x2x?x16xf32>, value = {kiln.io_index = 2 : i64, kiln.kv = {kind = "value", layer = 0 : i64, role = "past"}, kiln.name = "past.0.value"}, value_type = tensor<?x2x?x16xf32>}, kiln.kv = {layer = 0 : i64, role = "cache"}}, %[[K:[^:]+]]: tensor<?x2x?x16xf32> {kiln.io_index = 3 : i64}, %[[V:[^:]+]]: tensor<?x2x?x16xf32> {kiln.io_index = 4 : i64})
// CHECK-SAME: -> (tensor<?x?x4x16xf32> {kiln.io_index = 0 : i64}, !kv_cache {kiln.cache_io = {key = {kiln.io_index = 1 : i64, {{.*}}kiln.name = "present.0.key"}, key_type = tensor<?x2x?x16xf32>, value = {kiln.io_index = 2 : i64, {{.*}}kiln.name = "present.0.value"}, value_type = tensor<?x2x?x16xf32>}, kiln.kv = {layer = 0 : i64, role = "cache"}}, tensor<4xi64> {kiln.io_index = 3 : i64})
// CHECK-DAG: %[[PERM:.+]] = arith.constant dense<[0, 2, 1, 3]> : tensor<4xi64>
// CHECK-DAG: %[[SHAPE:.+]] = kiln.shape_of %[[C]] : !kv_cache -> tensor<4xi64>
// CHECK-DAG: %[[PAST:.+]] = kiln.gather %[[SHAPE]][%[[PERM]]] {axis = 0 : i64}
// CHECK-DAG: %[[KB:.+]] = kiln.transpose %[[K]] [0, 2, 1, 3] : tensor<?x2x?x16xf32> -> tensor<?x?x2x16xf32>
// CHECK-DAG: %[[VB:.+]] = kiln.transpose %[[V]] [0, 2, 1, 3]
// CHECK-DAG: %[[C1:.+]] = kiln.kv_cache_append %[[C]], %[[KB]], %[[VB]] : !kv_cache, tensor<?x?x2x16xf32>, tensor<?x?x2x16xf32>
// CHECK: %[[O:.+]] = kiln.attention %[[Q]] cache(%[[C1]]) {mask = #kiln.mask<causal>, scale = 2.500000e-01 : f32} : (tensor<?x?x4x16xf32>, !kv_cache) -> tensor<?x?x4x16xf32>
// CHECK-NOT: kiln.concat
// CHECK: return %[[O]], %[[C1]], %[[PAST]] : tensor<?x?x4x16xf32>, !kv_cache, tensor<4xi64>
func.func @torch_layer(%q: tensor<?x?x4x16xf32>,
    %pk: tensor<?x2x?x16xf32> {kiln.kv = {kind = "key", layer = 0 : i64, role = "past"}, kiln.name = "past.0.key"},
    %pv: tensor<?x2x?x16xf32> {kiln.kv = {kind = "value", layer = 0 : i64, role = "past"}, kiln.name = "past.0.value"},
    %k: tensor<?x2x?x16xf32>, %v: tensor<?x2x?x16xf32>)
    -> (tensor<?x?x4x16xf32>,
        tensor<?x2x?x16xf32> {kiln.kv = {kind = "key", layer = 0 : i64, role = "present"}, kiln.name = "present.0.key"},
        tensor<?x2x?x16xf32> {kiln.kv = {kind = "value", layer = 0 : i64, role = "present"}, kiln.name = "present.0.value"},
        tensor<4xi64>) {
  %s = kiln.shape_of %pk : tensor<?x2x?x16xf32> -> tensor<4xi64>
  %ck = kiln.concat %pk, %k {axis = -2 : i64} : (tensor<?x2x?x16xf32>, tensor<?x2x?x16xf32>) -> tensor<?x2x?x16xf32>
  %cv = kiln.concat %pv, %v {axis = -2 : i64} : (tensor<?x2x?x16xf32>, tensor<?x2x?x16xf32>) -> tensor<?x2x?x16xf32>
  %kb = kiln.transpose %ck [0, 2, 1, 3] : tensor<?x2x?x16xf32> -> tensor<?x?x2x16xf32>
  %vb = kiln.transpose %cv [0, 2, 1, 3] : tensor<?x2x?x16xf32> -> tensor<?x?x2x16xf32>
  %o = kiln.attention %q kv(%kb, %vb) {mask = #kiln.mask<causal>, scale = 0.25 : f32} : (tensor<?x?x4x16xf32>, tensor<?x?x2x16xf32>, tensor<?x?x2x16xf32>) -> tensor<?x?x4x16xf32>
  return %o, %ck, %cv, %s : tensor<?x?x4x16xf32>, tensor<?x2x?x16xf32>, tensor<?x2x?x16xf32>, tensor<4xi64>
}

// -----

// onnxruntime-genai order (all keys, then all values) and a shape_of of the
// present (the total length for the mask): two caches, each where its past
// key was; the present's shape is the appended cache's, read after the
// append.
// CHECK: !kv_cache = !kiln.kv_cache<contiguous, bf16, kv_heads = 2, head_dim = 8>
// CHECK-LABEL: func.func @genai_two_layers
// CHECK-SAME: (%[[Q:[^:]+]]: tensor<1x?x4x8xbf16> {{[^,]*}}, %[[C0:[^:]+]]: !kv_cache {kiln.cache_io = {key = {kiln.io_index = 1 : i64, {{.*}}kiln.name = "past.0.key"}, key_type = tensor<1x2x?x8xbf16>, value = {kiln.io_index = 3 : i64, {{.*}}kiln.name = "past.0.value"}{{.*}}, %[[C1:[^:]+]]: !kv_cache {kiln.cache_io = {key = {kiln.io_index = 2 : i64, {{.*}}kiln.name = "past.1.key"}{{.*}}value = {kiln.io_index = 4 : i64, {{.*}}kiln.name = "past.1.value"
// CHECK-DAG: %[[A0:.+]] = kiln.kv_cache_append %[[C0]]
// CHECK-DAG: %[[A1:.+]] = kiln.kv_cache_append %[[C1]]
// CHECK-DAG: %[[S:.+]] = kiln.shape_of %[[A0]]
// CHECK-DAG: kiln.gather %[[S]]
// CHECK: kiln.attention %[[Q]] cache(%[[A0]])
// CHECK: kiln.attention %{{.+}} cache(%[[A1]])
// CHECK: return %{{.+}}, %[[A0]], %[[A1]], %{{.+}} :
func.func @genai_two_layers(%q: tensor<1x?x4x8xbf16>,
    %pk0: tensor<1x2x?x8xbf16> {kiln.kv = {kind = "key", layer = 0 : i64, role = "past"}, kiln.name = "past.0.key"},
    %pk1: tensor<1x2x?x8xbf16> {kiln.kv = {kind = "key", layer = 1 : i64, role = "past"}, kiln.name = "past.1.key"},
    %pv0: tensor<1x2x?x8xbf16> {kiln.kv = {kind = "value", layer = 0 : i64, role = "past"}, kiln.name = "past.0.value"},
    %pv1: tensor<1x2x?x8xbf16> {kiln.kv = {kind = "value", layer = 1 : i64, role = "past"}, kiln.name = "past.1.value"},
    %k: tensor<1x2x?x8xbf16>, %v: tensor<1x2x?x8xbf16>)
    -> (tensor<1x?x4x8xbf16>,
        tensor<1x2x?x8xbf16> {kiln.kv = {kind = "key", layer = 0 : i64, role = "present"}, kiln.name = "present.0.key"},
        tensor<1x2x?x8xbf16> {kiln.kv = {kind = "key", layer = 1 : i64, role = "present"}, kiln.name = "present.1.key"},
        tensor<1x2x?x8xbf16> {kiln.kv = {kind = "value", layer = 0 : i64, role = "present"}, kiln.name = "present.0.value"},
        tensor<1x2x?x8xbf16> {kiln.kv = {kind = "value", layer = 1 : i64, role = "present"}, kiln.name = "present.1.value"},
        tensor<4xi64>) {
  %ck0 = kiln.concat %pk0, %k {axis = 2 : i64} : (tensor<1x2x?x8xbf16>, tensor<1x2x?x8xbf16>) -> tensor<1x2x?x8xbf16>
  %cv0 = kiln.concat %pv0, %v {axis = 2 : i64} : (tensor<1x2x?x8xbf16>, tensor<1x2x?x8xbf16>) -> tensor<1x2x?x8xbf16>
  %s = kiln.shape_of %ck0 : tensor<1x2x?x8xbf16> -> tensor<4xi64>
  %kb0 = kiln.transpose %ck0 [0, 2, 1, 3] : tensor<1x2x?x8xbf16> -> tensor<1x?x2x8xbf16>
  %vb0 = kiln.transpose %cv0 [0, 2, 1, 3] : tensor<1x2x?x8xbf16> -> tensor<1x?x2x8xbf16>
  %o0 = kiln.attention %q kv(%kb0, %vb0) {mask = #kiln.mask<causal>} : (tensor<1x?x4x8xbf16>, tensor<1x?x2x8xbf16>, tensor<1x?x2x8xbf16>) -> tensor<1x?x4x8xbf16>
  %ck1 = kiln.concat %pk1, %k {axis = 2 : i64} : (tensor<1x2x?x8xbf16>, tensor<1x2x?x8xbf16>) -> tensor<1x2x?x8xbf16>
  %cv1 = kiln.concat %pv1, %v {axis = 2 : i64} : (tensor<1x2x?x8xbf16>, tensor<1x2x?x8xbf16>) -> tensor<1x2x?x8xbf16>
  %kb1 = kiln.transpose %ck1 [0, 2, 1, 3] : tensor<1x2x?x8xbf16> -> tensor<1x?x2x8xbf16>
  %vb1 = kiln.transpose %cv1 [0, 2, 1, 3] : tensor<1x2x?x8xbf16> -> tensor<1x?x2x8xbf16>
  %o1 = kiln.attention %o0 kv(%kb1, %vb1) {mask = #kiln.mask<causal>} : (tensor<1x?x4x8xbf16>, tensor<1x?x2x8xbf16>, tensor<1x?x2x8xbf16>) -> tensor<1x?x4x8xbf16>
  return %o1, %ck0, %ck1, %cv0, %cv1, %s : tensor<1x?x4x8xbf16>, tensor<1x2x?x8xbf16>, tensor<1x2x?x8xbf16>, tensor<1x2x?x8xbf16>, tensor<1x2x?x8xbf16>, tensor<4xi64>
}

// -----

// Near-miss: the past is also read by something other than the concat (a
// model that uses the old keys elsewhere); the tensors must stay.
// CHECK-LABEL: func.func @past_read_elsewhere
// CHECK: kiln.concat %arg1
// CHECK-NOT: kv_cache_append
// WHY: remark: KV cache not formed: layer 0: the past key is read by kiln.neg, not only by one concat along the sequence and shape_of
func.func @past_read_elsewhere(%q: tensor<?x?x2x16xf32>,
    %pk: tensor<?x2x?x16xf32> {kiln.kv = {kind = "key", layer = 0 : i64, role = "past"}, kiln.name = "pk"},
    %pv: tensor<?x2x?x16xf32> {kiln.kv = {kind = "value", layer = 0 : i64, role = "past"}, kiln.name = "pv"},
    %k: tensor<?x2x?x16xf32>, %v: tensor<?x2x?x16xf32>)
    -> (tensor<?x?x2x16xf32>,
        tensor<?x2x?x16xf32> {kiln.kv = {kind = "key", layer = 0 : i64, role = "present"}, kiln.name = "ck"},
        tensor<?x2x?x16xf32> {kiln.kv = {kind = "value", layer = 0 : i64, role = "present"}, kiln.name = "cv"},
        tensor<?x2x?x16xf32>) {
  %n = kiln.neg %pk : tensor<?x2x?x16xf32>
  %ck = kiln.concat %pk, %k {axis = 2 : i64} : (tensor<?x2x?x16xf32>, tensor<?x2x?x16xf32>) -> tensor<?x2x?x16xf32>
  %cv = kiln.concat %pv, %v {axis = 2 : i64} : (tensor<?x2x?x16xf32>, tensor<?x2x?x16xf32>) -> tensor<?x2x?x16xf32>
  %kb = kiln.transpose %ck [0, 2, 1, 3] : tensor<?x2x?x16xf32> -> tensor<?x?x2x16xf32>
  %vb = kiln.transpose %cv [0, 2, 1, 3] : tensor<?x2x?x16xf32> -> tensor<?x?x2x16xf32>
  %o = kiln.attention %q kv(%kb, %vb) {mask = #kiln.mask<causal>} : (tensor<?x?x2x16xf32>, tensor<?x?x2x16xf32>, tensor<?x?x2x16xf32>) -> tensor<?x?x2x16xf32>
  return %o, %ck, %cv, %n : tensor<?x?x2x16xf32>, tensor<?x2x?x16xf32>, tensor<?x2x?x16xf32>, tensor<?x2x?x16xf32>
}

// -----

// Near-miss: concatenated along the head axis, not the sequence.
// CHECK-LABEL: func.func @wrong_axis
// CHECK-NOT: kv_cache_append
// WHY: remark: KV cache not formed: layer 0: the past key is read by kiln.concat, not only by one concat along the sequence and shape_of
func.func @wrong_axis(%q: tensor<?x?x4x16xf32>,
    %pk: tensor<?x2x?x16xf32> {kiln.kv = {kind = "key", layer = 0 : i64, role = "past"}, kiln.name = "pk"},
    %pv: tensor<?x2x?x16xf32> {kiln.kv = {kind = "value", layer = 0 : i64, role = "past"}, kiln.name = "pv"},
    %k: tensor<?x2x?x16xf32>, %v: tensor<?x2x?x16xf32>)
    -> (tensor<?x?x4x16xf32>,
        tensor<?x4x?x16xf32> {kiln.kv = {kind = "key", layer = 0 : i64, role = "present"}, kiln.name = "ck"},
        tensor<?x4x?x16xf32> {kiln.kv = {kind = "value", layer = 0 : i64, role = "present"}, kiln.name = "cv"}) {
  %ck = kiln.concat %pk, %k {axis = 1 : i64} : (tensor<?x2x?x16xf32>, tensor<?x2x?x16xf32>) -> tensor<?x4x?x16xf32>
  %cv = kiln.concat %pv, %v {axis = 1 : i64} : (tensor<?x2x?x16xf32>, tensor<?x2x?x16xf32>) -> tensor<?x4x?x16xf32>
  %kb = kiln.transpose %ck [0, 2, 1, 3] : tensor<?x4x?x16xf32> -> tensor<?x?x4x16xf32>
  %vb = kiln.transpose %cv [0, 2, 1, 3] : tensor<?x4x?x16xf32> -> tensor<?x?x4x16xf32>
  %o = kiln.attention %q kv(%kb, %vb) {mask = #kiln.mask<causal>} : (tensor<?x?x4x16xf32>, tensor<?x?x4x16xf32>, tensor<?x?x4x16xf32>) -> tensor<?x?x4x16xf32>
  return %o, %ck, %cv : tensor<?x?x4x16xf32>, tensor<?x4x?x16xf32>, tensor<?x4x?x16xf32>
}

// -----

// Near-miss: the present feeds something besides attention (here a
// reduction of the whole history): appending in place would change it.
// CHECK-LABEL: func.func @present_read_elsewhere
// CHECK-NOT: kv_cache_append
// WHY: remark: KV cache not formed: layer 0: the present is read by kiln.reduce, not only by attention
func.func @present_read_elsewhere(%q: tensor<?x?x2x16xf32>,
    %pk: tensor<?x2x?x16xf32> {kiln.kv = {kind = "key", layer = 0 : i64, role = "past"}, kiln.name = "pk"},
    %pv: tensor<?x2x?x16xf32> {kiln.kv = {kind = "value", layer = 0 : i64, role = "past"}, kiln.name = "pv"},
    %k: tensor<?x2x?x16xf32>, %v: tensor<?x2x?x16xf32>)
    -> (tensor<?x?x2x16xf32>,
        tensor<?x2x?x16xf32> {kiln.kv = {kind = "key", layer = 0 : i64, role = "present"}, kiln.name = "ck"},
        tensor<?x2x?x16xf32> {kiln.kv = {kind = "value", layer = 0 : i64, role = "present"}, kiln.name = "cv"},
        tensor<?x2x1x16xf32>) {
  %ck = kiln.concat %pk, %k {axis = 2 : i64} : (tensor<?x2x?x16xf32>, tensor<?x2x?x16xf32>) -> tensor<?x2x?x16xf32>
  %cv = kiln.concat %pv, %v {axis = 2 : i64} : (tensor<?x2x?x16xf32>, tensor<?x2x?x16xf32>) -> tensor<?x2x?x16xf32>
  %r = kiln.reduce sum %ck {axes = array<i64: 2>, keep_dims} : tensor<?x2x?x16xf32> -> tensor<?x2x1x16xf32>
  %kb = kiln.transpose %ck [0, 2, 1, 3] : tensor<?x2x?x16xf32> -> tensor<?x?x2x16xf32>
  %vb = kiln.transpose %cv [0, 2, 1, 3] : tensor<?x2x?x16xf32> -> tensor<?x?x2x16xf32>
  %o = kiln.attention %q kv(%kb, %vb) {mask = #kiln.mask<causal>} : (tensor<?x?x2x16xf32>, tensor<?x?x2x16xf32>, tensor<?x?x2x16xf32>) -> tensor<?x?x2x16xf32>
  return %o, %ck, %cv, %r : tensor<?x?x2x16xf32>, tensor<?x2x?x16xf32>, tensor<?x2x?x16xf32>, tensor<?x2x1x16xf32>
}

// -----

// Near-miss: attention takes this layer's keys with another layer's values.
// CHECK-LABEL: func.func @mixed_layers
// CHECK-NOT: kv_cache_append
// WHY: remark: KV cache not formed: layer 0: an attention reads the key cache with other values
func.func @mixed_layers(%q: tensor<?x?x2x16xf32>,
    %pk: tensor<?x2x?x16xf32> {kiln.kv = {kind = "key", layer = 0 : i64, role = "past"}, kiln.name = "pk"},
    %pv: tensor<?x2x?x16xf32> {kiln.kv = {kind = "value", layer = 0 : i64, role = "past"}, kiln.name = "pv"},
    %k: tensor<?x2x?x16xf32>, %v: tensor<?x2x?x16xf32>, %other: tensor<?x?x2x16xf32>)
    -> (tensor<?x?x2x16xf32>,
        tensor<?x2x?x16xf32> {kiln.kv = {kind = "key", layer = 0 : i64, role = "present"}, kiln.name = "ck"},
        tensor<?x2x?x16xf32> {kiln.kv = {kind = "value", layer = 0 : i64, role = "present"}, kiln.name = "cv"}) {
  %ck = kiln.concat %pk, %k {axis = 2 : i64} : (tensor<?x2x?x16xf32>, tensor<?x2x?x16xf32>) -> tensor<?x2x?x16xf32>
  %cv = kiln.concat %pv, %v {axis = 2 : i64} : (tensor<?x2x?x16xf32>, tensor<?x2x?x16xf32>) -> tensor<?x2x?x16xf32>
  %kb = kiln.transpose %ck [0, 2, 1, 3] : tensor<?x2x?x16xf32> -> tensor<?x?x2x16xf32>
  %vb = kiln.transpose %cv [0, 2, 1, 3] : tensor<?x2x?x16xf32> -> tensor<?x?x2x16xf32>
  %o = kiln.attention %q kv(%kb, %other) {mask = #kiln.mask<causal>} : (tensor<?x?x2x16xf32>, tensor<?x?x2x16xf32>, tensor<?x?x2x16xf32>) -> tensor<?x?x2x16xf32>
  %o2 = kiln.attention %o kv(%vb, %vb) {mask = #kiln.mask<causal>} : (tensor<?x?x2x16xf32>, tensor<?x?x2x16xf32>, tensor<?x?x2x16xf32>) -> tensor<?x?x2x16xf32>
  return %o2, %ck, %cv : tensor<?x?x2x16xf32>, tensor<?x2x?x16xf32>, tensor<?x2x?x16xf32>
}

// -----

// Near-miss: a windowed cache (GroupQueryAttention's sliding_window_cache,
// fixed capacity, compacted by the graph) is not a growing concat: skipped
// without a remark. A dynamic head dim cannot type a cache either.
// CHECK-LABEL: func.func @windowed
// CHECK-NOT: kv_cache_append
// WHY-NOT: remark
// WHY: remark: KV cache not formed: layer 1: the presents are not f32/f16/bf16 [B, H, T, D] with static heads and head dims
func.func @windowed(%q: tensor<?x?x2x16xf32>,
    %pk: tensor<?x2x?x16xf32> {kiln.kv = {kind = "key", layer = 0 : i64, role = "past", window = 4 : i64}, kiln.name = "pk"},
    %pv: tensor<?x2x?x16xf32> {kiln.kv = {kind = "value", layer = 0 : i64, role = "past", window = 4 : i64}, kiln.name = "pv"},
    %pk1: tensor<?x2x?x?xf32> {kiln.kv = {kind = "key", layer = 1 : i64, role = "past"}, kiln.name = "pk1"},
    %pv1: tensor<?x2x?x?xf32> {kiln.kv = {kind = "value", layer = 1 : i64, role = "past"}, kiln.name = "pv1"},
    %k: tensor<?x2x?x16xf32>, %v: tensor<?x2x?x16xf32>, %kd: tensor<?x2x?x?xf32>)
    -> (tensor<?x?x2x16xf32>,
        tensor<?x2x?x16xf32> {kiln.kv = {kind = "key", layer = 0 : i64, role = "present", window = 4 : i64}, kiln.name = "ck"},
        tensor<?x2x?x16xf32> {kiln.kv = {kind = "value", layer = 0 : i64, role = "present", window = 4 : i64}, kiln.name = "cv"},
        tensor<?x2x?x?xf32> {kiln.kv = {kind = "key", layer = 1 : i64, role = "present"}, kiln.name = "ck1"},
        tensor<?x2x?x?xf32> {kiln.kv = {kind = "value", layer = 1 : i64, role = "present"}, kiln.name = "cv1"}) {
  %ck = kiln.concat %pk, %k {axis = 2 : i64} : (tensor<?x2x?x16xf32>, tensor<?x2x?x16xf32>) -> tensor<?x2x?x16xf32>
  %cv = kiln.concat %pv, %v {axis = 2 : i64} : (tensor<?x2x?x16xf32>, tensor<?x2x?x16xf32>) -> tensor<?x2x?x16xf32>
  %kb = kiln.transpose %ck [0, 2, 1, 3] : tensor<?x2x?x16xf32> -> tensor<?x?x2x16xf32>
  %vb = kiln.transpose %cv [0, 2, 1, 3] : tensor<?x2x?x16xf32> -> tensor<?x?x2x16xf32>
  %o = kiln.attention %q kv(%kb, %vb) {mask = #kiln.mask<causal>} : (tensor<?x?x2x16xf32>, tensor<?x?x2x16xf32>, tensor<?x?x2x16xf32>) -> tensor<?x?x2x16xf32>
  %ck1 = kiln.concat %pk1, %kd {axis = 2 : i64} : (tensor<?x2x?x?xf32>, tensor<?x2x?x?xf32>) -> tensor<?x2x?x?xf32>
  %cv1 = kiln.concat %pv1, %kd {axis = 2 : i64} : (tensor<?x2x?x?xf32>, tensor<?x2x?x?xf32>) -> tensor<?x2x?x?xf32>
  return %o, %ck, %cv, %ck1, %cv1 : tensor<?x?x2x16xf32>, tensor<?x2x?x16xf32>, tensor<?x2x?x16xf32>, tensor<?x2x?x?xf32>, tensor<?x2x?x?xf32>
}
