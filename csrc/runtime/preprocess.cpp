#include "preprocess.h"

#include <algorithm>
#include <stdexcept>
#include <string>

#include <opencv2/imgproc.hpp>

namespace cpr {
namespace runtime {

void check_image(const cv::Mat& image, int min_side, int size) {
  if (image.empty()) throw std::invalid_argument("predict: the image is empty (0 x 0 pixels or not loaded)");
  if (std::min(image.rows, image.cols) < min_side) {
    throw std::invalid_argument("predict: the image is " + std::to_string(image.cols) + " x " +
                                std::to_string(image.rows) + " pixels: a side below " + std::to_string(min_side) +
                                ", the model's finest patch grid at input size " + std::to_string(size) +
                                ", has fewer pixels than patches; no verdict is given");
  }
  if (image.depth() != CV_8U || (image.channels() != 1 && image.channels() != 3)) {
    throw std::invalid_argument("predict: expected an 8-bit BGR (CV_8UC3) or grayscale (CV_8UC1) image; got " +
                                cv::typeToString(image.type()) + " with " + std::to_string(image.channels()) +
                                " channel(s), " + std::to_string(image.cols) + " x " + std::to_string(image.rows));
  }
}

cv::Mat to_model_input(const cv::Mat& image, int size, int min_side) {
  check_image(image, min_side, size);
  cv::Mat rgb, resized;
  cv::cvtColor(image, rgb, image.channels() == 1 ? cv::COLOR_GRAY2RGB : cv::COLOR_BGR2RGB);
  const int interp = size < std::min(rgb.rows, rgb.cols) ? cv::INTER_AREA : cv::INTER_LINEAR;
  cv::resize(rgb, resized, cv::Size(size, size), 0, 0, interp);
  cv::Mat blob(std::vector<int>{1, 3, size, size}, CV_32F);
  float* out = blob.ptr<float>();
  const int plane = size * size;
  for (int y = 0; y < size; ++y) {
    const uint8_t* row = resized.ptr<uint8_t>(y);
    for (int x = 0; x < size; ++x) {
      for (int c = 0; c < 3; ++c) out[c * plane + y * size + x] = static_cast<float>(row[3 * x + c]) / 255.f;
    }
  }
  return blob;
}

}  // namespace runtime
}  // namespace cpr
