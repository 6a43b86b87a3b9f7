/* Export macro and common includes of the Kiln runtime's C API. */
#ifndef KILN_RUNTIME_CONFIG_H_
#define KILN_RUNTIME_CONFIG_H_

#if defined(KILN_RUNTIME_BUILDING)
#define KILN_API __attribute__((visibility("default")))
#else
#define KILN_API
#endif

#endif  // KILN_RUNTIME_CONFIG_H_
