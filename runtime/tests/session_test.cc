// The model, session and generation C API on small hand-written artifacts
// (container bytes and manifest built here, so the runtime is tested on its
// own): loading and validation, one forward, input checks, profiling, and
// generation with a "language model" whose next token is known exactly.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "kiln/runtime/api.h"
#include "kiln/runtime/api.hpp"
#include "kiln/runtime/artifact_format.h"
#include "test_artifacts.h"

namespace {

using kiln_test::CacheLmManifest;
using kiln_test::Container;
using kiln_test::CountingLmWeights;
using kiln_test::StatusText;
using kiln_test::TempFile;

std::string AffineWeights() {
  const float w[6] = {1, -1, 0.5f, 2, -3, 0.25f};
  const float b[2] = {0.1f, -0.2f};
  std::string weights(64 + sizeof(b), '\0');
  std::memcpy(&weights[0], w, sizeof(w));
  std::memcpy(&weights[64], b, sizeof(b));
  return weights;
}

/// y = x @ W + b, then softmax over the last axis. x [?, 3], W [3, 2].
std::string AffineManifest() {
  return R"({
    "format": "kiln-manifest", "schema_version": 1, "target": "cpu",
    "model": {"generation": false, "generation_unsupported": "no input_ids input"},
    "inputs": [{"name": "x", "value": 0, "dtype": "f32", "shape": [-1, 3],
                "dims": ["batch", ""], "role": "input"}],
    "outputs": [{"name": "y", "value": 4, "dtype": "f32", "shape": [-1, 2], "role": "output"}],
    "weights": [
      {"name": "W", "dtype": "f32", "shape": [3, 2], "size": 24, "kind": "parameter",
       "location": "embedded", "offset": 0},
      {"name": "b", "dtype": "f32", "shape": [2], "size": 8, "kind": "parameter",
       "location": "embedded", "offset": 64}],
    "memory_plan": {"alignment": 64, "arena_bytes": 0, "slots": 2},
    "values": [
      {"kind": "input", "dtype": "f32", "shape": [-1, 3]},
      {"kind": "weight", "dtype": "f32", "shape": [3, 2], "weight": 0},
      {"kind": "weight", "dtype": "f32", "shape": [2], "weight": 1},
      {"kind": "temp", "dtype": "f32", "shape": [-1, 2], "slot": 0},
      {"kind": "temp", "dtype": "f32", "shape": [-1, 2], "slot": 1}],
    "launches": [
      {"op": "matmul", "in": [0, 1, 2], "out": [3], "loc": "affine"},
      {"op": "softmax", "in": [3], "out": [4], "attrs": {"axis": -1}}]
  })";
}

std::string AffineSoftmaxArtifact() { return Container(AffineManifest(), AffineWeights()); }

std::string CountingLmManifest(int64_t max_seq) {
  return R"({
    "format": "kiln-manifest", "schema_version": 1, "target": "cpu",
    "model": {"generation": true, "vocab_size": 8, "eos_token_ids": [7],
              "max_sequence_length": )" + std::to_string(max_seq) + R"(, "padding": "none",
              "kv_cache": {"layout": "bhsd", "dtype": "f32", "kv_heads": 1,
                           "head_dim": 1, "v_head_dim": 1, "layers": 1}},
    "inputs": [
      {"name": "input_ids", "value": 0, "dtype": "i64", "shape": [-1, -1],
       "dims": ["batch", "seq"], "role": "input_ids"},
      {"name": "past_key", "value": 1, "dtype": "f32", "shape": [-1, 1, -1, 1],
       "dims": ["batch", "", "past", ""], "role": "past_key", "layer": 0},
      {"name": "past_value", "value": 2, "dtype": "f32", "shape": [-1, 1, -1, 1],
       "dims": ["batch", "", "past", ""], "role": "past_value", "layer": 0}],
    "outputs": [
      {"name": "logits", "value": 4, "dtype": "f32", "shape": [-1, -1, 8], "role": "logits"},
      {"name": "present_key", "value": 7, "dtype": "f32", "shape": [-1, 1, -1, 1],
       "role": "present_key", "layer": 0},
      {"name": "present_value", "value": 8, "dtype": "f32", "shape": [-1, 1, -1, 1],
       "role": "present_value", "layer": 0}],
    "weights": [{"name": "table", "dtype": "f32", "shape": [8, 8], "size": 256,
                 "kind": "parameter", "location": "embedded", "offset": 0}],
    "memory_plan": {"alignment": 64, "arena_bytes": 0, "slots": 5},
    "values": [
      {"kind": "input", "dtype": "i64", "shape": [-1, -1]},
      {"kind": "input", "dtype": "f32", "shape": [-1, 1, -1, 1]},
      {"kind": "input", "dtype": "f32", "shape": [-1, 1, -1, 1]},
      {"kind": "weight", "dtype": "f32", "shape": [8, 8], "weight": 0},
      {"kind": "temp", "dtype": "f32", "shape": [-1, -1, 8], "slot": 0},
      {"kind": "temp", "dtype": "f32", "shape": [-1, -1], "slot": 1},
      {"kind": "temp", "dtype": "f32", "shape": [-1, 1, -1, 1], "view_of": 5},
      {"kind": "temp", "dtype": "f32", "shape": [-1, 1, -1, 1], "slot": 2},
      {"kind": "temp", "dtype": "f32", "shape": [-1, 1, -1, 1], "slot": 3}],
    "launches": [
      {"op": "gather", "in": [3, 0], "out": [4], "attrs": {"axis": 0}, "loc": "embed"},
      {"op": "cast", "in": [0], "out": [5]},
      {"op": "reshape", "in": [5], "out": [6], "alias": [[0, 0]]},
      {"op": "concat", "in": [1, 6], "out": [7], "attrs": {"axis": 2}},
      {"op": "concat", "in": [2, 6], "out": [8], "attrs": {"axis": 2}}]
  })";
}

std::string CountingLmArtifact(int64_t max_seq) {
  return Container(CountingLmManifest(max_seq), CountingLmWeights());
}


/// Loads `manifest` with `from` replaced by `to` and expects the load to fail
/// with `code` and a message containing `message`.
void ExpectLoadFails(std::string manifest, const std::string& weights, const char* from,
                     const char* to, kiln_status_code_t code, const char* message,
                     const std::string& kernels = std::string()) {
  SCOPED_TRACE(to);
  size_t at = manifest.find(from);
  ASSERT_NE(at, std::string::npos) << from;
  manifest.replace(at, std::strlen(from), to);
  TempFile f(Container(manifest, weights, kernels));
  kiln_model_t m;
  kiln::Status s(kiln_model_load(f.path(), nullptr, &m));
  EXPECT_EQ(s.code(), code) << StatusText(s);
  EXPECT_NE(StatusText(s).find(message), std::string::npos) << StatusText(s) << " (wanted: " << message << ")";
  EXPECT_EQ(m, nullptr);
}

