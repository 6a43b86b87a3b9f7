//===- OnnxWire.cpp - protobuf wire-format walk of a ModelProto -----------===//

#include "OnnxWire.h"

#include "llvm/Support/FormatVariadic.h"

using namespace mlir::kiln::onnx_wire;

namespace {

/// A cursor over a length-delimited region of the buffer.
class Reader {
public:
  Reader(llvm::StringRef buffer, uint64_t begin, uint64_t end)
      : buffer(buffer), pos(begin), end(end) {}

  bool done() const { return pos >= end; }
  uint64_t position() const { return pos; }

  llvm::Expected<uint64_t> varint() {
    uint64_t value = 0;
    for (unsigned shift = 0; shift < 64; shift += 7) {
      if (pos >= end)
        return fail("truncated varint");
      uint8_t byte = static_cast<uint8_t>(buffer[pos++]);
      value |= static_cast<uint64_t>(byte & 0x7f) << shift;
      if (!(byte & 0x80))
        return value;
    }
    return fail("varint longer than 10 bytes");
  }

  /// Reads a tag; returns (field number, wire type).
  llvm::Expected<std::pair<uint64_t, unsigned>> tag() {
    auto value = varint();
    if (!value)
      return value.takeError();
    return std::make_pair(*value >> 3, static_cast<unsigned>(*value & 7));
  }

  /// Reads the length of a LEN field and returns its [begin, end).
  llvm::Expected<Span> lengthDelimited() {
    auto length = varint();
    if (!length)
      return length.takeError();
    if (*length > end - pos)
      return fail(llvm::formatv("field of {0} bytes runs past the end", *length)
                      .str());
    Span span{pos, *length};
    pos += *length;
    return span;
  }

  llvm::Error skip(unsigned wireType) {
    switch (wireType) {
    case 0:
      return varint().takeError();
    case 1:
      return advance(8);
    case 2:
      return lengthDelimited().takeError();
    case 5:
      return advance(4);
    default:
      return fail(llvm::formatv("unsupported wire type {0}", wireType).str());
    }
  }

private:
  llvm::Error advance(uint64_t n) {
    if (n > end - pos)
      return fail("truncated fixed-width field");
    pos += n;
    return llvm::Error::success();
  }
  llvm::Error fail(const std::string &what) const {
    return llvm::createStringError(
        llvm::formatv("malformed protobuf at offset {0}: {1}", pos, what)
            .str());
  }

  llvm::StringRef buffer;
  uint64_t pos, end;
};

/// The data span of one TensorProto.
llvm::Expected<std::optional<Span>> tensorData(llvm::StringRef buffer,
                                               Span tensor) {
  Reader reader(buffer, tensor.offset, tensor.offset + tensor.length);
  std::optional<Span> data;
  while (!reader.done()) {
    auto tag = reader.tag();
    if (!tag)
      return tag.takeError();
    auto [field, wireType] = *tag;
    // raw_data = 9; packed float_data = 4 and double_data = 10.
    if (wireType == 2 && (field == 9 || field == 4 || field == 10)) {
      auto span = reader.lengthDelimited();
      if (!span)
        return span.takeError();
      data = *span;
      continue;
    }
    if (llvm::Error err = reader.skip(wireType))
      return std::move(err);
  }
  return data;
}

} // namespace

llvm::Expected<std::vector<std::optional<Span>>>
mlir::kiln::onnx_wire::findInitializerData(llvm::StringRef model) {
  std::vector<std::optional<Span>> result;
  Reader top(model, 0, model.size());
  while (!top.done()) {
    auto tag = top.tag();
    if (!tag)
      return tag.takeError();
    auto [field, wireType] = *tag;
    if (field != 7 || wireType != 2) { // ModelProto.graph = 7
      if (llvm::Error err = top.skip(wireType))
        return std::move(err);
      continue;
    }
    auto graph = top.lengthDelimited();
    if (!graph)
      return graph.takeError();
    Reader reader(model, graph->offset, graph->offset + graph->length);
    while (!reader.done()) {
      auto gtag = reader.tag();
      if (!gtag)
        return gtag.takeError();
      if (gtag->first == 5 && gtag->second == 2) { // GraphProto.initializer
        auto tensor = reader.lengthDelimited();
        if (!tensor)
          return tensor.takeError();
        auto data = tensorData(model, *tensor);
        if (!data)
          return data.takeError();
        result.push_back(*data);
        continue;
      }
      if (llvm::Error err = reader.skip(gtag->second))
        return std::move(err);
    }
  }
  return result;
}
