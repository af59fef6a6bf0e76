// cpr::score_tail: the stages of cpr_engine/tail.py composed from the ops of <cpr/ops.h> and the tail's
// elementwise steps (tail/steps.h), on the context's device.
#include "cpr/tail.h"

#include "cpu/whole_map_search.h"
#include "ops/dispatch.h"
#include "tail/steps.h"

namespace cpr {
namespace {

constexpr const char* kOp = "score_tail";

void check_arguments(const TailState& state, int64_t batch, const float* features, const float* const descriptors[2],
                     const float* foreground, const float* anomaly_map, const float* score, const int64_t* exclude,
                     const Context& ctx) {
  detail::check_device(kOp, ctx);
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
    CPR_CHECK(ctx.device == Device::kCPU, kOp, ": exclude (leave-one-out scoring) runs on the CPU only");
    CPR_CHECK(detail::whole_map_search_available(), kOp,
              ": exclude needs the memory search as matrix products (a build with a CBLAS)");
    CPR_CHECK(state.scales[0].memory_sources != nullptr && state.scales[1].memory_sources != nullptr, kOp,
              ": exclude needs the memory's sources (state.scales[s].memory_sources)");
  }
  CPR_CHECK(batch == 0 || (features != nullptr && descriptors[0] != nullptr && descriptors[1] != nullptr &&
                           anomaly_map != nullptr && score != nullptr),
            kOp, ": features, descriptors, anomaly_map and score must not be null");
}

}  // namespace

bool score_tail_uses_blas() noexcept { return detail::whole_map_search_available(); }

void score_tail(const TailState& state, const TailSettings& settings, int64_t batch, const float* features,
                const float* const descriptors[2], const float* foreground, float* anomaly_map, float* score,
                const int64_t* exclude, const Context& ctx) {
  check_arguments(state, batch, features, descriptors, foreground, anomaly_map, score, exclude, ctx);
  if (batch == 0) return;
  const bool on_cuda = ctx.device == Device::kCUDA;

  // global retrieval: (B, k) closest training images of each query, closest first
  const int64_t fine_side = state.scales[0].side, blocks = settings.grid * settings.grid, bins = state.n_codes + 1;
  detail::TailBuffer<float> hists(batch * blocks * bins, ctx), distances(batch * state.n_train, ctx);
  codebook_histogram(features, batch, state.channels, fine_side, fine_side, state.centers, state.n_codes,
                     settings.grid, nullptr, hists.data(), ctx);
  hist_match(hists.data(), batch, state.train_hists, state.n_train, blocks, bins, settings.kept_blocks,
             distances.data(), ctx);
  const int64_t k = top_k_count(state.n_train, settings.top_k, exclude != nullptr);
  detail::TailBuffer<int64_t> index(batch * k, ctx);
  top_k(distances.data(), batch, state.n_train, settings.top_k, exclude, index.data(), ctx);

  // patch scores per scale: the closer of the retrieved images' windows and the whole memory. The index
  // comes from top_k, the memory rows are 0..M-1: in range by construction, so CUDA skips the host check
  // (nothing here synchronises with the host).
  detail::TailBuffer<float> local_0(batch * fine_side * fine_side, ctx), whole_0(batch * fine_side * fine_side, ctx);
  const int64_t coarse_side = state.scales[1].side;
  detail::TailBuffer<float> local_1(batch * coarse_side * coarse_side, ctx),
      whole_1(batch * coarse_side * coarse_side, ctx);
  float* local[2] = {local_0.data(), local_1.data()};
  float* whole[2] = {whole_0.data(), whole_1.data()};
  NNSearchScale near[2], memory[2];
  for (int s = 0; s < 2; ++s) {
    const TailScale& sc = state.scales[s];
    near[s] = {descriptors[s], sc.bank, sc.bank_dtype, state.n_train, sc.dim, sc.side, sc.side, sc.window, local[s]};
    memory[s] = {descriptors[s], sc.memory, sc.memory_dtype, sc.n_memory, sc.dim, sc.side, sc.side, 2 * sc.side - 1,
                 whole[s]};
  }
  nn_search(near, 2, batch, index.data(), k, ctx, /*check_index=*/!on_cuda);
  for (int s = 0; s < 2; ++s) {  // the scales' memories hold different numbers of maps: one search each
    const TailScale& sc = state.scales[s];
    detail::TailBuffer<int64_t> rows(batch * sc.n_memory, ctx);
    detail::memory_rows(rows.data(), batch, sc.n_memory, ctx);
    if (exclude == nullptr) {
      nn_search(&memory[s], 1, batch, rows.data(), sc.n_memory, ctx, /*check_index=*/!on_cuda);
    } else {  // leave-one-out (CPU): each query's own image removed from the memory
      detail::whole_map_search(memory[s], batch, rows.data(), sc.n_memory, sc.memory_sources, exclude);
    }
    // the closer search; at the fine scale then the location offset, max(fine - offset, 0)
    detail::merge_patch_scores(local[s], whole[s], s == 0 ? state.location_offset : nullptr, batch,
                               sc.side * sc.side, ctx);
  }

  // foreground weight: max(the query's foreground, each retrieved training image's)
  const int64_t fine_plane = fine_side * fine_side;
  detail::TailBuffer<float> weight(foreground != nullptr ? batch * fine_plane : 0, ctx);
  if (foreground != nullptr)
    detail::foreground_weight(foreground, state.bank_fg, index.data(), batch, k, fine_plane, weight.data(), ctx);

  const MapView maps[2] = {{local[0], fine_side, fine_side}, {local[1], coarse_side, coarse_side}};
  const float* map_factor = foreground == nullptr || !settings.foreground_on_map ? nullptr : weight.data();
  postprocess(maps, 2, batch, map_factor, settings.image_size, settings.blur_sigma, settings.top_t, anomaly_map,
              score, ctx);
  if (foreground != nullptr && !settings.foreground_on_map) {  // the foreground weights the image score only
    detail::TailBuffer<float> weighted(batch * settings.image_size * settings.image_size, ctx);
    postprocess(maps, 2, batch, weight.data(), settings.image_size, settings.blur_sigma, settings.top_t,
                weighted.data(), score, ctx);
  }
}

}  // namespace cpr