TEST(Model, LoadsAndDescribesItsInputsAndOutputs) {
  TempFile f(AffineSoftmaxArtifact());
  kiln::Model model;
  ASSERT_TRUE(kiln::Model::Load(f.path(), &model).ok());
  ASSERT_EQ(kiln_model_input_count(model.get()), 1u);
  ASSERT_EQ(kiln_model_output_count(model.get()), 1u);
  kiln_tensor_info_t info;
  ASSERT_TRUE(kiln::Status(kiln_model_input_info(model.get(), 0, &info)).ok());
  EXPECT_STREQ(info.name, "x");
  EXPECT_EQ(info.dtype, KILN_DTYPE_F32);
  ASSERT_EQ(info.rank, 2u);
  EXPECT_EQ(info.shape[0], -1);
  EXPECT_EQ(info.shape[1], 3);
  EXPECT_STREQ(info.dim_names[0], "batch");
  EXPECT_STREQ(info.role, "input");
  kiln::Status s(kiln_model_output_info(model.get(), 1, &info));
  EXPECT_EQ(s.code(), KILN_STATUS_OUT_OF_RANGE);
  EXPECT_EQ(info.name, nullptr);
  kiln_model_info_t mi;
  ASSERT_TRUE(kiln::Status(kiln_model_info(model.get(), &mi)).ok());
  EXPECT_EQ(mi.generation, 0);
  EXPECT_STREQ(mi.generation_unsupported, "no input_ids input");
  EXPECT_EQ(mi.launch_count, 2u);
  EXPECT_EQ(mi.weight_bytes, 32u);
}

TEST(Model, RejectsBadArgumentsAndFiles) {
  kiln_model_t m = reinterpret_cast<kiln_model_t>(1);
  kiln::Status s(kiln_model_load(nullptr, nullptr, &m));
  EXPECT_EQ(s.code(), KILN_STATUS_INVALID_ARGUMENT);
  EXPECT_EQ(m, nullptr);
  s = kiln::Status(kiln_model_load("/nonexistent/model.kiln", nullptr, &m));
  EXPECT_EQ(s.code(), KILN_STATUS_NOT_FOUND);
  kiln_model_options_t o;
  kiln_model_options_init(&o);
  o.struct_size = sizeof(o) + 8;  // from a newer header than this library
  TempFile f(AffineSoftmaxArtifact());
  s = kiln::Status(kiln_model_load(f.path(), &o, &m));
  EXPECT_EQ(s.code(), KILN_STATUS_INVALID_ARGUMENT);
  EXPECT_NE(std::string(s.message()).find("struct_size"), std::string::npos);
}

TEST(Model, ValidatesTheManifest) {
  struct Case {
    const char* from;
    const char* to;
    kiln_status_code_t code;
    const char* message;
  } cases[] = {
      {"\"schema_version\": 1", "\"schema_version\": 7", KILN_STATUS_FAILED_PRECONDITION,
       "manifest schema version 7"},
      {"\"op\": \"softmax\"", "\"op\": \"no_such_op\"", KILN_STATUS_UNIMPLEMENTED,
       "no CPU kernel for kiln.no_such_op"},
      {"\"in\": [3], \"out\": [4]", "\"in\": [4], \"out\": [4]", KILN_STATUS_DATA_LOSS,
       "operand 4 is not defined before the launch"},
      {"\"slot\": 1}", "\"slot\": 9}", KILN_STATUS_DATA_LOSS, "values[4]: slot 9 out of range"},
      {"\"offset\": 64}", "\"offset\": 6400}", KILN_STATUS_DATA_LOSS,
       "weight 'b' (offset 6400, 8 bytes) lies outside"},
      {"\"size\": 24", "\"size\": 20", KILN_STATUS_DATA_LOSS, "size 20 does not match f32 [3, 2]"},
      {"\"target\": \"cpu\"", "\"target\": \"cuda\"", KILN_STATUS_DATA_LOSS,
       "target 'cuda' without a 'cuda' object"},
      {"\"target\": \"cpu\"", "\"target\": \"npu\"", KILN_STATUS_FAILED_PRECONDITION,
       "the artifact targets 'npu'"},
  };
  for (const Case& c : cases)
    ExpectLoadFails(AffineManifest(), AffineWeights(), c.from, c.to, c.code, c.message);
}

TEST(Model, ChecksKvWindows) {
  // A windowed cache (fixed capacity, see generate.cc) is declared on each of
  // a layer's four KV tensors; they must agree, and the window be sane.
  struct Case {
    const char* from;
    const char* to;
    const char* message;
  } cases[] = {
      {"\"role\": \"past_key\", \"layer\": 0", "\"role\": \"past_key\", \"layer\": 0, \"window\": 4",
       "layer 0's past and present key/value disagree on the KV window"},
      {"\"role\": \"present_value\", \"layer\": 0",
       "\"role\": \"present_value\", \"layer\": 0, \"window\": -2", "window -2 out of range"},
  };
  for (const Case& c : cases)
    ExpectLoadFails(CountingLmManifest(16), CountingLmWeights(), c.from, c.to,
                    KILN_STATUS_DATA_LOSS, c.message);
}

