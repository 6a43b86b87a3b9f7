//===- Calibrate.cpp - run a module to calibrate and measure quantization -===//
//
// See Calibrate.h. The module is compiled with compileModule into a
// temporary artifact (weights referenced in the model's files, so nothing
// large is copied), loaded with the runtime's C API, and driven with
// kiln_session_generate; the executor's observer (runtime/src/model.h)
// reads launch values as they are produced. compileModule reports which
// op each launch runs, which ties launches back to the IR.
//
//===----------------------------------------------------------------------===//

#include "kiln/Compiler/Calibrate.h"

#include "cpu/half.h"
#include "model.h"
#include "kiln/Dialect/Kiln/IR/KilnOps.h"
#include "kiln/Support/Location.h"
#include "kiln/runtime/api.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Builders.h"
#include "llvm/ADT/DenseMap.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/MemoryBuffer.h"

#include <algorithm>
#include <cmath>
#include <memory>
#include <random>

using namespace mlir;
using namespace mlir::kiln;

namespace {

llvm::Error err(const llvm::Twine &message) {
  return llvm::createStringError(llvm::inconvertibleErrorCode(), message);
}

/// The status's message (freeing it), for errors.
std::string takeMessage(kiln_status_t st) {
  std::string m = kiln_status_message(st);
  kiln_status_free(st);
  return m;
}

/// Element `i` of a float tensor.
float floatAt(const ::kiln::Tensor &t, int64_t i) {
  switch (t.dtype) {
  case KILN_DTYPE_F32:
    return t.as<float>()[i];
  case KILN_DTYPE_F64:
    return float(t.as<double>()[i]);
  case KILN_DTYPE_F16:
    return ::kiln::HalfToFloat(t.as<uint16_t>()[i]);
  case KILN_DTYPE_BF16:
    return ::kiln::BF16ToFloat(t.as<uint16_t>()[i]);
  default:
    return std::nanf("");
  }
}

void appendFloats(const ::kiln::Tensor &t, std::vector<float> &out) {
  int64_t n = t.numel();
  out.resize(size_t(n));
  for (int64_t i = 0; i < n; ++i)
    out[size_t(i)] = floatAt(t, i);
}


/// The kiln.weight symbols `v` is computed from, in operand order.
void weightNames(Value v, SmallVectorImpl<std::string> &out) {
  Operation *def = v.getDefiningOp();
  if (!def)
    return;
  if (auto w = dyn_cast<WeightOp>(def)) {
    out.push_back(w.getName().str());
    return;
  }
  for (Value in : def->getOperands())
    weightNames(in, out);
}

/// A layer's label: its ONNX projection node (or, without one, its weight);
/// "(+N)" counts the sibling projections fused into it.
std::string layerName(Operation *op, Value weight) {
  SmallVector<std::string> names;
  onnxNodeNames(op->getLoc(), names);
  SmallVector<std::string> projections;
  for (const std::string &n : names) {
    llvm::StringRef r(n);
    if (r.contains("MatMul") || r.contains("Gemm") || r.contains_insensitive("linear"))
      projections.push_back(n);
  }
  SmallVector<std::string> weights;
  weightNames(weight, weights);
  SmallVector<std::string> &use = projections.empty() ? weights : projections;
  if (use.empty())
    return names.empty() ? "" : names.front();
  if (use.size() > 1 && !isa<GatedMlpOp>(op))
    return use.front() + " (+" + std::to_string(use.size() - 1) + ")";
  return use.front();
}

/// Whether `v` is computed from weights and constants alone.
bool fromWeights(Value v) {
  Operation *def = v.getDefiningOp();
  if (!def)
    return false;
  if (isa<WeightOp, arith::ConstantOp>(def))
    return true;
  if (auto q = dyn_cast<QuantizeOp>(def))
    return fromWeights(q.getInput());
  if (isa<TransposeOp, ConcatOp, HadamardOp, RotateOp, MakeQTensorOp, DequantizeOp>(def))
    return llvm::all_of(def->getOperands(), fromWeights);
  return false;
}

std::string describeQuant(Type t) {
  auto q = dyn_cast<QTensorType>(t);
  if (!q)
    return "float";
  std::string s;
  llvm::raw_string_ostream os(s);
  os << q.getStorageType() << " [";
  llvm::interleaveComma(q.getQuant().getBlock(), os);
  os << "]";
  return s;
}

/// A module compiled to a temporary artifact, loaded, with one CPU session.
class Loaded {
public:
  static llvm::Expected<std::unique_ptr<Loaded>> create(ModuleOp module,
                                                        const CompileOptions &base,
                                                        int threads, llvm::StringRef what) {
    std::unique_ptr<Loaded> l(new Loaded);
    llvm::SmallString<128> path;
    if (std::error_code ec = llvm::sys::fs::createTemporaryFile("kiln-" + what, "kiln", path))
      return err("cannot create a temporary file for the " + what + " run: " + ec.message());
    l->path = path.str().str();
    CompileOptions options = base;
    options.target = "cpu";
    options.weights = WeightMode::Reference;
    options.paramsPath.clear();
    options.kernelProgress = nullptr;
    CompileStats stats;
    if (auto e = compileModule(module, options, l->path, &stats))
      return err("compiling the " + what + " model: " + llvm::toString(std::move(e)));
    l->launchOps = std::move(stats.launchOps);
    kiln_model_options_t mo;
    kiln_model_options_init(&mo);
    mo.weights_dir = options.weightsDir.c_str();
    if (kiln_status_t st = kiln_model_load(l->path.c_str(), &mo, &l->model))
      return err("loading the " + what + " model: " + takeMessage(st));
    kiln_model_info_t info;
    if (kiln_status_t st = kiln_model_info(l->model, &info))
      return err(takeMessage(st));
    if (!info.generation)
      return err("the " + what + " run drives the model by generation, which it does not "
                 "support: " + info.generation_unsupported);
    l->vocab = info.vocab_size;
    kiln_session_options_t so;
    kiln_session_options_init(&so);
    so.num_threads = threads;
    so.device = KILN_DEVICE_CPU;
    if (kiln_status_t st = kiln_session_create(l->model, &so, &l->session))
      return err(takeMessage(st));
    return l;
  }

