// cpr/detector.h -- C++ inference API over an exported artifact folder (cpr-export).
//
//   cpr::Detector det = cpr::Detector::load("artifact/");
//   cpr::Prediction p = det.predict(cv::imread("part.png"));   // BGR, as cv::imread gives it
//   p.score, p.anomaly_map (CV_32F, image size), p.is_anomalous
//
// Pipeline (the same as cpr_engine's CPRModel.forward): the network gives the descriptors of both
// scales, the foreground map and the fine backbone taps (feat_4); the kernels of <cpr/ops.h> do the
// rest: codebook_histogram, hist_match, top_k, nn_search, postprocess.
//
// Backends (Backend below): OpenCV DNN on the CPU, always built; TensorRT (10 or newer) on the
// GPU, built when CMake finds TensorRT and the CUDA toolkit (CPR_WITH_TENSORRT=AUTO|ON). kAuto
// takes TensorRT when it is built in, the artifact has network.plan and the CUDA runtime sees a
// device; OpenCV DNN otherwise.
//
// Artifact files read (names: csrc/runtime/contract.h): manifest.json (format
// "cpr-engine-artifact", format_version 5, or 4 read with foreground_on_map true), bank_4.npy /
// bank_8.npy (N, D, h_s, w_s) float32 or float16, memory_4.npy / memory_8.npy (M_s, D, h_s, w_s) in the banks' dtype, train_hists.npy
// (N, grid^2, M+1) float32 or float16, bank_fg.npy (N, h_0, w_0) float32, location_offset.npy
// (h_0, w_0) float32, centers.npy (M, C) float32, and per backend one graph with input "images" (1, 3, S, S) float32 RGB
// in [0, 1] and outputs desc_4 (1, D, h_0, w_0), desc_8 (1, D, h_1, w_1), foreground (1, h_0, w_0),
// feat_4 (1, C, h_0, w_0):
//   OpenCV DNN: network_opencv.onnx;
//   TensorRT: network.plan (built on the target GPU by export/build_plan.py; run at B = 1; each
//     tensor float32 or float16 as the engine declares it, converted on the host).
// Every file listed in the manifest is checked against its SHA-256 at load.
//
// Errors: cpr::ArtifactError for an unusable artifact (message names the folder and the file:
// missing manifest or file, other format tag, newer or unknown format version, checksum mismatch,
// malformed array, shapes that do not agree, no network.plan when TensorRT is asked for, a plan
// this TensorRT cannot deserialize); std::runtime_error for a backend this build or machine cannot
// run (TensorRT not compiled in, no CUDA device) and CUDA failures; std::invalid_argument for an
// unusable image (message says what was received).
#pragma once

#include <memory>
#include <stdexcept>
#include <string>
#include <utility>

#include <opencv2/core.hpp>

namespace cpr {

// An artifact folder that cannot be used; the message names the folder and the problem.
class ArtifactError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct Prediction {
  float score = 0.f;      // image anomaly score (sum of the top-T blurred map values)
  cv::Mat anomaly_map;    // CV_32F, the input image's rows x cols, pixel anomaly scores
  bool is_anomalous = false;  // score > threshold()
};

// The engine that runs the network.
enum class Backend {
  kAuto,      // TensorRT when available (see above), else OpenCV DNN
  kOpenCV,    // OpenCV DNN on the CPU (network_opencv.onnx)
  kTensorRT,  // TensorRT on the GPU (network.plan); needs a build with TensorRT
};

class Detector {
 public:
  // Reads and verifies the artifact in `dir` and opens the network on `backend`; throws
  // ArtifactError, or std::runtime_error when the backend cannot run here.
  static Detector load(const std::string& dir, Backend backend = Backend::kAuto);

  // Scores one image: CV_8UC3 in BGR order (cv::imread's convention) or CV_8UC1 grayscale, any
  // size (resized to image_size() like the Python package: area filter when shrinking, bilinear
  // otherwise). Throws std::invalid_argument for an empty image or another type. Not thread-safe
  // (the network keeps per-call state): use one Detector per thread.
  Prediction predict(const cv::Mat& image);

  double threshold() const;        // decision threshold (manifest "threshold")
  int image_size() const;          // S, the network's input side
  // (median, max) pixel score of good images (manifest "pixel_normal"), for heat-map colour scales.
  std::pair<float, float> pixel_normal() const;
  Backend backend() const;         // the backend that runs the network (never kAuto)

  Detector(Detector&&) noexcept;
  Detector& operator=(Detector&&) noexcept;
  ~Detector();

 private:
  struct Impl;
  explicit Detector(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace cpr
