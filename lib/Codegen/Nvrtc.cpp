//===- Nvrtc.cpp - compile kernels with NVRTC, cache the images ------------===//
//
// Each (kernel, architecture) pair is one NVRTC compilation: a cubin with
// ptxas' verbose log for every real architecture, and PTX for the virtual
// one. The kernel library's headers are handed to NVRTC from memory (they
// are embedded in this binary), so kiln-compile needs nothing of the repo
// at run time. Images are cached under a SHA-256 of the NVRTC version, the
// options, the source and the library, written atomically, so concurrent
// compiles share the cache safely.
//
//===----------------------------------------------------------------------===//

#include "kiln/Codegen/Cuda.h"

#include <nvrtc.h>

#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Parallel.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/Regex.h"
#include "llvm/Support/SHA256.h"
#include "llvm/Support/raw_ostream.h"

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <mutex>

using namespace mlir::kiln;

namespace {

struct LibraryHeader {
  const char *name;
  const char *text;
};

// The kernel library, embedded at build time (lib/Codegen/cuda/kiln/*.cuh).
const LibraryHeader kLibrary[] = {
#include "CudaLibrary.inc"
};

llvm::Error err(const llvm::Twine &message) {
  return llvm::createStringError(llvm::inconvertibleErrorCode(), message);
}

std::string hexDigest(llvm::StringRef text) {
  std::array<uint8_t, 32> d = llvm::SHA256::hash(llvm::arrayRefFromStringRef(text));
  return llvm::toHex(llvm::ArrayRef<uint8_t>(d.data(), d.size()), true);
}

/// Everything but the source and arch that determines an image.
const std::string &libraryFingerprint() {
  static const std::string fp = [] {
    std::string all = "kiln-cuda-cache-v1\n" + cuda::nvrtcVersion() + "\n";
    for (const LibraryHeader &h : kLibrary)
      all += std::string(h.name) + "\n" + h.text + "\n";
    return hexDigest(all);
  }();
  return fp;
}

std::vector<std::string> nvrtcOptions(llvm::StringRef arch, bool ptx) {
  std::vector<std::string> o = {"--std=c++17", "--gpu-architecture=" + arch.str(),
                                "-I" KILN_CUDA_INCLUDE_DIR};
  if (!ptx) {
    o.push_back("-Xptxas");
    o.push_back("-v");
  }
  return o;
}

struct Job {
  size_t kernel;
  std::string arch;
  bool ptx;
};

llvm::Expected<cuda::Image> compileOne(const cuda::KernelSource &k, const Job &job,
                                       const std::string &cacheDir) {
  cuda::Image image;
  image.arch = job.arch;
  image.ptx = job.ptx;
  std::vector<std::string> opts = nvrtcOptions(job.arch, job.ptx);
  std::string key = libraryFingerprint() + "\n" + llvm::join(opts, " ") + "\n" + k.source;
  std::string hash = hexDigest(key);
  llvm::SmallString<256> imagePath, logPath;
  if (!cacheDir.empty()) {
    imagePath = cacheDir;
    llvm::sys::path::append(imagePath, hash + (job.ptx ? ".ptx" : ".cubin"));
    logPath = cacheDir;
    llvm::sys::path::append(logPath, hash + ".log");
    auto bin = llvm::MemoryBuffer::getFile(imagePath, /*IsText=*/false,
                                           /*RequiresNullTerminator=*/false);
    auto log = llvm::MemoryBuffer::getFile(logPath);
    if (bin && log && (*bin)->getBufferSize() > 0) {
      std::optional<cuda::Resources> r =
          job.ptx ? cuda::Resources{} : cuda::parsePtxasLog((*log)->getBuffer(), k.entry);
      if (r) { // a cache entry we cannot read is compiled again
        image.bytes = (*bin)->getBuffer().str();
        image.resources = *r;
        image.fromCache = true;
        return image;
      }
    }
  }

  std::vector<const char *> headerNames, headerTexts;
  for (const LibraryHeader &h : kLibrary) {
    headerNames.push_back(h.name);
    headerTexts.push_back(h.text);
  }
  nvrtcProgram prog;
  nvrtcResult r = nvrtcCreateProgram(&prog, k.source.c_str(), (k.entry + ".cu").c_str(),
                                     int(headerNames.size()), headerTexts.data(),
                                     headerNames.data());
  if (r != NVRTC_SUCCESS)
    return err("nvrtcCreateProgram for " + k.entry + ": " + nvrtcGetErrorString(r));
  std::vector<const char *> argv;
  for (const std::string &o : opts)
    argv.push_back(o.c_str());
  r = nvrtcCompileProgram(prog, int(argv.size()), argv.data());
  size_t logSize = 0;
  nvrtcGetProgramLogSize(prog, &logSize);
  std::string log(logSize, '\0');
  if (logSize)
    nvrtcGetProgramLog(prog, log.data());
  while (!log.empty() && log.back() == '\0')
    log.pop_back();
  if (r != NVRTC_SUCCESS) {
    nvrtcDestroyProgram(&prog);
    return err(llvm::formatv("NVRTC failed to compile {0} (kiln.{1}) for {2}: {3}\n{4}\n"
                             "--- source ---\n{5}",
                             k.entry, k.op, job.arch, nvrtcGetErrorString(r), log,
                             k.source));
  }
  size_t size = 0;
  r = job.ptx ? nvrtcGetPTXSize(prog, &size) : nvrtcGetCUBINSize(prog, &size);
  if (r == NVRTC_SUCCESS && size) {
    image.bytes.resize(size);
    r = job.ptx ? nvrtcGetPTX(prog, image.bytes.data())
                : nvrtcGetCUBIN(prog, image.bytes.data());
  }
  nvrtcDestroyProgram(&prog);
  if (r != NVRTC_SUCCESS || image.bytes.empty())
    return err("NVRTC produced no " + std::string(job.ptx ? "PTX" : "cubin") + " for " +
               k.entry + " on " + job.arch);
  if (job.ptx) {
    while (!image.bytes.empty() && image.bytes.back() == '\0')
      image.bytes.pop_back();
    image.bytes.push_back('\0'); // cuModuleLoadData reads PTX as a C string
  } else {
    std::optional<cuda::Resources> res = cuda::parsePtxasLog(log, k.entry);
    if (!res)
      return err("cannot read ptxas' resource usage of " + k.entry + " on " + job.arch +
                 " from its log:\n" + log);
    image.resources = *res;
  }

  if (!cacheDir.empty()) {
    // Write to a unique temporary, then rename: readers see whole files.
    auto put = [](llvm::StringRef path, llvm::StringRef data) {
      llvm::SmallString<256> tmp;
      int fd;
      if (llvm::sys::fs::createUniqueFile(path + ".tmp-%%%%%%", fd, tmp))
        return;
      {
        llvm::raw_fd_ostream os(fd, /*shouldClose=*/true);
        os << data;
        if (os.has_error()) {
          os.clear_error();
          llvm::sys::fs::remove(tmp);
          return;
        }
      }
      if (llvm::sys::fs::rename(tmp, path))
        llvm::sys::fs::remove(tmp);
    };
    put(logPath, log);
    put(imagePath, image.bytes);
  }
  return image;
}

llvm::Error checkLimits(const cuda::KernelSource &k, const cuda::Image &image,
                        const cuda::CompileOptions &options) {
  const cuda::Resources &r = image.resources;
  auto fail = [&](const llvm::Twine &what) {
    return err(llvm::formatv("kernel {0} (kiln.{1}) on {2}: ", k.entry, k.op, image.arch) +
               what);
  };
  if (r.registers > options.maxRegisters)
    return fail(llvm::formatv("{0} registers per thread, over the limit of {1}", r.registers,
                              options.maxRegisters));
  if (int64_t(r.registers) * k.block > 65536)
    return fail(llvm::formatv("{0} registers x {1} threads exceed the 65536 of a "
                              "multiprocessor: the block cannot launch",
                              r.registers, k.block));
  if (r.spillStoreBytes > options.maxSpillBytes || r.spillLoadBytes > options.maxSpillBytes)
    return fail(llvm::formatv("spills {0} bytes (stores) and {1} bytes (loads) to local "
                              "memory, over the limit of {2}",
                              r.spillStoreBytes, r.spillLoadBytes, options.maxSpillBytes));
  if (r.sharedBytes > 48 * 1024)
    return fail(llvm::formatv("{0} bytes of static shared memory, over 48 KiB",
                              r.sharedBytes));
  return llvm::Error::success();
}

} // namespace