  ~Loaded() {
    kiln_session_release(session);
    kiln_model_release(model);
    if (!path.empty())
      llvm::sys::fs::remove(path);
  }

  ::kiln::Executor &executor() { return *session->executor; }

  /// Greedy tokens after `prompt` (eos ignored).
  llvm::Expected<std::vector<int64_t>> generate(llvm::ArrayRef<int64_t> prompt, int64_t n) {
    kiln_generate_options_t go;
    kiln_generate_options_init(&go);
    go.max_new_tokens = int32_t(n);
    go.ignore_eos = 1;
    const int64_t *p = prompt.data();
    size_t len = prompt.size();
    kiln_generation_t gen = nullptr;
    if (kiln_status_t st = kiln_session_generate(session, &p, &len, 1, &go, &gen))
      return err(takeMessage(st));
    const int64_t *tokens = nullptr;
    size_t count = 0;
    kiln_stop_reason_t reason;
    kiln_status_t st = kiln_generation_sequence(gen, 0, &tokens, &count, &reason);
    std::vector<int64_t> out;
    if (!st)
      out.assign(tokens, tokens + count);
    kiln_generation_release(gen);
    if (st)
      return err(takeMessage(st));
    return out;
  }

  std::vector<Operation *> launchOps;
  int64_t vocab = -1;

private:
  Loaded() = default;
  std::string path;
  kiln_model_t model = nullptr;
  kiln_session_t session = nullptr;
};

/// What one teacher-forced prefill produced: each matmul launch's result
/// and the logits.
struct Captured {
  std::vector<std::vector<float>> layers;
  std::vector<float> logits;
  int64_t vocab = 0;
};

/// Runs `prompt` through `l` as one prefill (one generated token) and
/// captures the results of the launches in `layers` and the logits.
llvm::Expected<Captured> capture(Loaded &l, llvm::ArrayRef<size_t> layers,
                                 llvm::ArrayRef<int64_t> prompt) {
  ::kiln::Executor &ex = l.executor();
  const ::kiln::Manifest &m = ex.manifest();
  int logitsValue = m.logits >= 0 ? m.outputs[size_t(m.logits)].value : -1;
  llvm::DenseMap<size_t, size_t> slot;
  for (auto [i, launch] : llvm::enumerate(layers))
    slot[launch] = i;
  Captured c;
  c.layers.resize(layers.size());
  int runs = 0;
  ex.SetObserver([&](size_t launch, const ::kiln::Executor &e) {
    if (launch == 0)
      ++runs;
    if (runs != 1)
      return; // only the prefill
    const ::kiln::LaunchDesc &d = e.manifest().launches[launch];
    if (auto it = slot.find(launch); it != slot.end())
      appendFloats(e.value(d.out[0]), c.layers[it->second]);
    for (int o : d.out)
      if (o == logitsValue) {
        const ::kiln::Tensor &t = e.value(o);
        appendFloats(t, c.logits);
        c.vocab = t.shape.rank ? t.shape[t.shape.rank - 1] : 0;
      }
  });
  auto tokens = l.generate(prompt, 1);
  ex.SetObserver(nullptr);
  if (!tokens)
    return tokens.takeError();
  return c;
}

} // namespace

