// Loading models: the container, the manifest, and binding every weight to
// bytes that stay mapped for the model's lifetime.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <new>
#include <nlohmann/json.hpp>
#include <string>

#include "model.h"

KilnMappedFile::~KilnMappedFile() {
  if (data && size) munmap(data, size);
}

kiln_model_s::~kiln_model_s() {
  kiln_artifact_release(params);
  kiln_artifact_release(artifact);
}

namespace {

using kiln::Manifest;
using kiln::WeightDesc;

/// Concatenates each packed weight's parts along its axis into storage of
/// its own: rows of the outer dimensions, each the parts' slices in order.
kiln_status_t BuildPackedWeights(kiln_model_s* model) {
  const Manifest& m = model->manifest;
  for (size_t i = 0; i < m.weights.size(); ++i) {
    const WeightDesc& w = m.weights[i];
    if (w.location != WeightDesc::kPacked) continue;
    const uint64_t elem = kiln_dtype_bit_width(w.dtype) / 8;
    uint64_t outer = 1, inner = elem;
    for (int d = 0; d < w.axis; ++d) outer *= uint64_t(w.shape[d]);
    for (int d = w.axis + 1; d < w.shape.rank; ++d) inner *= uint64_t(w.shape[d]);
    void* raw = nullptr;
    if (posix_memalign(&raw, 64, std::max<uint64_t>(w.size, 64)) != 0)
      return KILN_MAKE_STATUS(KILN_STATUS_RESOURCE_EXHAUSTED,
                              "out of memory packing the %llu-byte weight '%s'",
                              (unsigned long long)w.size, w.name.c_str());
    model->packed.emplace_back(static_cast<uint8_t*>(raw));
    uint8_t* out = model->packed.back().get();
    for (uint64_t o = 0; o < outer; ++o)
      for (int p : w.parts) {
        const WeightDesc& part = m.weights[size_t(p)];
        const uint64_t bytes = uint64_t(part.shape[w.axis]) * inner;
        std::memcpy(out, static_cast<const uint8_t*>(model->weight_data[size_t(p)]) + o * bytes,
                    bytes);
        out += bytes;
      }
    model->weight_data[i] = model->packed.back().get();
  }
  return nullptr;
}

std::string DirOf(const std::string& path) {
  size_t slash = path.rfind('/');
  return slash == std::string::npos ? "." : path.substr(0, slash == 0 ? 1 : slash);
}

kiln_status_t MapFile(const std::string& path, std::unique_ptr<KilnMappedFile>* out) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int e = errno;
    return KILN_MAKE_STATUS(e == ENOENT ? KILN_STATUS_NOT_FOUND
                            : e == EACCES ? KILN_STATUS_PERMISSION_DENIED
                                          : KILN_STATUS_UNAVAILABLE,
                            "cannot open weight file '%s': %s", path.c_str(), strerror(e));
  }
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    return KILN_MAKE_STATUS(KILN_STATUS_INVALID_ARGUMENT, "'%s' is not a regular file",
                            path.c_str());
  }
  auto f = std::unique_ptr<KilnMappedFile>(new (std::nothrow) KilnMappedFile);
  if (!f) {
    close(fd);
    return KILN_MAKE_STATUS(KILN_STATUS_RESOURCE_EXHAUSTED, "out of memory");
  }
  f->size = uint64_t(st.st_size);
  if (f->size) {
    void* p = mmap(nullptr, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      int e = errno;
      close(fd);
      f->size = 0;
      return KILN_MAKE_STATUS(KILN_STATUS_UNAVAILABLE, "cannot map '%s': %s", path.c_str(),
                              strerror(e));
    }
    f->data = p;
  }
  close(fd);
  *out = std::move(f);
  return nullptr;
}

