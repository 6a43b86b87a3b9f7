// The CUDA target instantiates the kernel library for each supported op and
// compiles every distinct kernel through NVRTC for each requested arch plus
// PTX; equal instantiations share a kernel; images come from the cache the
// second time; ptxas' resource usage is read back into the manifest.
// REQUIRES: nvrtc
// RUN: rm -rf %t.cache
// RUN: kiln-compile %s --target=cuda --kernel-cache=%t.cache --weights=reference -o %t.kiln 2>&1 | FileCheck %s --check-prefix=FIRST
// RUN: kiln-compile %s --target=cuda --kernel-cache=%t.cache --weights=reference --report -o %t2.kiln 2>&1 | FileCheck %s --check-prefix=AGAIN
// RUN: cmp %t.kiln %t2.kiln
// RUN: kiln-compile %s --target=cuda --kernel-cache=%t.cache --emit=manifest --quiet -o - | FileCheck %s --check-prefix=MANIFEST
// RUN: kiln-compile %s --target=cuda --cuda-arch=sm_90a --cuda-ptx=none --kernel-cache=none --emit=manifest --quiet -o - | FileCheck %s --check-prefix=ONE
// RUN: not kiln-compile %s --target=cuda --cuda-arch=compute_80 --kernel-cache=none --emit=manifest --quiet -o - 2>&1 | FileCheck %s --check-prefix=BADARCH
// RUN: not kiln-compile %s --target=cuda --cuda-ptx=sm_90 --kernel-cache=none --emit=manifest --quiet -o - 2>&1 | FileCheck %s --check-prefix=BADPTX
// RUN: not kiln-compile %s --target=tpu --emit=manifest --quiet -o - 2>&1 | FileCheck %s --check-prefix=BADTARGET

// Four kernels (the two rms_norms share one) for five launches; the matmul
// has none yet and says so.
// FIRST: image 1/16:
// FIRST: image 16/16:
// FIRST: cuda {{.*}} 4 kernels for 5 of 6 launches; 16 images ({{.*}}) for sm_80,sm_89,sm_90a+compute_90: 16 compiled, 0 from the cache
// AGAIN-NOT: image 1/
// AGAIN: 4 kernels for 5 of 6 launches; 16 images ({{.*}}) for {{.*}}: 0 compiled, 16 from the cache
// AGAIN: CUDA kernels (entry, launches, per arch: registers / spill bytes / static shared bytes):
// AGAIN-NEXT: kiln_embedding_bf16_64_{{[0-9a-f]+}}  kiln.embedding x1:  sm_80 {{[0-9]+}}/0/0  sm_89 {{[0-9]+}}/0/0  sm_90a {{[0-9]+}}/0/0
// AGAIN-NEXT: kiln_rms_norm_bf16_64_{{[0-9a-f]+}}  kiln.rms_norm x2:  sm_80 {{[0-9]+}}/0/32
// AGAIN-NEXT: kiln_add_rms_norm_bf16_64_{{[0-9a-f]+}}  kiln.add_rms_norm x1:
// AGAIN-NEXT: kiln_elementwise_bf16_{{[0-9a-f]+}}  kiln.elementwise x1:
// AGAIN-NEXT: launches without a CUDA kernel (they run on the CPU backend):
// AGAIN-NEXT: kiln.matmul x1: no kernel in the CUDA library yet

