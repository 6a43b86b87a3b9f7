// Decoding and validating the manifest. nlohmann/json is used without
// exceptions, so every access checks the type first: a malformed manifest
// yields DATA_LOSS naming the field, never an abort.
#include "manifest.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <map>

namespace kiln {

namespace {

using json = nlohmann::json;

kiln_status_t Corrupt(const std::string& where, const char* format, ...)
    KILN_PRINTF_FORMAT(2, 3);
kiln_status_t Corrupt(const std::string& where, const char* format, ...) {
  char message[512];
  va_list args;
  va_start(args, format);
  vsnprintf(message, sizeof(message), format, args);
  va_end(args);
  return kiln_status_allocate(KILN_STATUS_DATA_LOSS, nullptr, 0,
                              "corrupt manifest: %s: %s", where.c_str(), message);
}

const json* Field(const json& obj, const char* key) {
  if (!obj.is_object()) return nullptr;
  auto it = obj.find(key);
  return it == obj.end() ? nullptr : &*it;
}

KILN_MUST_USE_RESULT kiln_status_t GetInt(const json& obj, const char* key, const std::string& where,
                     int64_t* out, bool required = true, int64_t def = 0) {
  const json* f = Field(obj, key);
  if (!f) {
    if (!required) {
      *out = def;
      return nullptr;
    }
    return Corrupt(where, "missing integer '%s'", key);
  }
  if (!f->is_number_integer()) return Corrupt(where, "'%s' is not an integer", key);
  *out = f->get<int64_t>();
  return nullptr;
}

KILN_MUST_USE_RESULT kiln_status_t GetString(const json& obj, const char* key, const std::string& where,
                        std::string* out, bool required = true) {
  const json* f = Field(obj, key);
  if (!f) {
    if (!required) return nullptr;
    return Corrupt(where, "missing string '%s'", key);
  }
  if (!f->is_string()) return Corrupt(where, "'%s' is not a string", key);
  *out = f->get<std::string>();
  return nullptr;
}

KILN_MUST_USE_RESULT kiln_status_t GetDtype(const json& obj, const char* key, const std::string& where,
                       kiln_dtype_t* out) {
  std::string name;
  KILN_RETURN_IF_ERROR(GetString(obj, key, where, &name));
  kiln_status_t s = kiln_dtype_from_name(name.c_str(), out);
  if (s) {
    kiln_status_free(s);
    return Corrupt(where, "'%s' names no dtype ('%s')", key, name.c_str());
  }
  return nullptr;
}

KILN_MUST_USE_RESULT kiln_status_t GetDims(const json& obj, const char* key, const std::string& where,
                      Dims* out, bool allow_dynamic) {
  const json* f = Field(obj, key);
  if (!f || !f->is_array()) return Corrupt(where, "missing array '%s'", key);
  if (f->size() > size_t(kMaxRank))
    return Corrupt(where, "'%s' has rank %zu; this runtime supports up to %d", key,
                   f->size(), kMaxRank);
  out->rank = 0;
  for (const json& d : *f) {
    if (!d.is_number_integer()) return Corrupt(where, "'%s' holds a non-integer", key);
    int64_t v = d.get<int64_t>();
    if (v < (allow_dynamic ? -1 : 0))
      return Corrupt(where, "'%s' holds the dimension %lld", key, (long long)v);
    out->push_back(v);
  }
  return nullptr;
}

KILN_MUST_USE_RESULT kiln_status_t GetIntList(const json& obj, const char* key, const std::string& where,
                         std::vector<int64_t>* out) {
  const json* f = Field(obj, key);
  if (!f) return nullptr;
  if (!f->is_array()) return Corrupt(where, "'%s' is not an array", key);
  for (const json& d : *f) {
    if (!d.is_number_integer()) return Corrupt(where, "'%s' holds a non-integer", key);
    out->push_back(d.get<int64_t>());
  }
  return nullptr;
}

/// A packed weight's parts: earlier weights of its dtype (whole bytes per
/// element) and rank whose dims match but along `axis`, where they sum to
/// its own.
KILN_MUST_USE_RESULT kiln_status_t ParsePacked(const json& o, const std::string& where,
                                               const std::vector<WeightDesc>& earlier,
                                               WeightDesc* w) {
  std::vector<int64_t> parts;
  int64_t axis;
  KILN_RETURN_IF_ERROR(GetIntList(o, "parts", where, &parts));
  KILN_RETURN_IF_ERROR(GetInt(o, "axis", where, &axis));
  if (parts.size() < 2) return Corrupt(where, "a packed weight needs at least 2 parts");
  if (kiln_dtype_bit_width(w->dtype) < 8)
    return Corrupt(where, "a packed weight must have whole bytes per element");
  if (axis < 0 || axis >= w->shape.rank) return Corrupt(where, "axis %lld out of range", (long long)axis);
  int64_t total = 0;
  for (int64_t p : parts) {
    if (p < 0 || size_t(p) >= earlier.size())
      return Corrupt(where, "part %lld is not an earlier weight", (long long)p);
    const WeightDesc& part = earlier[size_t(p)];
    if (part.location == WeightDesc::kPacked || part.dtype != w->dtype ||
        part.shape.rank != w->shape.rank)
      return Corrupt(where, "part '%s' is %s %s, not a stored %s weight of rank %d",
                     part.name.c_str(), kiln_dtype_name(part.dtype), part.shape.str().c_str(),
                     kiln_dtype_name(w->dtype), w->shape.rank);
    for (int d = 0; d < w->shape.rank; ++d)
      if (d != axis && part.shape[d] != w->shape[d])
        return Corrupt(where, "part '%s' %s does not match %s off axis %lld", part.name.c_str(),
                       part.shape.str().c_str(), w->shape.str().c_str(), (long long)axis);
    total += part.shape[int(axis)];
    w->parts.push_back(int(p));
  }
  if (total != w->shape[int(axis)])
    return Corrupt(where, "parts add up to %lld along axis %lld, not %lld", (long long)total,
                   (long long)axis, (long long)w->shape[int(axis)]);
  w->axis = int(axis);
  return nullptr;
}

/// Finds where a JSON text stops parsing, for the error message.
struct ErrorLocator : nlohmann::json_sax<json> {
  size_t position = 0;
  bool null() override { return true; }
  bool boolean(bool) override { return true; }
  bool number_integer(number_integer_t) override { return true; }
  bool number_unsigned(number_unsigned_t) override { return true; }
  bool number_float(number_float_t, const string_t&) override { return true; }
  bool string(string_t&) override { return true; }
  bool binary(binary_t&) override { return true; }
  bool start_object(std::size_t) override { return true; }
  bool key(string_t&) override { return true; }
  bool end_object() override { return true; }
  bool start_array(std::size_t) override { return true; }
  bool end_array() override { return true; }
  bool parse_error(std::size_t pos, const std::string&,
                   const nlohmann::detail::exception&) override {
    position = pos;
    return false;
  }
};

KILN_MUST_USE_RESULT kiln_status_t ParseAttrs(const json& obj, const std::string& where, Attrs* out) {
  if (!obj.is_object()) return Corrupt(where, "'attrs' is not an object");
  for (auto it = obj.begin(); it != obj.end(); ++it) {
    const json& v = it.value();
    AttrValue a;
    if (v.is_boolean()) {
      a.kind = AttrValue::kBool;
      a.i = v.get<bool>();
    } else if (v.is_number_integer()) {
      a.kind = AttrValue::kInt;
      a.i = v.get<int64_t>();
    } else if (v.is_number()) {
      a.kind = AttrValue::kFloat;
      a.f = v.get<double>();
    } else if (v.is_string()) {
      a.kind = AttrValue::kString;
      a.s = v.get<std::string>();
    } else if (v.is_array()) {
      bool all_int = true;
      for (const json& x : v) {
        if (!x.is_number()) return Corrupt(where, "attribute '%s' holds a non-number", it.key().c_str());
        all_int &= x.is_number_integer();
      }
      // Either way `floats` holds the values (a float array whose values
      // are all integral, such as [30.0], is written as integers).
      for (const json& x : v) a.floats.push_back(x.get<double>());
      if (all_int) {
        a.kind = AttrValue::kInts;
        for (const json& x : v) a.ints.push_back(x.get<int64_t>());
      } else {
        a.floats.clear();
        a.kind = AttrValue::kFloats;
        for (const json& x : v) a.floats.push_back(x.get<double>());
      }
    } else {
      return Corrupt(where, "attribute '%s' has an unsupported kind", it.key().c_str());
    }
    out->Set(it.key(), std::move(a));
  }
  return nullptr;
}

KILN_MUST_USE_RESULT kiln_status_t ParseIo(const json& list, const char* key, size_t value_count,
                      std::vector<IoDesc>* out) {
  if (!list.is_array()) return Corrupt(key, "not an array");
  for (size_t i = 0; i < list.size(); ++i) {
    const json& o = list[i];
    std::string where = std::string(key) + "[" + std::to_string(i) + "]";
    IoDesc io;
    int64_t value, layer;
    KILN_RETURN_IF_ERROR(GetString(o, "name", where, &io.name));
    KILN_RETURN_IF_ERROR(GetInt(o, "value", where, &value));
    if (value < 0 || size_t(value) >= value_count)
      return Corrupt(where, "value %lld out of range", (long long)value);
    io.value = int(value);
    KILN_RETURN_IF_ERROR(GetDtype(o, "dtype", where, &io.dtype));
    KILN_RETURN_IF_ERROR(GetDims(o, "shape", where, &io.shape, true));
    KILN_RETURN_IF_ERROR(GetString(o, "role", where, &io.role));
    KILN_RETURN_IF_ERROR(GetInt(o, "layer", where, &layer, false, -1));
    io.layer = int(layer);
    KILN_RETURN_IF_ERROR(GetInt(o, "window", where, &io.window, false, 0));
    if (io.window < 0 || io.window > (int64_t(1) << 32))
      return Corrupt(where, "window %lld out of range", (long long)io.window);
    std::string part;
    KILN_RETURN_IF_ERROR(GetString(o, "part", where, &part, false));
    if (part == "key")
      io.part = IoDesc::kKey;
    else if (part == "value")
      io.part = IoDesc::kValue;
    else if (!part.empty())
      return Corrupt(where, "part '%s' is neither 'key' nor 'value'", part.c_str());
    io.dims.assign(size_t(io.shape.rank), "");
    if (const json* d = Field(o, "dims")) {
      if (!d->is_array() || d->size() != size_t(io.shape.rank))
        return Corrupt(where, "'dims' does not name every dimension");
      for (size_t k = 0; k < d->size(); ++k) {
        if (!(*d)[k].is_string()) return Corrupt(where, "'dims' holds a non-string");
        io.dims[k] = (*d)[k].get<std::string>();
      }
    }
    out->push_back(std::move(io));
  }
  // dim_ptrs point into the final vector's strings.
  for (IoDesc& io : *out) {
    io.dim_ptrs.clear();
    for (const std::string& s : io.dims) io.dim_ptrs.push_back(s.c_str());
  }
  return nullptr;
}

}  // namespace

/// The "cuda" object: {nvrtc, archs, ptx, kernels: [{entry, op, block,
/// grid: {rule, cols}, images: [{arch, format, offset, size, ...}]}]}.
kiln_status_t ParseCuda(const json& c, Manifest* m) {
  const json* kernels = Field(c, "kernels");
  if (!kernels || !kernels->is_array()) return Corrupt("cuda", "missing array 'kernels'");
  for (size_t i = 0; i < kernels->size(); ++i) {
    const json& o = (*kernels)[i];
    std::string where = "cuda.kernels[" + std::to_string(i) + "]";
    CudaKernelDesc k;
    int64_t block;
    KILN_RETURN_IF_ERROR(GetString(o, "entry", where, &k.entry));
    KILN_RETURN_IF_ERROR(GetString(o, "op", where, &k.op));
    KILN_RETURN_IF_ERROR(GetInt(o, "block", where, &block));
    if (block < 1 || block > 1024) return Corrupt(where, "block %lld is not in [1, 1024]", (long long)block);
    k.block = int(block);
    const json* grid = Field(o, "grid");
    if (!grid) return Corrupt(where, "missing object 'grid'");
    KILN_RETURN_IF_ERROR(GetString(*grid, "rule", where + ".grid", &k.grid_rule));
    if (k.grid_rule == "rows") {
      KILN_RETURN_IF_ERROR(GetInt(*grid, "cols", where + ".grid", &k.grid_cols));
      if (k.grid_cols < 1) return Corrupt(where + ".grid", "cols %lld is not positive", (long long)k.grid_cols);
    } else if (k.grid_rule != "elements") {
      return Corrupt(where + ".grid", "unknown rule '%s'", k.grid_rule.c_str());
    }
    const json* images = Field(o, "images");
    if (!images || !images->is_array() || images->empty())
      return Corrupt(where, "missing or empty array 'images'");
    for (size_t j = 0; j < images->size(); ++j) {
      const json& im = (*images)[j];
      std::string iw = where + ".images[" + std::to_string(j) + "]";
      CudaImageDesc d;
      std::string format;
      int64_t offset, size, regs, shared;
      KILN_RETURN_IF_ERROR(GetString(im, "arch", iw, &d.arch));
      KILN_RETURN_IF_ERROR(GetString(im, "format", iw, &format));
      if (format != "cubin" && format != "ptx")
        return Corrupt(iw, "format '%s' is neither cubin nor ptx", format.c_str());
      d.ptx = format == "ptx";
      KILN_RETURN_IF_ERROR(GetInt(im, "offset", iw, &offset));
      KILN_RETURN_IF_ERROR(GetInt(im, "size", iw, &size));
      if (offset < 0 || size <= 0 || offset > (int64_t(1) << 48) || size > (int64_t(1) << 48))
        return Corrupt(iw, "range [%lld, +%lld) is invalid", (long long)offset, (long long)size);
      d.offset = uint64_t(offset);
      d.size = uint64_t(size);
      KILN_RETURN_IF_ERROR(GetInt(im, "registers", iw, &regs, false));
      KILN_RETURN_IF_ERROR(GetInt(im, "shared_bytes", iw, &shared, false));
      d.registers = int(std::clamp<int64_t>(regs, 0, 1 << 16));
      d.shared_bytes = shared;
      k.images.push_back(std::move(d));
    }
    m->cuda_kernels.push_back(std::move(k));
  }
  return nullptr;
}

kiln_status_t ParseManifest(const char* text, size_t size, Manifest* m) {
  json root = json::parse(text, text + size, nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded()) {
    ErrorLocator where;
    json::sax_parse(text, text + size, &where, nlohmann::detail::input_format_t::json, false);
    return Corrupt("manifest", "invalid JSON at byte %zu of %zu", where.position, size);
  }
  if (!root.is_object()) return Corrupt("manifest", "not a JSON object");
  std::string format;
  KILN_RETURN_IF_ERROR(GetString(root, "format", "manifest", &format));
  if (format != "kiln-manifest")
    return Corrupt("manifest", "format is '%s', not 'kiln-manifest'", format.c_str());
  int64_t schema;
  KILN_RETURN_IF_ERROR(GetInt(root, "schema_version", "manifest", &schema));
  if (schema != kManifestSchemaVersion)
    return KILN_MAKE_STATUS(KILN_STATUS_FAILED_PRECONDITION,
                            "manifest schema version %lld; this runtime reads version %d",
                            (long long)schema, kManifestSchemaVersion);
  KILN_RETURN_IF_ERROR(GetString(root, "target", "manifest", &m->target));
  if (m->target != "cpu" && m->target != "cuda")
    return KILN_MAKE_STATUS(KILN_STATUS_FAILED_PRECONDITION,
                            "the artifact targets '%s'; this runtime runs 'cpu' and 'cuda'",
                            m->target.c_str());
  if (const json* c = Field(root, "cuda")) KILN_RETURN_IF_ERROR(ParseCuda(*c, m));
  if (m->target == "cuda" && m->cuda_kernels.empty() && Field(root, "cuda") == nullptr)
    return Corrupt("manifest", "target 'cuda' without a 'cuda' object");
  if (const json* src = Field(root, "source"))
    KILN_RETURN_IF_ERROR(GetString(*src, "producer", "source", &m->producer, false));

  // Weights.
  const json* weights = Field(root, "weights");
  if (!weights || !weights->is_array()) return Corrupt("manifest", "missing array 'weights'");
  for (size_t i = 0; i < weights->size(); ++i) {
    const json& o = (*weights)[i];
    std::string where = "weights[" + std::to_string(i) + "]";
    WeightDesc w;
    int64_t size, offset;
    std::string location, kind;
    KILN_RETURN_IF_ERROR(GetString(o, "name", where, &w.name));
    KILN_RETURN_IF_ERROR(GetDtype(o, "dtype", where, &w.dtype));
    KILN_RETURN_IF_ERROR(GetDims(o, "shape", where, &w.shape, false));
    KILN_RETURN_IF_ERROR(GetInt(o, "size", where, &size));
    KILN_RETURN_IF_ERROR(GetString(o, "location", where, &location));
    KILN_RETURN_IF_ERROR(GetString(o, "kind", where, &kind));
    w.constant = kind == "constant";
    if (size < 0 || uint64_t(size) != StorageBytes(w.dtype, w.shape))
      return Corrupt(where, "size %lld does not match %s %s", (long long)size,
                     kiln_dtype_name(w.dtype), w.shape.str().c_str());
    w.size = uint64_t(size);
    if (location == "embedded") {
      w.location = WeightDesc::kEmbedded;
    } else if (location == "params") {
      w.location = WeightDesc::kParams;
    } else if (location == "file") {
      w.location = WeightDesc::kFile;
      KILN_RETURN_IF_ERROR(GetString(o, "file", where, &w.file));
      if (w.file.empty() || w.file[0] == '/' || w.file.find("..") != std::string::npos)
        return Corrupt(where, "file '%s' is not a path inside the model's folder",
                       w.file.c_str());
    } else if (location == "packed") {
      w.location = WeightDesc::kPacked;
      KILN_RETURN_IF_ERROR(ParsePacked(o, where, m->weights, &w));
    } else {
      return Corrupt(where, "unknown location '%s'", location.c_str());
    }
    if (w.location != WeightDesc::kParams && w.location != WeightDesc::kPacked) {
      KILN_RETURN_IF_ERROR(GetInt(o, "offset", where, &offset));
      if (offset < 0) return Corrupt(where, "negative offset");
      w.offset = uint64_t(offset);
    }
    m->weights.push_back(std::move(w));
  }

  // Values.
  const json* values = Field(root, "values");
  if (!values || !values->is_array()) return Corrupt("manifest", "missing array 'values'");
  const json* plan = Field(root, "memory_plan");
  if (!plan) return Corrupt("manifest", "missing 'memory_plan'");
  int64_t slots;
  KILN_RETURN_IF_ERROR(GetInt(*plan, "arena_bytes", "memory_plan", &m->arena_bytes));
  KILN_RETURN_IF_ERROR(GetInt(*plan, "alignment", "memory_plan", &m->alignment));
  KILN_RETURN_IF_ERROR(GetInt(*plan, "slots", "memory_plan", &slots));
  if (m->arena_bytes < 0 || m->arena_bytes > (int64_t(1) << 40) || slots < 0 ||
      slots > 1000000 || m->alignment < 1 || m->alignment > 4096 ||
      (m->alignment & (m->alignment - 1)))
    return Corrupt("memory_plan", "arena, slots or alignment out of range");
  m->slots = int(slots);
  const size_t n = values->size();
  for (size_t i = 0; i < n; ++i) {
    const json& o = (*values)[i];
    std::string where = "values[" + std::to_string(i) + "]";
    ValueDesc v;
    std::string kind;
    KILN_RETURN_IF_ERROR(GetString(o, "kind", where, &kind));
    KILN_RETURN_IF_ERROR(GetDtype(o, "dtype", where, &v.dtype));
    KILN_RETURN_IF_ERROR(GetDims(o, "shape", where, &v.shape, true));
    if (kind == "input") {
      v.kind = ValueDesc::kInput;
    } else if (kind == "weight") {
      int64_t w;
      v.kind = ValueDesc::kWeight;
      KILN_RETURN_IF_ERROR(GetInt(o, "weight", where, &w));
      if (w < 0 || size_t(w) >= m->weights.size())
        return Corrupt(where, "weight %lld out of range", (long long)w);
      v.weight = int(w);
      const WeightDesc& wd = m->weights[size_t(w)];
      if (wd.dtype != v.dtype || wd.shape != v.shape)
        return Corrupt(where, "type differs from weight '%s'", wd.name.c_str());
    } else if (kind == "temp") {
      v.kind = ValueDesc::kTemp;
      int64_t x;
      if (Field(o, "offset")) {
        KILN_RETURN_IF_ERROR(GetInt(o, "offset", where, &x));
        for (int k = 0; k < v.shape.rank; ++k)
          if (v.shape[k] < 0) return Corrupt(where, "a dynamic value placed in the arena");
        uint64_t bytes = StorageBytes(v.dtype, v.shape);
        if (x < 0 || x % m->alignment || uint64_t(x) + bytes > uint64_t(m->arena_bytes))
          return Corrupt(where, "arena offset %lld (+%llu bytes) outside the %lld-byte arena",
                         (long long)x, (unsigned long long)bytes, (long long)m->arena_bytes);
        v.offset = x;
      } else if (Field(o, "slot")) {
        KILN_RETURN_IF_ERROR(GetInt(o, "slot", where, &x));
        if (x < 0 || x >= slots) return Corrupt(where, "slot %lld out of range", (long long)x);
        v.slot = int(x);
      } else if (Field(o, "view_of")) {
        KILN_RETURN_IF_ERROR(GetInt(o, "view_of", where, &x));
        if (x < 0 || size_t(x) >= i) return Corrupt(where, "view_of %lld is not an earlier value", (long long)x);
        v.view_of = int(x);
      } else {
        return Corrupt(where, "a temporary without a placement");
      }
    } else if (kind == "qtensor") {
      v.kind = ValueDesc::kQTensor;
      int64_t d, s, z = -1;
      KILN_RETURN_IF_ERROR(GetInt(o, "data", where, &d));
      KILN_RETURN_IF_ERROR(GetInt(o, "scales", where, &s));
      const json* zp = Field(o, "zero_points");
      if (zp && !zp->is_null()) KILN_RETURN_IF_ERROR(GetInt(o, "zero_points", where, &z));
      for (int64_t c : {d, s, z})
        if (c >= int64_t(i) || c < -1 || (c == -1 && c != z) || d < 0 || s < 0)
          return Corrupt(where, "component %lld is not an earlier value", (long long)c);
      for (int64_t c : {d, s, z})
        if (c >= 0 && m->values[size_t(c)].kind == ValueDesc::kQTensor)
          return Corrupt(where, "component %lld is itself quantized", (long long)c);
      v.q_data = int(d);
      v.q_scales = int(s);
      v.q_zero = int(z);
      KILN_RETURN_IF_ERROR(GetDims(o, "block", where, &v.block, false));
      KILN_RETURN_IF_ERROR(GetDtype(o, "expressed", where, &v.expressed));
      if (v.block.rank != v.shape.rank) return Corrupt(where, "block rank differs from shape");
    } else if (kind == "kv_cache") {
      v.kind = ValueDesc::kKvCache;
      std::string layout;
      KILN_RETURN_IF_ERROR(GetString(o, "layout", where, &layout));
      if (layout == "paged") {
        v.paged = true;
        KILN_RETURN_IF_ERROR(GetInt(o, "block_size", where, &v.block_size));
        if (v.block_size < 1 || v.block_size > (int64_t(1) << 20))
          return Corrupt(where, "paged KV-cache block size %lld is out of range",
                         (long long)v.block_size);
      } else if (layout != "contiguous") {
        return Corrupt(where,
                       "KV-cache layout '%s' is not one this runtime has (contiguous, paged)",
                       layout.c_str());
      }
      if (v.dtype != KILN_DTYPE_F32 && v.dtype != KILN_DTYPE_F16 && v.dtype != KILN_DTYPE_BF16)
        return Corrupt(where, "KV-cache element type %s is not f32, f16 or bf16",
                       kiln_dtype_name(v.dtype));
      v.storage = v.dtype;
      if (Field(o, "storage")) KILN_RETURN_IF_ERROR(GetDtype(o, "storage", where, &v.storage));
      if (v.storage != v.dtype) {
        if (v.storage != KILN_DTYPE_I8 && v.storage != KILN_DTYPE_I4 &&
            v.storage != KILN_DTYPE_F8E4M3FN)
          return Corrupt(where,
                         "KV-cache storage type %s is not the element type or i8, i4, f8E4M3FN",
                         kiln_dtype_name(v.storage));
        KILN_RETURN_IF_ERROR(GetDtype(o, "scale_dtype", where, &v.scale_dtype));
        if (v.scale_dtype != KILN_DTYPE_F32 && v.scale_dtype != KILN_DTYPE_F16)
          return Corrupt(where, "KV-cache scale type %s is not f32 or f16",
                         kiln_dtype_name(v.scale_dtype));
        KILN_RETURN_IF_ERROR(GetInt(o, "group", where, &v.group));
      }
      KILN_RETURN_IF_ERROR(GetInt(o, "kv_heads", where, &v.kv_heads));
      KILN_RETURN_IF_ERROR(GetInt(o, "head_dim", where, &v.head_dim));
      KILN_RETURN_IF_ERROR(GetInt(o, "v_head_dim", where, &v.v_head_dim));
      for (int64_t d : {v.kv_heads, v.head_dim, v.v_head_dim})
        if (d <= 0 || d > (int64_t(1) << 20))
          return Corrupt(where, "KV-cache heads or head dims out of range");
      if (v.shape != Dims{-1, -1, v.kv_heads, v.head_dim})
        return Corrupt(where, "a KV cache's shape must be [?, ?, kv_heads, head_dim]");
      if (v.storage != v.dtype) {
        if (v.group < 0 || (v.group > 0 && (v.head_dim % v.group || v.v_head_dim % v.group)))
          return Corrupt(where, "KV quantization group %lld does not divide the head dims",
                         (long long)v.group);
        if (v.storage == KILN_DTYPE_I4 && (v.head_dim % 2 || v.v_head_dim % 2))
          return Corrupt(where, "an i4 KV cache needs even head dims");
      }
      const json* ci = Field(o, "input");
      if (ci && !ci->is_boolean()) return Corrupt(where, "'input' is not a boolean");
      v.cache_input = ci && ci->get<bool>();
    } else {
      return Corrupt(where, "unknown kind '%s'", kind.c_str());
    }
    m->values.push_back(std::move(v));
  }

  // Inputs and outputs.
  const json* inputs = Field(root, "inputs");
  const json* outputs = Field(root, "outputs");
  if (!inputs || !outputs) return Corrupt("manifest", "missing 'inputs' or 'outputs'");
  KILN_RETURN_IF_ERROR(ParseIo(*inputs, "inputs", n, &m->inputs));
  KILN_RETURN_IF_ERROR(ParseIo(*outputs, "outputs", n, &m->outputs));
  // A KV tensor that is part of a cache: [batch, kv_heads, tokens, dim] of
  // the cache's element type.
  auto matches_cache = [](const IoDesc& io, const ValueDesc& v) {
    const int64_t dim = io.part == IoDesc::kKey ? v.head_dim : v.v_head_dim;
    return v.kind == ValueDesc::kKvCache && v.dtype == io.dtype && io.shape.rank == 4 &&
           (io.shape[1] < 0 || io.shape[1] == v.kv_heads) && (io.shape[3] < 0 || io.shape[3] == dim);
  };
  // Each cache input is filled by exactly one key and one value input.
  std::vector<int> parts(n, 0);
  for (size_t i = 0; i < m->inputs.size(); ++i) {
    const IoDesc& io = m->inputs[i];
    const ValueDesc& v = m->values[size_t(io.value)];
    bool ok = io.part == IoDesc::kTensor
                  ? v.kind == ValueDesc::kInput && v.dtype == io.dtype && v.shape == io.shape
                  : v.cache_input && matches_cache(io, v) && !(parts[size_t(io.value)] & io.part);
    if (!ok) return Corrupt("inputs[" + std::to_string(i) + "]", "does not match its value");
    parts[size_t(io.value)] |= io.part;
  }
  for (size_t i = 0; i < n; ++i)
    if (m->values[i].kind == ValueDesc::kKvCache && m->values[i].cache_input && parts[i] != 3)
      return Corrupt("values[" + std::to_string(i) + "]",
                     "a KV-cache input without both its key and value inputs");
  for (size_t i = 0; i < m->outputs.size(); ++i) {
    const IoDesc& io = m->outputs[i];
    const ValueDesc& v = m->values[size_t(io.value)];
    bool ok = io.part == IoDesc::kTensor
                  ? v.kind != ValueDesc::kQTensor && v.kind != ValueDesc::kKvCache &&
                        v.dtype == io.dtype
                  : matches_cache(io, v);
    if (!ok) return Corrupt("outputs[" + std::to_string(i) + "]", "does not match its value");
  }

  // Launches, in order: each reads only values defined before it.
  const json* launches = Field(root, "launches");
  if (!launches || !launches->is_array()) return Corrupt("manifest", "missing array 'launches'");
  std::vector<bool> defined(n, false);
  for (size_t i = 0; i < n; ++i)
    defined[i] = m->values[i].kind == ValueDesc::kInput || m->values[i].kind == ValueDesc::kWeight ||
                 m->values[i].cache_input;
  // A cache's storage is updated in place, so each cache value is appended
  // to at most once, and read by nothing after that append.
  std::vector<bool> consumed(n, false);
  auto qdefined = [&](size_t v) {
    const ValueDesc& d = m->values[v];
    if (d.kind != ValueDesc::kQTensor) return bool(defined[v]);
    return defined[size_t(d.q_data)] && defined[size_t(d.q_scales)] &&
           (d.q_zero < 0 || defined[size_t(d.q_zero)]);
  };
  for (size_t i = 0; i < launches->size(); ++i) {
    const json& o = (*launches)[i];
    std::string where = "launches[" + std::to_string(i) + "]";
    LaunchDesc l;
    KILN_RETURN_IF_ERROR(GetString(o, "op", where, &l.op));
    KILN_RETURN_IF_ERROR(GetString(o, "loc", where, &l.loc, false));
    where += " (kiln." + l.op + (l.loc.empty() ? "" : " at '" + l.loc + "'") + ")";
    const json* in = Field(o, "in");
    const json* out = Field(o, "out");
    if (!in || !in->is_array() || !out || !out->is_array())
      return Corrupt(where, "missing 'in' or 'out'");
    for (const json& x : *in) {
      if (x.is_null()) {
        l.in.push_back(-1);
        continue;
      }
      if (!x.is_number_integer()) return Corrupt(where, "an operand is not a value index");
      int64_t v = x.get<int64_t>();
      if (v < 0 || size_t(v) >= n || !qdefined(size_t(v)))
        return Corrupt(where, "operand %lld is not defined before the launch", (long long)v);
      if (consumed[size_t(v)])
        return Corrupt(where, "operand %lld is a KV cache read after it was appended to",
                       (long long)v);
      l.in.push_back(int(v));
    }
    for (const json& x : *out) {
      if (!x.is_number_integer()) return Corrupt(where, "a result is not a value index");
      int64_t v = x.get<int64_t>();
      if (v < 0 || size_t(v) >= n || defined[size_t(v)] ||
          (m->values[size_t(v)].kind != ValueDesc::kTemp &&
           m->values[size_t(v)].kind != ValueDesc::kKvCache))
        return Corrupt(where, "result %lld is not a fresh temporary", (long long)v);
      defined[size_t(v)] = true;
      l.out.push_back(int(v));
    }
    // Cache results: only kv_cache_append makes one, from its first
    // operand, a cache of the same geometry.
    for (size_t k = 0; k < l.out.size(); ++k) {
      const ValueDesc& r = m->values[size_t(l.out[k])];
      if (r.kind != ValueDesc::kKvCache) continue;
      const int c = l.in.empty() ? -1 : l.in[0];
      const ValueDesc* src = c >= 0 ? &m->values[size_t(c)] : nullptr;
      if (l.op != "kv_cache_append" || k != 0 || !src || src->kind != ValueDesc::kKvCache ||
          src->dtype != r.dtype || src->kv_heads != r.kv_heads || src->head_dim != r.head_dim ||
          src->v_head_dim != r.v_head_dim || src->storage != r.storage ||
          src->paged != r.paged || src->block_size != r.block_size || src->group != r.group ||
          src->scale_dtype != r.scale_dtype)
        return Corrupt(where, "a KV-cache result must be kv_cache_append's, of its cache operand's type");
      consumed[size_t(c)] = true;
    }
    if (const json* a = Field(o, "attrs")) KILN_RETURN_IF_ERROR(ParseAttrs(*a, where, &l.attrs));
    if (const json* al = Field(o, "alias")) {
      if (!al->is_array()) return Corrupt(where, "'alias' is not an array");
      for (const json& p : *al) {
        if (!p.is_array() || p.size() != 2 || !p[0].is_number_integer() ||
            !p[1].is_number_integer())
          return Corrupt(where, "'alias' holds a malformed pair");
        int64_t oi = p[0].get<int64_t>(), ii = p[1].get<int64_t>();
        if (oi < 0 || size_t(oi) >= l.out.size() || ii < 0 || size_t(ii) >= l.in.size() ||
            l.in[size_t(ii)] < 0)
          return Corrupt(where, "'alias' pair out of range");
        l.alias.push_back({int(oi), int(ii)});
      }
    }
    if (const json* c = Field(o, "cuda")) {
      if (!c->is_number_integer() || c->get<int64_t>() < 0 ||
          uint64_t(c->get<int64_t>()) >= m->cuda_kernels.size())
        return Corrupt(where, "'cuda' is not the index of a CUDA kernel");
      l.cuda = int(c->get<int64_t>());
      if (m->cuda_kernels[size_t(l.cuda)].op != l.op)
        return Corrupt(where, "its CUDA kernel implements kiln.%s",
                       m->cuda_kernels[size_t(l.cuda)].op.c_str());
    }
    l.fn = LookupCpuKernel(l.op);
    if (!l.fn)
      return KILN_MAKE_STATUS(KILN_STATUS_UNIMPLEMENTED,
                              "%s: this runtime has no CPU kernel for kiln.%s",
                              where.c_str(), l.op.c_str());
    m->launches.push_back(std::move(l));
  }
  for (size_t i = 0; i < m->outputs.size(); ++i)
    if (!qdefined(size_t(m->outputs[i].value)))
      return Corrupt("outputs[" + std::to_string(i) + "]", "is never computed");
  // A view must name storage computed before it; temporaries that are views
  // of views resolve at run time, one level at a time.

  // Model facts.
  const json* model = Field(root, "model");
  if (!model) return Corrupt("manifest", "missing 'model'");
  ModelDesc& md = m->model;
  if (const json* g = Field(*model, "generation"); g && g->is_boolean()) md.generation = g->get<bool>();
  KILN_RETURN_IF_ERROR(
      GetString(*model, "generation_unsupported", "model", &md.generation_unsupported, false));
  KILN_RETURN_IF_ERROR(GetInt(*model, "vocab_size", "model", &md.vocab_size, false, -1));
  KILN_RETURN_IF_ERROR(GetIntList(*model, "eos_token_ids", "model", &md.eos));
  KILN_RETURN_IF_ERROR(GetInt(*model, "bos_token_id", "model", &md.bos, false, -1));
  KILN_RETURN_IF_ERROR(GetInt(*model, "pad_token_id", "model", &md.pad, false, -1));
  KILN_RETURN_IF_ERROR(
      GetInt(*model, "max_sequence_length", "model", &md.max_sequence_length, false, 2048));
  std::string padding;
  KILN_RETURN_IF_ERROR(GetString(*model, "padding", "model", &padding, false));
  md.left_padding = padding == "left";
  if (const json* r = Field(*model, "ragged")) {
    if (!r->is_boolean()) return Corrupt("model", "'ragged' is not a boolean");
    md.ragged = r->get<bool>();
  }
  if (const json* kv = Field(*model, "kv_cache")) {
    int64_t layers;
    KILN_RETURN_IF_ERROR(GetInt(*kv, "layers", "model.kv_cache", &layers));
    KILN_RETURN_IF_ERROR(GetInt(*kv, "kv_heads", "model.kv_cache", &md.kv_heads));
    KILN_RETURN_IF_ERROR(GetInt(*kv, "head_dim", "model.kv_cache", &md.head_dim));
    KILN_RETURN_IF_ERROR(GetInt(*kv, "v_head_dim", "model.kv_cache", &md.v_head_dim));
    KILN_RETURN_IF_ERROR(GetDtype(*kv, "dtype", "model.kv_cache", &md.kv_dtype));
    if (layers < 0 || layers > 100000 || md.kv_heads <= 0 || md.head_dim <= 0 ||
        md.v_head_dim <= 0)
      return Corrupt("model.kv_cache", "geometry out of range");
    md.num_layers = int(layers);
  }
  if (const json* p = Field(root, "params")) {
    KILN_RETURN_IF_ERROR(GetString(*p, "file", "params", &m->params_file));
  }

  // Roles for generation.
  m->past_key.assign(size_t(md.num_layers), -1);
  m->past_value.assign(size_t(md.num_layers), -1);
  m->present_key.assign(size_t(md.num_layers), -1);
  m->present_value.assign(size_t(md.num_layers), -1);
  auto place = [&](std::vector<int>& v, const IoDesc& io, int index) -> bool {
    if (io.layer < 0 || io.layer >= md.num_layers) return false;
    v[size_t(io.layer)] = index;
    return true;
  };
  for (size_t i = 0; i < m->inputs.size(); ++i) {
    const IoDesc& io = m->inputs[i];
    if (io.role == "input_ids") m->input_ids = int(i);
    else if (io.role == "attention_mask") m->attention_mask = int(i);
    else if (io.role == "position_ids") m->position_ids = int(i);
    else if (io.role == "past_key" && !place(m->past_key, io, int(i))) md.generation = false;
    else if (io.role == "past_value" && !place(m->past_value, io, int(i))) md.generation = false;
  }
  for (size_t i = 0; i < m->outputs.size(); ++i) {
    const IoDesc& io = m->outputs[i];
    if (io.role == "logits") m->logits = int(i);
    else if (io.role == "present_key" && !place(m->present_key, io, int(i))) md.generation = false;
    else if (io.role == "present_value" && !place(m->present_value, io, int(i))) md.generation = false;
  }
  if (md.generation) {
    bool ok = m->input_ids >= 0 && m->logits >= 0 && md.vocab_size > 0;
    for (int l = 0; l < md.num_layers; ++l)
      ok &= m->past_key[size_t(l)] >= 0 && m->past_value[size_t(l)] >= 0 &&
            m->present_key[size_t(l)] >= 0 && m->present_value[size_t(l)] >= 0;
    if (!ok) return Corrupt("model", "generation is declared but the graph's roles are incomplete");
    for (int l = 0; l < md.num_layers; ++l) {
      const size_t L = size_t(l);
      int64_t w = m->inputs[size_t(m->past_key[L])].window;
      if (m->inputs[size_t(m->past_value[L])].window != w ||
          m->outputs[size_t(m->present_key[L])].window != w ||
          m->outputs[size_t(m->present_value[L])].window != w)
        return Corrupt("model", "layer %d's past and present key/value disagree on the KV window",
                       l);
    }
  }
  return nullptr;
}

}  // namespace kiln