TEST(Model, ChecksKvCacheValues) {
  // A !kiln.kv_cache input is filled by exactly one key and one value input
  // of its type; only kv_cache_append makes a cache, once per cache.
  struct Case {
    const char* from;
    const char* to;
    const char* message;
  } cases[] = {
      {"\"role\": \"past_value\", \"layer\": 0, \"part\": \"value\"",
       "\"role\": \"past_value\", \"layer\": 0, \"part\": \"key\"",
       "inputs[2]: does not match its value"},
      {"\"part\": \"value\"}],\n    \"outputs\"", "\"part\": \"values\"}],\n    \"outputs\"",
       "part 'values' is neither 'key' nor 'value'"},
      {"\"layout\": \"contiguous\",\n       \"kv_heads\": 1, \"head_dim\": 1, \"v_head_dim\": 1, \"input\": true",
       "\"layout\": \"ring\",\n       \"kv_heads\": 1, \"head_dim\": 1, \"v_head_dim\": 1, \"input\": true",
       "KV-cache layout 'ring' is not one this runtime has (contiguous, paged)"},
      {"\"layout\": \"contiguous\",\n       \"kv_heads\": 1, \"head_dim\": 1, \"v_head_dim\": 1, \"input\": true",
       "\"layout\": \"paged\",\n       \"kv_heads\": 1, \"head_dim\": 1, \"v_head_dim\": 1, \"input\": true",
       "missing integer 'block_size'"},
      {"\"layout\": \"contiguous\",\n       \"kv_heads\": 1, \"head_dim\": 1, \"v_head_dim\": 1, \"input\": true",
       "\"layout\": \"paged\", \"block_size\": 0,\n       \"kv_heads\": 1, \"head_dim\": 1, \"v_head_dim\": 1, \"input\": true",
       "paged KV-cache block size 0 is out of range"},
      {"\"layout\": \"contiguous\",\n       \"kv_heads\": 1, \"head_dim\": 1, \"v_head_dim\": 1, \"input\": true",
       "\"layout\": \"paged\", \"block_size\": 4,\n       \"kv_heads\": 1, \"head_dim\": 1, \"v_head_dim\": 1, \"input\": true",
       "a KV-cache result must be kv_cache_append's, of its cache operand's type"},
      {"\"layout\": \"contiguous\",\n       \"kv_heads\": 1, \"head_dim\": 1, \"v_head_dim\": 1, \"input\": true",
       "\"layout\": \"contiguous\", \"storage\": \"f64\",\n       \"kv_heads\": 1, \"head_dim\": 1, \"v_head_dim\": 1, \"input\": true",
       "KV-cache storage type f64 is not the element type or i8, i4, f8E4M3FN"},
      {"\"layout\": \"contiguous\",\n       \"kv_heads\": 1, \"head_dim\": 1, \"v_head_dim\": 1, \"input\": true",
       "\"layout\": \"contiguous\", \"storage\": \"i8\",\n       \"kv_heads\": 1, \"head_dim\": 1, \"v_head_dim\": 1, \"input\": true",
       "missing string 'scale_dtype'"},
      {"\"layout\": \"contiguous\",\n       \"kv_heads\": 1, \"head_dim\": 1, \"v_head_dim\": 1, \"input\": true",
       "\"layout\": \"contiguous\", \"storage\": \"i8\", \"scale_dtype\": \"i8\", \"group\": 0,\n       \"kv_heads\": 1, \"head_dim\": 1, \"v_head_dim\": 1, \"input\": true",
       "KV-cache scale type i8 is not f32 or f16"},
      {"\"layout\": \"contiguous\",\n       \"kv_heads\": 1, \"head_dim\": 1, \"v_head_dim\": 1, \"input\": true",
       "\"layout\": \"contiguous\", \"storage\": \"i4\", \"scale_dtype\": \"f16\", \"group\": 0,\n       \"kv_heads\": 1, \"head_dim\": 1, \"v_head_dim\": 1, \"input\": true",
       "an i4 KV cache needs even head dims"},
      {"\"layout\": \"contiguous\",\n       \"kv_heads\": 1, \"head_dim\": 1, \"v_head_dim\": 1, \"input\": true",
       "\"layout\": \"contiguous\", \"storage\": \"i8\", \"scale_dtype\": \"f16\", \"group\": 2,\n       \"kv_heads\": 1, \"head_dim\": 1, \"v_head_dim\": 1, \"input\": true",
       "KV quantization group 2 does not divide the head dims"},
      {"\"kv_heads\": 1, \"head_dim\": 1, \"v_head_dim\": 1, \"input\": true",
       "\"kv_heads\": 2, \"head_dim\": 1, \"v_head_dim\": 1, \"input\": true",
       "a KV cache's shape must be [?, ?, kv_heads, head_dim]"},
      {"{\"op\": \"cast\", \"in\": [0], \"out\": [4]}",
       "{\"op\": \"cast\", \"in\": [0], \"out\": [6]}",
       "launches[1] (kiln.cast): a KV-cache result must be kv_cache_append's"},
      {"\"out\": [6], \"loc\": \"append\"}]",
       "\"out\": [6], \"loc\": \"append\"},\n      {\"op\": \"shape_of\", \"in\": [1], \"out\": [4]}]",
       "operand 1 is a KV cache read after it was appended to"},
      {"{\"op\": \"kv_cache_append\", \"in\": [1, 5, 5, null, null]",
       "{\"op\": \"kv_cache_read\", \"in\": [1, 5, 5, null, null]",
       "a KV-cache result must be kv_cache_append's"},
      {"\"name\": \"present_key\", \"value\": 6", "\"name\": \"present_key\", \"value\": 5",
       "outputs[1]: does not match its value"},
  };
  for (const Case& c : cases)
    ExpectLoadFails(CacheLmManifest(), CountingLmWeights(), c.from, c.to, KILN_STATUS_DATA_LOSS,
                    c.message);
  // Without its value input the cache is incomplete.
  std::string m = CacheLmManifest();
  size_t a = m.find(",\n      {\"name\": \"past_value\"");
  size_t b = m.find("}],\n    \"outputs\"");
  ASSERT_NE(a, std::string::npos);
  ASSERT_NE(b, std::string::npos);
  m.erase(a, b - a + 1);
  TempFile f(Container(m, CountingLmWeights()));
  kiln_model_t model;
  kiln::Status s(kiln_model_load(f.path(), nullptr, &model));
  EXPECT_EQ(s.code(), KILN_STATUS_DATA_LOSS);
  EXPECT_NE(StatusText(s).find("a KV-cache input without both its key and value inputs"),
            std::string::npos)
      << StatusText(s);
}

TEST(Session, FillsACacheFromPastTensorsAndReturnsPresents) {
  TempFile f(Container(CacheLmManifest(), CountingLmWeights()));
  kiln::Model model;
  ASSERT_TRUE(kiln::Model::Load(f.path(), &model).ok());
  kiln::Session session;
  ASSERT_TRUE(kiln::Session::Create(model, &session).ok());
  // Two sequences, past lengths 2 then 0, 3 new tokens each time: the
  // presents are the pasts with the new ids after them, per sequence.
  for (int64_t past : {2, 0, 3}) {
    SCOPED_TRACE(past);
    const int64_t S = 3;
    std::vector<int64_t> ids = {1, 2, 3, 4, 5, 6};
    std::vector<float> pk(size_t(2 * past)), pv(size_t(2 * past));
    for (int64_t i = 0; i < 2 * past; ++i) {
      pk[size_t(i)] = 10.f + float(i);
      pv[size_t(i)] = -10.f - float(i);
    }
    int64_t ids_shape[2] = {2, S}, kv_shape[4] = {2, 1, past, 1};
    kiln_tensor_view_t in[3] = {{KILN_DTYPE_I64, 2, ids_shape, ids.data()},
                                {KILN_DTYPE_F32, 4, kv_shape, pk.data()},
                                {KILN_DTYPE_F32, 4, kv_shape, pv.data()}};
    kiln::Status s(kiln_session_run(session.get(), in, 3));
    ASSERT_TRUE(s.ok()) << s.ToString();
    for (size_t o : {1, 2}) {
      kiln_tensor_view_t t;
      ASSERT_TRUE(kiln::Status(kiln_session_output(session.get(), o, &t)).ok());
      ASSERT_EQ(t.rank, 4u);
      EXPECT_EQ(t.shape[0], 2);
      EXPECT_EQ(t.shape[1], 1);
      EXPECT_EQ(t.shape[2], past + S);
      EXPECT_EQ(t.shape[3], 1);
      const float* d = static_cast<const float*>(t.data);
      const std::vector<float>& p = o == 1 ? pk : pv;
      for (int64_t b = 0; b < 2; ++b)
        for (int64_t r = 0; r < past + S; ++r)
          EXPECT_EQ(d[b * (past + S) + r],
                    r < past ? p[size_t(b * past + r)] : float(ids[size_t(b * S + r - past)]))
              << "b " << b << " row " << r;
    }
    // The caller's past tensors are read, never written.
    for (int64_t i = 0; i < 2 * past; ++i) EXPECT_EQ(pk[size_t(i)], 10.f + float(i));
  }
  // Key and value pasts of different lengths are refused.
  std::vector<int64_t> ids = {1, 2};
  std::vector<float> pk(4), pv(2);
  int64_t ids_shape[2] = {2, 1}, k_shape[4] = {2, 1, 2, 1}, v_shape[4] = {2, 1, 1, 1};
  kiln_tensor_view_t in[3] = {{KILN_DTYPE_I64, 2, ids_shape, ids.data()},
                              {KILN_DTYPE_F32, 4, k_shape, pk.data()},
                              {KILN_DTYPE_F32, 4, v_shape, pv.data()}};
  kiln::Status s(kiln_session_run(session.get(), in, 3));
  EXPECT_EQ(s.code(), KILN_STATUS_INVALID_ARGUMENT);
  EXPECT_NE(StatusText(s).find("'past' is 1 in input 2 'past_value' but 2 in input 1 'past_key'"),
            std::string::npos)
      << StatusText(s);
}

