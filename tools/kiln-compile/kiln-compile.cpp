//===- kiln-compile.cpp - ONNX or kiln IR -> .kiln artifact ---------------===//
//
// kiln-compile model.onnx|model.mlir -o model.kiln [--target cpu]
// Imports (for .onnx), runs the graph pipeline, plans memory and writes the
// artifact. Each stage reports what it did and how long it took on stderr
// (--quiet silences it). On error it prints one line naming the file, op and
// ONNX node, exits 1 and leaves no output file behind.
//
//===----------------------------------------------------------------------===//

#include "kiln/Compiler/Calibrate.h"
#include "kiln/Compiler/Compile.h"
#include "kiln/Dialect/Kiln/IR/KilnOps.h"
#include "kiln/Import/OnnxImporter.h"
#include "kiln/Passes/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/AsmState.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/Parser/Parser.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Support/FileUtilities.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/CommandLine.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/InitLLVM.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/SourceMgr.h"
#ifdef KILN_HAVE_CUDA
#include "kiln/Codegen/Cuda.h"
#endif
#include "llvm/Support/ToolOutputFile.h"
#include "llvm/Support/WithColor.h"

#include <chrono>
#include <map>
#include <optional>

using namespace llvm;

static cl::OptionCategory category("kiln-compile options");
static cl::opt<std::string> inputPath(cl::Positional,
                                      cl::desc("<model.onnx | model.mlir>"),
                                      cl::cat(category));
static cl::opt<std::string> outputPath("o", cl::desc("Output file"),
                                       cl::value_desc("file"),
                                       cl::cat(category));
static cl::opt<std::string> target(
    "target",
    cl::desc("Target: cpu, or cuda (adds NVRTC-compiled kernels; the artifact "
             "still runs on the CPU)"),
    cl::init("cpu"), cl::cat(category));
static cl::list<std::string> cudaArchs(
    "cuda-arch",
    cl::desc("Real GPU architectures to compile cubins for (default "
             "sm_80,sm_89,sm_90a)"),
    cl::CommaSeparated, cl::cat(category));
static cl::opt<std::string> cudaPtx(
    "cuda-ptx",
    cl::desc("Virtual architecture of the PTX shipped for newer GPUs, or "
             "'none'"),
    cl::init("compute_90"), cl::cat(category));
static cl::opt<std::string> kernelCache(
    "kernel-cache",
    cl::desc("Folder of compiled kernel images, reused by content hash "
             "(default $KILN_KERNEL_CACHE or ~/.cache/kiln/kernels; 'none' "
             "disables it)"),
    cl::value_desc("dir"), cl::cat(category));
static cl::opt<int64_t> cudaMaxSpill(
    "cuda-max-spill-bytes",
    cl::desc("Fail when a kernel spills more than this many bytes to local "
             "memory on any architecture"),
    cl::init(0), cl::cat(category));
enum class Emit { Artifact, Mlir, Manifest };
static cl::opt<Emit> emit(
    "emit", cl::desc("What to write"), cl::init(Emit::Artifact),
    cl::values(
        clEnumValN(Emit::Artifact, "artifact", "the .kiln artifact"),
        clEnumValN(Emit::Mlir, "mlir", "the IR after the last stage run"),
        clEnumValN(Emit::Manifest, "manifest", "the artifact's manifest JSON")),
    cl::cat(category));
// --stop-after=import|graph. LLVM's codegen library already registers a
// string option of that name, so kiln-compile adopts it (see main) instead of
// registering a second one.
static cl::opt<std::string> *stopAfter = nullptr;
static cl::opt<mlir::kiln::WeightMode> weights(
    "weights", cl::desc("Where the weights go"),
    cl::init(mlir::kiln::WeightMode::Embed),
    cl::values(
        clEnumValN(mlir::kiln::WeightMode::Embed, "embed", "into the artifact"),
        clEnumValN(mlir::kiln::WeightMode::External, "external",
                   "into a parameter file (--params), bound at load time"),
        clEnumValN(mlir::kiln::WeightMode::Reference, "reference",
                   "left in the model's external data files, read at load "
                   "time")),
    cl::cat(category));