/// Binds --weights=external tensors from a Kiln parameter file, checking
/// each by name, dtype and shape.
kiln_status_t BindParams(kiln_model_s* model, const std::string& path) {
  KILN_RETURN_IF_ERROR(kiln_artifact_open_file(path.c_str(), &model->params));
  kiln_section_info_t index_section, data_section;
  kiln_status_t s = kiln_artifact_find_section(model->params, KILN_SECTION_MANIFEST, &index_section);
  if (!s) s = kiln_artifact_find_section(model->params, KILN_SECTION_WEIGHTS, &data_section);
  if (s) {
    kiln_status_free(s);
    return KILN_MAKE_STATUS(KILN_STATUS_DATA_LOSS,
                            "parameter file '%s' lacks its index or data section", path.c_str());
  }
  using json = nlohmann::json;
  const char* text = static_cast<const char*>(index_section.data);
  json index = json::parse(text, text + index_section.size, nullptr, false);
  auto bad = [&](const char* what) {
    return KILN_MAKE_STATUS(KILN_STATUS_DATA_LOSS, "parameter file '%s': %s", path.c_str(), what);
  };
  if (index.is_discarded() || !index.is_object() || !index.contains("format") ||
      index["format"] != "kiln-params" || !index.contains("tensors") ||
      !index["tensors"].is_array())
    return bad("the index is not a kiln-params JSON object");
  struct Entry {
    kiln_dtype_t dtype;
    kiln::Dims shape;
    uint64_t offset, size;
  };
  std::map<std::string, Entry> entries;
  for (const json& t : index["tensors"]) {
    if (!t.is_object() || !t.contains("name") || !t["name"].is_string() ||
        !t.contains("dtype") || !t["dtype"].is_string() || !t.contains("shape") ||
        !t["shape"].is_array() || t["shape"].size() > size_t(kiln::kMaxRank) ||
        !t.contains("offset") || !t["offset"].is_number_unsigned() || !t.contains("size") ||
        !t["size"].is_number_unsigned())
      return bad("a tensor entry is malformed");
    Entry e;
    kiln_status_t ds = kiln_dtype_from_name(t["dtype"].get<std::string>().c_str(), &e.dtype);
    if (ds) {
      kiln_status_free(ds);
      return bad("a tensor entry names no dtype");
    }
    for (const json& d : t["shape"]) {
      if (!d.is_number_unsigned()) return bad("a tensor shape holds a non-dimension");
      e.shape.push_back(d.get<int64_t>());
    }
    e.offset = t["offset"].get<uint64_t>();
    e.size = t["size"].get<uint64_t>();
    if (e.offset > data_section.size || e.size > data_section.size - e.offset ||
        e.size != kiln::StorageBytes(e.dtype, e.shape))
      return bad("a tensor lies outside the data section or has the wrong size");
    entries[t["name"].get<std::string>()] = e;
  }
  const Manifest& m = model->manifest;
  for (size_t i = 0; i < m.weights.size(); ++i) {
    const WeightDesc& w = m.weights[i];
    if (w.location != WeightDesc::kParams) continue;
    auto it = entries.find(w.name);
    if (it == entries.end())
      return KILN_MAKE_STATUS(KILN_STATUS_FAILED_PRECONDITION,
                              "parameter file '%s' has no tensor '%s'", path.c_str(),
                              w.name.c_str());
    const Entry& e = it->second;
    if (e.dtype != w.dtype || e.shape != w.shape)
      return KILN_MAKE_STATUS(KILN_STATUS_FAILED_PRECONDITION,
                              "parameter '%s' in '%s' is %s %s; the artifact expects %s %s",
                              w.name.c_str(), path.c_str(), kiln_dtype_name(e.dtype),
                              e.shape.str().c_str(), kiln_dtype_name(w.dtype),
                              w.shape.str().c_str());
    model->weight_data[i] = static_cast<const uint8_t*>(data_section.data) + e.offset;
  }
  return nullptr;
}