TEST(GenerateWithCache, AppendsInPlace) {
  TempFile f(Container(CacheLmManifest(), CountingLmWeights()));
  kiln::Model model;
  ASSERT_TRUE(kiln::Model::Load(f.path(), &model).ok());
  kiln::Session session;
  ASSERT_TRUE(kiln::Session::Create(model, &session).ok());
  const int64_t a[] = {1, 2}, b[] = {0, 1, 2, 3, 4};
  const int64_t* prompts[] = {a, b};
  size_t lens[] = {2, 5};
  kiln_generate_options_t o;
  kiln_generate_options_init(&o);
  o.max_new_tokens = 4;
  o.ignore_eos = 1;
  // Twice on one session: the second generation gets fresh caches.
  for (int round = 0; round < 2; ++round) {
    kiln::Generation gen;
    kiln::Status s = kiln::Generation::Run(session, prompts, lens, 2, &o, &gen);
    ASSERT_TRUE(s.ok()) << s.ToString();
    const int64_t* toks;
    size_t n;
    ASSERT_TRUE(kiln::Status(kiln_generation_sequence(gen.get(), 0, &toks, &n, nullptr)).ok());
    EXPECT_EQ(std::vector<int64_t>(toks, toks + n), (std::vector<int64_t>{3, 4, 5, 6}));
    ASSERT_TRUE(kiln::Status(kiln_generation_sequence(gen.get(), 1, &toks, &n, nullptr)).ok());
    EXPECT_EQ(std::vector<int64_t>(toks, toks + n), (std::vector<int64_t>{5, 6, 7, 0}));
  }
  // Afterwards plain runs fill the cache from their tensors again.
  std::vector<int64_t> ids = {6};
  std::vector<float> pk = {1.5f}, pv = {2.5f};
  int64_t ids_shape[2] = {1, 1}, kv_shape[4] = {1, 1, 1, 1};
  kiln_tensor_view_t in[3] = {{KILN_DTYPE_I64, 2, ids_shape, ids.data()},
                              {KILN_DTYPE_F32, 4, kv_shape, pk.data()},
                              {KILN_DTYPE_F32, 4, kv_shape, pv.data()}};
  ASSERT_TRUE(kiln::Status(kiln_session_run(session.get(), in, 3)).ok());
  kiln_tensor_view_t t;
  ASSERT_TRUE(kiln::Status(kiln_session_output(session.get(), 2, &t)).ok());
  ASSERT_EQ(t.shape[2], 2);
  EXPECT_EQ(static_cast<const float*>(t.data)[0], 2.5f);
  EXPECT_EQ(static_cast<const float*>(t.data)[1], 6.f);
}

/// y = x @ [W1 | W2], with [W1 | W2] a weight the runtime packs at load.
std::string PackedManifest() {
  return R"({
    "format": "kiln-manifest", "schema_version": 1, "target": "cpu",
    "model": {"generation": false},
    "inputs": [{"name": "x", "value": 0, "dtype": "f32", "shape": [-1, 3], "role": "input"}],
    "outputs": [{"name": "y", "value": 2, "dtype": "f32", "shape": [-1, 4], "role": "output"}],
    "weights": [
      {"name": "W1", "dtype": "f32", "shape": [3, 2], "size": 24, "kind": "parameter",
       "location": "embedded", "offset": 0},
      {"name": "W2", "dtype": "f32", "shape": [3, 2], "size": 24, "kind": "parameter",
       "location": "embedded", "offset": 64},
      {"name": "W1+W2", "dtype": "f32", "shape": [3, 4], "size": 48, "kind": "parameter",
       "location": "packed", "parts": [0, 1], "axis": 1}],
    "memory_plan": {"alignment": 64, "arena_bytes": 0, "slots": 1},
    "values": [
      {"kind": "input", "dtype": "f32", "shape": [-1, 3]},
      {"kind": "weight", "dtype": "f32", "shape": [3, 4], "weight": 2},
      {"kind": "temp", "dtype": "f32", "shape": [-1, 4], "slot": 0}],
    "launches": [{"op": "matmul", "in": [0, 1], "out": [2]}]
  })";
}

TEST(Model, PacksWeightsAtLoad) {
  // W1 = [[1, -1], [0.5, 2], [-3, 0.25]] and W2 = W1 + 10, row-major.
  const float w1[6] = {1, -1, 0.5f, 2, -3, 0.25f};
  float w2[6];
  for (int i = 0; i < 6; ++i) w2[i] = w1[i] + 10;
  std::string weights(64 + sizeof(w2), '\0');
  std::memcpy(&weights[0], w1, sizeof(w1));
  std::memcpy(&weights[64], w2, sizeof(w2));
  TempFile f(Container(PackedManifest(), weights));
  kiln::Model model;
  kiln::Status s = kiln::Model::Load(f.path(), &model);
  ASSERT_TRUE(s.ok()) << s.ToString();
  kiln::Session session;
  ASSERT_TRUE(kiln::Session::Create(model, &session).ok());
  const float x[3] = {0.5f, -2, 1.5f};
  int64_t shape[2] = {1, 3};
  kiln_tensor_view_t in = {KILN_DTYPE_F32, 2, shape, x};
  s = kiln::Status(kiln_session_run(session.get(), &in, 1));
  ASSERT_TRUE(s.ok()) << s.ToString();
  kiln_tensor_view_t out;
  ASSERT_TRUE(kiln::Status(kiln_session_output(session.get(), 0, &out)).ok());
  ASSERT_EQ(out.shape[1], 4);
  const float* y = static_cast<const float*>(out.data);
  for (int n = 0; n < 4; ++n) {
    const float* w = n < 2 ? w1 : w2;
    float want = 0;
    for (int k = 0; k < 3; ++k) want += x[k] * w[k * 2 + n % 2];
    EXPECT_NEAR(y[n], want, 1e-5f) << "column " << n;
  }

  struct Case {
    const char* from;
    const char* to;
    const char* message;
  } cases[] = {
      {"\"parts\": [0, 1]", "\"parts\": [0, 5]", "part 5 is not an earlier weight"},
      {"\"parts\": [0, 1]", "\"parts\": [0]", "needs at least 2 parts"},
      {"\"axis\": 1}", "\"axis\": 2}", "axis 2 out of range"},
      {"\"axis\": 1}", "\"axis\": 0}", "does not match [3, 4] off axis 0"},
      {"\"shape\": [3, 4], \"size\": 48", "\"shape\": [3, 5], \"size\": 60",
       "parts add up to 4 along axis 1, not 5"},
  };
  for (const Case& c : cases)
    ExpectLoadFails(PackedManifest(), weights, c.from, c.to, KILN_STATUS_DATA_LOSS, c.message);
}

