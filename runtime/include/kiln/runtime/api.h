/* The Kiln runtime's C API.
 *
 * Conventions (they hold for every function declared here):
 *  - Fallible calls return a kiln_status_t; NULL means success. A non-NULL
 *    status is owned by the caller, who frees it with kiln_status_free (or
 *    ignores it with kiln_status_ignore).
 *  - Results go through trailing out_* pointers, left untouched on failure.
 *  - No C++ exception ever crosses this boundary.
 *  - Thread-safety is stated per function. Functions in this header keep no
 *    mutable global state and are safe to call from any thread concurrently.
 */
#ifndef KILN_RUNTIME_API_H_
#define KILN_RUNTIME_API_H_

#include <stddef.h>
#include <stdint.h>

#include "kiln/runtime/config.h"

#ifdef __cplusplus
extern "C" {
#endif

/*===------------------------------------------------------------------===*
 * Status
 *===------------------------------------------------------------------===*/

/// Status codes. The values are a stable ABI (they match absl/IREE).
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

/// An error: a code, a message and the source location that raised it.
/// NULL is success. Opaque; immutable once created, so a status may be read
/// from several threads, but freed only once.
typedef struct kiln_status_s* kiln_status_t;

/// Creates a status with a printf-style message. Returns NULL for
/// KILN_STATUS_OK. If memory runs out, returns a static RESOURCE_EXHAUSTED
/// status (which kiln_status_free accepts). Thread-safe.
KILN_API kiln_status_t kiln_status_allocate(kiln_status_code_t code,
                                            const char* file, int line,
                                            const char* format, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;

/// Creates a status at the caller's source location.
#define KILN_MAKE_STATUS(code, ...) \
  kiln_status_allocate((code), __FILE__, __LINE__, __VA_ARGS__)

/// The code of `status`; KILN_STATUS_OK for NULL. Thread-safe.
KILN_API kiln_status_code_t kiln_status_code(kiln_status_t status);

/// The message of `status`, borrowed until the status is freed; "" for NULL.
/// Thread-safe.
KILN_API const char* kiln_status_message(kiln_status_t status);

/// The file and line that created `status` (file is borrowed; "" and 0 for
/// NULL). Either out pointer may be NULL. Thread-safe.
KILN_API void kiln_status_source_location(kiln_status_t status,
                                          const char** out_file,
                                          int* out_line);

/// Writes "CODE: message [file:line]" into `buffer` (NUL-terminated and
/// truncated to `capacity`, as snprintf does) and the untruncated length to
/// `out_length` (may be NULL). `buffer` may be NULL when `capacity` is 0.
/// Thread-safe.
KILN_API void kiln_status_format(kiln_status_t status, char* buffer,
                                 size_t capacity, size_t* out_length);

/// Frees `status`; NULL is a no-op. Not thread-safe for the same status.
KILN_API void kiln_status_free(kiln_status_t status);

/// Frees `status` after deliberately ignoring it.
#define kiln_status_ignore(status) kiln_status_free(status)

/// The name of a code, such as "INVALID_ARGUMENT"; "UNKNOWN_CODE" for values
/// outside the enum. Static storage. Thread-safe.
KILN_API const char* kiln_status_code_string(kiln_status_code_t code);

/*===------------------------------------------------------------------===*
 * Version
 *===------------------------------------------------------------------===*/

/// The runtime's version, "MAJOR.MINOR.PATCH". Thread-safe.
KILN_API const char* kiln_runtime_version_string(void);

/// Increases whenever this header changes incompatibly. Thread-safe.
KILN_API uint32_t kiln_runtime_abi_version(void);

/*===------------------------------------------------------------------===*
 * Element types
 *===------------------------------------------------------------------===*/

/// Element types of tensors in artifacts and at the API. The values are a
/// stable ABI: the compiler writes them into artifacts.
typedef enum kiln_dtype_e {
  KILN_DTYPE_INVALID = 0,
  KILN_DTYPE_F32 = 1,
  KILN_DTYPE_F16 = 2,
  KILN_DTYPE_BF16 = 3,
  KILN_DTYPE_F64 = 4,
  KILN_DTYPE_F8E4M3FN = 5,
  KILN_DTYPE_F8E5M2 = 6,
  KILN_DTYPE_I1 = 7, /* bool, stored one byte per element */
  KILN_DTYPE_I4 = 8,
  KILN_DTYPE_U4 = 9,
  KILN_DTYPE_I8 = 10,
  KILN_DTYPE_U8 = 11,
  KILN_DTYPE_I16 = 12,
  KILN_DTYPE_U16 = 13,
  KILN_DTYPE_I32 = 14,
  KILN_DTYPE_U32 = 15,
  KILN_DTYPE_I64 = 16,
  KILN_DTYPE_U64 = 17,
} kiln_dtype_t;

/// The name of `dtype` in MLIR's spelling ("f32", "bf16", "f8E4M3FN", "i4",
/// "ui4", ...); "invalid" for anything else. Static storage. Thread-safe.
KILN_API const char* kiln_dtype_name(kiln_dtype_t dtype);

/// Parses a name as kiln_dtype_name prints it. NOT_FOUND for an unknown
/// name, INVALID_ARGUMENT for NULL pointers. Thread-safe.
KILN_API kiln_status_t kiln_dtype_from_name(const char* name,
                                            kiln_dtype_t* out_dtype);

/// Bits a stored element occupies: 4 for i4/u4, 8 for i1 (one byte per bool),
/// 0 for invalid values. Thread-safe.
KILN_API uint32_t kiln_dtype_bit_width(kiln_dtype_t dtype);

/// Bytes a dense tensor of `dtype` and `shape` occupies in storage. Sub-byte
/// types are packed two per byte along the innermost dimension, element 0 in
/// the low nibble, and each innermost row is padded to a whole byte:
/// prod(outer dims) * ceil(inner * bits / 8). Rank 0 is one element.
/// INVALID_ARGUMENT for a negative dimension, an invalid dtype or NULL
/// pointers; OUT_OF_RANGE when the size overflows 64 bits. Thread-safe.
KILN_API kiln_status_t kiln_dtype_storage_size(kiln_dtype_t dtype,
                                               const int64_t* shape,
                                               size_t rank,
                                               uint64_t* out_bytes);

#ifdef __cplusplus
}  // extern "C"
#endif

#endif  // KILN_RUNTIME_API_H_
