// The network part of the pipeline behind one interface (private header).
#pragma once

#include <memory>
#include <string>

#include <opencv2/core.hpp>

namespace cpr {
namespace runtime {

// Network outputs for one image (contract.h's graph outputs), each a dense CV_32F blob with the
// batch axis of size 1.
struct NetworkOutput {
  cv::Mat desc_4;      // (1, D, h_0, w_0) L2-normalized descriptors
  cv::Mat desc_8;      // (1, D, h_1, w_1)
  cv::Mat foreground;  // (1, h_0, w_0) in [0, 1]
  cv::Mat feat_4;      // (1, C, h_0, w_0) fine backbone taps: the codebook histograms are computed from them
};

class Network {
 public:
  virtual ~Network() = default;
  // images: (1, 3, S, S) CV_32F RGB in [0, 1].
  virtual NetworkOutput run(const cv::Mat& images) = 0;
};

// OpenCV DNN (CPU) over an ONNX file (outputs desc_4, desc_8, foreground, feat_4); throws
// std::runtime_error with OpenCV's reason when the graph cannot be imported.
std::unique_ptr<Network> make_opencv_network(const std::string& onnx_path);

#if CPR_WITH_TENSORRT
// "" when the CUDA runtime sees a device, else why not (a phrase).
std::string cuda_device_unavailable_reason();

// TensorRT over a serialized plan, run with batch 1 at `image_size`; float32 or float16 I/O (as the
// engine declares it), outputs desc_4, desc_8, foreground and feat_4. Throws
// cpr::ArtifactError for a plan this TensorRT cannot use, std::runtime_error for a CUDA failure.
std::unique_ptr<Network> make_tensorrt_network(const std::string& plan_path, int image_size);
#endif

}  // namespace runtime
}  // namespace cpr