TEST(Session, RunsOneForwardAndChecksInputs) {
  TempFile f(AffineSoftmaxArtifact());
  kiln::Model model;
  ASSERT_TRUE(kiln::Model::Load(f.path(), &model).ok());
  kiln_session_options_t so;
  kiln_session_options_init(&so);
  so.num_threads = 2;
  so.profile = 1;
  kiln::Session session;
  ASSERT_TRUE(kiln::Session::Create(model, &session, &so).ok());
  kiln_tensor_view_t out;
  kiln::Status s(kiln_session_output(session.get(), 0, &out));
  EXPECT_EQ(s.code(), KILN_STATUS_FAILED_PRECONDITION);

  const float x[6] = {0.5f, -1, 2, 1, 0.25f, -0.75f};
  const float w[6] = {1, -1, 0.5f, 2, -3, 0.25f};
  const float b[2] = {0.1f, -0.2f};
  int64_t shape[2] = {2, 3};
  kiln_tensor_view_t in = {KILN_DTYPE_F32, 2, shape, x};
  s = kiln::Status(kiln_session_run(session.get(), &in, 1));
  ASSERT_TRUE(s.ok()) << s.ToString();
  ASSERT_TRUE(kiln::Status(kiln_session_output(session.get(), 0, &out)).ok());
  ASSERT_EQ(out.rank, 2u);
  EXPECT_EQ(out.shape[0], 2);
  EXPECT_EQ(out.shape[1], 2);
  const float* y = static_cast<const float*>(out.data);
  for (int r = 0; r < 2; ++r) {
    double z[2];
    for (int c = 0; c < 2; ++c) {
      z[c] = b[c];
      for (int k = 0; k < 3; ++k) z[c] += double(x[r * 3 + k]) * w[k * 2 + c];
    }
    double m = std::max(z[0], z[1]);
    double e0 = std::exp(z[0] - m), e1 = std::exp(z[1] - m);
    EXPECT_NEAR(y[r * 2 + 0], e0 / (e0 + e1), 1e-6);  // f32 compute: 1e-6
    EXPECT_NEAR(y[r * 2 + 1], e1 / (e0 + e1), 1e-6);
  }

  // Wrong dtype, rank, static dimension, missing data, count.
  kiln_tensor_view_t bad = in;
  bad.dtype = KILN_DTYPE_F16;
  s = kiln::Status(kiln_session_run(session.get(), &bad, 1));
  EXPECT_EQ(s.code(), KILN_STATUS_INVALID_ARGUMENT);
  EXPECT_NE(StatusText(s).find("input 0 'x' is f16; the model takes f32"), std::string::npos);
  int64_t wrong[2] = {2, 4};
  bad = in;
  bad.shape = wrong;
  s = kiln::Status(kiln_session_run(session.get(), &bad, 1));
  EXPECT_NE(StatusText(s).find("input 0 'x' has shape [2, 4]; the model takes [?, 3]"),
            std::string::npos)
      << StatusText(s);
  bad = in;
  bad.data = nullptr;
  s = kiln::Status(kiln_session_run(session.get(), &bad, 1));
  EXPECT_NE(StatusText(s).find("has 6 elements but no data"), std::string::npos);
  kiln_tensor_view_t two[2] = {in, in};
  s = kiln::Status(kiln_session_run(session.get(), two, 2));
  EXPECT_NE(StatusText(s).find("the model takes 1 inputs; 2 were given"), std::string::npos);
  // A failed run leaves no outputs behind.
  s = kiln::Status(kiln_session_output(session.get(), 0, &out));
  EXPECT_EQ(s.code(), KILN_STATUS_FAILED_PRECONDITION);

  const kiln_op_profile_t* prof;
  size_t n;
  ASSERT_TRUE(kiln::Status(kiln_session_profile(session.get(), &prof, &n)).ok());
  ASSERT_EQ(n, 2u);
  EXPECT_EQ(prof[0].launches + prof[1].launches, 2u);  // one successful run
}

TEST(Session, EmptyBatchRuns) {
  TempFile f(AffineSoftmaxArtifact());
  kiln::Model model;
  ASSERT_TRUE(kiln::Model::Load(f.path(), &model).ok());
  kiln::Session session;
  ASSERT_TRUE(kiln::Session::Create(model, &session).ok());
  int64_t shape[2] = {0, 3};
  kiln_tensor_view_t in = {KILN_DTYPE_F32, 2, shape, nullptr};
  kiln::Status s(kiln_session_run(session.get(), &in, 1));
  ASSERT_TRUE(s.ok()) << s.ToString();
  kiln_tensor_view_t out;
  ASSERT_TRUE(kiln::Status(kiln_session_output(session.get(), 0, &out)).ok());
  EXPECT_EQ(out.shape[0], 0);
  const kiln_op_profile_t* prof;
  size_t n;
  s = kiln::Status(kiln_session_profile(session.get(), &prof, &n));
  EXPECT_EQ(s.code(), KILN_STATUS_FAILED_PRECONDITION);
}

struct Collected {
  std::vector<std::pair<size_t, int64_t>> tokens;
  int64_t stop_at = -1;
};

int32_t Collect(void* user, size_t seq, int64_t token, size_t) {
  auto* c = static_cast<Collected*>(user);
  c->tokens.push_back({seq, token});
  return token == c->stop_at ? 1 : 0;
}

class Generate : public ::testing::Test {
 protected:
  void SetUp() override {
    file_ = std::make_unique<TempFile>(CountingLmArtifact(16));
    ASSERT_TRUE(kiln::Model::Load(file_->path(), &model_).ok());
    kiln_session_options_t so;
    kiln_session_options_init(&so);
    so.num_threads = 2;
    ASSERT_TRUE(kiln::Session::Create(model_, &session_, &so).ok());
  }
  std::unique_ptr<TempFile> file_;
  kiln::Model model_;
  kiln::Session session_;
};

TEST_F(Generate, GreedyFollowsTheModelAndStopsOnEos) {
  const int64_t a[] = {1, 2}, b[] = {4, 5, 6, 3};
  const int64_t* prompts[] = {a, b};
  size_t lens[] = {2, 4};
  kiln_generate_options_t o;
  kiln_generate_options_init(&o);
  o.max_new_tokens = 6;
  Collected c;
  o.callback = Collect;
  o.user_data = &c;
  kiln::Generation gen;
  kiln::Status s = kiln::Generation::Run(session_, prompts, lens, 2, &o, &gen);
  ASSERT_TRUE(s.ok()) << s.ToString();
  const int64_t* toks;
  size_t n;
  kiln_stop_reason_t why;
  // After 2: 3 4 5 6 7 (eos 7 is included).
  ASSERT_TRUE(kiln::Status(kiln_generation_sequence(gen.get(), 0, &toks, &n, &why)).ok());
  EXPECT_EQ(std::vector<int64_t>(toks, toks + n), (std::vector<int64_t>{3, 4, 5, 6, 7}));
  EXPECT_EQ(why, KILN_STOP_EOS);
  // After 3: 4 5 6 7.
  ASSERT_TRUE(kiln::Status(kiln_generation_sequence(gen.get(), 1, &toks, &n, &why)).ok());
  EXPECT_EQ(std::vector<int64_t>(toks, toks + n), (std::vector<int64_t>{4, 5, 6, 7}));
  EXPECT_EQ(why, KILN_STOP_EOS);
  EXPECT_EQ(c.tokens.size(), 9u);  // the callback saw every token
  kiln_generation_stats_t st;
  ASSERT_TRUE(kiln::Status(kiln_generation_stats(gen.get(), &st)).ok());
  EXPECT_EQ(st.generated_tokens, 9u);
  EXPECT_GT(st.decode_steps, 0u);
  EXPECT_GT(st.time_to_first_token_ms, 0.0);
}

