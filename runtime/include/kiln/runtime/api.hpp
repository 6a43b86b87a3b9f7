// Header-only C++17 conveniences over the C API (api.h); adds no symbols to
// the library and throws no exceptions of its own.
#ifndef KILN_RUNTIME_API_HPP_
#define KILN_RUNTIME_API_HPP_

#include <cstddef>
#include <string>
#include <utility>

#include "kiln/runtime/api.h"

namespace kiln {

/// Owns a kiln_status_t and frees it on destruction; a default-constructed
/// Status is OK. Move-only, like the C status it wraps.
///
/// Thread-safety: the const members may be called concurrently; assignment,
/// release() and destruction need exclusive access.
class [[nodiscard]] Status {
 public:
  Status() = default;
  /// Takes ownership of `status` (NULL is OK).
  explicit Status(kiln_status_t status) : status_(status) {}
  Status(Status&& other) noexcept
      : status_(std::exchange(other.status_, nullptr)) {}
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
  /// Borrowed from this Status; valid while it holds the same C status.
  const char* message() const { return kiln_status_message(status_); }

  /// "CODE: message [file:line]", or "OK", as kiln_status_format renders it.
  std::string ToString() const {
    size_t length = 0;
    kiln_status_format(status_, nullptr, 0, &length);
    std::string text(length + 1, '\0');  // room for the terminator
    kiln_status_format(status_, text.data(), text.size(), nullptr);
    text.resize(length);
    return text;
  }

  /// The wrapped status, still owned by this object.
  kiln_status_t get() const { return status_; }

  /// Gives up ownership: the caller frees the returned status.
  [[nodiscard]] kiln_status_t release() {
    return std::exchange(status_, nullptr);
  }

 private:
  kiln_status_t status_ = nullptr;
};

}  // namespace kiln

#endif  // KILN_RUNTIME_API_HPP_
