// cpr::Detector: artifact -> network (OpenCV DNN or TensorRT) -> the scoring tail of <cpr/tail.h>.
#include "cpr/detector.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include <opencv2/imgproc.hpp>

#include "contract.h"
#include "cpr/ops.h"
#include "cpr/tail.h"
#include "manifest.h"
#include "network.h"
#include "npy.h"
#include "preprocess.h"

namespace cpr {
namespace {

using runtime::NpyArray;

using contract::kBankForeground;
using contract::kBanks;
using contract::kCenters;
using contract::kLocationOffset;
using contract::kMemories;
using contract::kTrainHists;

std::string npy_file(const char* array) { return std::string(array) + contract::kNpySuffix; }

const std::vector<std::string> kArrayFiles = {
    npy_file(kBanks[0]),    npy_file(kBanks[1]),    npy_file(kTrainHists),     npy_file(kBankForeground),
    npy_file(kCenters),     npy_file(kMemories[0]), npy_file(kMemories[1]),    npy_file(kLocationOffset)};
#if CPR_WITH_TENSORRT
constexpr bool kWithTensorRT = true;
#else
constexpr bool kWithTensorRT = false;
#endif

std::vector<int64_t> blob_shape(const cv::Mat& blob) { return std::vector<int64_t>(blob.size.p, blob.size.p + blob.dims); }

void expect_shape(const std::string& where, const std::string& what, const std::vector<int64_t>& got,
                  const std::vector<int64_t>& expected) {
  if (got != expected) {
    throw ArtifactError(where + ": " + what + " has shape " + runtime::shape_string(got) + ", expected " +
                        runtime::shape_string(expected));
  }
}

// Index of the first row (along the first axis) holding NaN or inf, or -1.
int64_t first_non_finite_row(const NpyArray& a) {
  const int64_t n = a.numel(), rows = a.shape.empty() ? 1 : a.shape[0];
  const int64_t per_row = rows > 0 ? n / rows : 0;
  for (int64_t i = 0; i < n; ++i) {
    const bool finite = a.dtype == DType::kFloat16
                            ? (reinterpret_cast<const uint16_t*>(a.data())[i] & 0x7C00u) != 0x7C00u  // exponent all ones
                            : std::isfinite(reinterpret_cast<const float*>(a.data())[i]);
    if (!finite) return per_row > 0 ? i / per_row : 0;
  }
  return -1;
}

// <name>.npy of the artifact, refused (as the Python runtime refuses it) when it holds NaN or inf.
NpyArray load_array(const runtime::Manifest& m, const std::string& name) {
  NpyArray array;
  try {
    array = runtime::read_npy(m.path(npy_file(name.c_str())));
  } catch (const std::runtime_error& e) {
    throw ArtifactError(std::string(e.what()));
  }
  const int64_t row = first_non_finite_row(array);
  if (row >= 0) {
    throw ArtifactError(m.folder + ": " + npy_file(name.c_str()) + " holds NaN or inf (training image " +
                        std::to_string(row) + "); re-export the model");
  }
  return array;
}

bool listed(const runtime::Manifest& m, const std::string& file) {
  return std::find(m.files.begin(), m.files.end(), file) != m.files.end();
}

void require_file(const runtime::Manifest& m, const std::string& file, const std::string& why) {
  if (!listed(m, file)) {
    throw ArtifactError(m.folder + ": file " + file + " (" + why + ") is not listed in the manifest");
  }
}

// The backend that runs the artifact's network for a requested one; throws when it cannot run here.
Backend resolve_backend(const runtime::Manifest& m, Backend requested) {
  if (requested == Backend::kOpenCV || (requested == Backend::kAuto && (!kWithTensorRT || !listed(m, contract::kNetworkPlan)))) {
    return Backend::kOpenCV;
  }
#if CPR_WITH_TENSORRT
  const std::string no_device = runtime::cuda_device_unavailable_reason();
  if (requested == Backend::kAuto) return no_device.empty() ? Backend::kTensorRT : Backend::kOpenCV;
  if (!no_device.empty()) throw std::runtime_error("TensorRT backend: " + no_device);
#endif
  return Backend::kTensorRT;
}

}  // namespace

struct Detector::Impl {
  runtime::Manifest manifest;
  Backend backend = Backend::kOpenCV;
  std::unique_ptr<runtime::Network> network;
  NpyArray bank_4, bank_8, bank_fg;       // (N, D, S/s1, S/s1), (N, D, S/s2, S/s2), (N, S/s1, S/s1)
  NpyArray memory_4, memory_8;            // (M_4, D, S/s1, S/s1), (M_8, D, S/s2, S/s2): searched whole
  std::vector<float> location_offset;     // (S/s1, S/s1) subtracted from the fine patch scores
  int64_t n_memory_4 = 0, n_memory_8 = 0;  // maps per memory (M_s)
  std::vector<float> centers;             // (M, C) float32, when the network gives feat_4
  std::vector<float> train_hists;         // (N, grid^2, M+1) float32 (converted once from fp16)
  int64_t n_train = 0, dim_4 = 0, dim_8 = 0, n_codes = 0, channels = 0;  // D per scale: own widths

