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

namespace detail {
/// A move-only owner of a C handle released with `Release`.
template <typename Handle, void (*Release)(Handle)>
class Owned {
 public:
  Owned() = default;
  explicit Owned(Handle h) : h_(h) {}
  Owned(Owned&& o) noexcept : h_(std::exchange(o.h_, nullptr)) {}
  Owned& operator=(Owned&& o) noexcept {
    if (this != &o) {
      if (h_) Release(h_);
      h_ = std::exchange(o.h_, nullptr);
    }
    return *this;
  }
  Owned(const Owned&) = delete;
  Owned& operator=(const Owned&) = delete;
  ~Owned() {
    if (h_) Release(h_);
  }
  Handle get() const { return h_; }
  explicit operator bool() const { return h_ != nullptr; }

 private:
  Handle h_ = nullptr;
};
}  // namespace detail

/// A loaded model (kiln_model_t). Thread-safety as kiln_model_t.
class Model : public detail::Owned<kiln_model_t, kiln_model_release> {
 public:
  using Owned::Owned;
  /// Loads `path`; `options` may be NULL for the defaults.
  static Status Load(const char* path, Model* out,
                     const kiln_model_options_t* options = nullptr) {
    kiln_model_t m = nullptr;
    Status s(kiln_model_load(path, options, &m));
    *out = Model(m);
    return s;
  }
};

/// A session (kiln_session_t): one call at a time.
class Session : public detail::Owned<kiln_session_t, kiln_session_release> {
 public:
  using Owned::Owned;
  static Status Create(const Model& model, Session* out,
                       const kiln_session_options_t* options = nullptr) {
    kiln_session_t s = nullptr;
    Status st(kiln_session_create(model.get(), options, &s));
    *out = Session(s);
    return st;
  }
};

/// The result of a generate call (kiln_generation_t).
class Generation
    : public detail::Owned<kiln_generation_t, kiln_generation_release> {
 public:
  using Owned::Owned;
  static Status Run(const Session& session, const int64_t* const* prompts,
                    const size_t* lengths, size_t batch,
                    const kiln_generate_options_t* options, Generation* out) {
    kiln_generation_t g = nullptr;
    Status s(kiln_session_generate(session.get(), prompts, lengths, batch,
                                   options, &g));
    *out = Generation(g);
    return s;
  }
};

}  // namespace kiln

#endif  // KILN_RUNTIME_API_HPP_