TEST_F(Generate, MaxTokensIgnoreEosAndCallbackStop) {
  const int64_t a[] = {6};
  const int64_t* prompts[] = {a};
  size_t lens[] = {1};
  kiln_generate_options_t o;
  kiln_generate_options_init(&o);
  o.max_new_tokens = 10;
  o.ignore_eos = 1;
  kiln::Generation gen;
  ASSERT_TRUE(kiln::Generation::Run(session_, prompts, lens, 1, &o, &gen).ok());
  const int64_t* toks;
  size_t n;
  kiln_stop_reason_t why;
  ASSERT_TRUE(kiln::Status(kiln_generation_sequence(gen.get(), 0, &toks, &n, &why)).ok());
  EXPECT_EQ(std::vector<int64_t>(toks, toks + n),
            (std::vector<int64_t>{7, 0, 1, 2, 3, 4, 5, 6, 7, 0}));
  EXPECT_EQ(why, KILN_STOP_MAX_TOKENS);

  Collected c;
  c.stop_at = 1;
  o.callback = Collect;
  o.user_data = &c;
  ASSERT_TRUE(kiln::Generation::Run(session_, prompts, lens, 1, &o, &gen).ok());
  ASSERT_TRUE(kiln::Status(kiln_generation_sequence(gen.get(), 0, &toks, &n, &why)).ok());
  EXPECT_EQ(std::vector<int64_t>(toks, toks + n), (std::vector<int64_t>{7, 0, 1}));
  EXPECT_EQ(why, KILN_STOP_CALLBACK);
}

TEST_F(Generate, SamplingIsSeededAndBounded) {
  // Temperature so high that the one-hot logits barely matter: the draws
  // spread over the vocabulary, the same seed repeats them, another seed
  // does not.
  const int64_t a[] = {0};
  const int64_t* prompts[] = {a};
  size_t lens[] = {1};
  kiln_generate_options_t o;
  kiln_generate_options_init(&o);
  o.max_new_tokens = 12;
  o.ignore_eos = 1;
  o.temperature = 100.f;
  o.seed = 42;
  auto run = [&](uint64_t seed, float top_p, int top_k) {
    o.seed = seed;
    o.top_p = top_p;
    o.top_k = top_k;
    kiln::Generation gen;
    kiln::Status s = kiln::Generation::Run(session_, prompts, lens, 1, &o, &gen);
    EXPECT_TRUE(s.ok()) << s.ToString();
    const int64_t* toks;
    size_t n;
    EXPECT_TRUE(kiln::Status(kiln_generation_sequence(gen.get(), 0, &toks, &n, nullptr)).ok());
    return std::vector<int64_t>(toks, toks + n);
  };
  std::vector<int64_t> x = run(42, 1.f, 0), y = run(42, 1.f, 0), z = run(43, 1.f, 0);
  EXPECT_EQ(x, y);
  EXPECT_NE(x, z);
  for (int64_t t : x) EXPECT_TRUE(t >= 0 && t < 8);
  // top_k 1 and a tiny top_p are greedy again: 1 2 3 ...
  std::vector<int64_t> greedy = {1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3, 4};
  EXPECT_EQ(run(5, 1.f, 1), greedy);
  EXPECT_EQ(run(5, 1e-6f, 0), greedy);
}

TEST_F(Generate, RejectsBadRequests) {
  const int64_t ok[] = {1, 2}, bad[] = {1, 9};
  const int64_t* prompts[] = {ok, bad};
  size_t lens[] = {2, 2};
  kiln_generate_options_t o;
  kiln_generate_options_init(&o);
  kiln_generation_t g = reinterpret_cast<kiln_generation_t>(1);
  kiln::Status s(kiln_session_generate(session_.get(), prompts, lens, 2, &o, &g));
  EXPECT_EQ(s.code(), KILN_STATUS_INVALID_ARGUMENT);
  EXPECT_NE(StatusText(s).find("prompt 1: token 1 is 9, outside the vocabulary [0, 8)"),
            std::string::npos);
  EXPECT_EQ(g, nullptr);

  o.max_new_tokens = 15;  // 2 + 15 > 16
  s = kiln::Status(kiln_session_generate(session_.get(), prompts, lens, 1, &o, &g));
  EXPECT_EQ(s.code(), KILN_STATUS_RESOURCE_EXHAUSTED);
  EXPECT_NE(StatusText(s).find("the KV cache holds 16 tokens per sequence; a prompt of 2 plus "
                               "15 new tokens needs 17"),
            std::string::npos);
  o.max_new_tokens = 0;
  s = kiln::Status(kiln_session_generate(session_.get(), prompts, lens, 1, &o, &g));
  EXPECT_EQ(s.code(), KILN_STATUS_INVALID_ARGUMENT);
  o.max_new_tokens = 4;
  o.top_p = 0.f;
  s = kiln::Status(kiln_session_generate(session_.get(), prompts, lens, 1, &o, &g));
  EXPECT_EQ(s.code(), KILN_STATUS_INVALID_ARGUMENT);
  o.top_p = 1.f;
  size_t empty[] = {0};
  s = kiln::Status(kiln_session_generate(session_.get(), prompts, empty, 1, &o, &g));
  EXPECT_NE(StatusText(s).find("prompt 0 is empty"), std::string::npos);
  s = kiln::Status(kiln_session_generate(session_.get(), prompts, lens, 0, &o, &g));
  EXPECT_NE(StatusText(s).find("the batch is empty"), std::string::npos);
}

TEST(GenerateUnsupported, SaysWhy) {
  TempFile f(AffineSoftmaxArtifact());
  kiln::Model model;
  ASSERT_TRUE(kiln::Model::Load(f.path(), &model).ok());
  kiln::Session session;
  ASSERT_TRUE(kiln::Session::Create(model, &session).ok());
  const int64_t a[] = {1};
  const int64_t* prompts[] = {a};
  size_t lens[] = {1};
  kiln_generation_t g;
  kiln::Status s(kiln_session_generate(session.get(), prompts, lens, 1, nullptr, &g));
  EXPECT_EQ(s.code(), KILN_STATUS_FAILED_PRECONDITION);
  EXPECT_NE(StatusText(s).find("cannot drive generation: no input_ids input"), std::string::npos);
}

//===----------------------------------------------------------------------===//
// Devices
//===----------------------------------------------------------------------===//

