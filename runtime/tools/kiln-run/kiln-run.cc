// kiln-run: runs a compiled .kiln artifact with the runtime's C API.
//
//   kiln-run model.kiln --prompt-ids 1,2,3 [--prompt-ids 4,5] --max-new-tokens 16
//   kiln-run model.kiln --prompt-ids 1,2,3 --json
//   kiln-run model.kiln --inputs input_0.pb input_1.pb --output-dir out/
//
// Generation mode prints each sequence's tokens and the timings (load, time
// to first token, tokens/s, decode-step latency); --json prints one JSON
// object instead. Tensor mode runs one forward on ONNX TensorProto files in
// graph-input order and writes output_N.pb in graph-output order (the ONNX
// backend test layout). Exit codes: 0 success, 1 runtime error, 2 usage.
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <sys/stat.h>

#include <chrono>
#include <cstdio>
#include <algorithm>
#include <random>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "kiln/runtime/api.h"
#include "kiln/runtime/api.hpp"
#include "tensor_proto.h"

namespace {

using Clock = std::chrono::steady_clock;

double Ms(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

int Fail(const kiln::Status& s, const std::string& what) {
  std::fprintf(stderr, "kiln-run: error: %s: %s\n", what.c_str(), s.ToString().c_str());
  return 1;
}

int Fail(const std::string& message) {
  std::fprintf(stderr, "kiln-run: error: %s\n", message.c_str());
  return 1;
}

bool ParseIds(const std::string& text, std::vector<int64_t>* out, std::string* error) {
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    size_t b = item.find_first_not_of(" \t"), e = item.find_last_not_of(" \t");
    if (b == std::string::npos) {
      *error = "empty token id in '" + text + "'";
      return false;
    }
    item = item.substr(b, e - b + 1);
    char* end = nullptr;
    errno = 0;
    long long v = std::strtoll(item.c_str(), &end, 10);
    if (errno || *end) {
      *error = "'" + item + "' in '" + text + "' is not an integer token id";
      return false;
    }
    out->push_back(v);
  }
  if (out->empty()) {
    *error = "an empty --prompt-ids";
    return false;
  }
  return true;
}

const char* StopName(kiln_stop_reason_t r) {
  switch (r) {
    case KILN_STOP_EOS: return "eos";
    case KILN_STOP_MAX_TOKENS: return "max_tokens";
    case KILN_STOP_CALLBACK: return "callback";
    case KILN_STOP_CANCELLED: return "cancelled";
  }
  return "unknown";
}

struct StreamState {
  bool enabled = false;
};

int32_t OnToken(void* user, size_t sequence, int64_t token, size_t step) {
  auto* st = static_cast<StreamState*>(user);
  if (st->enabled) {
    std::fprintf(stderr, "[step %zu] sequence %zu -> %lld\n", step, sequence, (long long)token);
  }
  return 0;
}

int RunTensors(const kiln::Session& session, const kiln::Model& model,
               const std::vector<std::string>& inputs, const std::string& output_dir) {
  size_t want = kiln_model_input_count(model.get());
  if (inputs.size() != want)
    return Fail("the model takes " + std::to_string(want) + " inputs; --inputs gave " +
                std::to_string(inputs.size()));
  std::vector<kiln::tools::HostTensor> tensors(inputs.size());
  std::vector<kiln_tensor_view_t> views(inputs.size());
  for (size_t i = 0; i < inputs.size(); ++i) {
    std::ifstream f(inputs[i], std::ios::binary);
    if (!f) return Fail("cannot read '" + inputs[i] + "'");
    std::string bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    std::string error;
    if (!kiln::tools::ParseTensorProto(bytes, &tensors[i], &error))
      return Fail("'" + inputs[i] + "': not a valid TensorProto: " + error);
    views[i] = {tensors[i].dtype, tensors[i].shape.size(), tensors[i].shape.data(),
                tensors[i].data.empty() ? nullptr : tensors[i].data.data()};
  }
  kiln::Status s(kiln_session_run(session.get(), views.data(), views.size()));
  if (!s.ok()) return Fail(s, "run");
  struct stat st;
  if (stat(output_dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    return Fail("--output-dir '" + output_dir + "' is not a folder");
  size_t outs = kiln_model_output_count(model.get());
  for (size_t i = 0; i < outs; ++i) {
    kiln_tensor_view_t v;
    kiln::Status o(kiln_session_output(session.get(), i, &v));
    if (!o.ok()) return Fail(o, "output " + std::to_string(i));
    kiln_tensor_info_t info;
    kiln::Status inf(kiln_model_output_info(model.get(), i, &info));
    kiln::tools::HostTensor t;
    t.name = info.name ? info.name : "";
    t.dtype = v.dtype;
    t.shape.assign(v.shape, v.shape + v.rank);
    uint64_t bytes = 0;
    kiln::Status sz(kiln_dtype_storage_size(v.dtype, v.shape, v.rank, &bytes));
    const uint8_t* p = static_cast<const uint8_t*>(v.data);
    t.data.assign(p, p + bytes);
    std::string path = output_dir + "/output_" + std::to_string(i) + ".pb";
    std::string tmp = path + ".tmp";
    {
      std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
      std::string out = kiln::tools::SerializeTensorProto(t);
      f.write(out.data(), std::streamsize(out.size()));
      if (!f) {
        std::remove(tmp.c_str());
        return Fail("cannot write '" + path + "'");
      }
    }
    if (std::rename(tmp.c_str(), path.c_str()) != 0) return Fail("cannot write '" + path + "'");
  }
  std::fprintf(stderr, "kiln-run: wrote %zu outputs to %s\n", outs, output_dir.c_str());
  return 0;
}

/// The per-op time table of --profile, on stderr.
void PrintProfile(const kiln::Session& session) {
  const kiln_op_profile_t* entries = nullptr;
  size_t n = 0;
  kiln::Status s(kiln_session_profile(session.get(), &entries, &n));
  if (!s.ok()) return;
  double total = 0;
  for (size_t i = 0; i < n; ++i) total += entries[i].total_ms;
  std::fprintf(stderr, "%-16s %10s %12s %7s\n", "op", "launches", "total ms", "share");
  for (size_t i = 0; i < n; ++i)
    std::fprintf(stderr, "%-16s %10llu %12.3f %6.1f%%\n", entries[i].op,
                 (unsigned long long)entries[i].launches, entries[i].total_ms,
                 total > 0 ? 100.0 * entries[i].total_ms / total : 0.0);
  std::fprintf(stderr, "%-16s %10s %12.3f\n", "all kernels", "", total);
}

/// --list-devices: one line per device; the reason when there is no GPU.
int ListDevices() {
  for (kiln_device_kind_t kind : {KILN_DEVICE_CUDA, KILN_DEVICE_CPU}) {
    int32_t count = 0;
    kiln::Status s(kiln_device_count(kind, &count));
    if (!s.ok()) {
      std::printf("%s: none (%s)\n", kiln_device_kind_name(kind), s.message());
      continue;
    }
    for (int32_t i = 0; i < count; ++i) {
      kiln_device_info_t d;
      kiln::Status q(kiln_device_info(kind, i, &d));
      if (!q.ok()) return Fail(q, std::string("cannot query ") + kiln_device_kind_name(kind));
      if (kind == KILN_DEVICE_CUDA)
        std::printf("cuda:%d: %s, sm_%d, %d SMs, %.1f GiB, driver CUDA %d.%d\n", i, d.name,
                    d.compute_capability, d.multiprocessors,
                    double(d.memory_bytes) / double(1ull << 30), d.driver_version / 1000,
                    d.driver_version % 1000 / 10);
      else
        std::printf("cpu:%d: %s, %d hardware threads, %.1f GiB\n", i, d.name,
                    d.multiprocessors, double(d.memory_bytes) / double(1ull << 30));
    }
  }
  return 0;
}

struct ServeConfig {
  int requests = 0;
  int prompt_min = 4, prompt_max = 32, output_min = 4, output_max = 32;
  int per_step = 0;  // arrivals per step (0: all at the start)
  int max_step_tokens = 256, max_running = 64;
  uint64_t seed = 0;
  bool json = false;
};

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, size_t(p * double(v.size() - 1) + 0.5))];
}

