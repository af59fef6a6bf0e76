// inspect_folder: score every image of a folder with an exported artifact.
//
//   inspect_folder [--backend auto|opencv|tensorrt] ARTIFACT_DIR IMAGE_DIR OUT_DIR
//
// --backend: the engine that runs the network (default auto: TensorRT when built in, the artifact
// has network.plan and a CUDA device is present; else OpenCV DNN on the CPU).
// stdout: one line per image, "<file>\t<score>\t<verdict>" (verdict "anomalous" or "good"), in file
// name order, then "# <n> images in <s> s: <r> images/s, backend <opencv|tensorrt>".
// OUT_DIR/<stem>.png: the anomaly map as a JET heat map over the image (blue: median pixel score of
// good images; red: twice their maximum). OUT_DIR must be new, empty or one an earlier run wrote (it
// holds .cpr-inspect): files of the user's, the images among them, are never replaced.
// Exit status: 0; 1 when some image could not be read, was cut short or could not be scored (each
// named on stderr, the others are still scored); 2 for bad arguments, an OUT_DIR of the user's, two
// images with one stem, no image in IMAGE_DIR, an unusable artifact or a backend that cannot run
// here (the reason on stderr).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <map>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "cpr/detector.h"

namespace fs = std::filesystem;

namespace {

const std::set<std::string> kImageExtensions = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"};
const std::map<std::string, cpr::Backend> kBackends = {
    {"auto", cpr::Backend::kAuto}, {"opencv", cpr::Backend::kOpenCV}, {"tensorrt", cpr::Backend::kTensorRT}};

std::string backend_name(cpr::Backend backend) {
  for (const auto& [name, value] : kBackends) {
    if (value == backend) return name;
  }
  return "?";
}

// Image files of `dir` (by extension, case-insensitive), sorted by name.
std::vector<fs::path> list_images(const fs::path& dir) {
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(dir)) {
    std::string ext = entry.path().extension().string();
    std::transform(ext.begin(), ext.end(), ext.begin(), ::tolower);
    if (entry.is_regular_file() && kImageExtensions.count(ext)) files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());
  return files;
}

constexpr const char* kOutMarker = ".cpr-inspect";  // marks an OUT_DIR this program wrote

// The file's bytes, decoded to BGR (gray replicated), after the end-of-file checks the Python reader
// makes (cpr_engine.data.imageio): a PNG must end with IEND after its last IDAT, a JPEG must have an
// end-of-image marker after its last scan. libpng and libjpeg decode a file cut short with a warning
// and the missing rows gray, which would get a verdict.
cv::Mat read_complete_image(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  const std::vector<uchar> data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (!in.good() && !in.eof()) throw std::runtime_error("cannot read the file");
  const std::string_view bytes(reinterpret_cast<const char*>(data.data()), data.size());
  if (bytes.rfind("\x89PNG\r\n\x1a\n", 0) == 0) {
    const size_t iend = bytes.rfind("IEND"), idat = bytes.rfind("IDAT");
    if (iend == std::string::npos || (idat != std::string::npos && iend < idat)) {
      throw std::runtime_error("truncated or corrupt PNG: no IEND chunk at the end of the file (" +
                               std::to_string(bytes.size()) + " bytes)");
    }
  } else if (bytes.rfind("\xff\xd8\xff", 0) == 0) {
    const size_t sos = bytes.rfind("\xff\xda");
    if (sos == std::string::npos || bytes.find("\xff\xd9", sos + 2) == std::string::npos) {
      throw std::runtime_error("truncated JPEG: no end-of-image marker after the last scan (" +
                               std::to_string(bytes.size()) + " bytes)");
    }
  }
  cv::Mat image = cv::imdecode(data, cv::IMREAD_COLOR);  // BGR; gray is replicated
  if (image.empty()) throw std::runtime_error("cannot read or decode the image");
  return image;
}

// Why `out_dir` may not be written into ("" when it may): it must be new, empty, or hold kOutMarker,
// and hold no symbolic link (a heat map written through one would land elsewhere).
std::string out_dir_problem(const fs::path& out_dir) {
  const fs::file_status status = fs::symlink_status(out_dir);
  if (!fs::exists(status)) return "";
  if (!fs::is_directory(status)) return out_dir.string() + " exists and is not a folder";
  bool empty = true;
  for (const auto& entry : fs::directory_iterator(out_dir)) {
    empty = false;
    if (entry.is_symlink()) return out_dir.string() + " holds a symbolic link: " + entry.path().string();
  }
  if (!empty && !fs::is_regular_file(fs::symlink_status(out_dir / kOutMarker))) {
    return out_dir.string() + " holds files that inspect_folder did not write; give a new or empty folder, "
           "or one an earlier inspect_folder run wrote";
  }
  return "";
}

