// Reading and writing ONNX TensorProto files (the ONNX backend test layout,
// input_0.pb / output_0.pb) without protobuf: the runtime and its tools must
// build where only CMake and a compiler exist, and a TensorProto is a flat
// message of a dozen fields. Only dense tensors with inline data are read;
// external data and string tensors are rejected with a clear error.
#ifndef KILN_RUNTIME_TOOLS_TENSOR_PROTO_H_
#define KILN_RUNTIME_TOOLS_TENSOR_PROTO_H_

#include <cstdint>
#include <string>
#include <vector>

#include "kiln/runtime/api.h"

namespace kiln::tools {

struct HostTensor {
  std::string name;
  kiln_dtype_t dtype = KILN_DTYPE_INVALID;
  std::vector<int64_t> shape;
  std::vector<uint8_t> data;  // kiln storage layout
};

/// Parses a serialized TensorProto. On failure returns false and sets
/// `error` to a message naming the byte offset and the field.
bool ParseTensorProto(const std::string& bytes, HostTensor* out, std::string* error);

/// Serializes `t` as a TensorProto with raw_data.
std::string SerializeTensorProto(const HostTensor& t);

/// ONNX TensorProto.DataType code <-> kiln dtype (0 / INVALID when none).
kiln_dtype_t DtypeFromOnnx(int64_t code);
int OnnxFromDtype(kiln_dtype_t dtype);

}  // namespace kiln::tools

#endif  // KILN_RUNTIME_TOOLS_TENSOR_PROTO_H_
