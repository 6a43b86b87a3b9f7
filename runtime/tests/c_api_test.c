/* A C99 client of api.h: the header must compile as strict C, and the library
 * must link and work without any C++ on the caller's side. */
#include <stdio.h>
#include <string.h>

#include "kiln/runtime/api.h"

static int failures = 0;

#define CHECK(condition)                                               \
  do {                                                                 \
    if (!(condition)) {                                                \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, \
              #condition);                                             \
      ++failures;                                                      \
    }                                                                  \
  } while (0)

int main(void) {
  char text[128];
  size_t length = 0;
  kiln_dtype_t dtype = KILN_DTYPE_INVALID;
  uint64_t bytes = 0;
  int64_t shape[2] = {3, 5};
  kiln_status_t status = NULL;

  CHECK(kiln_runtime_abi_version() == KILN_RUNTIME_ABI_VERSION);

  status = KILN_MAKE_STATUS(KILN_STATUS_INVALID_ARGUMENT, "bad %s", "rank");
  CHECK(kiln_status_code(status) == KILN_STATUS_INVALID_ARGUMENT);
  kiln_status_format(status, text, sizeof(text), &length);
  CHECK(strncmp(text, "INVALID_ARGUMENT: bad rank [", 28) == 0);
  CHECK(strstr(text, "c_api_test.c:") != NULL);
  CHECK(length == strlen(text));
  kiln_status_free(status);

  status = kiln_dtype_from_name("ui4", &dtype);
  CHECK(status == NULL);
  CHECK(dtype == KILN_DTYPE_U4);
  status = kiln_dtype_storage_size(dtype, shape, 2, &bytes);
  CHECK(status == NULL);
  CHECK(bytes == 9);

  if (failures == 0) printf("c_api_test: all checks passed\n");
  return failures == 0 ? 0 : 1;
}
