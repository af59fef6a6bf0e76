// Image -> network input, as cpr_engine/preprocess.py does it (private header).
#pragma once

#include <opencv2/core.hpp>

namespace cpr {
namespace runtime {

// Throws std::invalid_argument unless `image` is a non-empty CV_8UC3 (BGR) or CV_8UC1 image whose sides
// are at least `min_side` (the model's finest patch grid at input size `size`); the message says what was
// received.
void check_image(const cv::Mat& image, int min_side, int size);

// CV_8UC3 BGR or CV_8UC1 gray (H, W) -> (1, 3, size, size) CV_32F RGB blob in [0, 1]: area
// filter when size < min(H, W), bilinear otherwise; values / 255. Images are checked first (check_image).
cv::Mat to_model_input(const cv::Mat& image, int size, int min_side);

}  // namespace runtime
}  // namespace cpr
