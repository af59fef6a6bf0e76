// cpr::score_tail: the stages of cpr_engine/tail.py composed from the ops of <cpr/ops.h> (CPU).
#include "cpr/tail.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "common/check.h"
#include "cpu/whole_map_search.h"

namespace cpr {
namespace {

constexpr const char* kOp = "score_tail";

// (B, k) closest training images of each query, closest first (codebook histograms, matching, top-K).
std::vector<int64_t> retrieve(const TailState& state, const TailSettings& settings, int64_t batch,
                              const float* features, const int64_t* exclude, int64_t* k) {
  const int64_t side = state.scales[0].side, blocks = settings.grid * settings.grid, bins = state.n_codes + 1;
  std::vector<float> hists(size_t(batch * blocks * bins)), distances(size_t(batch * state.n_train));
  codebook_histogram(features, batch, state.channels, side, side, state.centers, state.n_codes, settings.grid,
                     nullptr, hists.data());
  hist_match(hists.data(), batch, state.train_hists, state.n_train, blocks, bins, settings.kept_blocks,
             distances.data());
  *k = top_k_count(state.n_train, settings.top_k, exclude != nullptr);
  std::vector<int64_t> index(size_t(batch * *k));
  top_k(distances.data(), batch, state.n_train, settings.top_k, exclude, index.data());
  return index;
}

// local = min(local, whole) elementwise; where either is NaN or inf the result is too (a damaged bank
// or memory poisons the score instead of being hidden by the other search).
void keep_closer(std::vector<float>& local, const std::vector<float>& whole) {
  for (size_t i = 0; i < whole.size(); ++i) {
    const float total = local[i] + whole[i];
    local[i] = std::isfinite(total) ? std::min(local[i], whole[i]) : total;
  }
}

}  // namespace

bool score_tail_uses_blas() noexcept { return detail::whole_map_search_available(); }

void score_tail(const TailState& state, const TailSettings& settings, int64_t batch, const float* features,
                const float* const descriptors[2], const float* foreground, float* anomaly_map, float* score,
                const int64_t* exclude) {
  CPR_CHECK(batch >= 0, kOp, ": batch must be >= 0; got ", batch);
  for (int s = 0; s < 2; ++s) {
    const TailScale& scale = state.scales[s];
    CPR_CHECK(scale.bank != nullptr && scale.memory != nullptr && scale.n_memory >= 1 && scale.side >= 1, kOp,
              ": scale ", s, " needs a bank, a memory of >= 1 map and a side >= 1; got ", scale.n_memory,
              " memory maps, side ", scale.side);
  }
  CPR_CHECK(state.location_offset != nullptr, kOp, ": the location offset must not be null (zeros: none)");
  CPR_CHECK(foreground == nullptr || state.bank_fg != nullptr, kOp,
            ": a query foreground needs the training foregrounds (state.bank_fg)");
  if (exclude != nullptr) {
    CPR_CHECK(detail::whole_map_search_available(), kOp,
              ": exclude needs the memory search as matrix products (a build with a CBLAS)");
    CPR_CHECK(state.scales[0].memory_sources != nullptr && state.scales[1].memory_sources != nullptr, kOp,
              ": exclude needs the memory's sources (state.scales[s].memory_sources)");
  }
  if (batch == 0) return;
  CPR_CHECK(features != nullptr && descriptors[0] != nullptr && descriptors[1] != nullptr && anomaly_map != nullptr &&
                score != nullptr,
            kOp, ": features, descriptors, anomaly_map and score must not be null");

  int64_t k = 0;
  const std::vector<int64_t> index = retrieve(state, settings, batch, features, exclude, &k);

  // patch scores per scale: the closer of the retrieved images' windows and the whole memory
  std::vector<float> local[2], whole[2];
  NNSearchScale near[2], memory[2];
  for (int s = 0; s < 2; ++s) {
    const TailScale& sc = state.scales[s];
    const int64_t plane = sc.side * sc.side;
    local[s].resize(size_t(batch * plane));
    whole[s].resize(size_t(batch * plane));
    near[s] = {descriptors[s], sc.bank, sc.bank_dtype, state.n_train, sc.dim, sc.side, sc.side, sc.window,
               local[s].data()};
    memory[s] = {descriptors[s], sc.memory, sc.memory_dtype, sc.n_memory, sc.dim, sc.side, sc.side,
                 2 * sc.side - 1, whole[s].data()};
  }
  nn_search(near, 2, batch, index.data(), k);
  for (int s = 0; s < 2; ++s) {  // the scales' memories hold different numbers of maps: one search each
    std::vector<int64_t> rows(size_t(batch * state.scales[s].n_memory));
    for (size_t i = 0; i < rows.size(); ++i) rows[i] = int64_t(i) % state.scales[s].n_memory;
    if (exclude == nullptr) {
      nn_search(&memory[s], 1, batch, rows.data(), state.scales[s].n_memory);
    } else {  // leave-one-out: each query's own image removed from the memory
      detail::whole_map_search(memory[s], batch, rows.data(), state.scales[s].n_memory,
                               state.scales[s].memory_sources, exclude);
    }
    keep_closer(local[s], whole[s]);
  }

  // location offset: fine = max(fine - offset, 0); NaN stays NaN
  const int64_t fine_plane = state.scales[0].side * state.scales[0].side;
  for (int64_t i = 0; i < batch * fine_plane; ++i) {
    const float v = local[0][size_t(i)] - state.location_offset[i % fine_plane];
    local[0][size_t(i)] = v < 0.0f ? 0.0f : v;
  }

  // foreground weight: max(the query's foreground, each retrieved training image's)
  std::vector<float> weight;
  if (foreground != nullptr) {
    weight.assign(foreground, foreground + batch * fine_plane);
    for (int64_t b = 0; b < batch; ++b) {
      float* out = weight.data() + b * fine_plane;
      for (int64_t j = 0; j < k; ++j) {  // one retrieved image's plane at a time: contiguous reads
        const float* fg = state.bank_fg + index[size_t(b * k + j)] * fine_plane;
        for (int64_t i = 0; i < fine_plane; ++i) out[i] = std::max(out[i], fg[i]);
      }
    }
  }

  const MapView maps[2] = {{local[0].data(), state.scales[0].side, state.scales[0].side},
                           {local[1].data(), state.scales[1].side, state.scales[1].side}};
  const float* map_factor = weight.empty() || !settings.foreground_on_map ? nullptr : weight.data();
  postprocess(maps, 2, batch, map_factor, settings.image_size, settings.blur_sigma, settings.top_t, anomaly_map,
              score);
  if (!weight.empty() && !settings.foreground_on_map) {  // the foreground weights the image score only
    std::vector<float> weighted(size_t(batch * settings.image_size * settings.image_size));
    postprocess(maps, 2, batch, weight.data(), settings.image_size, settings.blur_sigma, settings.top_t,
                weighted.data(), score);
  }
}

}  // namespace cpr