llvm::Expected<std::vector<std::vector<int64_t>>>
mlir::kiln::calibrationPrompts(const CalibrationOptions &options, int64_t vocab) {
  std::vector<std::vector<int64_t>> prompts;
  if (options.file.empty()) {
    if (vocab <= 0)
      return err("random calibration prompts need the model's vocabulary size, which is "
                 "unknown; give --calib=FILE with token ids");
    if (options.count < 1 || options.length < 1)
      return err("calibration needs at least one prompt of at least one token");
    std::mt19937_64 rng(options.seed);
    std::uniform_int_distribution<int64_t> id(0, vocab - 1);
    for (int64_t p = 0; p < options.count; ++p) {
      prompts.emplace_back();
      for (int64_t i = 0; i < options.length; ++i)
        prompts.back().push_back(id(rng));
    }
    return prompts;
  }
  auto buf = llvm::MemoryBuffer::getFile(options.file, /*IsText=*/true);
  if (!buf)
    return err("cannot read calibration prompts '" + options.file +
               "': " + buf.getError().message());
  llvm::SmallVector<llvm::StringRef> lines;
  (*buf)->getBuffer().split(lines, '\n');
  for (auto [n, raw] : llvm::enumerate(lines)) {
    llvm::StringRef line = raw.split('#').first.trim();
    if (line.empty())
      continue;
    std::vector<int64_t> ids;
    std::string text = line.str();
    std::replace_if(
        text.begin(), text.end(), [](char c) { return c == ',' || c == '\t' || c == '\r'; },
        ' ');
    llvm::SmallVector<llvm::StringRef> fields;
    llvm::StringRef(text).split(fields, ' ', -1, /*KeepEmpty=*/false);
    for (llvm::StringRef f : fields) {
      int64_t v;
      if (f.getAsInteger(10, v) || v < 0)
        return err(llvm::formatv("{0}:{1}: '{2}' is not a token id", options.file, n + 1, f)
                       .str());
      if (vocab > 0 && v >= vocab)
        return err(llvm::formatv("{0}:{1}: token id {2} is outside the vocabulary (0..{3})",
                                 options.file, n + 1, v, vocab - 1)
                       .str());
      ids.push_back(v);
    }
    prompts.push_back(std::move(ids));
  }
  if (prompts.empty())
    return err("'" + options.file + "' has no prompts (one per line: token ids)");
  return prompts;
}