// JET heat map of `map` (CV_32F, image size) blended over `image_bgr` (CV_8UC3), as
// cpr_engine.overlay.heatmap_overlay draws it.
cv::Mat heatmap_overlay(const cv::Mat& image_bgr, const cv::Mat& map, std::pair<float, float> normal) {
  const float low = normal.first, span = 2.f * std::max(normal.second - normal.first, 1e-12f);
  cv::Mat level, heat, blended;
  map.convertTo(level, CV_8U, 255.0 / span, -255.0 * low / span);  // saturates to [0, 255]
  cv::applyColorMap(level, heat, cv::COLORMAP_JET);
  cv::addWeighted(image_bgr, 0.5, heat, 0.5, 0.0, blended);
  return blended;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  cpr::Backend backend = cpr::Backend::kAuto;
  if (args.size() == 5 && args[0] == "--backend" && kBackends.count(args[1])) {
    backend = kBackends.at(args[1]);
    args.erase(args.begin(), args.begin() + 2);
  }
  if (args.size() != 3) {
    std::cerr << "usage: " << argv[0] << " [--backend auto|opencv|tensorrt] ARTIFACT_DIR IMAGE_DIR OUT_DIR\n";
    return 2;
  }
  const fs::path images_dir = args[1], out_dir = args[2];
  std::vector<fs::path> files;
  try {
    files = list_images(images_dir);
    std::map<std::string, fs::path> by_stem;
    for (const fs::path& file : files) {
      const auto [other, fresh] = by_stem.emplace(file.stem().string(), file);
      if (!fresh) {
        std::cerr << "error: " << other->second.filename().string() << " and " << file.filename().string()
                  << " would write the same heat map " << (out_dir / (file.stem().string() + ".png")).string() << "\n";
        return 2;
      }
    }
    const std::string problem = out_dir_problem(out_dir);
    if (!problem.empty()) {
      std::cerr << "error: OUT_DIR " << problem << "\n";
      return 2;
    }
  } catch (const fs::filesystem_error& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 2;
  }
  cpr::Detector detector = [&] {
    try {
      return cpr::Detector::load(args[0], backend);
    } catch (const std::exception& e) {
      std::cerr << "error: cannot load the artifact: " << e.what() << "\n";
      std::exit(2);
    }
  }();

  if (files.empty()) {
    std::cerr << "error: no images in " << images_dir.string() << " (.png .jpg .jpeg .bmp .tif .tiff .webp)\n";
    return 2;
  }
  try {
    fs::create_directories(out_dir);
    std::FILE* marker = std::fopen((out_dir / kOutMarker).string().c_str(), "w");
    if (marker == nullptr) throw std::runtime_error("cannot write " + (out_dir / kOutMarker).string());
    std::fputs("written by cpr-engine inspect_folder\n", marker);
    std::fclose(marker);
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 2;
  }
  int failures = 0, scored = 0;
  const auto start = std::chrono::steady_clock::now();
  for (const fs::path& file : files) {
    try {
      const cv::Mat image = read_complete_image(file);
      const cpr::Prediction p = detector.predict(image);
      const fs::path heatmap = out_dir / (file.stem().string() + ".png");
      if (!cv::imwrite(heatmap.string(), heatmap_overlay(image, p.anomaly_map, detector.pixel_normal()))) {
        throw std::runtime_error("cannot write " + heatmap.string());
      }
      std::printf("%s\t%.9g\t%s\n", file.filename().c_str(), p.score, p.is_anomalous ? "anomalous" : "good");
      ++scored;
    } catch (const std::exception& e) {
      std::cerr << "error: " << file.string() << ": " << e.what() << "\n";
      ++failures;
    }
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("# %d images in %.3f s: %.1f images/s, backend %s\n", scored, seconds, scored / std::max(seconds, 1e-9),
              backend_name(detector.backend()).c_str());
  return failures ? 1 : 0;
}