std::string cuda::nvrtcVersion() {
  int major = 0, minor = 0;
  if (::nvrtcVersion(&major, &minor) != NVRTC_SUCCESS)
    return "unknown";
  return std::to_string(major) + "." + std::to_string(minor);
}

std::string cuda::defaultCacheDir() {
  if (const char *e = std::getenv("KILN_KERNEL_CACHE"); e && *e)
    return e;
  llvm::SmallString<256> dir;
  if (const char *x = std::getenv("XDG_CACHE_HOME"); x && *x) {
    dir = x;
  } else if (const char *h = std::getenv("HOME"); h && *h) {
    dir = h;
    llvm::sys::path::append(dir, ".cache");
  } else {
    return "";
  }
  llvm::sys::path::append(dir, "kiln", "kernels");
  return std::string(dir);
}

std::optional<cuda::Resources> cuda::parsePtxasLog(llvm::StringRef log,
                                                   llvm::StringRef entry) {
  size_t at = log.find(("Compiling entry function '" + entry + "'").str());
  if (at == llvm::StringRef::npos)
    return std::nullopt;
  llvm::StringRef rest = log.drop_front(at + 1);
  size_t end = rest.find("Compiling entry function '");
  llvm::StringRef section = rest.take_front(end);
  Resources r;
  llvm::SmallVector<llvm::StringRef, 4> m;
  llvm::Regex frame("([0-9]+) bytes stack frame, ([0-9]+) bytes spill stores, ([0-9]+) "
                    "bytes spill loads");
  llvm::Regex regs("Used ([0-9]+) registers");
  if (!regs.match(section, &m))
    return std::nullopt;
  r.registers = std::stoi(m[1].str());
  if (frame.match(section, &m)) {
    r.stackBytes = std::stoll(m[1].str());
    r.spillStoreBytes = std::stoll(m[2].str());
    r.spillLoadBytes = std::stoll(m[3].str());
  }
  if (llvm::Regex("([0-9]+) bytes smem").match(section, &m))
    r.sharedBytes = std::stoll(m[1].str());
  if (llvm::Regex("([0-9]+) bytes cmem\\[0\\]").match(section, &m))
    r.constantBytes = std::stoll(m[1].str());
  return r;
}