TEST(Device, CpuIsAlwaysThere) {
  int32_t n = -1;
  ASSERT_TRUE(kiln::Status(kiln_device_count(KILN_DEVICE_CPU, &n)).ok());
  EXPECT_EQ(n, 1);
  kiln_device_info_t d;
  ASSERT_TRUE(kiln::Status(kiln_device_info(KILN_DEVICE_CPU, 0, &d)).ok());
  EXPECT_EQ(d.kind, KILN_DEVICE_CPU);
  EXPECT_GT(std::strlen(d.name), 0u);
  EXPECT_GT(d.multiprocessors, 0);
  EXPECT_GT(d.memory_bytes, 0u);
  kiln::Status s(kiln_device_info(KILN_DEVICE_CPU, 1, &d));
  EXPECT_EQ(s.code(), KILN_STATUS_OUT_OF_RANGE);
  EXPECT_EQ(d.name[0], '\0');
  EXPECT_STREQ(kiln_device_kind_name(KILN_DEVICE_AUTO), "auto");
  EXPECT_STREQ(kiln_device_kind_name(KILN_DEVICE_CUDA), "cuda");
  EXPECT_EQ(kiln_device_kind_name(kiln_device_kind_t(9)), nullptr);
}

TEST(Device, RejectsBadQueries) {
  int32_t n = 7;
  EXPECT_EQ(kiln::Status(kiln_device_count(KILN_DEVICE_AUTO, &n)).code(),
            KILN_STATUS_INVALID_ARGUMENT);
  EXPECT_EQ(n, 0);
  EXPECT_EQ(kiln::Status(kiln_device_count(KILN_DEVICE_CPU, nullptr)).code(),
            KILN_STATUS_INVALID_ARGUMENT);
  EXPECT_EQ(kiln::Status(kiln_device_info(kiln_device_kind_t(5), 0, nullptr)).code(),
            KILN_STATUS_INVALID_ARGUMENT);
}

// Whatever this machine has: a GPU is described, its absence is UNAVAILABLE
// with the reason, never another code or an empty message.
TEST(Device, CudaIsDescribedOrExplained) {
  int32_t n = -1;
  kiln::Status s(kiln_device_count(KILN_DEVICE_CUDA, &n));
  if (!s.ok()) {
    EXPECT_EQ(s.code(), KILN_STATUS_UNAVAILABLE) << s.message();
    EXPECT_EQ(n, 0);
    EXPECT_TRUE(std::strstr(s.message(), "CUDA") || std::strstr(s.message(), "cuda"))
        << s.message();
    kiln_device_info_t d;
    EXPECT_EQ(kiln::Status(kiln_device_info(KILN_DEVICE_CUDA, 0, &d)).code(),
              KILN_STATUS_UNAVAILABLE);
    return;
  }
  ASSERT_GT(n, 0);
  kiln_device_info_t d;
  ASSERT_TRUE(kiln::Status(kiln_device_info(KILN_DEVICE_CUDA, 0, &d)).ok());
  EXPECT_EQ(d.kind, KILN_DEVICE_CUDA);
  EXPECT_GE(d.compute_capability, 50);
  EXPECT_GT(d.multiprocessors, 0);
  EXPECT_GT(d.memory_bytes, 0u);
  EXPECT_GE(d.driver_version, 12000);
  EXPECT_EQ(kiln::Status(kiln_device_info(KILN_DEVICE_CUDA, n, &d)).code(),
            KILN_STATUS_OUT_OF_RANGE);
}

// The driver is opened once per process, so each override runs in a fresh
// process (a death test in the threadsafe style re-executes the binary).
void ExpectDriverRefused(const char* library, const char* message) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        setenv("KILN_CUDA_DRIVER", library, 1);
        int32_t n = -1;
        kiln::Status s(kiln_device_count(KILN_DEVICE_CUDA, &n));
        std::fprintf(stderr, "%s\n", s.ok() ? "ok" : s.message());
        std::exit(s.code() == KILN_STATUS_UNAVAILABLE && n == 0 ? 3 : 4);
      },
      testing::ExitedWithCode(3), message);
}

TEST(Device, MissingDriverLibrary) {
  ExpectDriverRefused("/nonexistent/libcuda.so.1", "no CUDA driver: /nonexistent/libcuda.so.1");
}

TEST(Device, LibraryThatIsNotTheDriver) {
  ExpectDriverRefused("libc.so.6", "libc.so.6 is not the CUDA driver \\(it has no cuInit\\)");
}

TEST(SessionDevice, PicksAndExplainsTheDevice) {
  TempFile f(AffineSoftmaxArtifact());
  kiln::Model model;
  ASSERT_TRUE(kiln::Model::Load(f.path(), &model).ok());
  kiln_session_options_t so;
  kiln_session_options_init(&so);
  EXPECT_EQ(so.device, KILN_DEVICE_AUTO);
  {
    // auto: a CPU-only artifact runs on the CPU, saying why.
    kiln::Session session;
    ASSERT_TRUE(kiln::Session::Create(model, &session, &so).ok());
    const char* why = nullptr;
    EXPECT_EQ(kiln_session_device(session.get(), &why), KILN_DEVICE_CPU);
    EXPECT_STREQ(why, "the artifact has no CUDA kernels (compile it with kiln-compile "
                      "--target=cuda)");
  }
  {
    so.device = KILN_DEVICE_CPU;
    kiln::Session session;
    ASSERT_TRUE(kiln::Session::Create(model, &session, &so).ok());
    const char* why = nullptr;
    EXPECT_EQ(kiln_session_device(session.get(), &why), KILN_DEVICE_CPU);
    EXPECT_STREQ(why, "requested");
  }
  auto create_fails = [&](kiln_device_kind_t kind, int32_t ordinal, kiln_status_code_t code,
                          const char* message) {
    so.device = kind;
    so.device_ordinal = ordinal;
    kiln::Session session;
    kiln::Status s = kiln::Session::Create(model, &session, &so);
    EXPECT_EQ(s.code(), code) << StatusText(s);
    EXPECT_NE(StatusText(s).find(message), std::string::npos) << StatusText(s);
    EXPECT_EQ(session.get(), nullptr);
  };
  create_fails(KILN_DEVICE_CUDA, 0, KILN_STATUS_FAILED_PRECONDITION,
               "device cuda: the artifact has no CUDA kernels");
  create_fails(KILN_DEVICE_CPU, 1, KILN_STATUS_INVALID_ARGUMENT, "one CPU device");
  create_fails(kiln_device_kind_t(7), 0, KILN_STATUS_INVALID_ARGUMENT, "unknown device kind 7");
  // Options from before the device fields existed still work (auto).
  kiln_session_options_init(&so);
  so.struct_size = offsetof(kiln_session_options_t, device);
  so.device = KILN_DEVICE_CUDA;  // past struct_size: not read
  kiln::Session session;
  ASSERT_TRUE(kiln::Session::Create(model, &session, &so).ok());
  EXPECT_EQ(kiln_session_device(session.get(), nullptr), KILN_DEVICE_CPU);
}