std::vector<Operation *> mlir::kiln::activationSites(ModuleOp module) {
  std::vector<Operation *> sites;
  module.walk([&](QuantizeOp q) {
    if (!q.getScales() && !fromWeights(q.getInput()))
      sites.push_back(q);
  });
  return sites;
}

static std::string promptSource(const CalibrationOptions &o) {
  if (!o.file.empty())
    return o.file;
  return llvm::formatv("{0} random prompts of {1} tokens (seed {2})", o.count, o.length,
                       o.seed)
      .str();
}

llvm::Expected<CalibrationResult> mlir::kiln::calibrate(ModuleOp module,
                                                        const CompileOptions &compile,
                                                        const CalibrationOptions &options) {
  CalibrationResult result;
  result.source = promptSource(options);
  std::vector<Operation *> sites = activationSites(module);
  result.absMax.assign(sites.size(), -1.f);
  if (sites.empty())
    return result;
  auto loaded = Loaded::create(module, compile, options.threads, "calibration");
  if (!loaded)
    return loaded.takeError();
  Loaded &l = **loaded;
  llvm::DenseMap<Operation *, size_t> siteOf;
  for (auto [i, op] : llvm::enumerate(sites))
    siteOf[op] = i;
  llvm::DenseMap<size_t, size_t> siteOfLaunch;
  for (auto [i, op] : llvm::enumerate(l.launchOps))
    if (auto it = siteOf.find(op); it != siteOf.end())
      siteOfLaunch[i] = it->second;
  l.executor().SetObserver([&](size_t launch, const ::kiln::Executor &e) {
    auto it = siteOfLaunch.find(launch);
    if (it == siteOfLaunch.end())
      return;
    const ::kiln::Tensor &x = e.input(0);
    float &m = result.absMax[it->second];
    m = std::max(m, 0.f);
    for (int64_t i = 0, n = x.numel(); i < n; ++i) {
      float v = std::fabs(floatAt(x, i));
      if (v > m && std::isfinite(v))
        m = v;
    }
  });
  auto prompts = calibrationPrompts(options, l.vocab);
  if (!prompts)
    return prompts.takeError();
  for (auto [i, p] : llvm::enumerate(*prompts)) {
    auto tokens = l.generate(p, options.newTokens);
    if (!tokens)
      return err("calibration prompt " + llvm::Twine(i + 1) + ": " +
                 llvm::toString(tokens.takeError()));
    result.tokens += p.size() + tokens->size();
    if (options.progress)
      options.progress(i + 1, prompts->size());
  }
  result.prompts = prompts->size();
  return result;
}

/// The largest magnitude `storage` holds.
static float storageMax(Type storage) {
  if (isa<Float8E4M3FNType>(storage))
    return 448.f;
  if (isa<Float8E5M2Type>(storage))
    return 57344.f;
  unsigned bits = storage.getIntOrFloatBitWidth();
  return storage.isUnsignedInteger() ? float((1u << bits) - 1) : float((1u << (bits - 1)) - 1);
}

size_t mlir::kiln::applyActivationScales(ModuleOp module,
                                         const CalibrationResult &calibration) {
  std::vector<Operation *> sites = activationSites(module);
  size_t applied = 0;
  for (auto [i, op] : llvm::enumerate(sites)) {
    if (i >= calibration.absMax.size() || calibration.absMax[i] < 0)
      continue;
    auto q = cast<QuantizeOp>(op);
    QuantAttr quant = q.getType().getQuant();
    if (!quant.isSymmetric())
      continue;
    auto in = cast<RankedTensorType>(q.getInput().getType());
    MLIRContext *ctx = module.getContext();
    SmallVector<int64_t> ones(in.getRank(), 1), zeros(in.getRank(), 0);
    float amax = calibration.absMax[i];
    float scale = amax > 0 ? amax / storageMax(quant.getStorageType()) : 1.f;
    auto scalesType = RankedTensorType::get(ones, quant.getScaleType());
    OpBuilder b(q);
    Value scales = arith::ConstantOp::create(
        b, q.getLoc(), DenseElementsAttr::get(scalesType, b.getFloatAttr(quant.getScaleType(), scale)));
    auto perTensor = QuantAttr::get(ctx, quant.getStorageType(), quant.getExpressedType(), zeros,
                                    quant.getScaleType(), Type());
    auto type = QTensorType::get(ctx, in.getShape(), perTensor);
    auto replacement = QuantizeOp::create(b, q.getLoc(), type, q.getInput(), scales, Value());
    q.getResult().replaceAllUsesWith(replacement.getResult());
    q.erase();
    ++applied;
  }
  return applied;
}

