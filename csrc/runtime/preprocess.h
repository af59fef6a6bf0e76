// Image -> network input, as cpr_engine/preprocess.py does it (private header).
#pragma once

#include <opencv2/core.hpp>

namespace cpr {
namespace runtime {

// Throws std::invalid_argument unless `image` is a non-empty CV_8UC3 (BGR) or CV_8UC1 image;
// the message says what was received.
void check_image(const cv::Mat& image);

// CV_8UC3 BGR or CV_8UC1 gray (H, W) -> (1, 3, size, size) CV_32F RGB blob in [0, 1]: area
// filter when size < min(H, W), bilinear otherwise; values / 255.
cv::Mat to_model_input(const cv::Mat& image, int size);

}  // namespace runtime
}  // namespace cpr