static cl::opt<std::string>
    paramsPath("params",
               cl::desc("Parameter file for --weights=external (default: "
                        "<output without .kiln>.kparams)"),
               cl::value_desc("file"), cl::cat(category));
static cl::opt<std::string> weightsDir(
    "weights-dir",
    cl::desc("Folder weight locations are relative to (default: the input's "
             "folder)"),
    cl::value_desc("dir"), cl::cat(category));
static cl::list<int64_t>
    eosIds("eos-id",
           cl::desc("End-of-sequence token id (repeatable; "
                    "default: from the model's config)"),
           cl::cat(category));
static cl::opt<int64_t> bosId("bos-id", cl::desc("Beginning-of-sequence id"),
                              cl::init(-1), cl::cat(category));
static cl::opt<int64_t> maxSeqLen(
    "max-seq-len",
    cl::desc("Longest sequence (prompt + generated) a session holds in its KV "
             "cache (default: the model config's context length)"),
    cl::init(0), cl::cat(category));
static cl::opt<bool> quiet("quiet", cl::desc("No progress output"),
                           cl::cat(category));
static cl::opt<bool> fuse("fuse",
                          cl::desc("Recognize and fuse norms, activations, "
                                   "gated MLPs, RoPE, attention and sibling "
                                   "projections (--fuse=false keeps the graph "
                                   "as imported, the reference form)"),
                          cl::init(true), cl::cat(category));
static cl::opt<bool> fuseElementwise(
    "fuse-elementwise",
    cl::desc("With --fuse: fold chains of elementwise ops into one "
             "kiln.elementwise each (off by default: --report cannot yet "
             "explain near-misses inside a fused chain)"),
    cl::init(false), cl::cat(category));
static cl::opt<bool> kvCache(
    "kv-cache",
    cl::desc("With --fuse: give each layer a KV cache the runtime appends to "
             "in place (--kv-cache=false keeps the per-step past/present "
             "concatenation)"),
    cl::init(true), cl::cat(category));
static cl::opt<std::string> kvLayout(
    "kv-layout",
    cl::desc("KV-cache storage: contiguous (one slab per sequence) or "
             "paged:N (blocks of N tokens through a block table, any N >= 1)"),
    cl::value_desc("layout"), cl::init("contiguous"), cl::cat(category));
static cl::opt<std::string> kvDtype(
    "kv-dtype",
    cl::desc("KV-cache element type: model (the model's), int8, fp8 (E4M3) "
             "or int4; quantized on append with per-token scales and "
             "dequantized inside attention"),
    cl::value_desc("type"), cl::init("model"), cl::cat(category));
static cl::opt<int64_t> kvGroup(
    "kv-group",
    cl::desc("Elements per KV scale along the head dim (default: one scale "
             "per token and head for int8/fp8, 32 for int4)"),
    cl::init(0), cl::cat(category));
static cl::opt<std::string> kvScaleType(
    "kv-scale-type", cl::desc("Scale type of a quantized KV cache: f16 or f32"),
    cl::value_desc("type"), cl::init("f16"), cl::cat(category));
static cl::opt<std::string> quant(
    "quant",
    cl::desc("Quantization (kiln-quantize-weights): none, w8a16 (int8 weights "
             "per output channel), w4a16 (int4 weights in groups along K), "
             "fp8 (E4M3 weights and activations) or w4a4 (int4 weights and "
             "activations, rotated); weights are packed at compile time"),
    cl::value_desc("scheme"), cl::init("none"), cl::cat(category));
static cl::opt<int64_t> quantGroup(
    "quant-group", cl::desc("w4a16: weights along K per scale (default 128)"),
    cl::init(128), cl::cat(category));
static cl::opt<bool> quantZeroPoints(
    "quant-zero-points",
    cl::desc("w4a16: unsigned int4 with a zero point per group (asymmetric)"),
    cl::init(false), cl::cat(category));
static cl::opt<std::string> quantWeightScales(
    "quant-weight-scales",
    cl::desc("fp8: one weight scale per output channel or per tensor"),
    cl::value_desc("channel|tensor"), cl::init("channel"), cl::cat(category));
static cl::opt<std::string> quantActivations(
    "quant-activations",
    cl::desc("fp8 without --calib: activation scales computed at run time "
             "per token or per tensor"),
    cl::value_desc("token|tensor"), cl::init("token"), cl::cat(category));