  int64_t side(int64_t stride) const { return manifest.image_size / stride; }
  // Map sides of the finest and the coarsest scale (manifest "strides"); side(1) is the input's.
  int64_t fine_side() const { return side(manifest.strides[0]); }
  int64_t coarse_side() const { return side(manifest.strides[1]); }
  const char* network_file() const {
    return backend == Backend::kTensorRT ? contract::kNetworkPlan : contract::kNetworkOpenCVOnnx;
  }

  // Reads the arrays and checks that their shapes agree with each other and the manifest.
  void load_arrays() {
    const runtime::Manifest& m = manifest;
    bank_4 = load_array(m, kBanks[0]);
    bank_8 = load_array(m, kBanks[1]);
    bank_fg = load_array(m, kBankForeground);
    const NpyArray hists_npy = load_array(m, kTrainHists);
    if (bank_4.shape.size() != 4 || hists_npy.shape.size() != 3) {
      throw ArtifactError(m.folder + ": " + npy_file(kBanks[0]) + " " + runtime::shape_string(bank_4.shape) +
                          " must be 4-d and " + npy_file(kTrainHists) + " " + runtime::shape_string(hists_npy.shape) +
                          " 3-d");
    }
    if (bank_8.shape.size() != 4) {
      throw ArtifactError(m.folder + ": " + npy_file(kBanks[1]) + " " + runtime::shape_string(bank_8.shape) +
                          " must be 4-d");
    }
    n_train = bank_4.shape[0], dim_4 = bank_4.shape[1], dim_8 = bank_8.shape[1];
    n_codes = hists_npy.shape[2] - 1;
    expect_shape(m.path(npy_file(kBanks[0])), kBanks[0], bank_4.shape, {n_train, dim_4, fine_side(), fine_side()});
    expect_shape(m.path(npy_file(kBanks[1])), kBanks[1], bank_8.shape, {n_train, dim_8, coarse_side(), coarse_side()});
    expect_shape(m.path(npy_file(kBankForeground)), kBankForeground, bank_fg.shape, {n_train, fine_side(), fine_side()});
    expect_shape(m.path(npy_file(kTrainHists)), kTrainHists, hists_npy.shape, {n_train, m.grid * m.grid, n_codes + 1});
    if (bank_8.dtype != bank_4.dtype || bank_fg.dtype != DType::kFloat32) {
      throw ArtifactError(m.folder + ": " + kBanks[1] + " must have " + kBanks[0] + "'s dtype, " + kBankForeground +
                          " float32");
    }
    train_hists = hists_npy.to_float();
    load_memory();
  }

  // The memory (a coreset of every training patch, the banks' dtype and D) and the location offset.
  void load_memory() {
    const runtime::Manifest& m = manifest;
    memory_4 = load_array(m, kMemories[0]);
    memory_8 = load_array(m, kMemories[1]);
    const NpyArray offset = load_array(m, kLocationOffset);
    const int64_t m_4 = memory_4.shape.empty() ? 0 : memory_4.shape[0];
    const int64_t m_8 = memory_8.shape.empty() ? 0 : memory_8.shape[0];
    if (m_4 < 1 || m_8 < 1 || memory_4.dtype != bank_4.dtype || memory_8.dtype != bank_4.dtype ||
        offset.dtype != DType::kFloat32) {
      throw ArtifactError(m.folder + ": " + kMemories[0] + " / " + kMemories[1] + " must hold >= 1 map in " + kBanks[0] +
                          "'s dtype, " + kLocationOffset + " float32");
    }
    expect_shape(m.path(npy_file(kMemories[0])), kMemories[0], memory_4.shape, {m_4, dim_4, fine_side(), fine_side()});
    expect_shape(m.path(npy_file(kMemories[1])), kMemories[1], memory_8.shape, {m_8, dim_8, coarse_side(), coarse_side()});
    expect_shape(m.path(npy_file(kLocationOffset)), kLocationOffset, offset.shape, {fine_side(), fine_side()});
    location_offset = offset.to_float();
    n_memory_4 = m_4, n_memory_8 = m_8;
  }

  // The codebook (M, C) float32, M from train_hists.
  void load_centers() {
    const NpyArray centers_npy = load_array(manifest, kCenters);
    if (centers_npy.shape.size() != 2 || centers_npy.dtype != DType::kFloat32) {
      throw ArtifactError(manifest.path(npy_file(kCenters)) + ": " + kCenters + " must be 2-d float32; got shape " +
                          runtime::shape_string(centers_npy.shape));
    }
    channels = centers_npy.shape[1];
    expect_shape(manifest.path(npy_file(kCenters)), kCenters, centers_npy.shape, {n_codes, channels});
    centers = centers_npy.to_float();
  }