llvm::Expected<QuantReport> mlir::kiln::measureQuantization(ModuleOp reference,
                                                            ModuleOp quantized,
                                                            const CompileOptions &compile,
                                                            const CalibrationOptions &options,
                                                            int64_t tokens) {
  auto ref = Loaded::create(reference, compile, options.threads, "report");
  if (!ref)
    return ref.takeError();
  auto quant = Loaded::create(quantized, compile, options.threads, "report");
  if (!quant)
    return quant.takeError();
  // The layers: the launches of matmuls and gated MLPs with weights, in
  // order (the quantization pass adds quantizes and transposes, no layer).
  auto weightOf = [](Operation *op) -> Value {
    if (auto mm = dyn_cast<MatmulOp>(op))
      return mm.getB();
    if (auto mlp = dyn_cast<GatedMlpOp>(op))
      return mlp.getDown();
    return Value();
  };
  auto layersOf = [&](const Loaded &l) {
    std::vector<size_t> out;
    for (auto [i, op] : llvm::enumerate(l.launchOps))
      if (Value w = weightOf(op); w && fromWeights(w))
        out.push_back(i);
    return out;
  };
  std::vector<size_t> keepRef = layersOf(**ref), keepQ = layersOf(**quant);
  QuantReport report;
  report.source = promptSource(options);
  report.greedyTokens = size_t(tokens);
  std::vector<double> diff, norm;
  bool paired = keepRef.size() == keepQ.size();
  for (size_t k = 0; paired && k < keepRef.size(); ++k)
    paired = (*ref)->launchOps[keepRef[k]]->getName() == (*quant)->launchOps[keepQ[k]]->getName();
  if (!paired) {
    // Only the logits and greedy tokens can be compared.
    keepRef.clear();
    keepQ.clear();
  }
  for (size_t q : keepQ) {
    Operation *op = (*quant)->launchOps[q];
    LayerError e;
    e.name = layerName(op, weightOf(op));
    e.scheme = describeQuant(weightOf(op).getType());
    if (isa<GatedMlpOp>(op))
      e.scheme = "gated MLP " + e.scheme;
    Value a = isa<MatmulOp>(op) ? cast<MatmulOp>(op).getA() : Value();
    if (a && isa<QTensorType>(a.getType())) {
      e.scheme += " x " + describeQuant(a.getType());
      if (auto q = a.getDefiningOp<QuantizeOp>()) {
        if (q.getInput().getDefiningOp<HadamardOp>())
          e.scheme += ", Hadamard";
        else if (auto r = q.getInput().getDefiningOp<RotateOp>())
          e.scheme += llvm::formatv(", rotated ({0}x{0})",
                                    cast<RankedTensorType>(r.getRotation().getType()).getDimSize(0))
                          .str();
      }
    }
    report.layers.push_back(e);
  }
  diff.assign(keepRef.size(), 0);
  norm.assign(keepRef.size(), 0);

  auto prompts = calibrationPrompts(options, (*ref)->vocab);
  if (!prompts)
    return prompts.takeError();
  double agree = 0, exact = 0, logitDiff = 0, logitNorm = 0;
  size_t top1 = 0;
  for (auto [i, p] : llvm::enumerate(*prompts)) {
    auto want = (*ref)->generate(p, tokens);
    if (!want)
      return want.takeError();
    auto got = (*quant)->generate(p, tokens);
    if (!got)
      return got.takeError();
    size_t same = 0;
    while (same < want->size() && same < got->size() && (*want)[same] == (*got)[same])
      ++same;
    agree += want->empty() ? 1.0 : double(same) / double(want->size());
    exact += same == want->size() && got->size() == want->size();

    std::vector<int64_t> seq(p.begin(), p.end());
    seq.insert(seq.end(), want->begin(), want->end());
    auto f = capture(**ref, keepRef, seq);
    if (!f)
      return f.takeError();
    auto g = capture(**quant, keepQ, seq);
    if (!g)
      return g.takeError();
    for (size_t k = 0; k < keepRef.size(); ++k) {
      const std::vector<float> &a = f->layers[k], &b = g->layers[k];
      if (a.size() != b.size())
        return err(llvm::formatv("layer '{0}': the quantized model's result has {1} values, "
                                 "the reference's {2}",
                                 report.layers[k].name, b.size(), a.size())
                       .str());
      for (size_t j = 0; j < a.size(); ++j) {
        diff[k] += double(b[j] - a[j]) * double(b[j] - a[j]);
        norm[k] += double(a[j]) * double(a[j]);
      }
    }
    if (f->logits.size() != g->logits.size() || f->vocab <= 0)
      return err("the logits of the quantized and the reference model differ in shape");
    size_t positions = f->logits.size() / size_t(f->vocab);
    for (size_t pos = 0; pos < positions; ++pos) {
      const float *a = &f->logits[pos * size_t(f->vocab)];
      const float *b = &g->logits[pos * size_t(f->vocab)];
      top1 += std::max_element(a, a + f->vocab) - a == std::max_element(b, b + f->vocab) - b;
      for (int64_t v = 0; v < f->vocab; ++v) {
        double d = double(b[v]) - double(a[v]);
        report.logitMaxAbs = std::max(report.logitMaxAbs, std::fabs(d));
        logitDiff += d * d;
        logitNorm += double(a[v]) * double(a[v]);
      }
    }
    report.positions += positions;
    if (options.progress)
      options.progress(i + 1, prompts->size());
  }
  report.prompts = prompts->size();
  for (size_t k = 0; k < report.layers.size(); ++k)
    report.layers[k].relativeError = norm[k] > 0 ? std::sqrt(diff[k] / norm[k]) : 0;
  report.logitRelative = logitNorm > 0 ? std::sqrt(logitDiff / logitNorm) : 0;
  report.top1Agreement = report.positions ? double(top1) / double(report.positions) : 0;
  report.greedyAgreement = report.prompts ? agree / double(report.prompts) : 0;
  report.greedyExact = report.prompts ? exact / double(report.prompts) : 0;
  return report;
}