static cl::opt<std::string> quantRotation(
    "quant-rotation",
    cl::desc("w4a4: rotate K on both sides of each matmul (folded into the "
             "weights, online for the inputs) by a Hadamard transform, by the "
             "orthogonal matrices of a .safetensors file (SpinQuant's), or "
             "not"),
    cl::value_desc("hadamard|none|file"), cl::init("hadamard"), cl::cat(category));
static cl::opt<std::string> calib(
    "calib",
    cl::desc("Calibration prompts: a file of token ids (one prompt per line), "
             "or 'random' for generated ones. fp8 then uses static per-tensor "
             "activation scales from a run over them; --report measures on "
             "them"),
    cl::value_desc("file|random"), cl::cat(category));
static cl::opt<int64_t> calibPrompts(
    "calib-prompts", cl::desc("Generated calibration prompts (default 8)"),
    cl::init(8), cl::cat(category));
static cl::opt<int64_t> calibLen(
    "calib-len", cl::desc("Tokens per generated calibration prompt (default 32)"),
    cl::init(32), cl::cat(category));
static cl::opt<uint64_t> calibSeed(
    "calib-seed", cl::desc("Seed of the generated calibration prompts"),
    cl::init(0), cl::cat(category));
static cl::opt<int64_t> calibTokens(
    "calib-tokens",
    cl::desc("Greedy tokens generated after each calibration prompt, so that "
             "decode steps are calibrated too (default 16)"),
    cl::init(16), cl::cat(category));
static cl::opt<int64_t> reportTokens(
    "report-tokens",
    cl::desc("--report with --quant: greedy tokens per prompt compared with "
             "the unquantized model (default 32)"),
    cl::init(32), cl::cat(category));
static cl::list<std::string> quantExclude(
    "quant-exclude",
    cl::desc("Regular expression (repeatable): weights or ONNX nodes that stay "
             "float, e.g. lm_head or 'layers\\.0\\.'"),
    cl::value_desc("regex"), cl::cat(category));
static cl::opt<bool> ragged(
    "ragged",
    cl::desc("Make the graph run ragged batches (the new tokens of many "
             "sequences flattened, for continuous batching): ropes read "
             "position_ids, attention masks per sequence"),
    cl::init(false), cl::cat(category));
static cl::opt<bool> report(
    "report",
    cl::desc("After the graph stage, print which ops were fused from which "
             "ONNX nodes, what stayed unfused and why, and the op counts "
             "before and after; with --quant, with the write stage, the weight "
             "bytes before and after and the error the quantization costs "
             "(per layer, logits, greedy agreement) against the unquantized "
             "model on the calibration prompts (on stderr)"),
    cl::cat(category));
static cl::opt<bool> pruneWeights("prune-weights",
                                  cl::desc("Drop unread weights in the graph "
                                           "pipeline"),
                                  cl::init(true), cl::cat(category));

namespace {

using Clock = std::chrono::steady_clock;

class Progress {
public:
  /// Reports a stage; `ms` < 0 means the time since the previous report.
  void stage(StringRef name, StringRef detail, double ms = -1) {
    if (ms < 0)
      ms = std::chrono::duration<double, std::milli>(Clock::now() - start)
               .count();
    if (!quiet)
      errs() << formatv("[kiln-compile] {0,-8} {1,8:f1} ms  {2}\n", name, ms,
                        detail);
    start = Clock::now();
  }
  void restart() { start = Clock::now(); }

private:
  Clock::time_point start = Clock::now();
};

int fail(const Twine &message) {
  WithColor::error(errs(), "kiln-compile") << message << "\n";
  return 1;
}

size_t countOps(mlir::ModuleOp m) {
  size_t n = 0;
  m.walk([&](mlir::Operation *op) {
    if (!isa<mlir::ModuleOp, mlir::func::FuncOp>(op))
      ++n;
  });
  return n;
}

/// "5 rms_norm, 2 gated_mlp": the ops the fusion passes created (their
/// location fuses those of the ops they replaced), or "none".
std::string fusedSummary(mlir::ModuleOp m) {
  std::map<std::string, int> counts;
  m.walk([&](mlir::Operation *op) {
    if (isa<mlir::FusedLoc>(op->getLoc()))
      ++counts[op->getName().stripDialect().str()];
  });
  if (counts.empty())
    return "none";
  std::string s;
  for (auto &[name, n] : counts)
    s += (s.empty() ? "" : ", ") + std::to_string(n) + " " + name;
  return s;
}

std::string humanBytes(uint64_t b) {
  if (b >= (1u << 20))
    return formatv("{0:f2} MiB", b / 1048576.0).str();
  if (b >= 1024)
    return formatv("{0:f1} KiB", b / 1024.0).str();
  return formatv("{0} B", b).str();
}

} // namespace

