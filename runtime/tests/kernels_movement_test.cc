// Shape and data-movement kernels against naive index-by-index references
// on fixed-seed random data. Data movement is exact, so every comparison is
// bit-exact (through the value of each element); range on floats allows one
// rounding of start + i * delta (f32 1e-6 relative, f16 1e-3).
#include <gtest/gtest.h>

#include <algorithm>
#include <climits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "kernel_harness.h"
#include "kernel_test_util.h"

namespace kiln::testing {
namespace {

std::string Name(kiln_dtype_t t) { return kiln_dtype_name(t); }

HostTensor I64(Dims shape, std::vector<int64_t> v) {
  return HostTensor::Of<int64_t>(KILN_DTYPE_I64, shape, v);
}

// Multi-index of `flat` in `shape`.
std::vector<int64_t> Unflatten(const Dims& shape, int64_t flat) {
  std::vector<int64_t> idx(static_cast<size_t>(shape.rank));
  for (int d = shape.rank - 1; d >= 0; --d) {
    idx[size_t(d)] = flat % shape[d];
    flat /= shape[d];
  }
  return idx;
}
int64_t Flatten(const Dims& shape, const std::vector<int64_t>& idx) {
  int64_t f = 0;
  for (int d = 0; d < shape.rank; ++d) f = f * shape[d] + idx[size_t(d)];
  return f;
}

const kiln_dtype_t kMoveTypes[] = {KILN_DTYPE_F32, KILN_DTYPE_F16, KILN_DTYPE_I64,
                                   KILN_DTYPE_U8,  KILN_DTYPE_I1,  KILN_DTYPE_I4};

//===----------------------------------------------------------------------===//
// reshape
//===----------------------------------------------------------------------===//

void ExpectReshape(HostTensor x, Dims declared, Dims expect, const HostTensor* shape_operand,
                   const std::string& what) {
  KernelHarness h("reshape");
  h.In(x);
  if (shape_operand) h.In(*shape_operand);
  h.Out(x.dtype, declared);
  ASSERT_EQ(h.RunMessage(), "") << what;
  EXPECT_EQ(h.Result().shape, expect) << what;
  ExpectExact(h.Result(), ToD(x), what);
}

TEST(MovementReshape, ThreeRules) {
  uint32_t seed = 1;
  for (kiln_dtype_t t : kMoveTypes) {
    // Shape operand: 0 copies, -1 infers.
    HostTensor s = I64({3}, {0, -1, 64});
    ExpectReshape(Random(t, {2, 5, 128}, seed++), {-1, -1, -1}, {2, 10, 64}, &s, "operand");
    HostTensor s2 = I64({2}, {-1, 3});
    ExpectReshape(Random(t, {0, 6}, seed++), {-1, 3}, {0, 3}, &s2, "operand zero-size");
    // One dynamic dimension: the element count.
    ExpectReshape(Random(t, {3, 32, 4}, seed++), {-1, 128}, {3, 128}, nullptr, "one dynamic");
    ExpectReshape(Random(t, {7}, seed++), {7, 1}, {7, 1}, nullptr, "static");
    ExpectReshape(Random(t, {1}, seed++), {}, {}, nullptr, "to scalar");
    // Several: the input's dynamic dimensions in order.
    ExpectReshape(Random(t, {2, 5, 64}, seed++), {-1, -1, 4, 16}, {2, 5, 4, 16}, nullptr, "split");
    ExpectReshape(Random(t, {1, 5, 64}, seed++), {-1, -1, 4, 16}, {1, 5, 4, 16}, nullptr, "split b=1");
    ExpectReshape(Random(t, {3, 5, 4, 16}, seed++), {-1, -1, 64}, {3, 5, 64}, nullptr, "merge");
    // [?, 1, ?, 8] -> [?, ?, 8]: the static 1 is removed.
    ExpectReshape(Random(t, {1, 1, 7, 8}, seed++), {-1, -1, 8}, {1, 7, 8}, nullptr, "remove 1");
    ExpectReshape(Random(t, {7, 1, 1, 8}, seed++), {-1, -1, 8}, {7, 1, 8}, nullptr, "remove 1 (b)");
    ExpectReshape(Random(t, {2, 3}, seed++), {-1, 1, -1}, {2, 1, 3}, nullptr, "insert 1");
  }
}

TEST(MovementReshape, AliasesWhenAllowed) {
  HostTensor x = Random(KILN_DTYPE_F32, {4, 6}, 3);
  AliasingHarness h("reshape");
  h.In(x).Out(KILN_DTYPE_F32, {-1, 3});
  ASSERT_EQ(h.RunMessage(), "");
  EXPECT_TRUE(h.aliased);
  EXPECT_EQ(h.view().shape, (Dims{8, 3}));
  EXPECT_EQ(h.view().data, h.input(0).data);
}

TEST(MovementReshape, Errors) {
  {
    KernelHarness h("reshape");
    h.In(Random(KILN_DTYPE_F32, {2, 5}, 1)).Out(KILN_DTYPE_F32, {-1, 3});
    std::string m = h.RunMessage();
    EXPECT_NE(m.find("cannot reshape input [2, 5] (10 elements) into [?, 3]"), std::string::npos) << m;
  }
  {
    KernelHarness h("reshape");
    h.In(Random(KILN_DTYPE_F32, {2, 5}, 1)).In(I64({2}, {-1, -1})).Out(KILN_DTYPE_F32, {-1, -1});
    EXPECT_NE(h.RunMessage().find("more than one -1"), std::string::npos);
  }
  {
    KernelHarness h("reshape");
    h.In(Random(KILN_DTYPE_F32, {2, 5}, 1)).In(I64({3}, {2, 5, 1})).Out(KILN_DTYPE_F32, {-1, -1});
    EXPECT_NE(h.RunMessage().find("the shape operand has 3 entries but the result [?, ?] has rank 2"),
              std::string::npos);
  }
  {
    KernelHarness h("reshape");
    h.In(Random(KILN_DTYPE_F32, {2, 6}, 1)).In(I64({2}, {4, 4})).Out(KILN_DTYPE_F32, {-1, -1});
    EXPECT_NE(h.RunMessage().find("cannot reshape input [2, 6] (12 elements) into [4, 4]"),
              std::string::npos);
  }
  {
    KernelHarness h("reshape");
    h.In(Random(KILN_DTYPE_F32, {2, 5, 3}, 1)).Out(KILN_DTYPE_F32, {-1, -1, 4});
    EXPECT_NE(h.RunMessage().find("cannot find the 2 dynamic dimensions of [?, ?, 4] in the input [2, 5, 3]"),
              std::string::npos);
  }
}

//===----------------------------------------------------------------------===//
// transpose
//===----------------------------------------------------------------------===//

void CheckTranspose(kiln_dtype_t t, Dims shape, std::vector<int64_t> perm, int threads,
                    uint32_t seed) {
  HostTensor x = Random(t, shape, seed);
  Dims out;
  for (int64_t p : perm) out.push_back(shape[int(p)]);
  Dims declared = out;
  if (declared.rank) declared[0] = -1;
  KernelHarness h("transpose", threads);
  h.In(x).Out(t, declared).AttrInts("permutation", perm);
  std::string what = "transpose " + Name(t) + Str(shape) + " perm";
  for (int64_t p : perm) what += " " + std::to_string(p);
  ASSERT_EQ(h.RunMessage(), "") << what;
  ASSERT_EQ(h.Result().shape, out) << what;
  std::vector<double> ref(static_cast<size_t>(out.numel()));
  for (int64_t i = 0; i < out.numel(); ++i) {
    std::vector<int64_t> oi = Unflatten(out, i), ii(size_t(shape.rank));
    for (int d = 0; d < out.rank; ++d) ii[size_t(perm[size_t(d)])] = oi[size_t(d)];
    ref[size_t(i)] = GetD(x, Flatten(shape, ii));
  }
  ExpectExact(h.Result(), ref, what);
}

TEST(MovementTranspose, PermutationsAndTypes) {
  uint32_t seed = 11;
  const std::vector<Dims> shapes = {{3, 4}, {2, 3, 4}, {2, 1, 3, 5}, {4, 1, 1}, {2, 3, 2, 2, 3}, {0, 3, 2}, {}};
  for (kiln_dtype_t t : kMoveTypes)
    for (const Dims& shape : shapes) {
      std::vector<int64_t> perm(static_cast<size_t>(shape.rank));
      std::iota(perm.begin(), perm.end(), 0);
      do {
        CheckTranspose(t, shape, perm, 2, seed++);
      } while (std::next_permutation(perm.begin(), perm.end()));
    }
  for (kiln_dtype_t t : {KILN_DTYPE_F64, KILN_DTYPE_BF16, KILN_DTYPE_I32})
    CheckTranspose(t, {3, 5, 7}, {2, 0, 1}, 2, seed++);
}

TEST(MovementTranspose, LargeThreaded) {
  uint32_t seed = 21;
  CheckTranspose(KILN_DTYPE_F32, {512, 768}, {1, 0}, 4, seed++);          // tiled
  CheckTranspose(KILN_DTYPE_F16, {2, 100, 8, 64}, {0, 2, 1, 3}, 4, seed++);  // BSHD -> BHSD
  CheckTranspose(KILN_DTYPE_F32, {64, 130, 33}, {2, 0, 1}, 4, seed++);
  CheckTranspose(KILN_DTYPE_U8, {300, 301}, {1, 0}, 4, seed++);
  CheckTranspose(KILN_DTYPE_I64, {100, 40, 50}, {0, 2, 1}, 4, seed++);
}

TEST(MovementTranspose, Errors) {
  for (std::vector<int64_t> perm : {std::vector<int64_t>{0, 0}, {0}, {0, 2}, {1, -1}}) {
    KernelHarness h("transpose");
    h.In(Random(KILN_DTYPE_F32, {2, 3}, 1)).Out(KILN_DTYPE_F32, {-1, -1}).AttrInts("permutation", perm);
    EXPECT_NE(h.RunMessage().find("does not permute the dimensions of input [2, 3]"), std::string::npos);
  }
}

//===----------------------------------------------------------------------===//
// concat
//===----------------------------------------------------------------------===//

TEST(MovementConcat, AxesTypesEmpty) {
  uint32_t seed = 31;
  struct Case {
    std::vector<Dims> inputs;
    int64_t axis;
  };
  const std::vector<Case> cases = {
      {{{2, 3}, {4, 3}}, 0},
      {{{2, 3}, {2, 5}, {2, 1}}, 1},
      {{{2, 3, 4}, {2, 3, 0}, {2, 3, 2}}, -1},
      {{{2, 3, 4}, {2, 2, 4}}, -2},
      {{{5}}, 0},
      {{{0, 3}, {0, 3}}, 0},
      {{{1, 3}, {1, 0}}, 1},
      {{{2, 1, 3}, {2, 1, 3}, {2, 1, 3}, {2, 1, 3}}, 1},
  };
  for (kiln_dtype_t t : kMoveTypes)
    for (const Case& c : cases) {
      KernelHarness h("concat");
      std::vector<HostTensor> xs;
      for (const Dims& d : c.inputs) xs.push_back(Random(t, d, seed++));
      for (const HostTensor& x : xs) h.In(x);
      const int rank = c.inputs[0].rank;
      const int axis = int(c.axis < 0 ? c.axis + rank : c.axis);
      Dims out = c.inputs[0];
      out[axis] = 0;
      for (const Dims& d : c.inputs) out[axis] += d[axis];
      Dims declared = out;
      declared[axis] = -1;
      h.Out(t, declared).Attr("axis", c.axis);
      std::string what = "concat " + Name(t) + " " + Str(c.inputs[0]) + " axis " + std::to_string(c.axis);
      ASSERT_EQ(h.RunMessage(), "") << what;
      ASSERT_EQ(h.Result().shape, out) << what;
      std::vector<double> ref(static_cast<size_t>(out.numel()));
      for (int64_t i = 0; i < out.numel(); ++i) {
        std::vector<int64_t> oi = Unflatten(out, i);
        int k = 0;
        while (oi[size_t(axis)] >= c.inputs[size_t(k)][axis]) oi[size_t(axis)] -= c.inputs[size_t(k++)][axis];
        ref[size_t(i)] = GetD(xs[size_t(k)], Flatten(c.inputs[size_t(k)], oi));
      }
      ExpectExact(h.Result(), ref, what);
    }
}

TEST(MovementConcat, LargeThreadedAndErrors) {
  // KV-style growth along the sequence axis, and one large flat concat.
  for (auto [a, b, axis] : {std::tuple<Dims, Dims, int>{{4, 300, 8, 16}, {4, 1, 8, 16}, 1},
                            {{1, 200000}, {1, 100000}, 1}}) {
    HostTensor x = Random(KILN_DTYPE_F32, a, 1), y = Random(KILN_DTYPE_F32, b, 2);
    KernelHarness h("concat", 4);
    Dims out = a;
    out[axis] += b[axis];
    h.In(x).In(y).Out(KILN_DTYPE_F32, out).Attr("axis", axis);
    ASSERT_EQ(h.RunMessage(), "");
    std::vector<double> ref(static_cast<size_t>(out.numel()));
    for (int64_t i = 0; i < out.numel(); ++i) {
      std::vector<int64_t> oi = Unflatten(out, i);
      if (oi[size_t(axis)] < a[axis]) {
        ref[size_t(i)] = GetD(x, Flatten(a, oi));
      } else {
        oi[size_t(axis)] -= a[axis];
        ref[size_t(i)] = GetD(y, Flatten(b, oi));
      }
    }
    ExpectExact(h.Result(), ref, "threaded concat " + Str(a));
  }
  {
    KernelHarness h("concat");
    h.In(Random(KILN_DTYPE_F32, {2, 3}, 1)).In(Random(KILN_DTYPE_F32, {3, 4}, 2)).Out(KILN_DTYPE_F32, {5, 3}).Attr("axis", 0);
    EXPECT_NE(h.RunMessage().find("input #1 shape [3, 4] does not match input #0 shape [2, 3] outside axis 0"),
              std::string::npos);
  }
  {
    KernelHarness h("concat");
    h.In(Random(KILN_DTYPE_F32, {2, 3}, 1)).In(Random(KILN_DTYPE_F16, {2, 3}, 2)).Out(KILN_DTYPE_F32, {4, 3}).Attr("axis", 0);
    EXPECT_NE(h.RunMessage().find("input #1 is f16 but input #0 is f32"), std::string::npos);
  }
  {
    KernelHarness h("concat");
    h.In(Random(KILN_DTYPE_F32, {2, 3}, 1)).Out(KILN_DTYPE_F32, {2, 3}).Attr("axis", 2);
    EXPECT_NE(h.RunMessage().find("axis 2 is out of range for input shape [2, 3]"), std::string::npos);
  }
}

//===----------------------------------------------------------------------===//
// slice
//===----------------------------------------------------------------------===//

// The indices ONNX Slice takes along one axis, enumerated naively.
std::vector<int64_t> SliceIndices(int64_t dim, int64_t start, int64_t end, int64_t step) {
  auto adjust = [&](int64_t v) { return v < 0 ? v + dim : v; };
  int64_t s = adjust(start), e = adjust(end);
  std::vector<int64_t> out;
  if (step > 0) {
    s = std::clamp<int64_t>(s, 0, dim);
    e = std::clamp<int64_t>(e, 0, dim);
    for (int64_t i = s; i < e; i += step) {
      out.push_back(i);
      if (step > dim) break;
    }
  } else {
    s = std::clamp<int64_t>(s, -1, dim - 1);
    e = std::clamp<int64_t>(e, -1, dim - 1);
    for (int64_t i = s; i > e; i += step) {
      out.push_back(i);
      if (-step > dim) break;
    }
  }
  return out;
}

void CheckSlice(kiln_dtype_t t, Dims shape, std::vector<int64_t> axes, std::vector<int64_t> starts,
                std::vector<int64_t> ends, std::vector<int64_t> steps, int threads, uint32_t seed) {
  HostTensor x = Random(t, shape, seed);
  std::vector<std::vector<int64_t>> picks(size_t(shape.rank));
  for (int d = 0; d < shape.rank; ++d) {
    picks[size_t(d)].resize(size_t(shape[d]));
    std::iota(picks[size_t(d)].begin(), picks[size_t(d)].end(), 0);
  }
  for (size_t i = 0; i < axes.size(); ++i) {
    int a = int(axes[i] < 0 ? axes[i] + shape.rank : axes[i]);
    picks[size_t(a)] = SliceIndices(shape[a], starts[i], ends[i], steps[i]);
  }
  Dims out;
  for (int d = 0; d < shape.rank; ++d) out.push_back(int64_t(picks[size_t(d)].size()));
  Dims declared = out;
  for (int d = 0; d < declared.rank; ++d) declared[d] = -1;
  KernelHarness h("slice", threads);
  h.In(x).Out(t, declared).AttrInts("axes", axes).AttrInts("starts", starts).AttrInts("ends", ends).AttrInts("steps", steps);
  std::string what = "slice " + Name(t) + Str(shape) + " axes";
  for (size_t i = 0; i < axes.size(); ++i)
    what += " " + std::to_string(axes[i]) + ":" + std::to_string(starts[i]) + ":" +
            std::to_string(ends[i]) + ":" + std::to_string(steps[i]);
  ASSERT_EQ(h.RunMessage(), "") << what;
  ASSERT_EQ(h.Result().shape, out) << what;
  std::vector<double> ref(static_cast<size_t>(out.numel()));
  for (int64_t i = 0; i < out.numel(); ++i) {
    std::vector<int64_t> oi = Unflatten(out, i);
    for (int d = 0; d < shape.rank; ++d) oi[size_t(d)] = picks[size_t(d)][size_t(oi[size_t(d)])];
    ref[size_t(i)] = GetD(x, Flatten(shape, oi));
  }
  ExpectExact(h.Result(), ref, what);
}

TEST(MovementSlice, OnnxClampingAndNegativeSteps) {
  uint32_t seed = 41;
  const int64_t kMax = INT64_MAX, kMin = INT64_MIN;
  const std::vector<std::tuple<int64_t, int64_t, int64_t>> bounds = {
      {0, 3, 1},   {1, kMax, 1}, {-3, -1, 1}, {0, 10, 2},  {-100, 100, 3}, {5, 2, 1},
      {kMax, kMin, -1}, {-1, kMin, -1}, {4, 1, -2}, {-1, -100, -3}, {2, 2, -1}, {0, kMax, kMax},
      {kMin, kMax, 1}, {6, -7, -1},
  };
  for (kiln_dtype_t t : kMoveTypes) {
    for (auto [s, e, st] : bounds) {
      CheckSlice(t, {3, 7}, {1}, {s}, {e}, {st}, 2, seed++);
      CheckSlice(t, {7, 3}, {-2}, {s}, {e}, {st}, 2, seed++);
    }
    CheckSlice(t, {4, 5, 6}, {0, 2}, {1, -1}, {kMax, 0}, {2, -2}, 2, seed++);
    CheckSlice(t, {4, 5, 6}, {2, 1, 0}, {0, 1, 3}, {6, 4, 0}, {1, 1, -1}, 2, seed++);
    CheckSlice(t, {0, 5}, {1}, {1}, {3}, {1}, 2, seed++);
    CheckSlice(t, {3, 4}, {}, {}, {}, {}, 2, seed++);
  }
  // Large, threaded: a prefix of the KV sequence and a reversed axis.
  CheckSlice(KILN_DTYPE_F32, {4, 512, 256}, {1}, {0}, {300}, {1}, 4, seed++);
  CheckSlice(KILN_DTYPE_F16, {64, 4096}, {1}, {-1}, {kMin}, {-1}, 4, seed++);
  CheckSlice(KILN_DTYPE_F32, {256, 1024}, {0, 1}, {1, 0}, {kMax, kMax}, {3, 2}, 4, seed++);
}

TEST(MovementSlice, Errors) {
  auto run = [](std::vector<int64_t> axes, std::vector<int64_t> steps) {
    KernelHarness h("slice");
    h.In(Random(KILN_DTYPE_F32, {3, 4}, 1))
        .Out(KILN_DTYPE_F32, {-1, -1})
        .AttrInts("axes", axes)
        .AttrInts("starts", std::vector<int64_t>(axes.size(), 0))
        .AttrInts("ends", std::vector<int64_t>(axes.size(), 2))
        .AttrInts("steps", steps);
    return h.RunMessage();
  };
  EXPECT_NE(run({0}, {0}).find("step for axis 0 is 0"), std::string::npos);
  EXPECT_NE(run({0, -2}, {1, 1}).find("axis -2 is listed twice"), std::string::npos);
  EXPECT_NE(run({2}, {1}).find("axis 2 is out of range for input shape [3, 4]"), std::string::npos);
  EXPECT_NE(run({0}, {}).find("must have equal lengths, found 1, 1, 1, 0"), std::string::npos);
}

//===----------------------------------------------------------------------===//
// broadcast
//===----------------------------------------------------------------------===//

void CheckBroadcast(kiln_dtype_t t, Dims in, Dims declared, const std::vector<int64_t>* target,
                    Dims expect, int threads, uint32_t seed) {
  HostTensor x = Random(t, in, seed);
  KernelHarness h("broadcast", threads);
  h.In(x);
  if (target) h.In(I64({int64_t(target->size())}, *target));
  h.Out(t, declared);
  std::string what = "broadcast " + Name(t) + Str(in) + " -> " + Str(expect);
  ASSERT_EQ(h.RunMessage(), "") << what;
  ASSERT_EQ(h.Result().shape, expect) << what;
  std::vector<double> ref(static_cast<size_t>(expect.numel()));
  for (int64_t i = 0; i < expect.numel(); ++i) ref[size_t(i)] = GetD(x, BroadcastIndex(expect, in, i));
  ExpectExact(h.Result(), ref, what);
}

TEST(MovementBroadcast, ExpandRules) {
  uint32_t seed = 51;
  for (kiln_dtype_t t : kMoveTypes) {
    // No shape operand: dynamic dims from the aligned input dims.
    CheckBroadcast(t, {1, 1, 3, 3}, {-1, 4, -1, -1}, nullptr, {1, 4, 3, 3}, 2, seed++);
    CheckBroadcast(t, {5, 1}, {2, -1, 6}, nullptr, {2, 5, 6}, 2, seed++);
    CheckBroadcast(t, {}, {2, 3}, nullptr, {2, 3}, 2, seed++);
    CheckBroadcast(t, {0, 1}, {-1, 4}, nullptr, {0, 4}, 2, seed++);
    // ONNX Expand: the target broadcasts with the input (1 keeps the input's).
    std::vector<int64_t> a = {2, 1, 6};
    CheckBroadcast(t, {3, 1}, {-1, -1, -1}, &a, {2, 3, 6}, 2, seed++);
    std::vector<int64_t> b = {4};
    CheckBroadcast(t, {2, 1}, {-1, -1}, &b, {2, 4}, 2, seed++);
    std::vector<int64_t> c = {1, 1};
    CheckBroadcast(t, {3, 5}, {-1, -1}, &c, {3, 5}, 2, seed++);
  }
  CheckBroadcast(KILN_DTYPE_F32, {1, 1, 256, 1}, {4, 8, -1, 256}, nullptr, {4, 8, 256, 256}, 4, seed++);
  CheckBroadcast(KILN_DTYPE_I1, {64, 1, 2048}, {64, 16, -1}, nullptr, {64, 16, 2048}, 4, seed++);
}

TEST(MovementBroadcast, Errors) {
  {
    KernelHarness h("broadcast");
    h.In(Random(KILN_DTYPE_F32, {3}, 1)).In(I64({2}, {2, 4})).Out(KILN_DTYPE_F32, {-1, -1});
    EXPECT_NE(h.RunMessage().find("input shape [3] does not broadcast with the target [2, 4]"),
              std::string::npos);
  }
  {
    KernelHarness h("broadcast");
    h.In(Random(KILN_DTYPE_F32, {3, 2}, 1)).Out(KILN_DTYPE_F32, {3, 4});
    EXPECT_NE(h.RunMessage().find("input shape [3, 2] does not broadcast to [3, 4]"), std::string::npos);
  }
  {
    KernelHarness h("broadcast");
    h.In(Random(KILN_DTYPE_F32, {3, 2}, 1)).Out(KILN_DTYPE_F32, {2});
    EXPECT_NE(h.RunMessage().find("cannot broadcast input [3, 2] to the lower rank result [2]"),
              std::string::npos);
  }
  {
    KernelHarness h("broadcast");
    h.In(Random(KILN_DTYPE_F32, {3}, 1)).In(I64({2}, {-2, 3})).Out(KILN_DTYPE_F32, {-1, -1});
    EXPECT_NE(h.RunMessage().find("negative entry -2"), std::string::npos);
  }
}

//===----------------------------------------------------------------------===//
// bitcast, shape_of
//===----------------------------------------------------------------------===//

TEST(MovementBitcast, ReinterpretsBytes) {
  HostTensor x = Random(KILN_DTYPE_F32, {4, 8}, 1);
  {
    KernelHarness h("bitcast");
    h.In(x).Out(KILN_DTYPE_I32, {4, 8});
    ASSERT_EQ(h.RunMessage(), "");
    EXPECT_EQ(h.Result().bytes, x.bytes);
  }
  {
    KernelHarness h("bitcast");
    h.In(x).Out(KILN_DTYPE_U8, {-1, 32});  // dynamic from the byte count
    ASSERT_EQ(h.RunMessage(), "");
    EXPECT_EQ(h.Result().shape, (Dims{4, 32}));
    EXPECT_EQ(h.Result().bytes, x.bytes);
  }
  {
    // MatMulNBits blobs: [N, blocks, 16] ui8 viewed as [N, blocks * 32] ui4.
    HostTensor b = Random(KILN_DTYPE_U8, {6, 2, 16}, 2);
    KernelHarness h("bitcast");
    h.In(b).Out(KILN_DTYPE_U4, {6, -1});
    ASSERT_EQ(h.RunMessage(), "");
    EXPECT_EQ(h.Result().shape, (Dims{6, 64}));
    EXPECT_EQ(h.Result().bytes, b.bytes);
  }
  {
    AliasingHarness h("bitcast");
    h.In(x).Out(KILN_DTYPE_F16, {4, 16});
    ASSERT_EQ(h.RunMessage(), "");
    EXPECT_TRUE(h.aliased);
    EXPECT_EQ(h.view().shape, (Dims{4, 16}));
    EXPECT_EQ(h.view().data, h.input(0).data);
  }
  {
    KernelHarness h("bitcast");
    h.In(x).Out(KILN_DTYPE_F16, {4, 8});
    EXPECT_NE(h.RunMessage().find("input [4, 8] f32 occupies 128 bytes but result [4, 8] f16 occupies 64"),
              std::string::npos);
  }
  {
    KernelHarness h("bitcast");
    h.In(x).Out(KILN_DTYPE_F64, {-1, 3});
    EXPECT_NE(h.RunMessage().find("does not fill a whole [?, 3] f64"), std::string::npos);
  }
}

TEST(MovementShapeOf, Shapes) {
  for (Dims d : {Dims{}, Dims{0}, Dims{2, 0, 5}, Dims{3, 1, 4, 1, 5}}) {
    KernelHarness h("shape_of");
    h.In(Random(KILN_DTYPE_F16, d, 1)).Out(KILN_DTYPE_I64, {d.rank});
    ASSERT_EQ(h.RunMessage(), "");
    EXPECT_EQ(h.Result().values<int64_t>(), std::vector<int64_t>(d.d, d.d + d.rank));
  }
}

//===----------------------------------------------------------------------===//
// range, fill
//===----------------------------------------------------------------------===//

template <class T>
std::vector<double> RunRange(kiln_dtype_t t, double start, double limit, double delta,
                             std::string* error = nullptr) {
  KernelHarness h("range");
  h.In(FromD(t, {}, {start})).In(FromD(t, {}, {limit})).In(FromD(t, {}, {delta})).Out(t, {-1});
  std::string m = h.RunMessage();
  if (error) *error = m;
  if (!m.empty()) return {};
  EXPECT_EQ(h.Result().shape.rank, 1);
  return ToD(h.Result());
}

TEST(MovementRange, IntegersAndFloats) {
  EXPECT_EQ(RunRange<int64_t>(KILN_DTYPE_I64, 0, 5, 1), (std::vector<double>{0, 1, 2, 3, 4}));
  EXPECT_EQ(RunRange<int64_t>(KILN_DTYPE_I64, 10, 3, -3), (std::vector<double>{10, 7, 4}));
  EXPECT_EQ(RunRange<int64_t>(KILN_DTYPE_I64, 3, 10, -1), (std::vector<double>{}));
  EXPECT_EQ(RunRange<int32_t>(KILN_DTYPE_I32, -4, 4, 3), (std::vector<double>{-4, -1, 2}));
  EXPECT_EQ(RunRange<uint8_t>(KILN_DTYPE_U8, 250, 255, 2), (std::vector<double>{250, 252, 254}));
  EXPECT_EQ(RunRange<int8_t>(KILN_DTYPE_I8, -128, 127, 100), (std::vector<double>{-128, -28, 72}));
  // Floats: ceil((limit - start) / delta) elements, each start + i * delta.
  for (kiln_dtype_t t : {KILN_DTYPE_F32, KILN_DTYPE_F64, KILN_DTYPE_F16, KILN_DTYPE_BF16}) {
    std::vector<double> got = RunRange<float>(t, 1, 2, 0.25);
    ASSERT_EQ(got.size(), 4u) << Name(t);
    std::vector<double> r = RunRange<float>(t, 0.5, -1.25, -0.5);
    ExpectClose(FromD(KILN_DTYPE_F64, {int64_t(r.size())}, r), {0.5, 0, -0.5, -1}, 0, 0, "neg step");
    std::vector<double> third = RunRange<float>(t, 0, 1, 1.0 / 3);
    EXPECT_EQ(third.size(), t == KILN_DTYPE_F16 ? 4u : 3u) << Name(t);  // 1/3 rounds down in f16
  }
  std::string err;
  RunRange<int64_t>(KILN_DTYPE_I64, 0, 5, 0, &err);
  EXPECT_NE(err.find("delta is 0"), std::string::npos);
  RunRange<float>(KILN_DTYPE_F32, 0, INFINITY, 1, &err);
  EXPECT_NE(err.find("do not give a finite range"), std::string::npos);
  RunRange<int64_t>(KILN_DTYPE_I64, 0, 1e15, 1, &err);
  EXPECT_NE(err.find("the range has more than"), std::string::npos);
  KernelHarness h("range");
  h.In(I64({2}, {0, 1})).In(I64({}, {5})).In(I64({}, {1})).Out(KILN_DTYPE_I64, {-1});
  EXPECT_NE(h.RunMessage().find("start must be a scalar, found shape [2]"), std::string::npos);
}

TEST(MovementFill, ValuesShapesTypes) {
  struct Case {
    kiln_dtype_t t;
    bool is_float;
    double value;
    double expect;
  };
  const std::vector<Case> cases = {
      {KILN_DTYPE_F32, true, 1.5, 1.5},          {KILN_DTYPE_F16, true, -2.25, -2.25},
      {KILN_DTYPE_BF16, true, 1e-3, 0.00099945068359375},
      {KILN_DTYPE_F64, true, 0.1, 0.1},          {KILN_DTYPE_F8E4M3FN, true, 1000, 448},
      {KILN_DTYPE_F32, true, -INFINITY, -INFINITY},
      {KILN_DTYPE_I64, false, -7, -7},           {KILN_DTYPE_I32, false, 42, 42},
      {KILN_DTYPE_U8, false, 255, 255},          {KILN_DTYPE_I1, false, 1, 1},
      {KILN_DTYPE_I4, false, -3, -3},            {KILN_DTYPE_F32, false, 3, 3},
  };
  for (const Case& c : cases)
    for (Dims shape : {Dims{}, Dims{3}, Dims{2, 5}, Dims{4, 0}, Dims{3, 1000, 50}}) {
      KernelHarness h("fill", 4);
      Dims declared = shape;
      if (shape.rank) {
        declared[0] = -1;
        h.In(I64({shape.rank}, std::vector<int64_t>(shape.d, shape.d + shape.rank)));
      } else {
        h.None();
      }
      h.Out(c.t, declared);
      if (c.is_float) h.AttrF("value", c.value);
      else h.Attr("value", int64_t(c.value));
      std::string what = "fill " + Name(c.t) + Str(shape);
      ASSERT_EQ(h.RunMessage(), "") << what;
      ASSERT_EQ(h.Result().shape, shape) << what;
      ExpectExact(h.Result(), std::vector<double>(size_t(shape.numel()), c.expect), what);
    }
  {
    KernelHarness h("fill");
    h.Out(KILN_DTYPE_F32, {2, 3}).AttrF("value", 0.5);  // static, no operand
    ASSERT_EQ(h.RunMessage(), "");
    ExpectExact(h.Result(), std::vector<double>(6, 0.5), "static fill");
  }
  {
    KernelHarness h("fill");
    h.Out(KILN_DTYPE_F32, {-1, 3}).AttrF("value", 0.5);
    EXPECT_NE(h.RunMessage().find("result [?, 3] is dynamic but no shape operand is given"),
              std::string::npos);
  }
  {
    KernelHarness h("fill");
    h.In(I64({2}, {2, -1})).Out(KILN_DTYPE_F32, {-1, -1}).AttrF("value", 0.5);
    EXPECT_NE(h.RunMessage().find("shape entry 1 is -1"), std::string::npos);
  }
  {
    KernelHarness h("fill");
    h.In(I64({2}, {2, 4})).Out(KILN_DTYPE_F32, {-1, 3}).AttrF("value", 0.5);
    EXPECT_NE(h.RunMessage().find("result shape [2, 4], declared [?, 3]"), std::string::npos);
  }
}

//===----------------------------------------------------------------------===//
// gather, gather_nd
//===----------------------------------------------------------------------===//

void CheckGather(kiln_dtype_t t, kiln_dtype_t it, Dims in, Dims ishape, int64_t axis, int threads,
                 uint32_t seed) {
  HostTensor x = Random(t, in, seed);
  const int a = int(axis < 0 ? axis + in.rank : axis);
  const int64_t dim = in[a];
  std::mt19937 rng(seed);
  std::vector<double> iv(static_cast<size_t>(ishape.numel()));
  for (double& v : iv) v = double(int64_t(rng() % uint64_t(2 * dim)) - dim);  // [-dim, dim)
  HostTensor idx = FromD(it, ishape, iv);
  Dims out;
  for (int d = 0; d < a; ++d) out.push_back(in[d]);
  for (int d = 0; d < ishape.rank; ++d) out.push_back(ishape[d]);
  for (int d = a + 1; d < in.rank; ++d) out.push_back(in[d]);
  KernelHarness h("gather", threads);
  Dims declared = out;
  for (int d = 0; d < declared.rank; ++d) declared[d] = -1;
  h.In(x).In(idx).Out(t, declared).Attr("axis", axis);
  std::string what = "gather " + Name(t) + Str(in) + "[" + Str(ishape) + "] axis " + std::to_string(axis);
  ASSERT_EQ(h.RunMessage(), "") << what;
  ASSERT_EQ(h.Result().shape, out) << what;
  std::vector<double> ref(static_cast<size_t>(out.numel()));
  for (int64_t i = 0; i < out.numel(); ++i) {
    std::vector<int64_t> oi = Unflatten(out, i), ii;
    for (int d = 0; d < a; ++d) ii.push_back(oi[size_t(d)]);
    std::vector<int64_t> pos(oi.begin() + a, oi.begin() + a + ishape.rank);
    int64_t v = int64_t(iv[size_t(Flatten(ishape, pos))]);
    ii.push_back(v < 0 ? v + dim : v);
    for (int d = a + ishape.rank; d < out.rank; ++d) ii.push_back(oi[size_t(d)]);
    ref[size_t(i)] = GetD(x, Flatten(in, ii));
  }
  ExpectExact(h.Result(), ref, what);
}

TEST(MovementGather, AxesIndicesTypes) {
  uint32_t seed = 61;
  for (kiln_dtype_t t : kMoveTypes)
    for (kiln_dtype_t it : {KILN_DTYPE_I64, KILN_DTYPE_I32}) {
      CheckGather(t, it, {10, 4}, {2, 3}, 0, 2, seed++);
      CheckGather(t, it, {3, 7, 2}, {5}, 1, 2, seed++);
      CheckGather(t, it, {3, 7, 2}, {}, -1, 2, seed++);  // scalar index drops the axis
      CheckGather(t, it, {4, 6}, {0, 2}, 1, 2, seed++);
      CheckGather(t, it, {5, 0}, {3}, 0, 2, seed++);
    }
  // Embedding-sized, threaded.
  CheckGather(KILN_DTYPE_F32, KILN_DTYPE_I64, {1000, 512}, {4, 500}, 0, 4, seed++);
  CheckGather(KILN_DTYPE_BF16, KILN_DTYPE_I32, {64, 3000}, {2000}, 1, 4, seed++);
}

TEST(MovementGather, OutOfRangeIndexIsReported) {
  KernelHarness h("gather");
  h.In(Random(KILN_DTYPE_F32, {256, 8}, 1))
      .In(I64({2, 3}, {0, 1, 300, 4, 5, 6}))
      .Out(KILN_DTYPE_F32, {2, 3, 8})
      .Attr("axis", 0);
  kiln_status_t s = h.Run();
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(kiln_status_code(s), KILN_STATUS_INVALID_ARGUMENT);
  EXPECT_STREQ(kiln_status_message(s),
               "kiln.gather at 'test': index 300 at [0, 2] is out of range [-256, 256) of axis 0");
  kiln_status_free(s);
  KernelHarness n("gather");
  n.In(Random(KILN_DTYPE_F32, {4, 8}, 1)).In(I64({1}, {-5})).Out(KILN_DTYPE_F32, {4, 1}).Attr("axis", 0);
  EXPECT_NE(n.RunMessage().find("index -5 at [0] is out of range [-4, 4) of axis 0"), std::string::npos);
  KernelHarness f("gather");
  f.In(Random(KILN_DTYPE_F32, {4, 8}, 1)).In(Random(KILN_DTYPE_F32, {2}, 2)).Out(KILN_DTYPE_F32, {2, 8}).Attr("axis", 0);
  EXPECT_NE(f.RunMessage().find("indices must be i32 or i64, found f32"), std::string::npos);
}

TEST(MovementGatherNd, BatchDimsAndDepths) {
  uint32_t seed = 71;
  struct Case {
    Dims in, idx;
    int64_t b;
  };
  const std::vector<Case> cases = {
      {{4, 5}, {3, 2}, 0},       {{4, 5, 6}, {2, 2, 1}, 0}, {{4, 5, 6}, {7, 3}, 0},
      {{2, 5, 6}, {2, 3, 1}, 1}, {{2, 3, 5, 6}, {2, 3, 4, 2}, 2}, {{3, 4}, {3, 1}, 1},
      {{4, 5}, {0, 2}, 0},
  };
  for (kiln_dtype_t t : kMoveTypes)
    for (const Case& c : cases) {
      HostTensor x = Random(t, c.in, seed++);
      const int64_t k = c.idx.back();
      std::mt19937 rng(seed++);
      std::vector<double> iv(static_cast<size_t>(c.idx.numel()));
      for (int64_t i = 0; i < c.idx.numel(); ++i) {
        int64_t dim = c.in[int(c.b + i % k)];
        iv[size_t(i)] = double(int64_t(rng() % uint64_t(2 * dim)) - dim);
      }
      HostTensor idx = FromD(KILN_DTYPE_I64, c.idx, iv);
      Dims out;
      for (int d = 0; d + 1 < c.idx.rank; ++d) out.push_back(c.idx[d]);
      for (int d = int(c.b + k); d < c.in.rank; ++d) out.push_back(c.in[d]);
      KernelHarness h("gather_nd");
      h.In(x).In(idx).Out(t, out).Attr("batch_dims", c.b);
      std::string what = "gather_nd " + Name(t) + Str(c.in) + Str(c.idx) + " b=" + std::to_string(c.b);
      ASSERT_EQ(h.RunMessage(), "") << what;
      std::vector<double> ref(static_cast<size_t>(out.numel()));
      for (int64_t i = 0; i < out.numel(); ++i) {
        std::vector<int64_t> oi = Unflatten(out, i), ii;
        const int lead = c.idx.rank - 1;
        std::vector<int64_t> tuple(oi.begin(), oi.begin() + lead);
        for (int d = 0; d < c.b; ++d) ii.push_back(oi[size_t(d)]);
        tuple.push_back(0);
        for (int64_t j = 0; j < k; ++j) {
          tuple.back() = j;
          int64_t v = int64_t(iv[size_t(Flatten(c.idx, tuple))]);
          int64_t dim = c.in[int(c.b + j)];
          ii.push_back(v < 0 ? v + dim : v);
        }
        for (int d = lead; d < out.rank; ++d) ii.push_back(oi[size_t(d)]);
        ref[size_t(i)] = GetD(x, Flatten(c.in, ii));
      }
      ExpectExact(h.Result(), ref, what);
    }
  {
    KernelHarness h("gather_nd");
    h.In(Random(KILN_DTYPE_F32, {4, 5}, 1)).In(I64({2, 2}, {1, 2, 3, 5})).Out(KILN_DTYPE_F32, {2});
    EXPECT_NE(h.RunMessage().find("index 5 at [1, 1] is out of range [-5, 5) of axis 1"), std::string::npos);
  }
  {
    KernelHarness h("gather_nd");
    h.In(Random(KILN_DTYPE_F32, {4, 5}, 1)).In(I64({3, 1}, {1, 2, 3})).Out(KILN_DTYPE_F32, {3}).Attr("batch_dims", 1);
    EXPECT_NE(h.RunMessage().find("batch dimension 0 differs: input [4, 5], indices [3, 1]"), std::string::npos);
  }
  {
    KernelHarness h("gather_nd");
    h.In(Random(KILN_DTYPE_F32, {4, 5}, 1)).In(I64({1, 3}, {1, 2, 3})).Out(KILN_DTYPE_F32, {1});
    EXPECT_NE(h.RunMessage().find("batch_dims 0 and indices [1, 3] do not fit input [4, 5]"), std::string::npos);
  }
}

//===----------------------------------------------------------------------===//
// tensor_scatter
//===----------------------------------------------------------------------===//

// Reference: cache with update written at write_indices[b] (+ u) along axis.
std::vector<double> RefScatter(const HostTensor& cache, const HostTensor& update, int axis,
                               const std::vector<int64_t>& starts, bool circular) {
  std::vector<double> ref = ToD(cache);
  const Dims& cs = cache.shape;
  for (int64_t i = 0; i < update.shape.numel(); ++i) {
    std::vector<int64_t> ui = Unflatten(update.shape, i);
    int64_t pos = starts.empty() ? 0 : starts[size_t(ui[0])];
    pos += ui[size_t(axis)];
    if (circular) pos = ((pos % cs[axis]) + cs[axis]) % cs[axis];
    ui[size_t(axis)] = pos;
    ref[size_t(Flatten(cs, ui))] = GetD(update, i);
  }
  return ref;
}

TEST(MovementTensorScatter, LinearCircularInPlace) {
  uint32_t seed = 81;
  struct Case {
    Dims cache, update;
    int64_t axis;
    std::vector<int64_t> starts;
    bool circular;
  };
  const std::vector<Case> cases = {
      {{2, 3, 8, 4}, {2, 3, 2, 4}, -2, {0, 5}, false},
      {{2, 3, 8, 4}, {2, 3, 1, 4}, 2, {7, 3}, false},
      {{2, 8, 4}, {2, 3, 4}, 1, {}, false},                 // no write_indices: at 0
      {{2, 3, 8, 4}, {2, 3, 3, 4}, -2, {6, 9}, true},       // wraps
      {{2, 5, 4}, {2, 7, 4}, 1, {1, -2}, true},             // more than the axis: last wins
      {{2, 3, 8, 4}, {2, 3, 0, 4}, -2, {8, 8}, false},      // nothing to write
      {{3, 6}, {3, 2}, -1, {0, 2, 4}, false},
  };
  for (kiln_dtype_t t : kMoveTypes)
    for (const Case& c : cases)
      for (bool alias : {false, true}) {
        HostTensor cache = Random(t, c.cache, seed++), update = Random(t, c.update, seed++);
        const int axis = int(c.axis < 0 ? c.axis + c.cache.rank : c.axis);
        std::vector<double> ref = RefScatter(cache, update, axis, c.starts, c.circular);
        std::unique_ptr<KernelHarness> h(alias ? new AliasingHarness("tensor_scatter")
                                               : new KernelHarness("tensor_scatter"));
        h->In(cache).In(update);
        if (!c.starts.empty()) h->In(I64({int64_t(c.starts.size())}, c.starts));
        else h->None();
        h->Out(t, c.cache).Attr("axis", c.axis);
        if (c.circular) h->Flag("circular");
        std::string what = "tensor_scatter " + Name(t) + Str(c.cache) + Str(c.update) +
                           (alias ? " in place" : "");
        ASSERT_EQ(h->RunMessage(), "") << what;
        if (alias && t != KILN_DTYPE_I4) {
          auto* ah = static_cast<AliasingHarness*>(h.get());
          ASSERT_TRUE(ah->aliased) << what;
          HostTensor view(t, c.cache);
          std::memcpy(view.bytes.data(), ah->view().data, view.bytes.size());
          ExpectExact(view, ref, what);
        } else {
          ExpectExact(h->Result(), ref, what);
        }
      }
  {
    KernelHarness h("tensor_scatter");
    h.In(Random(KILN_DTYPE_F32, {2, 8, 4}, 1)).In(Random(KILN_DTYPE_F32, {2, 3, 4}, 2)).In(I64({2}, {0, 6}))
        .Out(KILN_DTYPE_F32, {2, 8, 4}).Attr("axis", 1);
    EXPECT_NE(h.RunMessage().find("write index 6 of batch row 1 with 3 new entries does not fit axis 1 of cache shape [2, 8, 4]"),
              std::string::npos);
  }
  {
    KernelHarness h("tensor_scatter");
    h.In(Random(KILN_DTYPE_F32, {2, 8, 4}, 1)).In(Random(KILN_DTYPE_F32, {2, 3, 5}, 2)).None()
        .Out(KILN_DTYPE_F32, {2, 8, 4}).Attr("axis", 1);
    EXPECT_NE(h.RunMessage().find("update shape [2, 3, 5] does not match the cache shape [2, 8, 4] outside axis 1"),
              std::string::npos);
  }
  {
    KernelHarness h("tensor_scatter");
    h.In(Random(KILN_DTYPE_F32, {2, 8, 4}, 1)).In(Random(KILN_DTYPE_F32, {2, 3, 4}, 2)).In(I64({3}, {0, 0, 0}))
        .Out(KILN_DTYPE_F32, {2, 8, 4}).Attr("axis", 1);
    EXPECT_NE(h.RunMessage().find("write_indices must be [2] for cache shape [2, 8, 4], found [3]"),
              std::string::npos);
  }
  // A decode step into a large static cache, threaded.
  HostTensor cache = Random(KILN_DTYPE_F16, {4, 8, 1024, 64}, 5), update = Random(KILN_DTYPE_F16, {4, 8, 1, 64}, 6);
  std::vector<int64_t> starts = {0, 100, 1023, 512};
  KernelHarness h("tensor_scatter", 4);
  h.In(cache).In(update).In(I64({4}, starts)).Out(KILN_DTYPE_F16, {-1, 8, 1024, 64}).Attr("axis", 2);
  ASSERT_EQ(h.RunMessage(), "");
  ExpectExact(h.Result(), RefScatter(cache, update, 2, starts, false), "threaded tensor_scatter");
}

TEST(MovementRegistry, EveryKernelIsRegistered) {
  for (const char* op : {"reshape", "transpose", "concat", "slice", "broadcast", "bitcast",
                         "shape_of", "range", "fill", "gather", "gather_nd", "tensor_scatter"})
    EXPECT_NE(LookupCpuKernel(op), nullptr) << op;
}

}  // namespace
}  // namespace kiln::testing