  // Opens the backend's network and checks it. OpenCV's failures become ArtifactError (the graph is
  // at fault); TensorRT throws ArtifactError for the plan, std::runtime_error for CUDA.
  void open_network() {
    if (backend == Backend::kTensorRT) {
#if CPR_WITH_TENSORRT
      network = runtime::make_tensorrt_network(manifest.path(contract::kNetworkPlan), int(side(1)));
#endif
      check_network();
      return;
    }
    try {
      network = runtime::make_opencv_network(manifest.path(contract::kNetworkOpenCVOnnx));
      check_network();
    } catch (const ArtifactError&) {
      throw;
    } catch (const std::exception& e) {
      throw ArtifactError(e.what());
    }
  }

  // Runs the network once on a blank image and checks its output shapes against the arrays.
  void check_network() {
    const cv::Mat blank(std::vector<int>{1, 3, int(side(1)), int(side(1))}, CV_32F, cv::Scalar(0.5));
    const runtime::NetworkOutput out = network->run(blank);
    const std::string where = manifest.path(network_file());
    expect_shape(where, "output desc_4", blob_shape(out.desc_4), {1, dim_4, fine_side(), fine_side()});
    expect_shape(where, "output desc_8", blob_shape(out.desc_8), {1, dim_8, coarse_side(), coarse_side()});
    expect_shape(where, "output foreground", blob_shape(out.foreground), {1, fine_side(), fine_side()});
    expect_shape(where, "output feat_4", blob_shape(out.feat_4), {1, channels, fine_side(), fine_side()});
  }

  // The arrays and settings the scoring tail reads (views of this Impl's buffers).
  TailState tail_state() const {
    TailState state;
    state.centers = centers.data();
    state.n_codes = n_codes;
    state.channels = channels;
    state.train_hists = train_hists.data();
    state.n_train = n_train;
    state.scales[0] = {bank_4.data(), memory_4.data(), bank_4.dtype, memory_4.dtype, n_memory_4, dim_4,
                       fine_side(), manifest.windows[0]};
    state.scales[1] = {bank_8.data(), memory_8.data(), bank_8.dtype, memory_8.dtype, n_memory_8, dim_8,
                       coarse_side(), manifest.windows[1]};
    state.bank_fg = manifest.use_foreground ? reinterpret_cast<const float*>(bank_fg.data()) : nullptr;
    state.location_offset = location_offset.data();
    return state;
  }

  TailSettings tail_settings() const {
    return {manifest.grid, manifest.kept_blocks, manifest.top_k, side(1), manifest.blur_sigma, manifest.top_t,
            manifest.foreground_on_map};
  }

  Prediction predict(const cv::Mat& image) {
    const runtime::NetworkOutput out = network->run(runtime::to_model_input(image, int(side(1)), int(fine_side())));
    const float* descriptors[2] = {out.desc_4.ptr<float>(), out.desc_8.ptr<float>()};
    cv::Mat model_map(int(side(1)), int(side(1)), CV_32F);
    Prediction p;
    score_tail(tail_state(), tail_settings(), 1, out.feat_4.ptr<float>(), descriptors,
               manifest.use_foreground ? out.foreground.ptr<float>() : nullptr, model_map.ptr<float>(), &p.score);
    cv::resize(model_map, p.anomaly_map, image.size(), 0, 0, cv::INTER_LINEAR);
    // fail closed: a non-finite score or map never becomes a verdict (NaN > threshold would say "good")
    if (!std::isfinite(p.score) || !cv::checkRange(model_map)) {
      throw std::runtime_error(manifest.folder + ": non-finite image score or anomaly map; no verdict given");
    }
    p.is_anomalous = p.score > manifest.threshold;
    return p;
  }
};

Detector Detector::load(const std::string& dir, Backend backend) {
  if (backend == Backend::kTensorRT && !kWithTensorRT) {
    throw std::runtime_error("TensorRT backend: this cpr-engine build has no TensorRT (rebuild with TensorRT and the "
                             "CUDA toolkit installed, CMake option CPR_WITH_TENSORRT=ON)");
  }
  auto impl = std::make_unique<Impl>();
  impl->manifest = runtime::read_manifest(dir, kArrayFiles);
  impl->backend = resolve_backend(impl->manifest, backend);
  if (impl->backend == Backend::kTensorRT) {
    require_file(impl->manifest, contract::kNetworkPlan, "needed by the TensorRT backend; build it with export/build_plan.py");
  } else {
    require_file(impl->manifest, contract::kNetworkOpenCVOnnx, "needed by the OpenCV DNN backend");
  }
  impl->load_arrays();
  impl->load_centers();
  impl->open_network();
  return Detector(std::move(impl));
}

Prediction Detector::predict(const cv::Mat& image) { return impl_->predict(image); }
double Detector::threshold() const { return impl_->manifest.threshold; }
int Detector::image_size() const { return int(impl_->manifest.image_size); }
std::pair<float, float> Detector::pixel_normal() const { return impl_->manifest.pixel_normal; }
Backend Detector::backend() const { return impl_->backend; }

Detector::Detector(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Detector::Detector(Detector&&) noexcept = default;
Detector& Detector::operator=(Detector&&) noexcept = default;
Detector::~Detector() = default;

}  // namespace cpr
