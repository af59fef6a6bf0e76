// cpr/detector.h -- C++ inference API over an exported artifact folder (cpr-export).
//
//   cpr::Detector det = cpr::Detector::load("artifact/");
//   cpr::Prediction p = det.predict(cv::imread("part.png"));   // BGR, as cv::imread gives it
//   p.score, p.anomaly_map (CV_32F, image size), p.is_anomalous
//
// Pipeline (the same as cpr_engine's CPRModel.forward): the network (OpenCV DNN on CPU) gives the
// stride-4/8 descriptors, the foreground map and the stride-4 backbone features; the kernels of
// <cpr/ops.h> do the rest: codebook_histogram, hist_match, top_k, nn_search, postprocess.
//
// Artifact files read: manifest.json (format "cpr-engine-artifact", format_version 1),
// network_opencv.onnx (input "images" (1, 3, S, S) float32 RGB in [0, 1]; outputs desc_4
// (1, D, S/4, S/4), desc_8 (1, D, S/8, S/8), foreground (1, S/4, S/4), feat_4 (1, C, S/4, S/4)),
// centers.npy (M, C) float32, bank_4.npy / bank_8.npy (N, D, S/4|8, S/4|8) float32 or float16,
// train_hists.npy (N, grid^2, M+1) float32 or float16, bank_fg.npy (N, S/4, S/4) float32.
// Every file listed in the manifest is checked against its SHA-256 at load.
//
// Backends: OpenCV DNN (CPU) only. TensorRT is not built here: no TensorRT headers are available
// to this build, so no untested code path for it exists.
//
// Errors: cpr::ArtifactError for an unusable artifact (message names the folder and the file:
// missing manifest or file, other format tag, newer or unknown format version, checksum mismatch,
// malformed array, shapes that do not agree); std::invalid_argument for an unusable image
// (message says what was received).
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

class Detector {
 public:
  // Reads and verifies the artifact in `dir`; throws ArtifactError.
  static Detector load(const std::string& dir);

  // Scores one image: CV_8UC3 in BGR order (cv::imread's convention) or CV_8UC1 grayscale, any
  // size (resized to image_size() like the Python package: area filter when shrinking, bilinear
  // otherwise). Throws std::invalid_argument for an empty image or another type. Not thread-safe
  // (the network keeps per-call state): use one Detector per thread.
  Prediction predict(const cv::Mat& image);

  double threshold() const;        // decision threshold (manifest "threshold")
  int image_size() const;          // S, the network's input side
  // (median, max) pixel score of good images (manifest "pixel_normal"), for heat-map colour scales.
  std::pair<float, float> pixel_normal() const;

  Detector(Detector&&) noexcept;
  Detector& operator=(Detector&&) noexcept;
  ~Detector();

 private:
  struct Impl;
  explicit Detector(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace cpr