kiln_status_t Load(kiln_model_s* model, const char* path, const kiln_model_options_t& options) {
  KILN_RETURN_IF_ERROR(kiln_artifact_open_file(path, &model->artifact));
  kiln_section_info_t manifest_section, weights_section{};
  kiln_status_t s =
      kiln_artifact_find_section(model->artifact, KILN_SECTION_MANIFEST, &manifest_section);
  if (s) {
    kiln_status_free(s);
    return KILN_MAKE_STATUS(KILN_STATUS_DATA_LOSS, "'%s' has no manifest section", path);
  }
  s = kiln_artifact_find_section(model->artifact, KILN_SECTION_WEIGHTS, &weights_section);
  kiln_status_free(s);  // an artifact without embedded weights is valid
  s = kiln::ParseManifest(static_cast<const char*>(manifest_section.data),
                          manifest_section.size, &model->manifest);
  if (s) {
    kiln_status_t wrapped = kiln_status_allocate(kiln_status_code(s), nullptr, 0, "'%s': %s",
                                                 path, kiln_status_message(s));
    kiln_status_free(s);
    return wrapped;
  }
  const Manifest& m = model->manifest;
  if (!m.cuda_kernels.empty()) {
    kiln_section_info_t kernels{};
    s = kiln_artifact_find_section(model->artifact, KILN_SECTION_KERNELS, &kernels);
    if (s) {
      kiln_status_free(s);
      return KILN_MAKE_STATUS(KILN_STATUS_DATA_LOSS,
                              "'%s': the manifest lists CUDA kernels but the artifact has no "
                              "kernels section",
                              path);
    }
    for (size_t i = 0; i < m.cuda_kernels.size(); ++i)
      for (const kiln::CudaImageDesc& im : m.cuda_kernels[i].images)
        if (im.offset > kernels.size || im.size > kernels.size - im.offset)
          return KILN_MAKE_STATUS(
              KILN_STATUS_DATA_LOSS,
              "'%s': corrupt manifest: cuda.kernels[%zu] (%s): image for %s at [%llu, +%llu) "
              "is outside the kernels section (%llu bytes)",
              path, i, m.cuda_kernels[i].entry.c_str(), im.arch.c_str(),
              (unsigned long long)im.offset, (unsigned long long)im.size,
              (unsigned long long)kernels.size);
  }
  model->weight_data.assign(m.weights.size(), nullptr);
  std::string dir = DirOf(path);
  bool needs_params = false;
  std::map<std::string, size_t> file_index;
  for (size_t i = 0; i < m.weights.size(); ++i) {
    const WeightDesc& w = m.weights[i];
    model->weight_bytes += w.size;
    if (w.location == WeightDesc::kEmbedded) {
      if (w.offset > weights_section.size || w.size > weights_section.size - w.offset)
        return KILN_MAKE_STATUS(KILN_STATUS_DATA_LOSS,
                                "'%s': weight '%s' (offset %llu, %llu bytes) lies outside "
                                "the %llu-byte weights section",
                                path, w.name.c_str(), (unsigned long long)w.offset,
                                (unsigned long long)w.size,
                                (unsigned long long)weights_section.size);
      model->weight_data[i] = static_cast<const uint8_t*>(weights_section.data) + w.offset;
    } else if (w.location == WeightDesc::kParams) {
      needs_params = true;
    } else if (w.location == WeightDesc::kPacked) {
      continue;  // built below, once every part is bound
    } else {
      auto it = file_index.find(w.file);
      if (it == file_index.end()) {
        std::string base = options.weights_dir ? options.weights_dir : dir;
        std::unique_ptr<KilnMappedFile> f;
        KILN_RETURN_IF_ERROR(MapFile(base + "/" + w.file, &f));
        model->files.push_back(std::move(f));
        it = file_index.emplace(w.file, model->files.size() - 1).first;
      }
      const KilnMappedFile& f = *model->files[it->second];
      if (w.offset > f.size || w.size > f.size - w.offset)
        return KILN_MAKE_STATUS(KILN_STATUS_DATA_LOSS,
                                "weight '%s' (offset %llu, %llu bytes) lies outside '%s' "
                                "(%llu bytes)",
                                w.name.c_str(), (unsigned long long)w.offset,
                                (unsigned long long)w.size, w.file.c_str(),
                                (unsigned long long)f.size);
      model->weight_data[i] = static_cast<const uint8_t*>(f.data) + w.offset;
    }
  }
  if (needs_params) {
    std::string params = options.params_path ? options.params_path
                         : m.params_file.empty() ? std::string()
                                                 : dir + "/" + m.params_file;
    if (params.empty())
      return KILN_MAKE_STATUS(KILN_STATUS_INVALID_ARGUMENT,
                              "'%s' needs a parameter file and names none; pass params_path",
                              path);
    KILN_RETURN_IF_ERROR(BindParams(model, params));
  }
  return BuildPackedWeights(model);
}

}  // namespace

