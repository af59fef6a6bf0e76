// The artifact contract: every name an exported artifact is written and read by (private header).
// Mirrors cpr_engine/contract.py; tests/test_contract.py compares the two files.
// Scales: index 0 is the fine scale (stride strides[0]), index 1 the coarse one.
#pragma once

namespace cpr {
namespace contract {

constexpr const char* kArtifactFormat = "cpr-engine-artifact";
constexpr int kArtifactFormatVersion = 5;
constexpr int kArtifactMinFormatVersion = 4;  // 4: no foreground_on_map (read as true); 3: a location weight, not location_offset; 2: no memories; 1: no feat_4

// files of an artifact folder
constexpr const char* kManifest = "manifest.json";
constexpr const char* kManifestDigest = "manifest.sha256";  // "<hex>  manifest.json"
constexpr const char* kNetworkOnnx = "network.onnx";
constexpr const char* kNetworkFp16Onnx = "network_fp16.onnx";
constexpr const char* kNetworkOpenCVOnnx = "network_opencv.onnx";
constexpr const char* kNetworkPlan = "network.plan";

// the network graphs
constexpr const char* kGraphInput = "images";  // (1, 3, S, S) float32 RGB in [0, 1]
constexpr const char* kDescriptorOutputs[] = {"desc_4", "desc_8"};  // (1, D, h_s, w_s) per scale
constexpr const char* kForegroundOutput = "foreground";               // (1, h_0, w_0)
constexpr const char* kFeaturesOutput = "feat_4";                     // (1, C, h_0, w_0) fine taps -> codebook

// arrays (<name>.npy)
constexpr const char* kBanks[] = {"bank_4", "bank_8"};  // (N, D, h_s, w_s)
constexpr const char* kTrainHists = "train_hists";      // (N, grid^2, n_clusters + 1)
constexpr const char* kBankForeground = "bank_fg";      // (N, h_0, w_0) float32
constexpr const char* kCenters = "centers";             // (n_clusters, C) float32
constexpr const char* kMemories[] = {"memory_4", "memory_8"};  // (M_s, D, h_s, w_s), the banks' dtype
constexpr const char* kLocationOffset = "location_offset";     // (h_0, w_0) float32
constexpr const char* kNpySuffix = ".npy";

// ranges of the settings (check_settings in manifest.cpp and cpr_engine/runtime/artifact.py)
constexpr double kPixelScoreMax = 8.0;          // two scales of cosine distance (<= 2 each) + the location offset
constexpr double kThresholdBoundSlack = 1e-3;   // relative slack of the threshold's bound, top_t x pixel_normal[1]

}  // namespace contract
}  // namespace cpr