/// --serve: N synthetic requests (random prompts and output lengths from
/// `seed`) through the continuous-batching scheduler.
int Serve(kiln::Session& session, const kiln::Model& model, const ServeConfig& c) {
  kiln_model_info_t mi;
  kiln::Status s(kiln_model_info(model.get(), &mi));
  if (!s.ok()) return Fail(s, "cannot read the model");
  kiln_scheduler_options_t so;
  kiln_scheduler_options_init(&so);
  so.max_step_tokens = c.max_step_tokens;
  so.max_running = c.max_running;
  kiln_scheduler_t sched = nullptr;
  s = kiln::Status(kiln_scheduler_create(session.get(), &so, &sched));
  if (!s.ok()) return Fail(s, "cannot serve");
  struct Req {
    std::vector<int64_t> prompt;
    int max_new;
    uint64_t id = 0;
    double submitted = 0, first = -1, done = -1;
    size_t seen = 0;
  };
  std::mt19937_64 rng(c.seed);
  auto uniform = [&](int lo, int hi) { return lo + int(rng() % uint64_t(hi - lo + 1)); };
  std::vector<Req> reqs(size_t(c.requests));
  for (Req& r : reqs) {
    r.prompt.resize(size_t(uniform(c.prompt_min, c.prompt_max)));
    for (int64_t& t : r.prompt) t = int64_t(rng() % uint64_t(mi.vocab_size));
    r.max_new = uniform(c.output_min, c.output_max);
  }
  Clock::time_point t0 = Clock::now();
  auto now = [&] { return Ms(t0, Clock::now()); };
  size_t next = 0, steps = 0, mixed = 0, generated = 0, preempted = 0, max_running = 0;
  std::vector<double> step_ms;
  auto submit = [&](Req& r) -> kiln::Status {
    kiln_generate_options_t g;
    kiln_generate_options_init(&g);
    g.max_new_tokens = r.max_new;
    g.ignore_eos = 1;
    r.submitted = now();
    return kiln::Status(kiln_scheduler_submit(sched, r.prompt.data(), r.prompt.size(), &g, &r.id));
  };
  int rc = 0;
  while (next < reqs.size() || kiln_scheduler_pending(sched) > 0) {
    for (int k = 0; next < reqs.size() && (c.per_step == 0 || k < c.per_step); ++k) {
      kiln::Status q = submit(reqs[next++]);
      if (!q.ok()) {
        rc = Fail(q, "submit failed");
        break;
      }
    }
    if (rc) break;
    kiln_step_info_t info;
    std::memset(&info, 0, sizeof(info));
    info.struct_size = sizeof(info);
    double a = now();
    kiln::Status st(kiln_scheduler_step(sched, &info));
    if (!st.ok()) {
      rc = Fail(st, "step failed");
      break;
    }
    step_ms.push_back(now() - a);
    ++steps;
    if (info.prefill_tokens > 0 && info.decode_tokens > 0) ++mixed;
    preempted += info.preempted;
    max_running = std::max(max_running, info.sequences);
    for (size_t i = 0; i < next; ++i) {
      Req& r = reqs[i];
      if (r.done >= 0) continue;
      const int64_t* toks;
      size_t n;
      int32_t finished;
      kiln_stop_reason_t why;
      kiln::Status pq(kiln_scheduler_poll(sched, r.id, &toks, &n, &finished, &why));
      if (n > r.seen && r.first < 0) r.first = now();
      generated += n - r.seen;
      r.seen = n;
      if (finished) r.done = now();
    }
  }
  const double total = now();
  kiln_kv_usage_t kv;
  std::memset(&kv, 0, sizeof(kv));
  kv.struct_size = sizeof(kv);
  kiln::Status skv(kiln_session_kv_usage(session.get(), &kv));
  std::vector<double> latency, ttft;
  for (const Req& r : reqs)
    if (r.done >= 0) {
      latency.push_back(r.done - r.submitted);
      ttft.push_back(r.first - r.submitted);
    }
  if (c.json) {
    nlohmann::json out;
    out["requests"] = nlohmann::json::array();
    for (const Req& r : reqs) {
      const int64_t* toks = nullptr;
      size_t n = 0;
      int32_t finished = 0;
      kiln_stop_reason_t why = KILN_STOP_MAX_TOKENS;
      uint32_t pre = 0;
      kiln::Status pq(kiln_scheduler_poll(sched, r.id, &toks, &n, &finished, &why));
      kiln::Status pp(kiln_scheduler_preemptions(sched, r.id, &pre));
      out["requests"].push_back({{"prompt_ids", r.prompt},
                                 {"max_new_tokens", r.max_new},
                                 {"generated_ids", std::vector<int64_t>(toks, toks + n)},
                                 {"stop", StopName(why)},
                                 {"preemptions", pre},
                                 {"latency_ms", r.done - r.submitted},
                                 {"time_to_first_token_ms", r.first - r.submitted}});
    }
    out["steps"] = steps;
    out["mixed_steps"] = steps ? mixed : 0;
    out["total_ms"] = total;
    out["generated_tokens"] = generated;
    out["tokens_per_second"] = total > 0 ? double(generated) * 1000.0 / total : 0;
    out["latency_ms"] = {{"p50", Percentile(latency, 0.5)}, {"p90", Percentile(latency, 0.9)},
                         {"p99", Percentile(latency, 0.99)}};
    out["time_to_first_token_ms"] = {{"p50", Percentile(ttft, 0.5)},
                                     {"p90", Percentile(ttft, 0.9)},
                                     {"p99", Percentile(ttft, 0.99)}};
    out["step_ms"] = {{"p50", Percentile(step_ms, 0.5)}, {"p90", Percentile(step_ms, 0.9)}};
    out["kv"] = {{"block_size", kv.block_size},     {"blocks_total", kv.blocks_total},
                 {"blocks_peak", kv.blocks_peak},   {"bytes", kv.bytes},
                 {"bytes_per_block", kv.bytes_per_block},
                 {"reused_tokens", kv.reused_tokens}, {"preemptions", kv.preemptions}};
    std::cout << out.dump() << "\n";
  } else if (rc == 0) {
    std::printf("served %d requests in %zu steps (%zu mixing prefill and decode), %.1f ms: %zu "
                "tokens, %.1f tok/s; at most %zu sequences a step, %zu preemptions\n",
                c.requests, steps, mixed, total, generated,
                total > 0 ? double(generated) * 1000.0 / total : 0.0, max_running, preempted);
    std::printf("latency p50 %.2f ms, p90 %.2f ms, p99 %.2f ms | first token p50 %.2f ms, p90 "
                "%.2f ms | step p50 %.2f ms\n",
                Percentile(latency, 0.5), Percentile(latency, 0.9), Percentile(latency, 0.99),
                Percentile(ttft, 0.5), Percentile(ttft, 0.9), Percentile(step_ms, 0.5));
    std::printf("kv paged:%lld | peak %lld of %lld blocks, %.1f KiB peak (%.1f KiB reserved) | "
                "%llu prompt tokens reused\n",
                (long long)kv.block_size, (long long)kv.blocks_peak, (long long)kv.blocks_total,
                double(kv.blocks_peak) * double(kv.bytes_per_block) / 1024.0,
                double(kv.bytes) / 1024.0, (unsigned long long)kv.reused_tokens);
  }
  kiln_scheduler_release(sched);
  return rc;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "kiln-run: runs a compiled .kiln artifact on a GPU (CUDA) or the CPU.\n\n"
      "  kiln-run model.kiln --prompt-ids 1,2,3 --max-new-tokens 16\n"
      "  kiln-run model.kiln --inputs input_0.pb input_1.pb --output-dir out/\n"
      "  kiln-run --list-devices\n"};
  std::string artifact, params, weights_dir, output_dir;
  std::vector<std::string> prompt_texts, inputs;
  int max_new = 16, threads = 0, top_k = 0;
  int64_t max_seq = 0;
  float temperature = 0.f, top_p = 1.f;
  uint64_t seed = 0;
  std::vector<int64_t> eos;
  bool json_out = false, ignore_eos = false, info = false, stream = false, profile = false;
  bool list_devices = false, no_prefix_reuse = false;
  int64_t kv_blocks = 0;
  int repeat = 1;
  std::string device = "auto";
  int device_ordinal = 0;
  app.add_option("artifact", artifact, "The .kiln artifact");
  app.add_option("--prompt-ids", prompt_texts,
                 "Comma-separated token ids of one prompt; repeat for a batch");
  app.add_option("--max-new-tokens", max_new, "Tokens to generate per sequence")
      ->check(CLI::PositiveNumber);
  app.add_option("--temperature", temperature, "0: greedy; > 0: sample")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--top-k", top_k, "Sample among the k most likely (0: all)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--top-p", top_p, "Nucleus sampling mass in (0, 1]")
      ->check(CLI::Range(0.0f, 1.0f));
  app.add_option("--seed", seed, "Sampler seed");
  app.add_option("--eos-id", eos, "Stop token(s) (default: the model's)");
  app.add_flag("--ignore-eos", ignore_eos, "Generate max-new-tokens regardless of eos");
  app.add_option("--threads", threads, "Kernel threads (0: all hardware threads)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--max-seq-len", max_seq, "KV-cache capacity per sequence (0: the model's)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--params", params, "Parameter file (artifacts compiled --weights=external)");
  app.add_option("--weights-dir", weights_dir,
                 "Folder of the model's weight files (--weights=reference)");
  app.add_flag("--json", json_out, "Print one JSON object with tokens and timings");
  app.add_flag("--stream", stream, "Print each token to stderr as it is generated");
  app.add_flag("--profile", profile, "Time each kind of kernel and print the table to stderr");
  app.add_flag("--info", info, "Print the model's inputs, outputs and facts, then exit");
  auto* in_opt = app.add_option("--inputs", inputs,
                                "TensorProto files in graph-input order (tensor mode)");
  auto* out_opt = app.add_option(
      "--output-dir", output_dir,
      "Where tensor mode writes output_N.pb (alone: runs a model without inputs)");
  in_opt->needs(out_opt);
  app.add_option("--device", device,
                 "auto: CUDA when the artifact has kernels and a GPU is present, else cpu")
      ->check(CLI::IsMember({"auto", "cpu", "cuda"}));
  app.add_option("--device-ordinal", device_ordinal, "Which GPU (--device cuda)")
      ->check(CLI::NonNegativeNumber);
  app.add_flag("--list-devices", list_devices, "Print the devices this machine has, then exit");
  app.add_option("--kv-blocks", kv_blocks,
                 "Paged KV caches: blocks in the session's pool (0: grows as needed)")
      ->check(CLI::NonNegativeNumber);
  app.add_flag("--no-prefix-reuse", no_prefix_reuse,
               "Paged KV caches: compute every prompt in full (no prefix cache)");
  ServeConfig serve;
  std::string serve_prompt = "4:32", serve_output = "4:32";
  app.add_option("--serve", serve.requests,
                 "Serve N synthetic requests through the continuous-batching scheduler "
                 "(artifacts compiled --ragged --kv-layout=paged:N) and print throughput, "
                 "latency percentiles and KV memory")
      ->check(CLI::PositiveNumber);
  app.add_option("--serve-prompt-len", serve_prompt, "Prompt lengths, MIN:MAX (--serve)");
  app.add_option("--serve-output-len", serve_output, "Tokens to generate, MIN:MAX (--serve)");
  app.add_option("--serve-arrivals", serve.per_step,
                 "Requests submitted per step (0: all at the start) (--serve)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--max-step-tokens", serve.max_step_tokens,
                 "Tokens one scheduler step runs at most (--serve)")
      ->check(CLI::PositiveNumber);
  app.add_option("--max-running", serve.max_running,
                 "Requests running at once at most (--serve)")
      ->check(CLI::PositiveNumber);
  app.add_option("--repeat", repeat,
                 "Generate this many times on one session (the last call is printed; "
                 "later calls reuse cached prompt prefixes)")
      ->check(CLI::PositiveNumber);
  CLI11_PARSE(app, argc, argv);
  if (list_devices) return ListDevices();
  if (artifact.empty()) return Fail("give the .kiln artifact to run (see --help)");

  Clock::time_point t0 = Clock::now();
  kiln_model_options_t mopts;
  kiln_model_options_init(&mopts);
  if (!params.empty()) mopts.params_path = params.c_str();
  if (!weights_dir.empty()) mopts.weights_dir = weights_dir.c_str();
  kiln::Model model;
  kiln::Status s = kiln::Model::Load(artifact.c_str(), &model, &mopts);
  if (!s.ok()) return Fail(s, "cannot load '" + artifact + "'");
  kiln_session_options_t sopts;
  kiln_session_options_init(&sopts);
  sopts.num_threads = threads;
  sopts.max_sequence_length = max_seq;
  sopts.profile = profile ? 1 : 0;
  sopts.device = device == "cuda" ? KILN_DEVICE_CUDA
                 : device == "cpu" ? KILN_DEVICE_CPU
                                   : KILN_DEVICE_AUTO;
  sopts.device_ordinal = device_ordinal;
  sopts.kv_cache_blocks = kv_blocks;
  sopts.prefix_reuse = no_prefix_reuse ? 0 : 1;
  kiln::Session session;
  s = kiln::Session::Create(model, &session, &sopts);
  if (!s.ok()) return Fail(s, "cannot create a session");
  const char* device_reason = "";
  kiln_device_kind_t ran_on = kiln_session_device(session.get(), &device_reason);
  if (!json_out)
    std::fprintf(stderr, "kiln-run: device %s%s%s%s\n", kiln_device_kind_name(ran_on),
                 *device_reason ? " (" : "", device_reason, *device_reason ? ")" : "");
  double load_ms = Ms(t0, Clock::now());
  kiln_model_info_t mi;
  s = kiln::Status(kiln_model_info(model.get(), &mi));

  if (info) {
    std::printf("artifact: %s (target %s, producer '%s')\n", artifact.c_str(), mi.target,
                mi.producer);
    std::printf("launches: %zu, weights: %llu bytes\n", mi.launch_count,
                (unsigned long long)mi.weight_bytes);
    auto print_io = [&](bool input) {
      size_t n = input ? kiln_model_input_count(model.get()) : kiln_model_output_count(model.get());
      for (size_t i = 0; i < n; ++i) {
        kiln_tensor_info_t t;
        kiln::Status st(input ? kiln_model_input_info(model.get(), i, &t)
                              : kiln_model_output_info(model.get(), i, &t));
        std::printf("%s %zu: %s %s [", input ? "input" : "output", i, t.name,
                    kiln_dtype_name(t.dtype));
        for (size_t k = 0; k < t.rank; ++k)
          std::printf("%s%s", k ? ", " : "",
                      t.dim_names[k][0] ? t.dim_names[k]
                      : t.shape[k] < 0  ? "?"
                                        : std::to_string(t.shape[k]).c_str());
        std::printf("] role=%s\n", t.role);
      }
    };
    print_io(true);
    print_io(false);
    if (mi.generation)
      std::printf("generation: vocab %lld, %d KV layers, max sequence %lld\n",
                  (long long)mi.vocab_size, mi.num_layers, (long long)mi.max_sequence_length);
    else
      std::printf("generation: not supported (%s)\n", mi.generation_unsupported);
    return 0;
  }

  if (!inputs.empty() || !output_dir.empty()) {
    int rc = RunTensors(session, model, inputs, output_dir);
    if (profile) PrintProfile(session);
    return rc;
  }

  if (serve.requests > 0) {
    auto range = [](const std::string& text, int* lo, int* hi) {
      return std::sscanf(text.c_str(), "%d:%d", lo, hi) == 2 && *lo > 0 && *hi >= *lo;
    };
    if (!range(serve_prompt, &serve.prompt_min, &serve.prompt_max))
      return Fail("--serve-prompt-len must be MIN:MAX with 0 < MIN <= MAX");
    if (!range(serve_output, &serve.output_min, &serve.output_max))
      return Fail("--serve-output-len must be MIN:MAX with 0 < MIN <= MAX");
    serve.seed = seed;
    serve.json = json_out;
    return Serve(session, model, serve);
  }
  if (prompt_texts.empty())
    return Fail("give --prompt-ids (generation), --serve N or --inputs/--output-dir (one "
                "forward)");
  std::vector<std::vector<int64_t>> prompts(prompt_texts.size());
  for (size_t i = 0; i < prompt_texts.size(); ++i) {
    std::string error;
    if (!ParseIds(prompt_texts[i], &prompts[i], &error)) return Fail(error);
  }
  std::vector<const int64_t*> ptrs;
  std::vector<size_t> lens;
  for (const auto& p : prompts) {
    ptrs.push_back(p.data());
    lens.push_back(p.size());
  }
  kiln_generate_options_t g;
  kiln_generate_options_init(&g);
  g.max_new_tokens = max_new;
  g.temperature = temperature;
  g.top_k = top_k;
  g.top_p = top_p;
  g.seed = seed;
  g.ignore_eos = ignore_eos;
  if (!eos.empty()) {
    g.eos_token_ids = eos.data();
    g.eos_count = eos.size();
  }
  StreamState stream_state{stream};
  g.callback = OnToken;
  g.user_data = &stream_state;
  kiln::Generation gen;
  for (int r = 0; r < repeat; ++r) {
    s = kiln::Generation::Run(session, ptrs.data(), lens.data(), ptrs.size(), &g, &gen);
    if (!s.ok()) return Fail(s, "generation failed");
  }
  kiln_generation_stats_t st;
  kiln::Status sst(kiln_generation_stats(gen.get(), &st));
  kiln_kv_usage_t kv;
  std::memset(&kv, 0, sizeof(kv));
  kv.struct_size = sizeof(kv);
  kiln::Status skv(kiln_session_kv_usage(session.get(), &kv));

  if (json_out) {
    nlohmann::json out;
    out["artifact"] = artifact;
    out["device"] = kiln_device_kind_name(ran_on);
    out["device_reason"] = device_reason;
    out["sequences"] = nlohmann::json::array();
    for (size_t i = 0; i < prompts.size(); ++i) {
      const int64_t* toks;
      size_t n;
      kiln_stop_reason_t reason;
      kiln::Status q(kiln_generation_sequence(gen.get(), i, &toks, &n, &reason));
      uint32_t preempted = 0;
      kiln::Status qp(kiln_generation_sequence_preemptions(gen.get(), i, &preempted));
      out["sequences"].push_back({{"prompt_ids", prompts[i]},
                                  {"generated_ids", std::vector<int64_t>(toks, toks + n)},
                                  {"stop", StopName(reason)},
                                  {"preemptions", preempted}});
    }
    out["timing"] = {{"load_ms", load_ms},
                     {"prefill_ms", st.prefill_ms},
                     {"time_to_first_token_ms", st.time_to_first_token_ms},
                     {"decode_ms", st.decode_ms},
                     {"decode_steps", st.decode_steps},
                     {"generated_tokens", st.generated_tokens},
                     {"tokens_per_second", st.tokens_per_second},
                     {"decode_tokens_per_second", st.decode_tokens_per_second},
                     {"step_ms_p50", st.step_ms_p50},
                     {"step_ms_p90", st.step_ms_p90},
                     {"step_ms_max", st.step_ms_max}};
    out["kv"] = {{"layout", kv.paged ? "paged" : "contiguous"},
                 {"block_size", kv.block_size},
                 {"blocks_total", kv.blocks_total},
                 {"blocks_used", kv.blocks_used},
                 {"blocks_cached", kv.blocks_cached},
                 {"blocks_peak", kv.blocks_peak},
                 {"bytes", kv.bytes},
                 {"bytes_per_block", kv.bytes_per_block},
                 {"reused_tokens", kv.reused_tokens},
                 {"evictions", kv.evictions},
                 {"preemptions", kv.preemptions}};
    std::cout << out.dump() << "\n";
    if (profile) PrintProfile(session);
    return 0;
  }
  for (size_t i = 0; i < prompts.size(); ++i) {
    const int64_t* toks;
    size_t n;
    kiln_stop_reason_t reason;
    kiln::Status q(kiln_generation_sequence(gen.get(), i, &toks, &n, &reason));
    std::printf("sequence %zu (%zu prompt tokens): ", i, prompts[i].size());
    for (size_t k = 0; k < n; ++k) std::printf("%s%lld", k ? " " : "", (long long)toks[k]);
    uint32_t preempted = 0;
    kiln::Status qp(kiln_generation_sequence_preemptions(gen.get(), i, &preempted));
    if (preempted)
      std::printf("  [%s, preempted %u time%s]\n", StopName(reason), preempted,
                  preempted == 1 ? "" : "s");
    else
      std::printf("  [%s]\n", StopName(reason));
  }
  std::printf(
      "load %.1f ms | prefill %.2f ms | first token %.2f ms | %zu tokens, %.1f tok/s "
      "(decode %.1f tok/s) | decode step p50 %.2f ms, p90 %.2f ms, max %.2f ms\n",
      load_ms, st.prefill_ms, st.time_to_first_token_ms, st.generated_tokens,
      st.tokens_per_second, st.decode_tokens_per_second, st.step_ms_p50, st.step_ms_p90,
      st.step_ms_max);
  if (kv.paged)
    std::printf(
        "kv paged:%lld | peak %lld of %lld blocks (%.1f KiB each), %lld cached | %llu prompt "
        "tokens reused | %llu preemptions\n",
        (long long)kv.block_size, (long long)kv.blocks_peak, (long long)kv.blocks_total,
        double(kv.bytes_per_block) / 1024.0, (long long)kv.blocks_cached,
        (unsigned long long)kv.reused_tokens, (unsigned long long)kv.preemptions);
  else
    std::printf("kv contiguous | %.1f KiB\n", double(kv.bytes) / 1024.0);
  if (profile) PrintProfile(session);
  return 0;
}
