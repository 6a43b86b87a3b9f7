// Token sampling and logits access shared by generation (generate.cc) and
// the continuous-batching scheduler (scheduler.cc).
#ifndef KILN_RUNTIME_SAMPLING_H_
#define KILN_RUNTIME_SAMPLING_H_

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <utility>
#include <vector>

#include "cpu/half.h"
#include "cpu/tensor.h"
#include "kiln/runtime/api.h"

namespace kiln {

/// Uniform double in [0, 1) from 53 random bits (the same on every platform,
/// unlike std::uniform_real_distribution).
inline double Uniform(std::mt19937_64& rng) { return double(rng() >> 11) * 0x1.0p-53; }

class Sampler {
 public:
  Sampler(const kiln_generate_options_t& o) : o_(o), rng_(o.seed) {}

  int64_t Sample(const float* logits, int64_t vocab) {
    if (o_.temperature <= 0.f || o_.top_k == 1) {
      int64_t best = 0;
      for (int64_t i = 1; i < vocab; ++i)
        if (logits[i] > logits[best]) best = i;
      return best;
    }
    // Candidates sorted by logit, truncated to top-k.
    cand_.resize(size_t(vocab));
    for (int64_t i = 0; i < vocab; ++i) cand_[size_t(i)] = {logits[i], i};
    size_t k = o_.top_k > 0 ? std::min<size_t>(size_t(o_.top_k), cand_.size()) : cand_.size();
    auto by_logit = [](const std::pair<float, int64_t>& a, const std::pair<float, int64_t>& b) {
      return a.first > b.first || (a.first == b.first && a.second < b.second);
    };
    std::partial_sort(cand_.begin(), cand_.begin() + long(k), cand_.end(), by_logit);
    cand_.resize(k);
    // Softmax at the temperature, in double for a stable cumulative sum.
    probs_.resize(k);
    double maxv = cand_[0].first, sum = 0;
    for (size_t i = 0; i < k; ++i) {
      probs_[i] = std::exp((double(cand_[i].first) - maxv) / double(o_.temperature));
      sum += probs_[i];
    }
    // Top-p: the smallest prefix whose probability reaches top_p.
    size_t keep = k;
    if (o_.top_p < 1.f) {
      double acc = 0;
      for (size_t i = 0; i < k; ++i) {
        acc += probs_[i] / sum;
        if (acc >= double(o_.top_p)) {
          keep = i + 1;
          break;
        }
      }
    }
    double total = 0;
    for (size_t i = 0; i < keep; ++i) total += probs_[i];
    double u = Uniform(rng_) * total;
    for (size_t i = 0; i < keep; ++i) {
      u -= probs_[i];
      if (u < 0) return cand_[i].second;
    }
    return cand_[keep - 1].second;
  }

 private:
  const kiln_generate_options_t& o_;
  std::mt19937_64 rng_;
  std::vector<std::pair<float, int64_t>> cand_;
  std::vector<double> probs_;
};

/// Reads row `row` of a [B, S, V] logits tensor as f32.
inline void LogitsRow(const Tensor& logits, int64_t b, int64_t s, std::vector<float>& out) {
  int64_t S = logits.shape[1], V = logits.shape[2];
  int64_t base = (b * S + s) * V;
  out.resize(size_t(V));
  switch (logits.dtype) {
    case KILN_DTYPE_F32:
      std::memcpy(out.data(), logits.as<float>() + base, size_t(V) * sizeof(float));
      break;
    case KILN_DTYPE_F16:
      for (int64_t i = 0; i < V; ++i) out[size_t(i)] = HalfToFloat(logits.as<uint16_t>()[base + i]);
      break;
    case KILN_DTYPE_BF16:
      for (int64_t i = 0; i < V; ++i) out[size_t(i)] = BF16ToFloat(logits.as<uint16_t>()[base + i]);
      break;
    default:
      for (int64_t i = 0; i < V; ++i) out[size_t(i)] = float(logits.as<double>()[base + i]);
      break;
  }
}

}  // namespace kiln

#endif  // KILN_RUNTIME_SAMPLING_H_
