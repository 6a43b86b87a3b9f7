// RUN: kiln-opt %s '--kiln-quantize-weights=scheme=w4a16 group=64' --split-input-file --verify-diagnostics
// RUN: not kiln-opt %s '--kiln-quantize-weights=scheme=w2a16' 2>&1 | FileCheck %s --check-prefix=SCHEME
// RUN: not kiln-opt %s '--kiln-quantize-weights=scheme=w4a16 group=7' 2>&1 | FileCheck %s --check-prefix=ODD
// RUN: not kiln-opt %s '--kiln-quantize-weights=scheme=w8a16 zero-points=1' 2>&1 | FileCheck %s --check-prefix=ZP8
// RUN: not kiln-opt %s '--kiln-quantize-weights=exclude=(' 2>&1 | FileCheck %s --check-prefix=REGEX
// RUN: not kiln-opt %s '--kiln-quantize-weights=scheme=fp8 weight-scales=row' 2>&1 | FileCheck %s --check-prefix=WSCALES
// RUN: not kiln-opt %s '--kiln-quantize-weights=scheme=fp8 activations=head' 2>&1 | FileCheck %s --check-prefix=ACTS
// RUN: not kiln-opt %s '--kiln-quantize-weights=scheme=w8a16 activations=tensor' 2>&1 | FileCheck %s --check-prefix=ACTW8
// RUN: not kiln-opt %s '--kiln-quantize-weights=scheme=fp8 zero-points=1' 2>&1 | FileCheck %s --check-prefix=ZPF8

// SCHEME: error: unknown quantization scheme 'w2a16' (have: w8a16, w4a16, fp8, w4a4)
// ODD: error: w4a16 group size 7 must be an even number >= 2
// ZP8: error: w8a16 is symmetric; zero-points applies to w4a16
// REGEX: error: exclude pattern '(' is not a regular expression
// WSCALES: error: weight-scales='row': expected channel or tensor
// ACTS: error: activations='head': expected token or tensor
// ACTW8: error: weight-scales and activations apply to fp8 (scheme is w8a16)
// ZPF8: error: fp8 is symmetric; zero-points applies to w4a16

// A group that does not divide K is refused, naming the weight.
module {
  kiln.weight_decl @o_proj : tensor<96x32xf32>
  func.func @f(%x: tensor<?x96xf32>) -> tensor<?x32xf32> {
    %w = kiln.weight @o_proj : tensor<96x32xf32>
    // expected-error @+1 {{w4a16 group size 64 does not divide K = 96 of weight 'o_proj' (pick a group that divides it, or exclude the weight)}}
    %y = kiln.matmul %x, %w : tensor<?x96xf32>, tensor<96x32xf32> -> tensor<?x32xf32>
    return %y : tensor<?x32xf32>
  }
}
