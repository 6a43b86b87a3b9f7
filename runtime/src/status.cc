// Status objects of the C API.
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>

#include "kiln/runtime/api.h"

struct kiln_status_s {
  kiln_status_code_t code;
  const char* file;  // static storage (__FILE__)
  int line;
  std::string message;
};

namespace {

// Returned when allocating a status fails; never freed.
kiln_status_s g_out_of_memory{KILN_STATUS_RESOURCE_EXHAUSTED, "", 0,
                              "out of memory while reporting an error"};

}  // namespace

extern "C" {

kiln_status_t kiln_status_allocate(kiln_status_code_t code, const char* file,
                                   int line, const char* format, ...) {
  if (code == KILN_STATUS_OK) return nullptr;
  auto* status = new (std::nothrow) kiln_status_s{code, file ? file : "", line,
                                                  std::string()};
  if (!status) return &g_out_of_memory;
  if (format) {
    va_list args;
    va_start(args, format);
    va_list copy;
    va_copy(copy, args);
    int length = std::vsnprintf(nullptr, 0, format, copy);
    va_end(copy);
    if (length > 0) {
      status->message.resize(static_cast<size_t>(length));
      std::vsnprintf(status->message.data(), status->message.size() + 1,
                     format, args);
    }
    va_end(args);
  }
  return status;
}

kiln_status_code_t kiln_status_code(kiln_status_t status) {
  return status ? status->code : KILN_STATUS_OK;
}

const char* kiln_status_message(kiln_status_t status) {
  return status ? status->message.c_str() : "";
}

void kiln_status_source_location(kiln_status_t status, const char** out_file,
                                 int* out_line) {
  if (out_file) *out_file = status ? status->file : "";
  if (out_line) *out_line = status ? status->line : 0;
}

void kiln_status_format(kiln_status_t status, char* buffer, size_t capacity,
                        size_t* out_length) {
  std::string text = kiln_status_code_string(kiln_status_code(status));
  if (status) {
    text += ": ";
    text += status->message;
    if (status->file[0]) {
      text += " [";
      text += status->file;
      text += ":" + std::to_string(status->line) + "]";
    }
  }
  if (out_length) *out_length = text.size();
  if (buffer && capacity > 0) {
    size_t n = text.size() < capacity - 1 ? text.size() : capacity - 1;
    std::memcpy(buffer, text.data(), n);
    buffer[n] = '\0';
  }
}

void kiln_status_free(kiln_status_t status) {
  if (status && status != &g_out_of_memory) delete status;
}

const char* kiln_status_code_string(kiln_status_code_t code) {
  switch (code) {
    case KILN_STATUS_OK: return "OK";
    case KILN_STATUS_CANCELLED: return "CANCELLED";
    case KILN_STATUS_UNKNOWN: return "UNKNOWN";
    case KILN_STATUS_INVALID_ARGUMENT: return "INVALID_ARGUMENT";
    case KILN_STATUS_DEADLINE_EXCEEDED: return "DEADLINE_EXCEEDED";
    case KILN_STATUS_NOT_FOUND: return "NOT_FOUND";
    case KILN_STATUS_ALREADY_EXISTS: return "ALREADY_EXISTS";
    case KILN_STATUS_PERMISSION_DENIED: return "PERMISSION_DENIED";
    case KILN_STATUS_RESOURCE_EXHAUSTED: return "RESOURCE_EXHAUSTED";
    case KILN_STATUS_FAILED_PRECONDITION: return "FAILED_PRECONDITION";
    case KILN_STATUS_ABORTED: return "ABORTED";
    case KILN_STATUS_OUT_OF_RANGE: return "OUT_OF_RANGE";
    case KILN_STATUS_UNIMPLEMENTED: return "UNIMPLEMENTED";
    case KILN_STATUS_INTERNAL: return "INTERNAL";
    case KILN_STATUS_UNAVAILABLE: return "UNAVAILABLE";
    case KILN_STATUS_DATA_LOSS: return "DATA_LOSS";
  }
  return "UNKNOWN_CODE";
}

}  // extern "C"