// MANIFEST: "cuda": {
// MANIFEST-NEXT: "archs": [
// MANIFEST-NEXT: "sm_80",
// MANIFEST-NEXT: "sm_89",
// MANIFEST-NEXT: "sm_90a"
// MANIFEST-NEXT: ],
// MANIFEST-NEXT: "kernels": [
// MANIFEST-NEXT: {
// MANIFEST-NEXT: "block": 256,
// MANIFEST-NEXT: "entry": "kiln_embedding_bf16_64_{{[0-9a-f]+}}",
// MANIFEST-NEXT: "grid": {
// MANIFEST-NEXT: "cols": 64,
// MANIFEST-NEXT: "rule": "rows"
// MANIFEST-NEXT: },
// MANIFEST-NEXT: "images": [
// MANIFEST-NEXT: {
// MANIFEST-NEXT: "arch": "sm_80",
// MANIFEST-NEXT: "format": "cubin",
// MANIFEST-NEXT: "offset": 0,
// MANIFEST-NEXT: "registers": {{[1-9][0-9]*}},
// MANIFEST-NEXT: "shared_bytes": 0,
// MANIFEST-NEXT: "size": {{[1-9][0-9]*}},
// MANIFEST-NEXT: "spill_bytes": 0,
// MANIFEST-NEXT: "stack_bytes": 0
// MANIFEST: "arch": "compute_90",
// MANIFEST-NEXT: "format": "ptx",
// MANIFEST: "entry": "kiln_elementwise_bf16_{{[0-9a-f]+}}",
// MANIFEST-NEXT: "grid": {
// MANIFEST-NEXT: "rule": "elements"
// MANIFEST: "nvrtc": "{{[0-9]+\.[0-9]+}}",
// MANIFEST-NEXT: "ptx": "compute_90"
// MANIFEST: "launches": [
// MANIFEST: "cuda": 0,
// MANIFEST-NEXT: "in": [
// MANIFEST: "op": "embedding",
// MANIFEST: "cuda": 1,
// MANIFEST: "op": "rms_norm",
// MANIFEST: "cuda": 2,
// MANIFEST: "op": "add_rms_norm",
// MANIFEST: "cuda": 1,
// MANIFEST: "op": "rms_norm",
// MANIFEST: "cuda": 3,
// MANIFEST: "op": "elementwise",
// MANIFEST-NOT: "cuda":
// MANIFEST: "op": "matmul",
// MANIFEST: "target": "cuda"

// ONE: "archs": [
// ONE-NEXT: "sm_90a"
// ONE-NEXT: ],
// ONE-NOT: compute_90
// ONE: "ptx": ""

// BADARCH: error: CUDA architecture 'compute_80' is not a real architecture (sm_80, sm_90a...)
// BADPTX: error: PTX architecture 'sm_90' is not a virtual architecture (compute_90...)
// BADTARGET: error: unknown target 'tpu' (the targets are 'cpu' and 'cuda')

module {
  kiln.weight_decl @table : tensor<100x64xbf16> at #kiln.external<"m.bin", offset = 0, length = 12800>
  kiln.weight_decl @w1 : tensor<64xbf16> at #kiln.external<"m.bin", offset = 12800, length = 128>
  kiln.weight_decl @w2 : tensor<64xbf16> at #kiln.external<"m.bin", offset = 12928, length = 128>
  kiln.weight_decl @proj : tensor<64x64xbf16> at #kiln.external<"m.bin", offset = 13056, length = 8192>
  func.func @forward(%ids: tensor<?x?xi64>) -> (tensor<?x?x64xbf16>, tensor<?x?x64xbf16>) {
    %t = kiln.weight @table : tensor<100x64xbf16>
    %w1 = kiln.weight @w1 : tensor<64xbf16>
    %w2 = kiln.weight @w2 : tensor<64xbf16>
    %p = kiln.weight @proj : tensor<64x64xbf16>
    %h = kiln.embedding %t, %ids : tensor<100x64xbf16>, tensor<?x?xi64> -> tensor<?x?x64xbf16>
    %n = kiln.rms_norm %h, %w1 {epsilon = 1.0e-06 : f32} : tensor<?x?x64xbf16>, tensor<64xbf16> -> tensor<?x?x64xbf16>
    %s, %n2 = kiln.add_rms_norm %h, %n, %w2 {epsilon = 1.0e-05 : f32} : tensor<?x?x64xbf16>, tensor<64xbf16>
    %n3 = kiln.rms_norm %n2, %w1 {epsilon = 1.0e-06 : f32} : tensor<?x?x64xbf16>, tensor<64xbf16> -> tensor<?x?x64xbf16>
    %g = kiln.elementwise %n3, %w1 : (tensor<?x?x64xbf16>, tensor<64xbf16>) -> tensor<?x?x64xbf16> {
    ^bb0(%a: bf16, %b: bf16):
      %c = arith.constant 5.000000e-01 : bf16
      %0 = arith.mulf %a, %b : bf16
      %1 = math.tanh %0 : bf16
      %2 = arith.addf %1, %c : bf16
      kiln.yield %2 : bf16
    }
    %y = kiln.matmul %g, %p : tensor<?x?x64xbf16>, tensor<64x64xbf16> -> tensor<?x?x64xbf16>
    return %s, %y : tensor<?x?x64xbf16>, tensor<?x?x64xbf16>
  }
}
