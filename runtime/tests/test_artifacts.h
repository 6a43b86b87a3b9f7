// Hand-built .kiln artifacts for the runtime's tests: the container bytes
// and a manifest written here, so the runtime is tested on its own.
#ifndef KILN_RUNTIME_TESTS_TEST_ARTIFACTS_H_
#define KILN_RUNTIME_TESTS_TEST_ARTIFACTS_H_

#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "kiln/runtime/api.hpp"
#include "kiln/runtime/artifact_format.h"

namespace kiln_test {

/// A .kiln container with a manifest, a weights section and, when given, a
/// kernels section.
inline std::string Container(const std::string& manifest, const std::string& weights,
                      const std::string& kernels = std::string()) {
  std::string out(64, '\0');
  std::vector<kiln_artifact_section_v1_t> table;
  auto add = [&](uint32_t kind, const std::string& bytes, uint32_t log2) {
    size_t a = size_t(1) << log2;
    out.resize((out.size() + a - 1) / a * a, '\0');
    kiln_artifact_section_v1_t e{};
    e.kind = kind;
    e.alignment_log2 = log2;
    e.offset = out.size();
    e.size = bytes.size();
    table.push_back(e);
    out += bytes;
  };
  add(KILN_SECTION_MANIFEST, manifest, 3);
  add(KILN_SECTION_WEIGHTS, weights, 6);
  if (!kernels.empty()) add(KILN_SECTION_KERNELS, kernels, 12);
  out.resize((out.size() + 7) / 8 * 8, '\0');
  kiln_artifact_header_v1_t h{};
  std::memcpy(h.magic, "KILN", 4);
  h.version_major = KILN_ARTIFACT_VERSION_MAJOR;
  h.version_minor = KILN_ARTIFACT_VERSION_MINOR;
  h.header_size = sizeof(h);
  h.section_count = uint32_t(table.size());
  h.section_table_offset = out.size();
  out.append(reinterpret_cast<const char*>(table.data()), table.size() * sizeof(table[0]));
  h.file_size = out.size();
  std::memcpy(&out[0], &h, sizeof(h));
  return out;
}

class TempFile {
 public:
  explicit TempFile(const std::string& bytes) {
    char name[] = "/tmp/kiln-test-XXXXXX";
    int fd = mkstemp(name);
    path_ = name;
    if (fd >= 0) {
      if (write(fd, bytes.data(), bytes.size()) != ssize_t(bytes.size())) path_.clear();
      close(fd);
    }
  }
  ~TempFile() {
    if (!path_.empty()) unlink(path_.c_str());
  }
  const char* path() const { return path_.c_str(); }

 private:
  std::string path_;
};

/// A decoder whose logits are a one-hot row of an embedding table: the next
/// token after t is (t + 1) % 8. Its "KV cache" holds the ids as floats
/// ([B, 1, T, 1] per layer), so the test can check what the runtime kept.
inline std::string CountingLmWeights() {
  const int V = 8;
  std::vector<float> table(V * V, -10.f);
  for (int t = 0; t < V; ++t) table[size_t(t * V + (t + 1) % V)] = 10.f;
  std::string weights(table.size() * sizeof(float), '\0');
  std::memcpy(&weights[0], table.data(), weights.size());
  return weights;
}

/// The counting decoder with its cache as a !kiln.kv_cache the graph
/// appends to in place (what kiln-form-kv-cache makes): the ONNX past and
/// present tensors are the cache's key and value parts.
inline std::string CacheLmManifest() {
  return R"({
    "format": "kiln-manifest", "schema_version": 1, "target": "cpu",
    "model": {"generation": true, "vocab_size": 8, "eos_token_ids": [7],
              "max_sequence_length": 16, "padding": "none",
              "kv_cache": {"layout": "bhsd", "dtype": "f32", "kv_heads": 1,
                           "head_dim": 1, "v_head_dim": 1, "layers": 1}},
    "inputs": [
      {"name": "input_ids", "value": 0, "dtype": "i64", "shape": [-1, -1],
       "dims": ["batch", "seq"], "role": "input_ids"},
      {"name": "past_key", "value": 1, "dtype": "f32", "shape": [-1, 1, -1, 1],
       "dims": ["batch", "", "past", ""], "role": "past_key", "layer": 0, "part": "key"},
      {"name": "past_value", "value": 1, "dtype": "f32", "shape": [-1, 1, -1, 1],
       "dims": ["batch", "", "past", ""], "role": "past_value", "layer": 0, "part": "value"}],
    "outputs": [
      {"name": "logits", "value": 3, "dtype": "f32", "shape": [-1, -1, 8], "role": "logits"},
      {"name": "present_key", "value": 6, "dtype": "f32", "shape": [-1, 1, -1, 1],
       "role": "present_key", "layer": 0, "part": "key"},
      {"name": "present_value", "value": 6, "dtype": "f32", "shape": [-1, 1, -1, 1],
       "role": "present_value", "layer": 0, "part": "value"}],
    "weights": [{"name": "table", "dtype": "f32", "shape": [8, 8], "size": 256,
                 "kind": "parameter", "location": "embedded", "offset": 0}],
    "memory_plan": {"alignment": 64, "arena_bytes": 0, "slots": 2},
    "values": [
      {"kind": "input", "dtype": "i64", "shape": [-1, -1]},
      {"kind": "kv_cache", "dtype": "f32", "shape": [-1, -1, 1, 1], "layout": "contiguous",
       "kv_heads": 1, "head_dim": 1, "v_head_dim": 1, "input": true},
      {"kind": "weight", "dtype": "f32", "shape": [8, 8], "weight": 0},
      {"kind": "temp", "dtype": "f32", "shape": [-1, -1, 8], "slot": 0},
      {"kind": "temp", "dtype": "f32", "shape": [-1, -1], "slot": 1},
      {"kind": "temp", "dtype": "f32", "shape": [-1, -1, 1, 1], "view_of": 4},
      {"kind": "kv_cache", "dtype": "f32", "shape": [-1, -1, 1, 1], "layout": "contiguous",
       "kv_heads": 1, "head_dim": 1, "v_head_dim": 1}],
    "launches": [
      {"op": "gather", "in": [2, 0], "out": [3], "attrs": {"axis": 0}, "loc": "embed"},
      {"op": "cast", "in": [0], "out": [4]},
      {"op": "reshape", "in": [4], "out": [5], "alias": [[0, 0]]},
      {"op": "kv_cache_append", "in": [1, 5, 5, null, null], "out": [6], "loc": "append"}]
  })";
}

inline std::string StatusText(const kiln::Status& s) { return s.ok() ? "" : s.message(); }

}  // namespace kiln_test

#endif  // KILN_RUNTIME_TESTS_TEST_ARTIFACTS_H_