int main(int argc, char **argv) {
  InitLLVM init(argc, argv);
  mlir::registerPassManagerCLOptions();
  mlir::registerAsmPrinterCLOptions();
  mlir::registerMLIRContextCLOptions();
  auto &registered = cl::getRegisteredOptions();
  auto it = registered.find("stop-after");
  if (it == registered.end()) {
    static cl::opt<std::string> own("stop-after");
    stopAfter = &own;
  } else {
    stopAfter = static_cast<cl::opt<std::string> *>(it->second);
  }
  stopAfter->setDescription("Stop after this stage and print the IR: import "
                            "or graph");
  stopAfter->setValueStr("stage");
  stopAfter->addCategory(category);
  // --help shows kiln-compile's own options; the MLIR pass-manager flags
  // still work and are listed by --help-hidden.
  cl::HideUnrelatedOptions(category);
  stopAfter->setHiddenFlag(cl::NotHidden); // LLVM registers it hidden
  cl::ParseCommandLineOptions(
      argc, argv,
      "kiln-compile: compiles an ONNX model or kiln IR into a .kiln "
      "artifact\n\n"
      "  kiln-compile model.onnx -o model.kiln\n"
      "  kiln-compile model.onnx --stop-after=graph          (print the IR)\n"
      "  kiln-compile model.onnx --weights=external -o m.kiln (m.kparams)\n\n"
      "Stages: import (.onnx only), graph (canonicalize, CSE, fusion of "
      "norms,\n"
      "activations and gated MLPs, prune weights), plan (kernels, memory "
      "plan,\n"
      "weights), write. Pass-manager flags such as\n"
      "--mlir-print-ir-after-all and --mlir-timing work as in mlir-opt.\n");

  if (inputPath.empty())
    return fail("no input given (kiln-compile model.onnx -o model.kiln)");
  StringRef stop = *stopAfter;
  if (!stop.empty() && stop != "import" && stop != "graph")
    return fail("--stop-after=" + stop + ": the stages are import and graph");
  bool wantIr = emit == Emit::Mlir || !stop.empty();
  if (!wantIr && emit == Emit::Artifact && outputPath.empty())
    return fail("no output file given (-o model.kiln)");
  if (outputPath.empty())
    outputPath = "-";

  mlir::DialectRegistry registry;
  registry.insert<mlir::kiln::KilnDialect, mlir::arith::ArithDialect,
                  mlir::func::FuncDialect>();
  mlir::MLIRContext context(registry);
  context.loadAllAvailableDialects();

  Progress progress;
  mlir::OwningOpRef<mlir::ModuleOp> module;
  bool isOnnx = StringRef(inputPath).ends_with_insensitive(".onnx");
  if (isOnnx) {
    auto imported = mlir::kiln::importOnnxModel(&context, inputPath, {});
    if (!imported)
      return fail(toString(imported.takeError()));
    module = std::move(*imported);
    progress.stage("import",
                   formatv("{0}: {1} ops", inputPath, countOps(*module)).str());
  } else {
    llvm::SourceMgr sourceMgr;
    mlir::SourceMgrDiagnosticHandler handler(sourceMgr, &context);
    module = mlir::parseSourceFile<mlir::ModuleOp>(
        inputPath, sourceMgr, mlir::ParserConfig(&context));
    if (!module)
      return 1; // the diagnostic handler printed file:line: error
    progress.stage("parse",
                   formatv("{0}: {1} ops", inputPath, countOps(*module)).str());
  }

  auto writeIr = [&]() -> int {
    std::string error;
    auto out = mlir::openOutputFile(outputPath, &error);
    if (!out)
      return fail(error);
    (*module)->print(out->os());
    out->keep();
    return 0;
  };
  if (stop == "import")
    return writeIr();

  mlir::kiln::CompileOptions options;
  options.target = target;
  if (!cudaArchs.empty())
    options.cudaArchs.assign(cudaArchs.begin(), cudaArchs.end());
  options.cudaPtxArch = cudaPtx == "none" ? "" : cudaPtx.getValue();
  options.cudaMaxSpillBytes = cudaMaxSpill;
#ifdef KILN_HAVE_CUDA
  options.kernelCacheDir = kernelCache.empty() ? mlir::kiln::cuda::defaultCacheDir()
                           : kernelCache == "none" ? std::string()
                                                   : kernelCache.getValue();
#endif
  if (!quiet)
    options.kernelProgress = [](size_t done, size_t total, StringRef entry) {
      errs() << formatv("[kiln-compile] cuda     image {0}/{1}: {2}\n", done, total, entry);
    };
  options.weights = weights;
  options.sourcePath = sys::path::filename(inputPath).str();
  if (!weightsDir.empty()) {
    options.weightsDir = weightsDir;
  } else {
    SmallString<256> dir(inputPath);
    sys::path::remove_filename(dir);
    options.weightsDir = dir.empty() ? "." : dir.str().str();
  }
  options.eosTokenIds.assign(eosIds.begin(), eosIds.end());
  if (bosId >= 0)
    options.bosTokenId = bosId;
  if (maxSeqLen < 0)
    return fail("--max-seq-len must be positive");
  if (maxSeqLen > 0)
    options.maxSequenceLength = maxSeqLen;

  mlir::PassManager pm(&context);
  if (mlir::failed(mlir::applyPassManagerCLOptions(pm)))
    return fail("invalid pass-manager options");
  mlir::kiln::GraphPipelineOptions pipelineOptions;
  pipelineOptions.pruneWeights = pruneWeights;
  pipelineOptions.fuse = fuse;
  pipelineOptions.kvCache = kvCache;
  pipelineOptions.elementwise = fuseElementwise;
  pipelineOptions.ragged = ragged;
  if (quant != "none") {
    if (quant != "w8a16" && quant != "w4a16" && quant != "fp8" && quant != "w4a4")
      return fail("--quant=" + quant + ": expected none, w8a16, w4a16, fp8 or w4a4");
    if (quant != "w4a4" && quantRotation.getNumOccurrences())
      return fail("--quant-rotation applies to --quant=w4a4");
    if (quantRotation != "hadamard" && quantRotation != "none" &&
        !StringRef(quantRotation).ends_with(".safetensors"))
      return fail("--quant-rotation=" + quantRotation +
                  ": expected hadamard, none or a .safetensors file of rotations");
    pipelineOptions.quantRotation = quantRotation.getValue();
    if (!fuse)
      return fail("--quant needs the graph stage's fusion (drop --fuse=false)");
    pipelineOptions.quant = quant;
    pipelineOptions.quantGroup = quantGroup;
    pipelineOptions.quantZeroPoints = quantZeroPoints;
    for (const std::string &p : quantExclude)
      pipelineOptions.quantExclude.push_back(p);
    if (quant != "fp8" && (quantWeightScales.getNumOccurrences() ||
                           quantActivations.getNumOccurrences()))
      return fail("--quant-weight-scales and --quant-activations apply to --quant=fp8");
    if (quantWeightScales != "channel" && quantWeightScales != "tensor")
      return fail("--quant-weight-scales=" + quantWeightScales + ": expected channel or tensor");
    if (quantActivations != "token" && quantActivations != "tensor")
      return fail("--quant-activations=" + quantActivations + ": expected token or tensor");
    if (quant == "fp8" && !calib.empty() && quantActivations.getNumOccurrences())
      return fail("--quant-activations chooses dynamic scales; --calib makes them static "
                  "(give one of them)");
    pipelineOptions.quantWeightScales = quantWeightScales.getValue();
    pipelineOptions.quantActivations = quantActivations.getValue();
  } else if (quantZeroPoints || quantExclude.getNumOccurrences() ||
             quantGroup.getNumOccurrences() || quantWeightScales.getNumOccurrences() ||
             quantActivations.getNumOccurrences() || quantRotation.getNumOccurrences()) {
    return fail("--quant-group, --quant-zero-points, --quant-weight-scales, "
                "--quant-activations, --quant-rotation and --quant-exclude need --quant");
  } else if (!calib.empty()) {
    return fail("--calib calibrates a quantization: give --quant too");
  }
  if (calibPrompts < 1 || calibLen < 1 || calibTokens < 1 || reportTokens < 1)
    return fail("--calib-prompts, --calib-len, --calib-tokens and --report-tokens must be >= 1");
  mlir::kiln::CalibrationOptions calibOptions;
  if (calib != "random")
    calibOptions.file = calib;
  calibOptions.count = calibPrompts;
  calibOptions.length = calibLen;
  calibOptions.seed = calibSeed;
  calibOptions.newTokens = calibTokens;
  if (ragged && (!fuse || !kvCache))
    return fail("--ragged needs the in-place KV cache (drop --fuse=false / --kv-cache=false)");
  {
    StringRef layout = kvLayout;
    if (layout == "contiguous") {
      pipelineOptions.kvLayout = "contiguous";
    } else if (layout.consume_front("paged:") || layout.consume_front("paged=")) {
      int64_t n = 0;
      if (layout.getAsInteger(10, n) || n < 1)
        return fail("--kv-layout=" + kvLayout + ": the block size must be an integer >= 1");
      pipelineOptions.kvLayout = "paged";
      pipelineOptions.kvBlockSize = n;
    } else if (layout == "paged") {
      pipelineOptions.kvLayout = "paged";
    } else {
      return fail("--kv-layout=" + kvLayout + ": expected contiguous or paged:N");
    }
    StringRef type = kvDtype;
    if (type == "model")
      pipelineOptions.kvDtype = "";
    else if (type == "int8" || type == "i8")
      pipelineOptions.kvDtype = "i8";
    else if (type == "fp8" || type == "f8E4M3FN" || type == "e4m3")
      pipelineOptions.kvDtype = "f8E4M3FN";
    else if (type == "int4" || type == "i4")
      pipelineOptions.kvDtype = "i4";
    else
      return fail("--kv-dtype=" + kvDtype + ": expected model, int8, fp8 or int4");
    if (kvGroup < 0)
      return fail("--kv-group must be >= 0");
    if (kvScaleType != "f16" && kvScaleType != "f32")
      return fail("--kv-scale-type=" + kvScaleType + ": expected f16 or f32");
    pipelineOptions.kvGroup = kvGroup;
    pipelineOptions.kvScaleType = kvScaleType.getValue();
    bool wantsLayout = pipelineOptions.kvLayout != "contiguous" ||
                       !pipelineOptions.kvDtype.empty();
    if (wantsLayout && (!fuse || !kvCache))
      return fail("--kv-layout/--kv-dtype need the in-place KV cache (drop "
                  "--fuse=false / --kv-cache=false)");
  }
  mlir::kiln::buildGraphPipeline(pm, pipelineOptions);
  std::map<std::string, int64_t> opsBefore;
  if (report)
    opsBefore = mlir::kiln::countOpKinds(*module);
  // --report --quant measures against the same graph without quantization.
  mlir::OwningOpRef<mlir::ModuleOp> reference;
  bool quantReport = report && quant != "none" && !wantIr && emit == Emit::Artifact;
  if (quantReport) {
    reference = module->clone();
    mlir::PassManager refPm(&context);
    mlir::kiln::GraphPipelineOptions refOptions;
    refOptions.pruneWeights = pipelineOptions.pruneWeights.getValue();
    refOptions.fuse = pipelineOptions.fuse.getValue();
    refOptions.kvCache = pipelineOptions.kvCache.getValue();
    refOptions.elementwise = pipelineOptions.elementwise.getValue();
    refOptions.ragged = pipelineOptions.ragged.getValue();
    refOptions.kvLayout = pipelineOptions.kvLayout.getValue();
    refOptions.kvBlockSize = pipelineOptions.kvBlockSize.getValue();
    refOptions.kvDtype = pipelineOptions.kvDtype.getValue();
    refOptions.kvGroup = pipelineOptions.kvGroup.getValue();
    refOptions.kvScaleType = pipelineOptions.kvScaleType.getValue();
    // The same fusions as the quantized graph, so that layers pair up.
    refOptions.fuseMlp = quant != "fp8" && quant != "w4a4";
    mlir::kiln::buildGraphPipeline(refPm, refOptions);
    if (mlir::failed(refPm.run(*reference)))
      return fail("the graph pipeline failed on '" + inputPath + "' (unquantized reference)");
  }
  if (mlir::failed(pm.run(*module)))
    return fail("the graph pipeline failed on '" + inputPath + "'");
  if (pipelineOptions.kvLayout != "contiguous" || !pipelineOptions.kvDtype.empty()) {
    // The options apply to the layers that have an in-place cache; say which
    // kept past/present tensors, and refuse when none has one.
    size_t caches = 0;
    std::vector<std::pair<std::string, std::string>> tensorLayers;
    module->walk([&](mlir::func::FuncOp f) {
      for (mlir::Type t : f.getArgumentTypes())
        caches += mlir::isa<mlir::kiln::KvCacheType>(t);
      auto why = mlir::kiln::explainTensorKvLayers(f);
      tensorLayers.insert(tensorLayers.end(), why.begin(), why.end());
    });
    std::string list;
    for (auto &[name, why] : tensorLayers)
      list += "\n  " + name + ": " + why;
    if (caches == 0)
      return fail("--kv-layout/--kv-dtype: no layer of '" + inputPath +
                  "' has an in-place KV cache" + list);
    if (!tensorLayers.empty())
      errs() << "kiln-compile: warning: --kv-layout/--kv-dtype leave "
             << tensorLayers.size() << " layer(s) as past/present tensors:" << list << "\n";
  }
  if (report) {
    mlir::kiln::FusionReport r = mlir::kiln::analyzeFusion(*module);
    r.opsBefore = std::move(opsBefore);
    mlir::kiln::printFusionReport(r, errs());
  }
  progress.stage("graph", formatv("{0} ops after canonicalize, CSE, "
                                  "fusion ({1}), prune",
                                  countOps(*module), fusedSummary(*module))
                              .str());
  if (quant == "fp8" && !calib.empty()) {
    if (!quiet)
      calibOptions.progress = [](size_t done, size_t total) {
        errs() << formatv("[kiln-compile] calib    prompt {0}/{1}\n", done, total);
      };
    auto calibration = mlir::kiln::calibrate(*module, options, calibOptions);
    if (!calibration)
      return fail("--calib: " + toString(calibration.takeError()));
    size_t sites = calibration->absMax.size();
    size_t applied = mlir::kiln::applyActivationScales(*module, *calibration);
    progress.stage("calib",
                   formatv("{0} prompts ({1}), {2} tokens: {3} of {4} activation scales "
                           "static (per tensor){5}",
                           calibration->prompts, calibration->source, calibration->tokens,
                           applied, sites,
                           applied < sites ? "; the others never ran and stay dynamic" : "")
                       .str());
  }
  if (wantIr)
    return writeIr();
  Clock::time_point graphDone = Clock::now();

  if (emit == Emit::Manifest) {
    auto manifest = mlir::kiln::buildManifestJson(*module, options);
    if (!manifest)
      return fail(toString(manifest.takeError()));
    std::string error;
    auto out = mlir::openOutputFile(outputPath, &error);
    if (!out)
      return fail(error);
    out->os() << *manifest << "\n";
    out->keep();
    return 0;
  }

  if (outputPath == "-")
    return fail("an artifact cannot be written to stdout; give -o model.kiln");
  if (options.weights == mlir::kiln::WeightMode::External) {
    if (paramsPath.empty()) {
      SmallString<256> p(outputPath);
      sys::path::replace_extension(p, "kparams");
      options.paramsPath = p.str().str();
    } else {
      options.paramsPath = paramsPath;
    }
  }
  // The report runs first, so that a model it cannot run leaves no
  // artifact behind; it is printed after the write stage.
  std::optional<mlir::kiln::QuantReport> quantError;
  if (quantReport) {
    if (!quiet)
      calibOptions.progress = [](size_t done, size_t total) {
        errs() << formatv("[kiln-compile] report   prompt {0}/{1}\n", done, total);
      };
    auto r = mlir::kiln::measureQuantization(*reference, *module, options, calibOptions,
                                             reportTokens);
    if (!r)
      return fail("--report: " + toString(r.takeError()));
    progress.stage("report", formatv("{0} prompts, {1} positions against the unquantized "
                                     "model",
                                     r->prompts, r->positions)
                                 .str());
    quantError = std::move(*r);
    graphDone = Clock::now();
  }
  mlir::kiln::CompileStats stats;
  if (auto e = mlir::kiln::compileModule(*module, options, outputPath, &stats))
    return fail(toString(std::move(e)));
  double sinceGraph =
      std::chrono::duration<double, std::milli>(Clock::now() - graphDone)
          .count();
  progress.stage("plan",
                 formatv("{0} launches on {1}, {2} values; arena {3} (unshared "
                         "{4}), {5} dynamic slots",
                         stats.launches, options.target, stats.values,
                         humanBytes(stats.arenaBytes),
                         humanBytes(stats.unplannedArenaBytes), stats.slots)
                     .str(),
                 sinceGraph - stats.writeMs);
  std::string where = options.weights == mlir::kiln::WeightMode::Embed
                          ? "embedded"
                      : options.weights == mlir::kiln::WeightMode::External
                          ? "in " + options.paramsPath + " (" +
                                humanBytes(stats.paramsBytes) + ")"
                          : "referenced in the model's files";
  if (options.target == "cuda") {
    progress.stage(
        "cuda",
        formatv("{0} kernels for {1} of {2} launches; {3} images ({4}) for {5}{6}: "
                "{7} compiled, {8} from the cache",
                stats.cudaKernels.size(), stats.cudaLaunches, stats.launches,
                stats.cudaImagesCompiled + stats.cudaImagesCached,
                humanBytes(stats.cudaImageBytes), join(options.cudaArchs, ","),
                options.cudaPtxArch.empty() ? "" : "+" + options.cudaPtxArch,
                stats.cudaImagesCompiled, stats.cudaImagesCached)
            .str(),
        stats.cudaCompileMs);
    if (report) {
      errs() << "CUDA kernels (entry, launches, per arch: registers / spill bytes / "
                "static shared bytes):\n";
      for (const mlir::kiln::CudaKernelStats &k : stats.cudaKernels) {
        errs() << formatv("  {0}  kiln.{1} x{2}:", k.entry, k.op, k.launches);
        for (const auto &im : k.images)
          errs() << formatv("  {0} {1}/{2}/{3}", im.arch, im.registers, im.spillBytes,
                            im.sharedBytes);
        errs() << "\n";
      }
      if (!stats.cudaMissing.empty())
        errs() << "launches without a CUDA kernel (they run on the CPU backend):\n";
      for (const auto &m : stats.cudaMissing)
        errs() << formatv("  kiln.{0} x{1}: {2}\n", m.op, m.launches, m.reason);
    }
  }
  std::string quantized;
  if (stats.quantizedWeights)
    quantized = formatv("; {0} weights quantized ({1}): {2} -> {3}", stats.quantizedWeights,
                        quant, humanBytes(stats.quantizedFromBytes),
                        humanBytes(stats.quantizedBytes))
                    .str();
  progress.stage("write",
                 formatv("{0} ({1}): {2} weights, {3} {4}; constants {5}{6}; "
                         "generation {7}",
                         outputPath, humanBytes(stats.artifactBytes),
                         stats.weights, humanBytes(stats.weightBytes), where,
                         humanBytes(stats.constantBytes), quantized,
                         stats.generation ? "supported" : "not supported")
                     .str(),
                 stats.writeMs);
  if (quantReport) {
    errs() << formatv("Quantized weights ({0}): {1}, {2} -> {3} ({4:f2}x smaller); the "
                      "artifact's weights and constants: {5}\n",
                      quant, stats.quantizedWeights, humanBytes(stats.quantizedFromBytes),
                      humanBytes(stats.quantizedBytes),
                      stats.quantizedBytes ? double(stats.quantizedFromBytes) /
                                                 double(stats.quantizedBytes)
                                           : 0.0,
                      humanBytes(stats.weightBytes + stats.constantBytes));
    mlir::kiln::printQuantReport(*quantError, quant, errs());
  }
  return 0;
}
