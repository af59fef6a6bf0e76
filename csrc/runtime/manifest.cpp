#include "manifest.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "cpr/detector.h"
#include "sha256.h"

namespace cpr {
namespace runtime {
namespace {

using nlohmann::json;

// A manifest setting, with an error naming the key when it is absent or of another type.
template <typename T>
T setting(const json& manifest, const std::string& key, const std::string& manifest_path) {
  try {
    return manifest.at(key).get<T>();
  } catch (const json::exception& e) {
    throw ArtifactError(manifest_path + ": setting '" + key + "' missing or invalid (" + e.what() + ")");
  }
}

// A regular file (links followed): opening a FIFO blocks and a device never ends, so neither is read.
bool is_file(const std::string& path) {
  std::error_code error;
  return std::filesystem::is_regular_file(path, error);
}

void check_format(const json& manifest, const Manifest& m, const std::string& manifest_path) {
  if (!manifest.is_object() || manifest.value("format", json()) != contract::kArtifactFormat) {
    throw ArtifactError(manifest_path + ": not a cpr-engine artifact manifest (format tag '" +
                        std::string(contract::kArtifactFormat) + "' missing)");
  }
  const json version = manifest.value("format_version", json());
  if (!version.is_number_integer() || version.get<int64_t>() < contract::kArtifactMinFormatVersion ||
      version.get<int64_t>() > contract::kArtifactFormatVersion) {
    throw ArtifactError(m.folder + ": artifact format version " + version.dump() + "; this engine reads versions 1.." +
                        std::to_string(contract::kArtifactFormatVersion) + " (re-export the model, or upgrade cpr-engine)");
  }
}

void verify_files(const json& files, Manifest& m, const std::string& manifest_path) {
  if (!files.is_object() || files.empty()) throw ArtifactError(manifest_path + ": manifest lists no files");
  for (const auto& [name, entry] : files.items()) {
    if (name.empty() || name.find('/') != std::string::npos || name == "." || name == "..") {
      throw ArtifactError(manifest_path + ": file name '" + name + "' is not a plain name");
    }
    if (!is_file(m.path(name))) throw ArtifactError(m.folder + ": file " + name + " listed in the manifest is missing");
    const std::string expected = entry.is_object() ? entry.value("sha256", std::string()) : std::string();
    if (sha256_file(m.path(name)) != expected) {
      throw ArtifactError(m.folder + ": checksum mismatch for " + name + " (tampered or corrupted file)");
    }
    m.files.push_back(name);
  }
}

// manifest.sha256 ("<hex>  manifest.json", as sha256sum writes it) must hold the digest of manifest.json.
void verify_manifest_digest(const Manifest& m, const std::string& manifest_path) {
  const std::string digest_path = m.path(contract::kManifestDigest);
  std::ifstream in;
  if (is_file(digest_path)) in.open(digest_path);
  std::string recorded;
  if (!in.is_open() || !(in >> recorded)) {
    throw ArtifactError(m.folder + " has no " + std::string(contract::kManifestDigest) +
                        " (written by an older engine or tampered); re-export the model with this engine");
  }
  for (char& c : recorded) c = char(std::tolower(static_cast<unsigned char>(c)));
  if (sha256_file(manifest_path) != recorded) {
    throw ArtifactError(m.folder + ": checksum mismatch for " + std::string(contract::kManifest) + " (does not match " +
                        std::string(contract::kManifestDigest) + "; tampered or corrupted manifest)");
  }
}

// Python's repr() of a manifest value (null, booleans, numbers, strings, lists), so that a refused
// setting reads the same as from the Python runtime.
std::string python_repr(const json& value) {
  if (value.is_null()) return "None";
  if (value.is_boolean()) return value.get<bool>() ? "True" : "False";
  if (value.is_string()) return "'" + value.get<std::string>() + "'";
  if (value.is_array()) {
    std::string out = "[";
    for (size_t i = 0; i < value.size(); ++i) out += (i ? ", " : "") + python_repr(value[i]);
    return out + "]";
  }
  return value.dump();
}

bool is_int_at_least(const json& value, int64_t low) {
  return value.is_number_integer() && value.get<int64_t>() >= low;
}

bool is_finite_number(const json& value) {
  return value.is_number() && std::isfinite(value.get<double>());
}

// Python's format(value, ".6g") (the same as printf's %.6g).
std::string format_g(double value) {
  char text[32];
  std::snprintf(text, sizeof text, "%.6g", value);
  return text;
}

// The range checks of cpr_engine.runtime.artifact.check_settings, with its rules and messages, for
// the settings that size the runtime's buffers and loops (strides, image_size, n_train, grid, top_k,
// windows, blur_sigma, top_t) and decide the verdict (pixel_normal, threshold). Like Python, a
// setting that is absent is not checked here (the reader requires its own). Throws ArtifactError
// naming the folder, the setting, its value and what is allowed.
void check_settings(const json& manifest, const Manifest& m) {
  const auto bad = [&](const std::string& key, const std::string& allowed) {
    return ArtifactError(m.folder + ": manifest setting '" + key + "' = " + python_repr(manifest.value(key, json())) +
                         " is not allowed: must be " + allowed);
  };
  const json strides = manifest.value("strides", json());
  if (!strides.is_null() &&
      !(strides.is_array() && strides.size() == 2 && is_int_at_least(strides[0], 1) &&
        strides[1].is_number_integer() && strides[0].get<int64_t>() < strides[1].get<int64_t>())) {
    throw bad("strides", "two increasing integer strides >= 1 (fine, coarse)");
  }
  const json size = manifest.value("image_size", json());
  if (!size.is_null()) {
    const int64_t largest = strides.is_null() ? 1 : strides[1].get<int64_t>();
    if (!(is_int_at_least(size, 1) && size.get<int64_t>() % largest == 0)) {
      throw bad("image_size", "a positive multiple of the largest stride (" + std::to_string(largest) + ")");
    }
  }
  const json n_train = manifest.value("n_train", json());
  if (manifest.contains("n_train") && !is_int_at_least(n_train, 1)) throw bad("n_train", "an integer >= 1");
  const json fine_side = size.is_null() || strides.is_null()
                             ? json()
                             : json(size.get<int64_t>() / strides[0].get<int64_t>());
  if (manifest.contains("grid")) {
    const json& grid = manifest["grid"];
    if (!(is_int_at_least(grid, 1) && (fine_side.is_null() || grid.get<int64_t>() <= fine_side.get<int64_t>()))) {
      throw bad("grid", "an integer in [1, fine map side = " + python_repr(fine_side) + "]");
    }
  }
  if (manifest.contains("top_k")) {
    const json& top_k = manifest["top_k"];
    if (!(is_int_at_least(top_k, 1) && (n_train.is_null() || top_k.get<int64_t>() <= n_train.get<int64_t>()))) {
      throw bad("top_k", "an integer in [1, n_train = " + python_repr(n_train) + "] (the number of training images)");
    }
  }
  if (manifest.contains("windows")) {
    const json& windows = manifest["windows"];
    json sides = json::array(), limits = json::array();
    if (!size.is_null() && !strides.is_null()) {
      for (const json& stride : strides) {
        sides.push_back(size.get<int64_t>() / stride.get<int64_t>());
        limits.push_back(2 * sides.back().get<int64_t>() - 1);
      }
    }
    bool ok = windows.is_array() && windows.size() == 2;
    for (size_t i = 0; ok && i < 2; ++i) {
      const json& r = windows[i];
      ok = is_int_at_least(r, 1) && r.get<int64_t>() % 2 == 1 &&
           (limits.empty() || r.get<int64_t>() <= limits[i].get<int64_t>());
    }
    if (!ok) {
      const std::string limit_text = limits.empty() ? "" : ", at most " + python_repr(limits) +
                                     " (2 x map side - 1; map sides " + python_repr(sides) + ")";
      throw bad("windows", "two odd integers >= 1 (fine, coarse scale)" + limit_text);
    }
  }
  if (manifest.contains("blur_sigma")) {
    const json& sigma = manifest["blur_sigma"];
    if (!(is_finite_number(sigma) && sigma.get<double>() >= 0 &&
          (size.is_null() || sigma.get<double>() <= size.get<double>()))) {
      throw bad("blur_sigma", "a finite number in [0, image_size = " + python_repr(size) + "]");
    }
  }
  const json pixels = size.is_null() ? json() : json(size.get<int64_t>() * size.get<int64_t>());
  if (manifest.contains("top_t")) {
    const json& top_t = manifest["top_t"];
    if (!(is_int_at_least(top_t, 1) && (pixels.is_null() || top_t.get<int64_t>() <= pixels.get<int64_t>()))) {
      throw bad("top_t", "an integer in [1, image_size^2 = " + python_repr(pixels) + "]");
    }
  }
  const json normal = manifest.value("pixel_normal", json());
  if (!normal.is_null() &&
      !(normal.is_array() && normal.size() == 2 && is_finite_number(normal[0]) && is_finite_number(normal[1]) &&
        0 <= normal[0].get<double>() && normal[0].get<double>() <= normal[1].get<double>() &&
        normal[1].get<double>() <= contract::kPixelScoreMax)) {
    throw bad("pixel_normal", "two finite numbers 0 <= median <= max <= " + format_g(contract::kPixelScoreMax));
  }
  if (manifest.contains("threshold")) {
    const json& threshold = manifest["threshold"];
    if (!(is_finite_number(threshold) && threshold.get<double>() >= 0)) throw bad("threshold", "a finite number >= 0");
    const json top_t = manifest.value("top_t", json());
    if (!normal.is_null() && top_t.is_number_integer() && !pixels.is_null()) {
      // training keeps the threshold at most this (inputs.score_bound): a larger one would pass
      // real defects as good
      const double bound = double(std::min(top_t.get<int64_t>(), pixels.get<int64_t>())) * normal[1].get<double>();
      if (threshold.get<double>() > bound * (1 + contract::kThresholdBoundSlack) + 1e-6) {
        throw bad("threshold", "a finite number in [0, " + format_g(bound) +
                                   "] (top_t x the largest leave-one-out pixel score, pixel_normal[1])");
      }
    }
  }
}

}  // namespace

Manifest read_manifest(const std::string& folder, const std::vector<std::string>& required) {
  Manifest m;
  m.folder = folder;
  const std::string manifest_path = m.path(contract::kManifest);
  std::ifstream in;
  if (is_file(manifest_path)) in.open(manifest_path);
  if (!in.is_open() || !in) throw ArtifactError(folder + " is not a cpr-engine artifact: no " + contract::kManifest);
  json manifest;
  try {
    in >> manifest;
  } catch (const json::exception& e) {
    throw ArtifactError(manifest_path + ": unreadable manifest (" + e.what() + ")");
  }
  check_format(manifest, m, manifest_path);
  verify_manifest_digest(m, manifest_path);
  verify_files(manifest.value("files", json()), m, manifest_path);
  for (const std::string& name : required) {
    if (!manifest["files"].contains(name)) {
      throw ArtifactError(folder + ": file " + name + " (needed by the C++ runtime) is not listed in the manifest");
    }
  }
  check_settings(manifest, m);
  m.image_size = setting<int64_t>(manifest, "image_size", manifest_path);
  m.top_k = setting<int64_t>(manifest, "top_k", manifest_path);
  m.strides = setting<std::vector<int64_t>>(manifest, "strides", manifest_path);
  m.windows = setting<std::vector<int64_t>>(manifest, "windows", manifest_path);
  m.kept_blocks = setting<int64_t>(manifest, "kept_blocks", manifest_path);
  m.grid = setting<int64_t>(manifest, "grid", manifest_path);
  m.blur_sigma = setting<float>(manifest, "blur_sigma", manifest_path);
  m.top_t = setting<int64_t>(manifest, "top_t", manifest_path);
  m.use_foreground = setting<bool>(manifest, "use_foreground", manifest_path);
  if (manifest.contains("foreground_on_map")) {  // format 4 artifacts have none: the map was weighted
    m.foreground_on_map = setting<bool>(manifest, "foreground_on_map", manifest_path);
  }
  m.threshold = setting<double>(manifest, "threshold", manifest_path);
  const auto normal = setting<std::vector<float>>(manifest, "pixel_normal", manifest_path);
  m.pixel_normal = {normal[0], normal[1]};
  return m;
}

}  // namespace runtime
}  // namespace cpr