extern "C" {

void kiln_model_options_init(kiln_model_options_t* options) {
  if (!options) return;
  std::memset(options, 0, sizeof(*options));
  options->struct_size = sizeof(*options);
}

kiln_status_t kiln_model_load(const char* path, const kiln_model_options_t* options,
                              kiln_model_t* out_model) {
  if (out_model) *out_model = nullptr;
  if (!path || !out_model)
    return KILN_MAKE_STATUS(KILN_STATUS_INVALID_ARGUMENT, "path and out_model must not be NULL");
  kiln_model_options_t opts;
  kiln_model_options_init(&opts);
  if (options) {
    if (options->struct_size < sizeof(size_t) || options->struct_size > sizeof(opts))
      return KILN_MAKE_STATUS(KILN_STATUS_INVALID_ARGUMENT,
                              "kiln_model_options_t.struct_size is %zu; initialize the "
                              "options with kiln_model_options_init",
                              options->struct_size);
    std::memcpy(&opts, options, options->struct_size);
  }
  auto* model = new (std::nothrow) kiln_model_s;
  if (!model) return KILN_MAKE_STATUS(KILN_STATUS_RESOURCE_EXHAUSTED, "out of memory");
  kiln_status_t s = Load(model, path, opts);
  if (s) {
    delete model;
    return s;
  }
  *out_model = model;
  return nullptr;
}

void kiln_model_release(kiln_model_t model) { delete model; }

size_t kiln_model_input_count(kiln_model_t model) {
  return model ? model->manifest.inputs.size() : 0;
}

size_t kiln_model_output_count(kiln_model_t model) {
  return model ? model->manifest.outputs.size() : 0;
}

static kiln_status_t FillInfo(const std::vector<kiln::IoDesc>& list, size_t index,
                              kiln_tensor_info_t* out) {
  if (index >= list.size())
    return KILN_MAKE_STATUS(KILN_STATUS_OUT_OF_RANGE, "index %zu, but the model has %zu",
                            index, list.size());
  const kiln::IoDesc& io = list[index];
  out->name = io.name.c_str();
  out->dtype = io.dtype;
  out->rank = size_t(io.shape.rank);
  out->shape = io.shape.d;
  out->dim_names = io.dim_ptrs.data();
  out->role = io.role.c_str();
  out->layer = io.layer;
  return nullptr;
}

kiln_status_t kiln_model_input_info(kiln_model_t model, size_t index, kiln_tensor_info_t* out) {
  if (out) std::memset(out, 0, sizeof(*out));
  if (!model || !out)
    return KILN_MAKE_STATUS(KILN_STATUS_INVALID_ARGUMENT, "model and out_info must not be NULL");
  return FillInfo(model->manifest.inputs, index, out);
}

kiln_status_t kiln_model_output_info(kiln_model_t model, size_t index, kiln_tensor_info_t* out) {
  if (out) std::memset(out, 0, sizeof(*out));
  if (!model || !out)
    return KILN_MAKE_STATUS(KILN_STATUS_INVALID_ARGUMENT, "model and out_info must not be NULL");
  return FillInfo(model->manifest.outputs, index, out);
}

kiln_status_t kiln_model_info(kiln_model_t model, kiln_model_info_t* out) {
  if (out) std::memset(out, 0, sizeof(*out));
  if (!model || !out)
    return KILN_MAKE_STATUS(KILN_STATUS_INVALID_ARGUMENT, "model and out_info must not be NULL");
  const Manifest& m = model->manifest;
  out->target = m.target.c_str();
  out->producer = m.producer.c_str();
  out->generation = m.model.generation ? 1 : 0;
  out->generation_unsupported = m.model.generation_unsupported.c_str();
  out->vocab_size = m.model.vocab_size;
  out->max_sequence_length = m.model.max_sequence_length;
  out->bos_token_id = m.model.bos;
  out->pad_token_id = m.model.pad;
  out->eos_count = m.model.eos.size();
  out->eos_token_ids = m.model.eos.data();
  out->num_layers = m.model.num_layers;
  out->launch_count = m.launches.size();
  out->weight_bytes = model->weight_bytes;
  return nullptr;
}

}  // extern "C"
