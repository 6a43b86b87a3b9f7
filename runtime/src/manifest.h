// The artifact's manifest (docs/artifact-format.md, "Manifest"), decoded and
// validated once at load: every index is in range, every launch reads only
// values defined before it, every placement lies inside its storage. After
// Parse succeeds the executor trusts these structures.
#ifndef KILN_RUNTIME_MANIFEST_H_
#define KILN_RUNTIME_MANIFEST_H_

#include <cstdint>
#include <string>
#include <vector>

#include "cpu/kernel.h"
#include "kiln/runtime/api.h"

namespace kiln {

constexpr int kManifestSchemaVersion = 1;

struct ValueDesc {
  /// kKvCache: a !kiln.kv_cache, either a graph input (`cache_input`, bound
  /// from its past key/value inputs or by generation) or the result of a
  /// kv_cache_append, which shares its operand's storage.
  enum Kind { kInput, kWeight, kTemp, kQTensor, kKvCache } kind = kTemp;
  kiln_dtype_t dtype = KILN_DTYPE_INVALID;  // storage dtype for a qtensor
  Dims shape;                               // -1 = dynamic
  int weight = -1;                          // kWeight
  int64_t offset = -1;                      // kTemp in the arena
  int slot = -1;                            // kTemp in a slot
  int view_of = -1;                         // kTemp sharing another's storage
  int q_data = -1, q_scales = -1, q_zero = -1;  // kQTensor
  Dims block;
  kiln_dtype_t expressed = KILN_DTYPE_INVALID;
  // kKvCache: dtype is the element type appends take and attention reads;
  // `storage` what the runtime keeps (dtype, or i8 / i4 / f8E4M3FN with one
  // `scale_dtype` scale per token, head and `group` elements, 0 = the whole
  // head dim); paged caches hold `block_size` tokens per block.
  bool cache_input = false;
  int64_t kv_heads = 0, head_dim = 0, v_head_dim = 0;
  kiln_dtype_t storage = KILN_DTYPE_INVALID;
  kiln_dtype_t scale_dtype = KILN_DTYPE_INVALID;
  int64_t group = 0;
  bool paged = false;
  int64_t block_size = 0;
};

struct IoDesc {
  std::string name;
  int value = -1;
  kiln_dtype_t dtype = KILN_DTYPE_INVALID;
  Dims shape;
  std::vector<std::string> dims;  // one per dimension, "" when unnamed
  std::vector<const char*> dim_ptrs;
  std::string role;
  int layer = -1;
  /// > 0 for a windowed KV cache (past/present of a fixed capacity that
  /// holds at least this many recent positions, compacted at row 0).
  int64_t window = 0;
  /// For a KV tensor of a layer whose cache the graph updates in place:
  /// which half of the !kiln.kv_cache value `value` this tensor is. The
  /// tensor is [batch, kv_heads, tokens, head_dim] (an input fills the
  /// cache; an output is read from it).
  enum Part { kTensor, kKey, kValue } part = kTensor;
};

struct WeightDesc {
  std::string name;
  kiln_dtype_t dtype = KILN_DTYPE_INVALID;
  Dims shape;
  uint64_t size = 0;
  /// kPacked: built at load time by concatenating earlier weights `parts`
  /// along `axis` (sibling projections fused by the compiler, from whatever
  /// storage their parts have).
  enum Location { kEmbedded, kParams, kFile, kPacked } location = kEmbedded;
  uint64_t offset = 0;
  std::string file;
  bool constant = false;
  std::vector<int> parts;
  int axis = 0;
};

struct LaunchDesc {
  std::string op;
  std::vector<int> in;   // -1: an absent optional operand
  std::vector<int> out;
  std::vector<std::pair<int, int>> alias;  // (out, in) pairs that may share
  Attrs attrs;
  std::string loc;
  KernelFn fn = nullptr;
  int cuda = -1;  // index into Manifest::cuda_kernels, -1: none
};

/// One compiled image of a CUDA kernel in the artifact's kernels section.
struct CudaImageDesc {
  std::string arch;  // "sm_90a", or "compute_90" for PTX
  bool ptx = false;
  uint64_t offset = 0, size = 0;
  int registers = 0;
  int64_t shared_bytes = 0;
};

/// A CUDA kernel (kiln-compile --target=cuda): its entry point, the block
/// size it was compiled for, how the grid follows the launch's shapes, and
/// an image per architecture.
struct CudaKernelDesc {
  std::string entry, op;
  int block = 0;
  std::string grid_rule;  // "rows" (grid = elements of the result / cols) or "elements"
  int64_t grid_cols = 0;
  std::vector<CudaImageDesc> images;
};

struct ModelDesc {
  bool generation = false;
  std::string generation_unsupported;
  int64_t vocab_size = -1;
  std::vector<int64_t> eos;
  int64_t bos = -1, pad = -1;
  int64_t max_sequence_length = 0;
  bool left_padding = false;
  /// kiln-compile --ragged: one run may take many sequences' new tokens
  /// flattened as [1, N] (positions from position_ids, masks per sequence).
  bool ragged = false;
  int num_layers = 0;
  int64_t kv_heads = 0, head_dim = 0, v_head_dim = 0;
  kiln_dtype_t kv_dtype = KILN_DTYPE_INVALID;
};

struct Manifest {
  std::string target;
  std::string producer;  // the source model's producer
  ModelDesc model;
  std::vector<IoDesc> inputs, outputs;
  std::vector<WeightDesc> weights;
  std::vector<ValueDesc> values;
  std::vector<LaunchDesc> launches;
  int64_t arena_bytes = 0;
  int64_t alignment = 64;
  int slots = 0;
  std::string params_file;  // set for --weights=external
  /// CUDA kernels the artifact carries (kiln-compile --target=cuda); none:
  /// the artifact runs on the CPU only. Image ranges are checked against
  /// the kernels section when the model loads.
  std::vector<CudaKernelDesc> cuda_kernels;
  // For generation: input/output index by role, per layer.
  int input_ids = -1, attention_mask = -1, position_ids = -1, logits = -1;
  std::vector<int> past_key, past_value, present_key, present_value;
};

/// Decodes and validates `text`. DATA_LOSS names the JSON field that is
/// wrong; FAILED_PRECONDITION for another schema version; UNIMPLEMENTED for
/// a launch without a kernel in this runtime.
kiln_status_t ParseManifest(const char* text, size_t size, Manifest* out);

}  // namespace kiln

#endif  // KILN_RUNTIME_MANIFEST_H_
