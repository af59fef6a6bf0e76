// The network part of the pipeline behind one interface (private header).
#pragma once

#include <memory>
#include <string>

#include <opencv2/core.hpp>

namespace cpr {
namespace runtime {

// Network outputs for one image, each a dense CV_32F blob with the batch axis of size 1.
struct NetworkOutput {
  cv::Mat desc_4;      // (1, D, S/4, S/4) L2-normalized descriptors
  cv::Mat desc_8;      // (1, D, S/8, S/8)
  cv::Mat foreground;  // (1, S/4, S/4) in [0, 1]
  cv::Mat feat_4;      // (1, C, S/4, S/4) stride-4 backbone features (codebook histograms)
};

class Network {
 public:
  virtual ~Network() = default;
  // images: (1, 3, S, S) CV_32F RGB in [0, 1].
  virtual NetworkOutput run(const cv::Mat& images) = 0;
};

// OpenCV DNN (CPU) over an ONNX file; throws std::runtime_error with OpenCV's reason when the
// graph cannot be imported.
std::unique_ptr<Network> make_opencv_network(const std::string& onnx_path);

}  // namespace runtime
}  // namespace cpr
