#include "manifest.h"

#include <cctype>
#include <cmath>
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

bool is_file(const std::string& path) { return std::ifstream(path, std::ios::binary).good(); }

void check_format(const json& manifest, const Manifest& m, const std::string& manifest_path) {
  if (!manifest.is_object() || manifest.value("format", json()) != kArtifactFormat) {
    throw ArtifactError(manifest_path + ": not a cpr-engine artifact manifest (format tag '" +
                        std::string(kArtifactFormat) + "' missing)");
  }
  const json version = manifest.value("format_version", json());
  if (!version.is_number_integer() || version.get<int64_t>() < 1 || version.get<int64_t>() > kArtifactFormatVersion) {
    throw ArtifactError(m.folder + ": artifact format version " + version.dump() + "; this engine reads versions 1.." +
                        std::to_string(kArtifactFormatVersion) + " (re-export the model, or upgrade cpr-engine)");
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
  const std::string digest_path = m.path(kManifestDigestName);
  std::ifstream in(digest_path);
  std::string recorded;
  if (!in || !(in >> recorded)) {
    throw ArtifactError(m.folder + " has no " + std::string(kManifestDigestName) +
                        " (written by an older engine or tampered); re-export the model with this engine");
  }
  for (char& c : recorded) c = char(std::tolower(static_cast<unsigned char>(c)));
  if (sha256_file(manifest_path) != recorded) {
    throw ArtifactError(m.folder + ": checksum mismatch for " + std::string(kManifestName) + " (does not match " +
                        std::string(kManifestDigestName) + "; tampered or corrupted manifest)");
  }
}

}  // namespace

Manifest read_manifest(const std::string& folder, const std::vector<std::string>& required) {
  Manifest m;
  m.folder = folder;
  const std::string manifest_path = m.path(kManifestName);
  std::ifstream in(manifest_path);
  if (!in) throw ArtifactError(folder + " is not a cpr-engine artifact: no " + kManifestName);
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
  m.image_size = setting<int64_t>(manifest, "image_size", manifest_path);
  m.top_k = setting<int64_t>(manifest, "top_k", manifest_path);
  m.strides = setting<std::vector<int64_t>>(manifest, "strides", manifest_path);
  m.windows = setting<std::vector<int64_t>>(manifest, "windows", manifest_path);
  m.kept_blocks = setting<int64_t>(manifest, "kept_blocks", manifest_path);
  m.grid = setting<int64_t>(manifest, "grid", manifest_path);
  m.blur_sigma = setting<float>(manifest, "blur_sigma", manifest_path);
  m.top_t = setting<int64_t>(manifest, "top_t", manifest_path);
  m.use_foreground = setting<bool>(manifest, "use_foreground", manifest_path);
  m.threshold = setting<double>(manifest, "threshold", manifest_path);
  if (!std::isfinite(m.threshold) || m.threshold < 0) {
    throw ArtifactError(manifest_path + ": setting 'threshold' must be a finite number >= 0");
  }
  const auto normal = setting<std::vector<float>>(manifest, "pixel_normal", manifest_path);
  if (normal.size() != 2) throw ArtifactError(manifest_path + ": setting 'pixel_normal' must hold 2 values");
  m.pixel_normal = {normal[0], normal[1]};
  if (m.windows.size() != 2) {
    throw ArtifactError(manifest_path + ": setting 'windows' must hold 2 values (one per scale); got " +
                        std::to_string(m.windows.size()));
  }
  if (m.strides.size() != 2 || m.strides[0] < 1 || m.strides[1] <= m.strides[0] ||
      m.image_size % m.strides[1] != 0) {
    throw ArtifactError(manifest_path + ": setting 'strides' must hold 2 increasing strides that divide "
                        "image_size " + std::to_string(m.image_size));
  }
  return m;
}

}  // namespace runtime
}  // namespace cpr
