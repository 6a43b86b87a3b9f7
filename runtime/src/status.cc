// Status objects of the C API: creation, queries, formatting and release.
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>

#include "kiln/runtime/api.h"

// A status is one malloc'd block: this header followed by the NUL-terminated
// message and file name, which `message` and `file` point into. One block
// means one allocation to fail and one free, and the object never changes
// after creation, which is what makes concurrent reads safe.
struct kiln_status_s {
  kiln_status_code_t code;
  int line;
  const char* message;
  const char* file;
};

namespace {

// Returned in place of a status that could not be allocated. It lives in
// read-only storage; kiln_status_free recognises it and leaves it alone.
const kiln_status_s kOutOfMemoryStatus = {KILN_STATUS_RESOURCE_EXHAUSTED, 0,
                                          "out of memory", ""};

kiln_status_t OutOfMemoryStatus() {
  // No function writes through a kiln_status_t, so handing out a non-const
  // pointer to the const object is safe.
  return const_cast<kiln_status_t>(&kOutOfMemoryStatus);
}

// Compares as int: C callers can pass any int, and the enum's underlying type
// may be unsigned.
bool IsValidCode(kiln_status_code_t code) {
  int value = static_cast<int>(code);
  return value >= KILN_STATUS_OK && value <= KILN_STATUS_DATA_LOSS;
}

// Appends to a caller-provided buffer with snprintf's truncation rules while
// counting the full length, so formatting needs no heap allocation.
class BoundedWriter {
 public:
  BoundedWriter(char* buffer, size_t capacity)
      : buffer_(capacity > 0 ? buffer : nullptr),
        capacity_(buffer_ ? capacity : 0) {
    if (capacity_ > 0) buffer_[0] = '\0';
  }

  void Append(const char* text) {
    size_t size = std::strlen(text);
    if (length_ + 1 < capacity_) {
      size_t room = capacity_ - 1 - length_;
      size_t copied = size < room ? size : room;
      std::memcpy(buffer_ + length_, text, copied);
      buffer_[length_ + copied] = '\0';
    }
    length_ += size;
  }

  size_t length() const { return length_; }

 private:
  char* buffer_;
  size_t capacity_;
  size_t length_ = 0;
};

}  // namespace

extern "C" {

kiln_status_t kiln_status_allocate(kiln_status_code_t code, const char* file,
                                   int line, const char* format, ...) {
  if (code == KILN_STATUS_OK) return nullptr;
  if (!IsValidCode(code)) code = KILN_STATUS_UNKNOWN;
  if (!file) file = "";
  if (!format) format = "";

  va_list args;
  va_start(args, format);
  va_list size_args;
  va_copy(size_args, args);
  int formatted_length = std::vsnprintf(nullptr, 0, format, size_args);
  va_end(size_args);
  // vsnprintf fails only for a message over INT_MAX bytes or an encoding
  // error; keeping the unformatted format string still says where it failed.
  bool use_format_verbatim = formatted_length < 0;
  size_t message_size = use_format_verbatim
                            ? std::strlen(format)
                            : static_cast<size_t>(formatted_length);
  size_t file_size = std::strlen(file);

  void* memory =
      std::malloc(sizeof(kiln_status_s) + message_size + 1 + file_size + 1);
  if (!memory) {
    va_end(args);
    return OutOfMemoryStatus();
  }
  char* message = static_cast<char*>(memory) + sizeof(kiln_status_s);
  char* file_copy = message + message_size + 1;
  if (use_format_verbatim) {
    std::memcpy(message, format, message_size + 1);
  } else {
    std::vsnprintf(message, message_size + 1, format, args);
  }
  va_end(args);
  std::memcpy(file_copy, file, file_size + 1);
  return new (memory) kiln_status_s{code, line, message, file_copy};
}

void kiln_status_free(kiln_status_t status) {
  if (!status || status == &kOutOfMemoryStatus) return;
  // kiln_status_s is trivially destructible: releasing the block ends it.
  std::free(status);
}

kiln_status_code_t kiln_status_code(kiln_status_t status) {
  return status ? status->code : KILN_STATUS_OK;
}

const char* kiln_status_message(kiln_status_t status) {
  return status ? status->message : "";
}

void kiln_status_source_location(kiln_status_t status, const char** out_file,
                                 int* out_line) {
  if (out_file) *out_file = status ? status->file : "";
  if (out_line) *out_line = status ? status->line : 0;
}

void kiln_status_format(kiln_status_t status, char* buffer, size_t capacity,
                        size_t* out_length) {
  BoundedWriter writer(buffer, capacity);
  writer.Append(kiln_status_code_string(kiln_status_code(status)));
  if (status) {
    if (status->message[0] != '\0') {
      writer.Append(": ");
      writer.Append(status->message);
    }
    if (status->file[0] != '\0') {
      char line[16];
      std::snprintf(line, sizeof(line), ":%d]", status->line);
      writer.Append(" [");
      writer.Append(status->file);
      writer.Append(line);
    }
  }
  if (out_length) *out_length = writer.length();
}

const char* kiln_status_code_string(kiln_status_code_t code) {
  switch (code) {
    case KILN_STATUS_OK:
      return "OK";
    case KILN_STATUS_CANCELLED:
      return "CANCELLED";
    case KILN_STATUS_UNKNOWN:
      return "UNKNOWN";
    case KILN_STATUS_INVALID_ARGUMENT:
      return "INVALID_ARGUMENT";
    case KILN_STATUS_DEADLINE_EXCEEDED:
      return "DEADLINE_EXCEEDED";
    case KILN_STATUS_NOT_FOUND:
      return "NOT_FOUND";
    case KILN_STATUS_ALREADY_EXISTS:
      return "ALREADY_EXISTS";
    case KILN_STATUS_PERMISSION_DENIED:
      return "PERMISSION_DENIED";
    case KILN_STATUS_RESOURCE_EXHAUSTED:
      return "RESOURCE_EXHAUSTED";
    case KILN_STATUS_FAILED_PRECONDITION:
      return "FAILED_PRECONDITION";
    case KILN_STATUS_ABORTED:
      return "ABORTED";
    case KILN_STATUS_OUT_OF_RANGE:
      return "OUT_OF_RANGE";
    case KILN_STATUS_UNIMPLEMENTED:
      return "UNIMPLEMENTED";
    case KILN_STATUS_INTERNAL:
      return "INTERNAL";
    case KILN_STATUS_UNAVAILABLE:
      return "UNAVAILABLE";
    case KILN_STATUS_DATA_LOSS:
      return "DATA_LOSS";
  }
  // Not `default:`, so -Wswitch flags a code added to the enum but not here.
  return "UNKNOWN_CODE";
}

}  // extern "C"
