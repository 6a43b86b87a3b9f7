// The CUDA backend's host-side decisions, which need no GPU: which image of
// a kernel a device loads.
#include <gtest/gtest.h>

#include "cuda/backend.h"

namespace {

kiln::CudaKernelDesc Kernel(std::initializer_list<const char*> archs) {
  kiln::CudaKernelDesc k;
  k.entry = "kiln_test";
  for (const char* a : archs) {
    kiln::CudaImageDesc im;
    im.arch = a;
    im.ptx = std::string(a).rfind("compute_", 0) == 0;
    k.images.push_back(im);
  }
  return k;
}

std::string Picked(const kiln::CudaKernelDesc& k, int cc) {
  const kiln::CudaImageDesc* im = kiln::cuda::PickImage(k, cc);
  return im ? im->arch : "none";
}

TEST(CudaPickImage, TheDefaultArchitectures) {
  auto k = Kernel({"sm_80", "sm_89", "sm_90a", "compute_90"});
  EXPECT_EQ(Picked(k, 80), "sm_80");   // A100
  EXPECT_EQ(Picked(k, 86), "sm_80");   // A10: same major, lower minor runs
  EXPECT_EQ(Picked(k, 89), "sm_89");   // L4, L40
  EXPECT_EQ(Picked(k, 90), "sm_90a");  // H100, H200
  EXPECT_EQ(Picked(k, 100), "compute_90");  // Blackwell: the driver JITs the PTX
  EXPECT_EQ(Picked(k, 120), "compute_90");
  EXPECT_EQ(Picked(k, 75), "none");    // Turing: older than every image
}

TEST(CudaPickImage, ArchSpecificCubinsRunOnlyOnTheirCapability) {
  auto k = Kernel({"sm_90a"});
  EXPECT_EQ(Picked(k, 90), "sm_90a");
  EXPECT_EQ(Picked(k, 100), "none");
  auto both = Kernel({"sm_90", "sm_90a"});
  EXPECT_EQ(Picked(both, 90), "sm_90a");
  auto ptx = Kernel({"compute_80", "compute_90"});
  EXPECT_EQ(Picked(ptx, 89), "compute_80");
  EXPECT_EQ(Picked(ptx, 90), "compute_90");
}

TEST(CudaPickImage, MalformedArchitecturesAreSkipped) {
  auto k = Kernel({"sm_", "smx", "compute_x", "sm_80"});
  EXPECT_EQ(Picked(k, 86), "sm_80");
}

}  // namespace
