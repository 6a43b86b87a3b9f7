// A growable, 64-byte aligned host buffer (arena, slots, KV storage).
#ifndef KILN_RUNTIME_BUFFER_H_
#define KILN_RUNTIME_BUFFER_H_

#include <cstdint>
#include <cstdlib>
#include <utility>

namespace kiln {

/// A growable buffer aligned for vector loads; contents are not kept when it
/// grows (the memory plan guarantees the previous occupant is dead).
class AlignedBuffer {
 public:
  AlignedBuffer() = default;
  ~AlignedBuffer() { std::free(data_); }
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
  AlignedBuffer(AlignedBuffer&& o) noexcept : data_(o.data_), capacity_(o.capacity_) {
    o.data_ = nullptr;
    o.capacity_ = 0;
  }
  AlignedBuffer& operator=(AlignedBuffer&& o) noexcept {
    Swap(o);
    return *this;
  }
  /// Ensures room for `bytes`; false when memory runs out.
  bool Reserve(uint64_t bytes);
  uint8_t* data() const { return data_; }
  uint64_t capacity() const { return capacity_; }
  void Swap(AlignedBuffer& other) {
    std::swap(data_, other.data_);
    std::swap(capacity_, other.capacity_);
  }

 private:
  uint8_t* data_ = nullptr;
  uint64_t capacity_ = 0;
};

}  // namespace kiln

#endif  // KILN_RUNTIME_BUFFER_H_
