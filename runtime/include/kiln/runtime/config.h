// Export and attribute macros shared by the Kiln runtime's public headers.
#ifndef KILN_RUNTIME_CONFIG_H_
#define KILN_RUNTIME_CONFIG_H_

// The library is compiled with -fvisibility=hidden and -DKILN_RUNTIME_BUILDING:
// only declarations marked KILN_API are exported from libkiln_runtime. The
// build supports GCC and Clang on ELF platforms.
#if defined(__GNUC__) && defined(KILN_RUNTIME_BUILDING)
#define KILN_API __attribute__((visibility("default")))
#else
#define KILN_API
#endif

// Marks functions whose result must not be dropped: a discarded kiln_status_t
// is both a leak and a swallowed error.
#if defined(__GNUC__)
#define KILN_MUST_USE_RESULT __attribute__((warn_unused_result))
#else
#define KILN_MUST_USE_RESULT
#endif

// Lets the compiler check printf-style format strings against arguments.
#if defined(__GNUC__)
#define KILN_PRINTF_FORMAT(format_index, first_arg_index) \
  __attribute__((format(printf, format_index, first_arg_index)))
#else
#define KILN_PRINTF_FORMAT(format_index, first_arg_index)
#endif

#endif  // KILN_RUNTIME_CONFIG_H_