/// The affine model as kiln-compile --target=cuda writes it: the softmax
/// has a CUDA kernel with a cubin and PTX in the kernels section.
std::string CudaAffineManifest() {
  std::string m = AffineManifest();
  m.replace(m.find(R"("target": "cpu")"), 15, R"("target": "cuda")");
  m.replace(m.find(R"("attrs": {"axis": -1}})"), 22, R"("attrs": {"axis": -1}, "cuda": 0})");
  m.insert(m.rfind('}'), R"(,
    "cuda": {"nvrtc": "13.0", "archs": ["sm_90a"], "ptx": "compute_90",
      "kernels": [{"entry": "kiln_softmax_f32", "op": "softmax", "block": 256,
        "grid": {"rule": "rows", "cols": 2},
        "images": [
          {"arch": "sm_90a", "format": "cubin", "offset": 0, "size": 300, "registers": 20,
           "shared_bytes": 32, "spill_bytes": 0, "stack_bytes": 0},
          {"arch": "compute_90", "format": "ptx", "offset": 512, "size": 200}]}]})");
  return m;
}

TEST(CudaArtifact, LoadsChecksAndRunsOnTheCpu) {
  const std::string kernels(1024, '\x7f');
  TempFile f(Container(CudaAffineManifest(), AffineWeights(), kernels));
  kiln::Model model;
  kiln::Status s = kiln::Model::Load(f.path(), &model);
  ASSERT_TRUE(s.ok()) << StatusText(s);
  kiln_model_info_t info;
  ASSERT_TRUE(kiln::Status(kiln_model_info(model.get(), &info)).ok());
  EXPECT_STREQ(info.target, "cuda");
  // auto: without a usable GPU (as on CI) the CPU runs it and says why.
  kiln::Session session;
  ASSERT_TRUE(kiln::Session::Create(model, &session).ok());
  const char* why = nullptr;
  EXPECT_EQ(kiln_session_device(session.get(), &why), KILN_DEVICE_CPU);
  EXPECT_NE(std::string(why), "");
  EXPECT_EQ(std::string(why).find("no CUDA kernels"), std::string::npos) << why;
  const float x[3] = {0.5f, -1, 2};
  const int64_t shape[2] = {1, 3};
  kiln_tensor_view_t in{KILN_DTYPE_F32, 2, shape, x};
  ASSERT_TRUE(kiln::Status(kiln_session_run(session.get(), &in, 1)).ok());
  kiln_tensor_view_t out;
  ASSERT_TRUE(kiln::Status(kiln_session_output(session.get(), 0, &out)).ok());
  const float* y = static_cast<const float*>(out.data);
  EXPECT_NEAR(y[0] + y[1], 1.f, 1e-6f);
}

TEST(CudaArtifact, RejectsInconsistentKernels) {
  const std::string m = CudaAffineManifest(), w = AffineWeights();
  const std::string kernels(1024, '\x7f');
  ExpectLoadFails(m, w, R"("target": "cuda")", R"("target": "cuda")", KILN_STATUS_DATA_LOSS,
                  "the manifest lists CUDA kernels but the artifact has no kernels section");
  ExpectLoadFails(m, w, R"("offset": 512, "size": 200)", R"("offset": 900, "size": 200)",
                  KILN_STATUS_DATA_LOSS,
                  "cuda.kernels[0] (kiln_softmax_f32): image for compute_90 at [900, +200) is "
                  "outside the kernels section (1024 bytes)",
                  kernels);
  ExpectLoadFails(m, w, R"("rule": "rows")", R"("rule": "tiles")", KILN_STATUS_DATA_LOSS,
                  "cuda.kernels[0].grid: unknown rule 'tiles'", kernels);
  ExpectLoadFails(m, w, R"("format": "ptx")", R"("format": "sass")", KILN_STATUS_DATA_LOSS,
                  "cuda.kernels[0].images[1]: format 'sass' is neither cubin nor ptx", kernels);
  ExpectLoadFails(m, w, R"("block": 256)", R"("block": 2048)", KILN_STATUS_DATA_LOSS,
                  "cuda.kernels[0]: block 2048 is not in [1, 1024]", kernels);
  ExpectLoadFails(m, w, R"("op": "softmax", "block")", R"("op": "matmul", "block")",
                  KILN_STATUS_DATA_LOSS, "its CUDA kernel implements kiln.matmul", kernels);
  ExpectLoadFails(m, w, R"("cuda": 0})", R"("cuda": 1})", KILN_STATUS_DATA_LOSS,
                  "'cuda' is not the index of a CUDA kernel", kernels);
  ExpectLoadFails(m, w, R"("target": "cuda")", R"("target": "tpu")",
                  KILN_STATUS_FAILED_PRECONDITION,
                  "the artifact targets 'tpu'; this runtime runs 'cpu' and 'cuda'", kernels);
}


TEST(SessionKv, UsageOfAContiguousCacheAndBadArguments) {
  TempFile f(Container(CacheLmManifest(), CountingLmWeights()));
  kiln::Model model;
  ASSERT_TRUE(kiln::Model::Load(f.path(), &model).ok());
  kiln::Session session;
  ASSERT_TRUE(kiln::Session::Create(model, &session).ok());
  kiln_kv_usage_t u;
  std::memset(&u, 0xFF, sizeof(u));
  u.struct_size = sizeof(u);
  ASSERT_EQ(kiln_session_kv_usage(session.get(), &u), nullptr);
  EXPECT_EQ(u.paged, 0) << "a contiguous cache has no block pool";
  EXPECT_EQ(u.blocks_total, 0);
  EXPECT_EQ(u.reused_tokens, 0u);
  // A caller built against an older, shorter struct: fields past it stay.
  kiln_kv_usage_t old;
  std::memset(&old, 0xAB, sizeof(old));
  old.struct_size = offsetof(kiln_kv_usage_t, blocks_used);
  ASSERT_EQ(kiln_session_kv_usage(session.get(), &old), nullptr);
  EXPECT_EQ(old.paged, 0);
  EXPECT_EQ(old.blocks_used, int64_t(0xABABABABABABABABull)) << "written past struct_size";
  for (size_t bad : {size_t(0), sizeof(u) + 8}) {
    u.struct_size = bad;
    kiln::Status s(kiln_session_kv_usage(session.get(), &u));
    EXPECT_EQ(s.code(), KILN_STATUS_INVALID_ARGUMENT);
    EXPECT_NE(StatusText(s).find("kiln_kv_usage_t.struct_size is"), std::string::npos);
  }
  kiln::Status s(kiln_session_kv_usage(nullptr, &u));
  EXPECT_EQ(s.code(), KILN_STATUS_INVALID_ARGUMENT);
  kiln::Status s2(kiln_session_kv_usage(session.get(), nullptr));
  EXPECT_EQ(s2.code(), KILN_STATUS_INVALID_ARGUMENT);
}

TEST(SessionKv, KvCacheBlocksOutOfRangeIsRefused) {
  TempFile f(Container(CacheLmManifest(), CountingLmWeights()));
  kiln::Model model;
  ASSERT_TRUE(kiln::Model::Load(f.path(), &model).ok());
  kiln_session_options_t o;
  kiln_session_options_init(&o);
  EXPECT_EQ(o.prefix_reuse, 1) << "prefix reuse is on by default";
  o.kv_cache_blocks = -1;
  kiln::Session session;
  kiln::Status s = kiln::Session::Create(model, &session, &o);
  EXPECT_EQ(s.code(), KILN_STATUS_INVALID_ARGUMENT);
  EXPECT_NE(StatusText(s).find("kv_cache_blocks -1 is out of range"), std::string::npos);
}

}  // namespace
