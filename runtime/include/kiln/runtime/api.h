// The Kiln runtime's C API: the header products include.
//
// Conventions that hold for every function declared here:
//  - A fallible call returns a kiln_status_t; NULL means success. A non-NULL
//    status is owned by the caller, who must release it with kiln_status_free
//    (or kiln_status_ignore, which says the drop is deliberate).
//  - Results come back through trailing out_* pointers. On failure a value
//    result is reset to its zero value (KILN_DTYPE_INVALID, 0) and a pointer
//    result to NULL, so a caller never reads a stale or half-written result.
//  - Borrowed strings (const char* results) are never freed by the caller.
//  - No C++ exception crosses this boundary: the library is built with
//    -fno-exceptions and reports every failure as a status.
//  - Every function states its thread-safety. Nothing in this header touches
//    mutable global state.
//
// The header is plain C99 and may be included from C or C++.
#ifndef KILN_RUNTIME_API_H_
#define KILN_RUNTIME_API_H_

#include <stddef.h>
#include <stdint.h>

#include "kiln/runtime/config.h"

#ifdef __cplusplus
extern "C" {
#endif

//===----------------------------------------------------------------------===//
// Status
//===----------------------------------------------------------------------===//

/// Canonical error codes. The numeric values are a stable ABI and match
/// absl::StatusCode and IREE's iree_status_code_t, so codes map one to one
/// when a product bridges them.
typedef enum kiln_status_code_e {
  KILN_STATUS_OK = 0,
  KILN_STATUS_CANCELLED = 1,
  KILN_STATUS_UNKNOWN = 2,
  KILN_STATUS_INVALID_ARGUMENT = 3,
  KILN_STATUS_DEADLINE_EXCEEDED = 4,
  KILN_STATUS_NOT_FOUND = 5,
  KILN_STATUS_ALREADY_EXISTS = 6,
  KILN_STATUS_PERMISSION_DENIED = 7,
  KILN_STATUS_RESOURCE_EXHAUSTED = 8,
  KILN_STATUS_FAILED_PRECONDITION = 9,
  KILN_STATUS_ABORTED = 10,
  KILN_STATUS_OUT_OF_RANGE = 11,
  KILN_STATUS_UNIMPLEMENTED = 12,
  KILN_STATUS_INTERNAL = 13,
  KILN_STATUS_UNAVAILABLE = 14,
  KILN_STATUS_DATA_LOSS = 15,
} kiln_status_code_t;

/// The result of a fallible call: NULL for success, otherwise an opaque error
/// carrying a code, a message and the source location that raised it.
///
/// Ownership: the caller owns every non-NULL status it receives and releases
/// it exactly once with kiln_status_free.
/// Thread-safety: a status is immutable after creation, so any number of
/// threads may read it concurrently; freeing it must not race with a read.
typedef struct kiln_status_s* kiln_status_t;

/// Creates a status with a printf-style message.
///
/// Returns NULL when `code` is KILN_STATUS_OK (the message is then not
/// formatted). A `code` outside kiln_status_code_t is recorded as
/// KILN_STATUS_UNKNOWN. `file` (may be NULL, read as "") and the formatted
/// message are copied, so neither needs to outlive the call; `format` NULL
/// gives an empty message.
///
/// If memory runs out, returns a preallocated static status with code
/// KILN_STATUS_RESOURCE_EXHAUSTED and message "out of memory" (no source
/// location) in place of the requested one; kiln_status_free accepts it like
/// any other, so callers need no special case.
///
/// Ownership: the caller owns the result. Thread-safety: thread-safe.
KILN_API KILN_MUST_USE_RESULT kiln_status_t
kiln_status_allocate(kiln_status_code_t code, const char* file, int line,
                     const char* format, ...) KILN_PRINTF_FORMAT(4, 5);

/// Creates a status that records the caller's __FILE__ and __LINE__:
/// `return KILN_MAKE_STATUS(KILN_STATUS_NOT_FOUND, "no weight '%s'", name);`
#define KILN_MAKE_STATUS(code, ...) \
  kiln_status_allocate((code), __FILE__, __LINE__, __VA_ARGS__)

/// Releases `status`. NULL (success) is a no-op. Thread-safety: safe to call
/// concurrently on different statuses; a status is freed once, by one thread.
KILN_API void kiln_status_free(kiln_status_t status);

/// Releases `status`, saying in the source that dropping the error is
/// deliberate (for example in cleanup paths that already report an earlier
/// error).
#define kiln_status_ignore(status) kiln_status_free(status)

/// The code of `status`; KILN_STATUS_OK for NULL. Always a value of
/// kiln_status_code_t. Thread-safety: thread-safe.
KILN_API kiln_status_code_t kiln_status_code(kiln_status_t status);

/// The message of `status`, without code or location; "" for NULL or an empty
/// message. Ownership: borrowed from `status`, valid until it is freed (for
/// NULL, a static string). Thread-safety: thread-safe.
KILN_API const char* kiln_status_message(kiln_status_t status);

/// The source location that created `status`. Writes the file name to
/// `*out_file` and the line to `*out_line`; either pointer may be NULL to skip
/// that value. For NULL or a status created without a file: "" and 0.
/// Ownership: the file name is borrowed from `status`, valid until it is
/// freed. Thread-safety: thread-safe.
KILN_API void kiln_status_source_location(kiln_status_t status,
                                          const char** out_file, int* out_line);

/// Renders `status` as "CODE: message [file:line]" (for example
/// "NOT_FOUND: no weight 'w0' [loader.cc:42]"); ": message" is left out when
/// the message is empty and " [file:line]" when there is no file. NULL renders
/// as "OK".
///
/// Follows snprintf: writes at most `capacity` bytes into `buffer`, always
/// NUL-terminated when `capacity` > 0, truncating the text if it does not
/// fit; `buffer` may be NULL when `capacity` is 0 (a size query). Writes the
/// length of the whole text, without the terminator and regardless of
/// truncation, to `*out_length` unless it is NULL; the text fit iff
/// `*out_length < capacity`.
/// Thread-safety: thread-safe.
KILN_API void kiln_status_format(kiln_status_t status, char* buffer,
                                 size_t capacity, size_t* out_length);

/// The name of `code` as spelled in the enum without its prefix, such as
/// "INVALID_ARGUMENT"; "UNKNOWN_CODE" for a value outside kiln_status_code_t.
/// Ownership: static storage. Thread-safety: thread-safe.
KILN_API const char* kiln_status_code_string(kiln_status_code_t code);

//===----------------------------------------------------------------------===//
// Version
//===----------------------------------------------------------------------===//

/// The ABI version this header describes. It increases whenever the header
/// changes incompatibly (a changed signature, enum value or struct layout).
/// A product can check at startup that the library it loaded matches the
/// header it was compiled against:
/// `kiln_runtime_abi_version() == KILN_RUNTIME_ABI_VERSION`.
#define KILN_RUNTIME_ABI_VERSION 2u

/// The runtime's release version, "MAJOR.MINOR.PATCH". Ownership: static
/// storage. Thread-safety: thread-safe.
KILN_API const char* kiln_runtime_version_string(void);

/// The ABI version the loaded library implements (its
/// KILN_RUNTIME_ABI_VERSION). Thread-safety: thread-safe.
KILN_API uint32_t kiln_runtime_abi_version(void);

//===----------------------------------------------------------------------===//
// Element types
//===----------------------------------------------------------------------===//

/// Element types of tensors in artifacts and at the API.
///
/// The numeric values are a stable ABI: the compiler maps MLIR element types
/// to these codes and writes them into artifacts, so a value is never
/// renumbered or reused; new types get new values at the end.
typedef enum kiln_dtype_e {
  KILN_DTYPE_INVALID = 0,
  KILN_DTYPE_F32 = 1,
  KILN_DTYPE_F16 = 2,
  KILN_DTYPE_BF16 = 3,
  KILN_DTYPE_F64 = 4,
  KILN_DTYPE_F8E4M3FN = 5,
  KILN_DTYPE_F8E5M2 = 6,
  KILN_DTYPE_I1 = 7,  // bool, stored one byte per element (0 or 1)
  KILN_DTYPE_I4 = 8,  // signed 4-bit, packed two per byte
  KILN_DTYPE_U4 = 9,  // unsigned 4-bit, packed two per byte
  KILN_DTYPE_I8 = 10,
  KILN_DTYPE_U8 = 11,
  KILN_DTYPE_I16 = 12,
  KILN_DTYPE_U16 = 13,
  KILN_DTYPE_I32 = 14,
  KILN_DTYPE_U32 = 15,
  KILN_DTYPE_I64 = 16,
  KILN_DTYPE_U64 = 17,
} kiln_dtype_t;

/// The name of `dtype` as MLIR spells the element type: f32 f16 bf16 f64
/// f8E4M3FN f8E5M2 i1 i4 ui4 i8 ui8 i16 ui16 i32 ui32 i64 ui64. "invalid" for
/// KILN_DTYPE_INVALID and any value outside the enum.
/// Ownership: static storage. Thread-safety: thread-safe.
KILN_API const char* kiln_dtype_name(kiln_dtype_t dtype);

/// Parses a name as kiln_dtype_name prints it (case-sensitive, no aliases)
/// into `*out_dtype`.
///
/// Errors: INVALID_ARGUMENT if `name` or `out_dtype` is NULL; NOT_FOUND if
/// `name` names no dtype (the message quotes it and lists the valid names).
/// On failure `*out_dtype` is set to KILN_DTYPE_INVALID.
/// Ownership: `name` is only read during the call. Thread-safety: thread-safe.
KILN_API KILN_MUST_USE_RESULT kiln_status_t
kiln_dtype_from_name(const char* name, kiln_dtype_t* out_dtype);

/// Bits one element occupies in storage: 4 for i4 and ui4, 8 for the 8-bit
/// floats and integers, and 8 for i1, which is stored as one whole byte per
/// element rather than bit-packed. 0 for KILN_DTYPE_INVALID and any value
/// outside the enum. Thread-safety: thread-safe.
KILN_API uint32_t kiln_dtype_bit_width(kiln_dtype_t dtype);

/// Bytes a dense, row-major tensor of `dtype` with `shape[0..rank)` occupies
/// in storage, written to `*out_bytes`.
///
/// The packed storage rule, which the compiler's artifact writer and every
/// backend share: types of 8 bits or more take bit_width / 8 bytes per
/// element. Sub-byte types (i4, ui4) are packed two elements per byte along
/// the innermost dimension, element 2k in the low nibble and element 2k+1 in
/// the high nibble, and each innermost row is padded to a whole byte, so rows
/// start on byte boundaries. Hence
///   size = prod(shape[0..rank-1)) * ceil(shape[rank-1] * bit_width / 8).
/// Rank 0 is a scalar (one element; `shape` may then be NULL). A zero
/// dimension anywhere gives 0 bytes.
///
/// Errors: INVALID_ARGUMENT for an invalid dtype, a negative dimension (the
/// message names its index and value), `out_bytes` NULL, or `shape` NULL with
/// `rank` > 0; OUT_OF_RANGE if the size does not fit in uint64_t. On failure
/// `*out_bytes` is set to 0.
/// Ownership: `shape` is only read during the call. Thread-safety:
/// thread-safe.
KILN_API KILN_MUST_USE_RESULT kiln_status_t kiln_dtype_storage_size(
    kiln_dtype_t dtype, const int64_t* shape, size_t rank, uint64_t* out_bytes);

//===----------------------------------------------------------------------===//
// Artifacts
//===----------------------------------------------------------------------===//

/// A compiled model (.kiln file): a versioned header and a table of sections,
/// validated when opened (docs/artifact-format.md).
///
/// Ownership: created by kiln_artifact_open_*, released with
/// kiln_artifact_release. Thread-safety: immutable once opened; any number of
/// threads may query one artifact concurrently, but it must be released only
/// once, after every other use.
typedef struct kiln_artifact_s* kiln_artifact_t;

/// What a section holds. Values are a stable part of the file format.
typedef enum kiln_section_kind_e {
  KILN_SECTION_MANIFEST = 1,  // UTF-8 JSON: inputs, outputs, plan, kernels
  KILN_SECTION_WEIGHTS = 2,   // weight bytes, each tensor aligned for mmap
  KILN_SECTION_KERNELS = 3,   // GPU kernel images (cubin, PTX)
} kiln_section_kind_t;

/// Where a section lies. `data` points into the open artifact and stays
/// valid until the artifact is released.
typedef struct kiln_section_info_s {
  uint32_t kind;
  uint32_t alignment;  // bytes
  uint64_t offset;     // from the start of the file
  uint64_t size;
  const void* data;
} kiln_section_info_t;

/// Opens the artifact at `path` (memory-mapped, read-only) and validates its
/// header and section table.
///
/// Errors: INVALID_ARGUMENT for NULL arguments; NOT_FOUND or
/// PERMISSION_DENIED when the file cannot be opened; DATA_LOSS for a file
/// that is not a valid artifact (bad magic, truncated, a section out of
/// bounds, misaligned or overlapping; the message names the field and its
/// offset); FAILED_PRECONDITION for an artifact of a major format version
/// this runtime does not read. On failure `*out_artifact` is set to NULL.
/// Thread-safety: thread-safe.
KILN_API KILN_MUST_USE_RESULT kiln_status_t
kiln_artifact_open_file(const char* path, kiln_artifact_t* out_artifact);

/// Like kiln_artifact_open_file, over `size` bytes at `data`, which the
/// caller keeps valid and unchanged until the artifact is released.
KILN_API KILN_MUST_USE_RESULT kiln_status_t kiln_artifact_open_memory(
    const void* data, size_t size, kiln_artifact_t* out_artifact);

/// Releases an artifact (unmapping its file). NULL is a no-op.
KILN_API void kiln_artifact_release(kiln_artifact_t artifact);

/// The format version the artifact was written with, as
/// (major << 16) | minor. Thread-safety: thread-safe.
KILN_API uint32_t kiln_artifact_format_version(kiln_artifact_t artifact);

/// Number of sections. Thread-safety: thread-safe.
KILN_API size_t kiln_artifact_section_count(kiln_artifact_t artifact);

/// Section `index` (0-based, in table order).
/// Errors: INVALID_ARGUMENT for NULL arguments; OUT_OF_RANGE for an index
/// past the end. On failure `*out_info` is zeroed. Thread-safety: thread-safe.
KILN_API KILN_MUST_USE_RESULT kiln_status_t kiln_artifact_section(
    kiln_artifact_t artifact, size_t index, kiln_section_info_t* out_info);

/// The first section of `kind`.
/// Errors: INVALID_ARGUMENT for NULL arguments; NOT_FOUND when the artifact
/// has none. On failure `*out_info` is zeroed. Thread-safety: thread-safe.
KILN_API KILN_MUST_USE_RESULT kiln_status_t kiln_artifact_find_section(
    kiln_artifact_t artifact, uint32_t kind, kiln_section_info_t* out_info);

//===----------------------------------------------------------------------===//
// Tensors at the API
//===----------------------------------------------------------------------===//

/// A dense, row-major tensor the caller or the runtime owns, described by
/// value. `data` holds kiln_dtype_storage_size(dtype, shape, rank) bytes; it
/// may be NULL only when the tensor has no elements.
typedef struct kiln_tensor_view_s {
  kiln_dtype_t dtype;
  size_t rank;
  const int64_t* shape;  // `rank` dimensions
  const void* data;
} kiln_tensor_view_t;

/// A graph input or output as the artifact declares it. Dynamic dimensions
/// are -1 in `shape`; `dim_names[i]` names dimension i ("batch_size",
/// "sequence_length", ...) or is "" when the model gave no name. Dimensions
/// that share a name must agree at run time.
///
/// `role` says what the runtime's generation does with it: "input_ids",
/// "attention_mask", "position_ids", "past_key", "past_value" (inputs),
/// "logits", "present_key", "present_value" (outputs), or "input"/"output"
/// for anything else; `layer` is the KV layer for past/present, else -1.
/// Strings and arrays are borrowed from the model.
typedef struct kiln_tensor_info_s {
  const char* name;
  kiln_dtype_t dtype;
  size_t rank;
  const int64_t* shape;
  const char* const* dim_names;
  const char* role;
  int32_t layer;
} kiln_tensor_info_t;

//===----------------------------------------------------------------------===//
// Devices
//===----------------------------------------------------------------------===//

/// Where a session runs its kernels.
typedef enum kiln_device_kind_e {
  /// CUDA when the artifact has CUDA kernels and a GPU is present, else CPU.
  KILN_DEVICE_AUTO = 0,
  KILN_DEVICE_CPU = 1,
  KILN_DEVICE_CUDA = 2,
} kiln_device_kind_t;

/// "auto", "cpu", "cuda"; NULL for a value outside the enum.
/// Thread-safety: thread-safe.
KILN_API const char* kiln_device_kind_name(kiln_device_kind_t kind);

/// One device. Strings are owned by the struct.
typedef struct kiln_device_info_s {
  kiln_device_kind_t kind;
  int32_t ordinal;
  char name[128];               // "NVIDIA H100 80GB HBM3", or the CPU's model name
  int32_t compute_capability;   // CUDA: major * 10 + minor (90 for sm_90); CPU: 0
  int32_t multiprocessors;      // CUDA: SMs; CPU: hardware threads
  uint64_t memory_bytes;        // device memory; CPU: physical memory
  int32_t driver_version;       // CUDA: the driver's CUDA version (13000); CPU: 0
} kiln_device_info_t;

/// The number of devices of `kind` (CPU: 1). For CUDA the driver
/// (libcuda.so.1) is opened at the first call; a machine without it, or
/// without a GPU, gets UNAVAILABLE with a message that says which, and
/// `*out_count` 0. A runtime built without CUDA support says so, also as
/// UNAVAILABLE. Errors: INVALID_ARGUMENT for NULL or KILN_DEVICE_AUTO.
/// Thread-safety: thread-safe.
KILN_API KILN_MUST_USE_RESULT kiln_status_t kiln_device_count(kiln_device_kind_t kind,
                                                              int32_t* out_count);

/// Describes device `ordinal` of `kind`. Errors: as kiln_device_count, and
/// OUT_OF_RANGE for an ordinal past the last device (`*out_info` zeroed).
/// Thread-safety: thread-safe.
KILN_API KILN_MUST_USE_RESULT kiln_status_t kiln_device_info(kiln_device_kind_t kind,
                                                             int32_t ordinal,
                                                             kiln_device_info_t* out_info);

//===----------------------------------------------------------------------===//
// Models
//===----------------------------------------------------------------------===//

/// A loaded artifact with its weights bound: immutable, shareable by any
/// number of sessions.
///
/// Ownership: created by kiln_model_load, released with kiln_model_release
/// after every session created from it has been released.
/// Thread-safety: every kiln_model_* query is thread-safe.
typedef struct kiln_model_s* kiln_model_t;

/// Options of kiln_model_load. Initialize with kiln_model_options_init, then
/// set fields; `struct_size` lets later versions add fields compatibly.
typedef struct kiln_model_options_s {
  size_t struct_size;
  /// The parameter file of an artifact compiled with --weights=external.
  /// NULL: the file the artifact names, in the artifact's folder.
  const char* params_path;
  /// The folder holding the model's own weight files for an artifact
  /// compiled with --weights=reference. NULL: the artifact's folder.
  const char* weights_dir;
} kiln_model_options_t;

/// Sets `options` to the defaults. Thread-safety: thread-safe.
KILN_API void kiln_model_options_init(kiln_model_options_t* options);

/// Loads the artifact at `path`: validates the container and the manifest,
/// checks that this runtime has a kernel for every launch, and binds the
/// weights (embedded, from the parameter file, or from the model's files).
/// `options` may be NULL for the defaults.
///
/// Errors: INVALID_ARGUMENT for NULL arguments or a bad struct_size;
/// NOT_FOUND / PERMISSION_DENIED when a file cannot be opened; DATA_LOSS for
/// a corrupt or truncated artifact, manifest or parameter file (the message
/// names the field); FAILED_PRECONDITION for a format or schema version this
/// runtime does not read, or a parameter file whose tensors do not match the
/// artifact's (name, dtype, shape); UNIMPLEMENTED for an op this runtime has
/// no kernel for. On failure `*out_model` is NULL.
/// Thread-safety: thread-safe.
KILN_API KILN_MUST_USE_RESULT kiln_status_t
kiln_model_load(const char* path, const kiln_model_options_t* options,
                kiln_model_t* out_model);

/// Releases a model. NULL is a no-op.
KILN_API void kiln_model_release(kiln_model_t model);

/// Number of graph inputs and outputs.
KILN_API size_t kiln_model_input_count(kiln_model_t model);
KILN_API size_t kiln_model_output_count(kiln_model_t model);

/// Describes input/output `index`. Errors: INVALID_ARGUMENT for NULL
/// arguments, OUT_OF_RANGE for an index past the end (`*out_info` zeroed).
KILN_API KILN_MUST_USE_RESULT kiln_status_t kiln_model_input_info(
    kiln_model_t model, size_t index, kiln_tensor_info_t* out_info);
KILN_API KILN_MUST_USE_RESULT kiln_status_t kiln_model_output_info(
    kiln_model_t model, size_t index, kiln_tensor_info_t* out_info);

/// What a model is, for generation. Strings and arrays are borrowed from the
/// model.
typedef struct kiln_model_info_s {
  const char* target;          // "cpu", or "cuda" (CUDA kernels too)
  const char* producer;        // the ONNX producer, or ""
  int32_t generation;          // 1 if kiln_session_generate can drive it
  const char* generation_unsupported;  // why not, or ""
  int64_t vocab_size;          // -1 when unknown
  int64_t max_sequence_length; // KV cache capacity per sequence, by default
  int64_t bos_token_id;        // -1 when unknown
  int64_t pad_token_id;        // -1 when unknown
  size_t eos_count;
  const int64_t* eos_token_ids;
  int32_t num_layers;          // KV layers
  size_t launch_count;         // kernel launches per forward
  uint64_t weight_bytes;       // bytes of bound weights and constants
} kiln_model_info_t;

/// Fills `*out_info`. Errors: INVALID_ARGUMENT for NULL arguments.
KILN_API KILN_MUST_USE_RESULT kiln_status_t
kiln_model_info(kiln_model_t model, kiln_model_info_t* out_info);

//===----------------------------------------------------------------------===//
// Sessions
//===----------------------------------------------------------------------===//

/// The mutable state of running a model: intermediate buffers, the KV cache
/// and the worker threads.
///
/// Ownership: created by kiln_session_create, released with
/// kiln_session_release (before its model).
/// Thread-safety: a session runs one call at a time; calls on one session
/// from several threads must be serialized by the caller. Different
/// sessions (of one model or several) may run concurrently.
typedef struct kiln_session_s* kiln_session_t;

typedef struct kiln_session_options_s {
  size_t struct_size;
  /// Threads the kernels use, the calling thread included. 0: one per
  /// hardware thread.
  int32_t num_threads;
  /// KV-cache capacity per sequence (prompt + generated tokens). 0: the
  /// model's max_sequence_length.
  int64_t max_sequence_length;
  /// Non-zero: time every kernel launch (two clock reads each) for
  /// kiln_session_profile.
  int32_t profile;
  /// Where to run (default KILN_DEVICE_AUTO) and which device of that kind.
  kiln_device_kind_t device;
  int32_t device_ordinal;
  /// Artifacts whose every layer has a paged KV cache (kiln-compile
  /// --kv-layout=paged:N): the number of blocks in the session's pool; 0
  /// (the default) lets the pool grow as generation needs blocks.
  int64_t kv_cache_blocks;
  /// Paged caches: non-zero (the default) keeps full blocks of prompt tokens
  /// after generation in a prefix cache, so that later prompts starting with
  /// the same tokens (and prompts of one call sharing a prefix) reuse them
  /// instead of computing them again; least recently used blocks are
  /// evicted when the pool runs out. 0 disables it.
  int32_t prefix_reuse;
} kiln_session_options_t;

/// Sets `options` to the defaults. Thread-safety: thread-safe.
KILN_API void kiln_session_options_init(kiln_session_options_t* options);

/// Creates a session. `options` may be NULL for the defaults.
///
/// The device: KILN_DEVICE_CPU always works; KILN_DEVICE_CUDA needs an
/// artifact compiled with CUDA kernels (else FAILED_PRECONDITION) and a GPU
/// (else UNAVAILABLE, saying what was missing); KILN_DEVICE_AUTO picks CUDA
/// when both hold and the CPU otherwise, and kiln_session_device says which
/// and why.
///
/// Errors: INVALID_ARGUMENT for NULL arguments, a bad struct_size, a
/// negative value or an unknown device kind; RESOURCE_EXHAUSTED when memory
/// runs out.
/// Thread-safety: thread-safe.
KILN_API KILN_MUST_USE_RESULT kiln_status_t
kiln_session_create(kiln_model_t model, const kiln_session_options_t* options,
                    kiln_session_t* out_session);

/// Releases a session. NULL is a no-op.
KILN_API void kiln_session_release(kiln_session_t session);

/// The device the session runs on (never KILN_DEVICE_AUTO) and, in
/// `*out_reason` (may be NULL; borrowed from the session), why: "requested"
/// for the CPU asked for; for CUDA the GPU and how many launches run on it
/// (launches without a CUDA kernel run on the CPU); for KILN_DEVICE_AUTO on
/// the CPU what ruled CUDA out ("the artifact has no CUDA kernels", "no CUDA
/// GPU found: ..."). Thread-safety: thread-safe.
KILN_API kiln_device_kind_t kiln_session_device(kiln_session_t session,
                                                const char** out_reason);

/// Runs one forward pass on `inputs` (one per graph input, in graph-input
/// order). KV inputs and outputs are ordinary tensors here. The inputs are
/// read during the call only.
///
/// Errors: INVALID_ARGUMENT for a wrong input count, dtype, rank, a static
/// dimension that differs, named dimensions that disagree, NULL data for a
/// non-empty tensor, or a kernel that rejects its operands (the message
/// names the op and its ONNX node, e.g. a token id outside the vocabulary);
/// RESOURCE_EXHAUSTED when memory runs out.
/// Thread-safety: see kiln_session_t.
KILN_API KILN_MUST_USE_RESULT kiln_status_t kiln_session_run(
    kiln_session_t session, const kiln_tensor_view_t* inputs, size_t count);

/// Output `index` of the last successful kiln_session_run. The view points
/// into the session and stays valid until the next call on the session or
/// its release. Errors: INVALID_ARGUMENT for NULL arguments;
/// FAILED_PRECONDITION before any successful run; OUT_OF_RANGE for an index
/// past the end. On failure `*out_tensor` is zeroed.
KILN_API KILN_MUST_USE_RESULT kiln_status_t kiln_session_output(
    kiln_session_t session, size_t index, kiln_tensor_view_t* out_tensor);

/// Time spent in one kind of kernel (one kiln op) since the session was
/// created with `profile` set.
typedef struct kiln_op_profile_s {
  const char* op;    // "matmul", "attention", ...
  uint64_t launches;
  double total_ms;
} kiln_op_profile_t;

/// The session's per-op profile, slowest op first. `*out_entries` is owned
/// by the session and valid until its next call or release.
/// Errors: INVALID_ARGUMENT for NULL arguments; FAILED_PRECONDITION when the
/// session was created without `profile`.
/// Thread-safety: see kiln_session_t.
KILN_API KILN_MUST_USE_RESULT kiln_status_t kiln_session_profile(
    kiln_session_t session, const kiln_op_profile_t** out_entries,
    size_t* out_count);

//===----------------------------------------------------------------------===//
// Generation
//===----------------------------------------------------------------------===//

/// Called once per generated token, in generation order (for one step, the
/// sequences in batch order). Return 0 to go on, non-zero to stop that
/// sequence (its stop reason becomes KILN_STOP_CALLBACK).
typedef int32_t (*kiln_token_callback_t)(void* user_data, size_t sequence,
                                         int64_t token_id, size_t step);

typedef struct kiln_generate_options_s {
  size_t struct_size;
  /// Tokens to generate per sequence at most (> 0).
  int32_t max_new_tokens;
  /// 0 selects greedy decoding (argmax); > 0 samples from
  /// softmax(logits / temperature) after top-k and top-p filtering.
  float temperature;
  /// Keep the k most likely tokens (0: all).
  int32_t top_k;
  /// Keep the smallest set of most likely tokens whose probability reaches
  /// top_p (1: all).
  float top_p;
  /// Seed of the sampler: equal seeds, prompts and options give equal
  /// tokens.
  uint64_t seed;
  /// Stop tokens. NULL with eos_count 0: the model's eos_token_ids.
  const int64_t* eos_token_ids;
  size_t eos_count;
  /// Generate max_new_tokens even past an eos token.
  int32_t ignore_eos;
  kiln_token_callback_t callback;  // may be NULL
  void* user_data;
} kiln_generate_options_t;

/// Sets `options` to the defaults: max_new_tokens 32, greedy, top_k 0,
/// top_p 1, seed 0, the model's eos tokens, no callback.
/// Thread-safety: thread-safe.
KILN_API void kiln_generate_options_init(kiln_generate_options_t* options);

/// Why a sequence stopped.
typedef enum kiln_stop_reason_e {
  KILN_STOP_EOS = 1,         // generated an eos token (included in output)
  KILN_STOP_MAX_TOKENS = 2,  // reached max_new_tokens
  KILN_STOP_CALLBACK = 3,    // the callback asked to stop
  KILN_STOP_CANCELLED = 4,   // kiln_scheduler_cancel
} kiln_stop_reason_t;

/// The result of kiln_session_generate.
/// Ownership: released with kiln_generation_release. Thread-safety:
/// immutable; any number of threads may read it.
typedef struct kiln_generation_s* kiln_generation_t;

/// Timings of one generate call, in milliseconds of wall time.
typedef struct kiln_generation_stats_s {
  double prefill_ms;          // every prompt through the model
  double time_to_first_token_ms;  // call start to the first sampled token
  double decode_ms;           // all decode steps
  size_t decode_steps;        // forward passes after prefill
  size_t generated_tokens;    // over all sequences
  double tokens_per_second;   // generated_tokens / (prefill + decode) time
  double decode_tokens_per_second;  // tokens from decode steps / decode_ms
  double step_ms_p50;         // median decode-step latency
  double step_ms_p90;
  double step_ms_max;
} kiln_generation_stats_t;

/// Generates tokens for `batch` prompts (prompts[i] has prompt_lengths[i]
/// token ids): prefill, then decode steps, with the KV cache owned by the
/// session (reset at the start of each call). Sequences of different lengths
/// are batched together.
///
/// Errors: INVALID_ARGUMENT for NULL arguments, batch 0, an empty prompt, a
/// token id outside [0, vocab_size) (the message names the sequence,
/// position and id), or invalid options; FAILED_PRECONDITION for a model
/// that does not support generation (kiln_model_info says why);
/// RESOURCE_EXHAUSTED when a prompt plus max_new_tokens exceeds the
/// session's KV-cache capacity, or memory runs out; errors of
/// kiln_session_run. On failure `*out_generation` is NULL.
/// Thread-safety: see kiln_session_t; the callback runs on the calling
/// thread.
KILN_API KILN_MUST_USE_RESULT kiln_status_t kiln_session_generate(
    kiln_session_t session, const int64_t* const* prompts,
    const size_t* prompt_lengths, size_t batch,
    const kiln_generate_options_t* options, kiln_generation_t* out_generation);

/// Releases a generation. NULL is a no-op.
KILN_API void kiln_generation_release(kiln_generation_t generation);

/// Number of sequences (the batch size of the call).
KILN_API size_t kiln_generation_sequence_count(kiln_generation_t generation);

/// The generated tokens of sequence `index` (without the prompt) and why it
/// stopped. `*out_tokens` is borrowed from the generation. Errors:
/// INVALID_ARGUMENT for NULL arguments, OUT_OF_RANGE for an index past the
/// end.
KILN_API KILN_MUST_USE_RESULT kiln_status_t kiln_generation_sequence(
    kiln_generation_t generation, size_t index, const int64_t** out_tokens,
    size_t* out_count, kiln_stop_reason_t* out_reason);

/// How many times sequence `index` was preempted: a session with a fixed
/// KV pool (kv_cache_blocks) that runs out of blocks frees the last running
/// sequences' blocks instead of failing the call, and recomputes them (their
/// prompt plus the tokens they have) once room is back; greedy output is
/// the same as without preemption. Errors: INVALID_ARGUMENT for NULL
/// arguments, OUT_OF_RANGE for an index past the end.
KILN_API KILN_MUST_USE_RESULT kiln_status_t kiln_generation_sequence_preemptions(
    kiln_generation_t generation, size_t index, uint32_t* out_count);

/// The call's timings. Errors: INVALID_ARGUMENT for NULL arguments.
KILN_API KILN_MUST_USE_RESULT kiln_status_t kiln_generation_stats(
    kiln_generation_t generation, kiln_generation_stats_t* out_stats);

/// A session's KV-cache memory.
typedef struct kiln_kv_usage_s {
  size_t struct_size;
  /// 1 when generation uses the session's paged block pool (every layer
  /// paged); 0 for contiguous caches, which a generate call reserves for
  /// its sequences' full capacity.
  int32_t paged;
  int64_t block_size;       // tokens per block (paged)
  int64_t blocks_total;     // blocks in the pool
  int64_t blocks_used;      // held now (by running sequences or the prefix cache)
  int64_t blocks_cached;    // held by the prefix cache
  int64_t blocks_peak;      // most blocks held at once since the session started
  uint64_t bytes;           // KV storage reserved, every layer (paged: the pool;
                            // contiguous: the last generate call's)
  uint64_t bytes_per_block; // every layer's keys, values and scales of one block
  uint64_t reused_tokens;   // prompt tokens taken from shared blocks, not computed
  uint64_t evictions;       // cached blocks evicted to make room
  uint64_t preemptions;     // running sequences preempted for lack of blocks
} kiln_kv_usage_t;

/// Fills `*out_usage` (whose struct_size the caller sets; fields past it are
/// not written). Errors: INVALID_ARGUMENT for NULL arguments or a bad
/// struct_size. Thread-safety: as kiln_session_t's other calls.
KILN_API KILN_MUST_USE_RESULT kiln_status_t kiln_session_kv_usage(kiln_session_t session,
                                                                  kiln_kv_usage_t* out_usage);

// ---------------------------------------------------------------------------
// Continuous batching.
//
// A scheduler serves requests on a session: each kiln_scheduler_step runs
// one forward over a ragged batch mixing the next prompt chunk of requests
// being prefilled and one decode token of every running request, flattened
// with no padding. Requests can be submitted and cancelled between steps.
// It needs an artifact compiled with `--ragged` and a paged KV cache
// (`--kv-layout=paged:N`); blocks come from the session's pool
// (kv_cache_blocks), with prefix reuse when the session has it on. When the
// pool runs out, the most recently admitted running request is preempted
// (its blocks freed; it waits and is recomputed from its prompt and tokens)
// rather than failing the step.

/// Ownership: released with kiln_scheduler_release, before its session.
/// Thread-safety: not thread-safe; calls on one scheduler (and on its
/// session) must be serialized by the caller.
typedef struct kiln_scheduler_s* kiln_scheduler_t;

typedef struct kiln_scheduler_options_s {
  size_t struct_size;
  /// Tokens one step runs at most (prefill chunks and decode tokens
  /// together); > 0. Default 256.
  int32_t max_step_tokens;
  /// Requests running at once at most; > 0. Default 64.
  int32_t max_running;
} kiln_scheduler_options_t;

/// Sets `options` to the defaults. Thread-safety: thread-safe.
KILN_API void kiln_scheduler_options_init(kiln_scheduler_options_t* options);

/// Creates a scheduler on `session`. Errors: INVALID_ARGUMENT for NULL
/// arguments or options out of range; FAILED_PRECONDITION for an artifact
/// that was not compiled with --ragged and a paged KV cache (the message
/// says which).
KILN_API KILN_MUST_USE_RESULT kiln_status_t kiln_scheduler_create(
    kiln_session_t session, const kiln_scheduler_options_t* options,
    kiln_scheduler_t* out_scheduler);

/// Releases a scheduler and its requests' blocks. NULL is a no-op.
KILN_API void kiln_scheduler_release(kiln_scheduler_t scheduler);

/// Queues a request: `prompt` (copied) and generation options (NULL: the
/// defaults; the callback is not called, poll instead). `*out_id` names it
/// in later calls. Errors: INVALID_ARGUMENT (empty prompt, a token outside
/// the vocabulary, bad options); RESOURCE_EXHAUSTED when the prompt plus
/// max_new_tokens exceeds the session's max_sequence_length.
KILN_API KILN_MUST_USE_RESULT kiln_status_t kiln_scheduler_submit(
    kiln_scheduler_t scheduler, const int64_t* prompt, size_t length,
    const kiln_generate_options_t* options, uint64_t* out_id);

/// What one step did.
typedef struct kiln_step_info_s {
  size_t struct_size;
  size_t sequences;       // requests in the step's batch
  size_t prefill_tokens;  // prompt tokens computed
  size_t decode_tokens;   // one per running request
  size_t finished;        // requests that finished in this step
  size_t preempted;       // requests preempted in this step
  size_t waiting;         // requests waiting after the step
  size_t running;         // requests running after the step
} kiln_step_info_t;

/// Runs one step (nothing when no request is pending). `out_info` may be
/// NULL. Errors: RESOURCE_EXHAUSTED when a request alone does not fit in
/// the KV pool (it is finished with no further tokens and the step fails);
/// errors of the forward.
KILN_API KILN_MUST_USE_RESULT kiln_status_t kiln_scheduler_step(kiln_scheduler_t scheduler,
                                                                kiln_step_info_t* out_info);

/// Requests submitted and not yet finished.
KILN_API size_t kiln_scheduler_pending(kiln_scheduler_t scheduler);

/// The tokens request `id` has generated so far (borrowed until the next
/// step, submit, cancel or remove), whether it has finished and why. Errors:
/// INVALID_ARGUMENT for NULL arguments; NOT_FOUND for an unknown id.
KILN_API KILN_MUST_USE_RESULT kiln_status_t kiln_scheduler_poll(
    kiln_scheduler_t scheduler, uint64_t id, const int64_t** out_tokens, size_t* out_count,
    int32_t* out_finished, kiln_stop_reason_t* out_reason);

/// How many times request `id` was preempted. Errors as kiln_scheduler_poll.
KILN_API KILN_MUST_USE_RESULT kiln_status_t kiln_scheduler_preemptions(kiln_scheduler_t scheduler,
                                                                       uint64_t id,
                                                                       uint32_t* out_count);

/// Finishes request `id` now (reason KILN_STOP_CANCELLED; its tokens so far
/// stay readable) and frees its blocks. Cancelling a finished request does
/// nothing. Errors: NOT_FOUND for an unknown id.
KILN_API KILN_MUST_USE_RESULT kiln_status_t kiln_scheduler_cancel(kiln_scheduler_t scheduler,
                                                                  uint64_t id);

/// Forgets request `id` (cancelling it first when it has not finished): a
/// long-running server removes each request once it has read its tokens,
/// so that finished requests do not accumulate. Its id is not reused.
/// Errors: NOT_FOUND for an unknown (or already removed) id.
KILN_API KILN_MUST_USE_RESULT kiln_status_t kiln_scheduler_remove(kiln_scheduler_t scheduler,
                                                                  uint64_t id);

#ifdef __cplusplus
}  // extern "C"
#endif

#endif  // KILN_RUNTIME_API_H_