llvm::Expected<std::vector<std::vector<cuda::Image>>>
cuda::compileKernels(const std::vector<KernelSource> &kernels, const CompileOptions &options,
                     CompileStats *stats) {
  auto start = std::chrono::steady_clock::now();
  for (const std::string &a : options.archs)
    if (!llvm::StringRef(a).starts_with("sm_"))
      return err("CUDA architecture '" + a + "' is not a real architecture (sm_80, sm_90a...)");
  if (!options.ptxArch.empty() && !llvm::StringRef(options.ptxArch).starts_with("compute_"))
    return err("PTX architecture '" + options.ptxArch +
               "' is not a virtual architecture (compute_90...)");
  if (!options.cacheDir.empty())
    if (std::error_code ec = llvm::sys::fs::create_directories(options.cacheDir))
      return err("cannot create the kernel cache " + options.cacheDir + ": " + ec.message());

  std::vector<Job> jobs;
  for (size_t i = 0; i < kernels.size(); ++i) {
    for (const std::string &a : options.archs)
      jobs.push_back({i, a, false});
    if (!options.ptxArch.empty())
      jobs.push_back({i, options.ptxArch, true});
  }
  std::vector<std::optional<llvm::Expected<Image>>> results(jobs.size());
  std::mutex progressMutex;
  std::atomic<size_t> started{0};
  llvm::parallelFor(0, jobs.size(), [&](size_t j) {
    results[j].emplace(compileOne(kernels[jobs[j].kernel], jobs[j], options.cacheDir));
    if (options.progress && *results[j] && !(**results[j]).fromCache) {
      std::lock_guard<std::mutex> lock(progressMutex);
      options.progress(started++, jobs.size(), kernels[jobs[j].kernel]);
    }
  });

  std::vector<std::vector<Image>> out(kernels.size());
  CompileStats s;
  llvm::Error first = llvm::Error::success();
  for (size_t j = 0; j < jobs.size(); ++j) {
    llvm::Expected<Image> &r = *results[j];
    if (!r) {
      if (first)
        llvm::consumeError(r.takeError());
      else
        first = r.takeError();
      continue;
    }
    if (!r->ptx && !first)
      if (llvm::Error e = checkLimits(kernels[jobs[j].kernel], *r, options))
        first = std::move(e);
    ++s.images;
    (r->fromCache ? s.cached : s.compiled) += 1;
    out[jobs[j].kernel].push_back(std::move(*r));
  }
  if (first)
    return std::move(first);
  s.ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
             .count();
  if (stats)
    *stats = s;
  return out;
}