void mlir::kiln::printQuantReport(const QuantReport &r, llvm::StringRef scheme,
                                  llvm::raw_ostream &os) {
  os << llvm::formatv("Quantization error ({0}) against the unquantized model on {1} prompts "
                      "({2}):\n",
                      scheme, r.prompts, r.source);
  size_t width = 5;
  for (const LayerError &l : r.layers)
    width = std::max(width, l.name.size());
  auto pad = [&](llvm::StringRef t) { return t.str() + std::string(width - t.size(), ' '); };
  os << llvm::formatv("  {0}  {1,-40}  {2}\n", pad("layer"), "weights [x activations]",
                      "rel. error");
  for (const LayerError &l : r.layers)
    os << llvm::formatv("  {0}  {1,-40}  {2:f5}\n", pad(l.name), l.scheme, l.relativeError);
  os << llvm::formatv("  logits over {0} positions (teacher-forced): max |diff| {1:f5}, "
                      "relative {2:f5}, top-1 agreement {3:f1}%\n",
                      r.positions, r.logitMaxAbs, r.logitRelative, 100 * r.top1Agreement);
  os << llvm::formatv("  greedy, {0} tokens per prompt: {1:f1}% of tokens before the first "
                      "difference, {2:f1}% of prompts identical\n",
                      r.greedyTokens, 100 * r.greedyAgreement, 100 * r.greedyExact);
}
