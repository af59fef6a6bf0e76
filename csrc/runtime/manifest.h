// Artifact manifest: read, check format and version, verify every listed file (private header).
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "contract.h"

namespace cpr {
namespace runtime {

// The model settings of manifest.json the runtime uses (cpr_engine.contract.RuntimeSettings in Python;
// field names are the manifest keys).
struct Manifest {
  std::string folder;
  int64_t image_size = 0;            // S
  int64_t top_k = 0;                 // K retrieved training images
  std::vector<int64_t> strides;      // backbone stride of each scale, finest first (4, 8 or 8, 16)
  std::vector<int64_t> windows;      // NN-search window per scale, finest first
  int64_t kept_blocks = 0;           // blocks summed by hist_match
  int64_t grid = 0;                  // histogram blocks per side
  float blur_sigma = 0.f;
  int64_t top_t = 0;                 // values summed into the image score
  bool use_foreground = false;
  double threshold = 0.0;           // a score above it is anomalous
  std::pair<float, float> pixel_normal{0.f, 1.f};
  bool foreground_on_map = true;     // with use_foreground: weight the map and score (true) or the score only
  std::vector<std::string> files;    // every file listed (all verified)

  std::string path(const std::string& file) const { return folder + "/" + file; }
};

// Reads `folder`/manifest.json and verifies the artifact: format tag, format version (1 only),
// manifest.sha256 matching manifest.json, each listed file present with its SHA-256, `required`
// files listed, the settings range-checked as the Python runtime checks them (strides, image_size,
// n_train, top_k, windows, top_t: same rules, same messages) and a finite threshold >= 0. Throws
// cpr::ArtifactError naming the folder and the file or setting.
Manifest read_manifest(const std::string& folder, const std::vector<std::string>& required);

}  // namespace runtime
}  // namespace cpr
