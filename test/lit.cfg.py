# -*- Python -*-
# lit configuration for the kiln test suite.

import os
import shutil

import lit.formats
from lit.llvm import llvm_config
from lit.llvm.subst import ToolSubst

config.name = "KILN"
config.test_format = lit.formats.ShTest(not llvm_config.use_lit_shell)
config.suffixes = [".mlir", ".test"]
config.excludes = ["CMakeLists.txt", "lit.cfg.py", "lit.site.cfg.py", "Unit", "make_inputs.py",
                   "fixtures"]
config.test_source_root = os.path.dirname(__file__)
config.test_exec_root = os.path.join(config.kiln_obj_root, "test")

config.substitutions.append(("%PATH%", config.environment["PATH"]))
config.substitutions.append(("%kiln_src_root", config.kiln_src_root))
config.substitutions.append(("%kiln_obj_root", config.kiln_obj_root))
config.substitutions.append(("%python", config.python_executable))
config.substitutions.append(("%fixtures",
                             os.path.join(config.kiln_src_root, "test", "Import", "fixtures")))

llvm_config.with_system_environment(["HOME", "INCLUDE", "LIB", "TMP", "TEMP"])
llvm_config.use_default_substitutions()

# GPU tests say `REQUIRES: cuda`; the feature is set only where a driver is
# present, so CI without a GPU skips them instead of failing or lying.
if shutil.which("nvidia-smi") and os.path.exists("/dev/nvidiactl"):
    config.available_features.add("cuda")

# Kernel generation through NVRTC needs only the CUDA Toolkit at build time.
if config.kiln_have_cuda:
    config.available_features.add("nvrtc")
# Compiles during tests share one kernel cache in the build tree (never the
# user's ~/.cache); tests of the cache itself pass their own folder.
config.environment["KILN_KERNEL_CACHE"] = os.path.join(config.kiln_obj_root, "test",
                                                       "kernel-cache")

# The onnxruntime comparison needs the pip package (scripts/kiln.sh installs
# it); without it those tests are reported unsupported, not passed. Ask the
# interpreter the tests run (%python), not the one running lit: they differ
# when lit comes from Debian and the packages from pip.
import subprocess
if subprocess.run([config.python_executable, "-c", "import onnxruntime"],
                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0:
    config.available_features.add("onnxruntime")

llvm_config.with_environment("PATH", config.llvm_tools_dir, append_path=True)
tool_dirs = [config.kiln_tools_dir, config.llvm_tools_dir]
tools = [ToolSubst("kiln-opt", unresolved="fatal"),
         ToolSubst("kiln-import", unresolved="fatal"),
         ToolSubst("kiln-compile", unresolved="fatal"),
         ToolSubst("kiln-run", unresolved="fatal")]
llvm_config.add_tool_substitutions(tools, tool_dirs)
