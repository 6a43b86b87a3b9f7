// A thin, header-only C++ wrapper over the C API's status.
#ifndef KILN_RUNTIME_API_HPP_
#define KILN_RUNTIME_API_HPP_

#include <string>
#include <utility>

#include "kiln/runtime/api.h"

namespace kiln {

/// Owns a kiln_status_t (NULL = OK). Movable, not copyable.
class Status {
 public:
  Status() = default;
  explicit Status(kiln_status_t status) : status_(status) {}
  Status(Status&& other) noexcept : status_(std::exchange(other.status_, nullptr)) {}
  Status& operator=(Status&& other) noexcept {
    if (this != &other) {
      kiln_status_free(status_);
      status_ = std::exchange(other.status_, nullptr);
    }
    return *this;
  }
  Status(const Status&) = delete;
  Status& operator=(const Status&) = delete;
  ~Status() { kiln_status_free(status_); }

  bool ok() const { return status_ == nullptr; }
  kiln_status_code_t code() const { return kiln_status_code(status_); }
  const char* message() const { return kiln_status_message(status_); }
  std::string ToString() const {
    size_t length = 0;
    kiln_status_format(status_, nullptr, 0, &length);
    std::string text(length, '\0');
    kiln_status_format(status_, text.data(), length + 1, nullptr);
    return text;
  }
  /// Gives up ownership of the C status.
  kiln_status_t release() { return std::exchange(status_, nullptr); }

 private:
  kiln_status_t status_ = nullptr;
};

}  // namespace kiln

#endif  // KILN_RUNTIME_API_HPP_
