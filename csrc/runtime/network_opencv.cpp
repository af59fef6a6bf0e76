#include <opencv2/dnn.hpp>

#include <stdexcept>
#include <vector>

#include "contract.h"
#include "network.h"

namespace cpr {
namespace runtime {
namespace {

using namespace contract;  // NOLINT: the graph's names

const std::vector<cv::String> kOutputs = {kDescriptorOutputs[0], kDescriptorOutputs[1], kForegroundOutput,
                                          kFeaturesOutput};

class OpenCVNetwork : public Network {
 public:
  explicit OpenCVNetwork(const std::string& onnx_path) {
    try {
      net_ = cv::dnn::readNetFromONNX(onnx_path);
    } catch (const cv::Exception& e) {
      throw std::runtime_error(onnx_path + ": OpenCV DNN " CV_VERSION " cannot import the graph: " + e.what());
    }
    net_.setPreferableBackend(cv::dnn::DNN_BACKEND_OPENCV);
    net_.setPreferableTarget(cv::dnn::DNN_TARGET_CPU);
  }

  NetworkOutput run(const cv::Mat& images) override {
    std::vector<cv::Mat> outs;
    net_.setInput(images, kGraphInput);
    net_.forward(outs, kOutputs);
    return {outs[0], outs[1], outs[2], outs[3]};
  }

 private:
  cv::dnn::Net net_;
};

}  // namespace

std::unique_ptr<Network> make_opencv_network(const std::string& onnx_path) {
  return std::make_unique<OpenCVNetwork>(onnx_path);
}

}  // namespace runtime
}  // namespace cpr
