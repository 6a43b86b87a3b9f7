// The on-disk layout of a .kiln artifact, shared by the compiler's writer and
// the runtime's reader. Plain C99; all integers little-endian.
//
//   offset 0            header (kiln_artifact_header_v1, 64 bytes)
//   ...                 sections, each at an offset that is a multiple of
//                       its alignment (1 << alignment_log2)
//   section_table_offset
//                       section_count entries (kiln_artifact_section_v1,
//                       32 bytes each), 8-byte aligned
//
// A section lies entirely inside the file and overlaps neither the header,
// the table nor another section; reserved fields are zero. Readers reject a
// major version they do not know and accept newer minor versions (which only
// add section kinds or use reserved space compatibly).
#ifndef KILN_RUNTIME_ARTIFACT_FORMAT_H_
#define KILN_RUNTIME_ARTIFACT_FORMAT_H_

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KILN_ARTIFACT_MAGIC "KILN"
#define KILN_ARTIFACT_VERSION_MAJOR 1u
#define KILN_ARTIFACT_VERSION_MINOR 0u
/// Sections may ask for alignment up to 64 KiB (mmap granularity on every
/// platform we target).
#define KILN_ARTIFACT_MAX_ALIGNMENT_LOG2 16u
/// More sections than this is a corrupt table, not a real artifact.
#define KILN_ARTIFACT_MAX_SECTIONS 4096u

typedef struct kiln_artifact_header_v1_s {
  char magic[4];                  // "KILN"
  uint16_t version_major;         // KILN_ARTIFACT_VERSION_MAJOR
  uint16_t version_minor;         // KILN_ARTIFACT_VERSION_MINOR
  uint32_t header_size;           // sizeof(kiln_artifact_header_v1_t)
  uint32_t section_count;
  uint64_t section_table_offset;  // multiple of 8
  uint64_t file_size;             // total bytes; a shorter file is truncated
  uint8_t reserved[32];           // zero
} kiln_artifact_header_v1_t;

typedef struct kiln_artifact_section_v1_s {
  uint32_t kind;            // kiln_section_kind_t
  uint32_t alignment_log2;  // offset % (1 << alignment_log2) == 0
  uint64_t offset;
  uint64_t size;
  uint64_t reserved;  // zero
} kiln_artifact_section_v1_t;

#ifdef __cplusplus
}  // extern "C"
#endif

/// The program of a fused elementwise launch (op "elementwise", the kiln
/// dialect's kiln.elementwise): attrs "code" (ints, 4 per instruction:
/// opcode, dst, a, b), "constants" (floats) and "result" (the register the
/// result is read from). Registers 0..n-1 hold the launch's n inputs, read as
/// f32 and broadcast (NumPy rules) to the result shape; instruction i writes
/// register n + i from registers below it (a, and b for binary opcodes;
/// KILN_EW_CONST reads constants[a]). Everything is computed in f32 and
/// rounded once to the result's dtype. Unused operand slots are -1.
typedef enum kiln_ew_opcode_e {
  KILN_EW_CONST = 0,
  KILN_EW_ADD = 1,
  KILN_EW_SUB = 2,
  KILN_EW_MUL = 3,
  KILN_EW_DIV = 4,
  KILN_EW_MAX = 5,
  KILN_EW_MIN = 6,
  KILN_EW_POW = 7,
  KILN_EW_NEG = 8,
  KILN_EW_ABS = 9,
  KILN_EW_EXP = 10,
  KILN_EW_LOG = 11,
  KILN_EW_SQRT = 12,
  KILN_EW_RSQRT = 13,
  KILN_EW_TANH = 14,
  KILN_EW_SIN = 15,
  KILN_EW_COS = 16,
  KILN_EW_ERF = 17,
  KILN_EW_ROUND_BF16 = 18,  // round to the nearest bf16 (a cast to bf16)
  KILN_EW_ROUND_F16 = 19,   // round to the nearest f16 (a cast to f16)
  KILN_EW_OPCODE_COUNT = 20
} kiln_ew_opcode_t;

#ifdef __cplusplus
static_assert(sizeof(kiln_artifact_header_v1_t) == 64, "header layout");
static_assert(sizeof(kiln_artifact_section_v1_t) == 32, "section layout");
#endif

#endif  // KILN_RUNTIME_ARTIFACT_FORMAT_H_
