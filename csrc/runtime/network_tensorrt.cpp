// Network on TensorRT 10+ (a serialized plan): named I/O tensors, enqueueV3, CUDA runtime buffers
// allocated once, one stream synchronisation per run.
#include <NvInferRuntime.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <fstream>
#include <iostream>
#include <iterator>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "cpr/detector.h"
#include "contract.h"
#include "network.h"

namespace cpr {
namespace runtime {
namespace {

using namespace contract;  // NOLINT: the graph's names

const char* const kOutputs[] = {kDescriptorOutputs[0], kDescriptorOutputs[1], kForegroundOutput, kFeaturesOutput};

void cuda_check(cudaError_t status, const char* what) {
  if (status != cudaSuccess) throw std::runtime_error(std::string("CUDA: ") + what + ": " + cudaGetErrorString(status));
}

// Prints warnings and errors on stderr and keeps the last error for exception messages.
class Logger : public nvinfer1::ILogger {
 public:
  void log(Severity severity, const char* msg) noexcept override {
    if (severity > Severity::kWARNING) return;
    std::cerr << "TensorRT: " << msg << "\n";
    if (severity <= Severity::kERROR) {
      try {
        last_error_ = msg;
      } catch (...) {
      }
    }
  }
  // " (TensorRT: <last error>)", or "" when none was reported.
  std::string reason() const { return last_error_.empty() ? "" : " (TensorRT: " + last_error_ + ")"; }

 private:
  std::string last_error_;
};

struct DeviceFree {
  void operator()(void* p) const { cudaFree(p); }
};
struct HostFree {
  void operator()(void* p) const { cudaFreeHost(p); }
};
struct StreamDestroy {
  void operator()(cudaStream_t s) const { cudaStreamDestroy(s); }
};

// One I/O tensor: a device buffer bound to the context and a pinned host mirror (same shape, the
// engine's dtype as CV_32F or CV_16F).
struct Tensor {
  bool is_input = false;
  std::unique_ptr<void, DeviceFree> device;
  std::unique_ptr<void, HostFree> pinned;
  cv::Mat host;  // header over `pinned`

  size_t bytes() const { return host.total() * host.elemSize(); }
};

std::string dims_string(const nvinfer1::Dims& d) {
  std::string s = "(";
  for (int i = 0; i < d.nbDims; ++i) s += (i ? ", " : "") + std::to_string(d.d[i]);
  return s + ")";
}

std::vector<char> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ArtifactError(path + ": cannot open the TensorRT plan");
  return std::vector<char>(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

class TensorRTNetwork : public Network {
 public:
  TensorRTNetwork(const std::string& plan_path, int image_size) : path_(plan_path) {
    const std::vector<char> plan = read_file(plan_path);
    runtime_.reset(nvinfer1::createInferRuntime(logger_));
    if (!runtime_) throw std::runtime_error("TensorRT: cannot create the runtime" + logger_.reason());
    engine_.reset(runtime_->deserializeCudaEngine(plan.data(), plan.size()));
    if (!engine_) {
      throw ArtifactError(path_ + ": TensorRT " + std::to_string(NV_TENSORRT_MAJOR) + "." +
                          std::to_string(NV_TENSORRT_MINOR) + " cannot deserialize the plan (built for another GPU " +
                          "or TensorRT version? rebuild it on this machine with export/build_plan.py)" +
                          logger_.reason());
    }
    context_.reset(engine_->createExecutionContext());
    if (!context_) throw std::runtime_error(path_ + ": TensorRT cannot create an execution context" + logger_.reason());
    cudaStream_t stream = nullptr;
    cuda_check(cudaStreamCreate(&stream), "cudaStreamCreate");
    stream_.reset(stream);
    set_input_shape(image_size);
    for (int32_t i = 0; i < engine_->getNbIOTensors(); ++i) bind(engine_->getIOTensorName(i));
    for (const char* name : kOutputs) output(name);
  }

  ~TensorRTNetwork() override { cudaStreamSynchronize(stream_.get()); }

  NetworkOutput run(const cv::Mat& images) override {
    Tensor& in = tensors_.at(kGraphInput);
    if (images.type() != CV_32F || images.size != in.host.size) {
      throw std::invalid_argument(path_ + ": the input must be CV_32F of the plan's bound shape");
    }
    images.convertTo(in.host, in.host.type());  // same shape and type: writes into the pinned buffer
    cuda_check(cudaMemcpyAsync(in.device.get(), in.host.data, in.bytes(), cudaMemcpyHostToDevice, stream_.get()),
               "copy of the input to the GPU");
    if (!context_->enqueueV3(stream_.get())) {
      throw std::runtime_error(path_ + ": TensorRT enqueueV3 failed" + logger_.reason());
    }
    for (auto& [name, t] : tensors_) {
      if (!t.is_input) {
        cuda_check(cudaMemcpyAsync(t.host.data, t.device.get(), t.bytes(), cudaMemcpyDeviceToHost, stream_.get()),
                   "copy of an output from the GPU");
      }
    }
    cuda_check(cudaStreamSynchronize(stream_.get()), "the network run");
    return {as_float(kDescriptorOutputs[0]), as_float(kDescriptorOutputs[1]), as_float(kForegroundOutput),
            as_float(kFeaturesOutput)};
  }

 private:
  void set_input_shape(int image_size) {
    if (engine_->getTensorIOMode(kGraphInput) != nvinfer1::TensorIOMode::kINPUT) {
      throw ArtifactError(path_ + ": the plan has no input '" + kGraphInput + "'");
    }
    nvinfer1::Dims dims;
    dims.nbDims = 4;
    dims.d[0] = 1, dims.d[1] = 3, dims.d[2] = image_size, dims.d[3] = image_size;
    if (!context_->setInputShape(kGraphInput, dims)) {
      throw ArtifactError(path_ + ": the plan does not accept input shape " + dims_string(dims) + " (its input is " +
                          dims_string(engine_->getTensorShape(kGraphInput)) + ")" + logger_.reason());
    }
  }

  // Allocates the buffers of one I/O tensor at the context's (resolved) shape and binds them.
  void bind(const char* name) {
    const bool is_input = engine_->getTensorIOMode(name) == nvinfer1::TensorIOMode::kINPUT;
    if (is_input && std::string(name) != kGraphInput) {
      throw ArtifactError(path_ + ": the plan has an input '" + name + "'; the C++ runtime feeds only '" + kGraphInput +
                          "'");
    }
    const nvinfer1::DataType dtype = engine_->getTensorDataType(name);
    if (dtype != nvinfer1::DataType::kFLOAT && dtype != nvinfer1::DataType::kHALF) {
      throw ArtifactError(path_ + ": tensor '" + name + "' has TensorRT data type " + std::to_string(int(dtype)) +
                          "; the C++ runtime handles float32 and float16");
    }
    if (engine_->getTensorFormat(name) != nvinfer1::TensorFormat::kLINEAR) {
      throw ArtifactError(path_ + ": tensor '" + name + "' is not in the linear (row-major) format");
    }
    const nvinfer1::Dims dims = context_->getTensorShape(name);
    std::vector<int> shape(dims.d, dims.d + std::max(dims.nbDims, 0));
    if (dims.nbDims < 1 || std::any_of(shape.begin(), shape.end(), [](int n) { return n < 0; })) {
      throw ArtifactError(path_ + ": tensor '" + name + "' has no fixed shape at batch 1: " + dims_string(dims));
    }
    const int type = dtype == nvinfer1::DataType::kHALF ? CV_16F : CV_32F;
    size_t bytes = CV_ELEM_SIZE(type);
    for (int n : shape) bytes *= size_t(n);
    Tensor& t = tensors_[name];
    t.is_input = is_input;
    void* device = nullptr;
    void* pinned = nullptr;
    cuda_check(cudaMalloc(&device, bytes), "cudaMalloc");
    t.device.reset(device);
    cuda_check(cudaMallocHost(&pinned, bytes), "cudaMallocHost");
    t.pinned.reset(pinned);
    t.host = cv::Mat(shape, type, pinned);
    if (!context_->setTensorAddress(name, device)) {
      throw std::runtime_error(path_ + ": TensorRT setTensorAddress failed for '" + name + "'" + logger_.reason());
    }
  }

  const Tensor& output(const char* name) const {
    const auto it = tensors_.find(name);
    if (it == tensors_.end() || it->second.is_input) {
      throw ArtifactError(path_ + ": the plan has no output '" + name + "'");
    }
    return it->second;
  }

  // A float32 copy of an output's host mirror.
  cv::Mat as_float(const char* name) const {
    cv::Mat out;
    output(name).host.convertTo(out, CV_32F);
    return out;
  }

  std::string path_;
  Logger logger_;  // outlives the TensorRT objects below (members are destroyed in reverse order)
  std::unique_ptr<nvinfer1::IRuntime> runtime_;
  std::unique_ptr<nvinfer1::ICudaEngine> engine_;
  std::unique_ptr<nvinfer1::IExecutionContext> context_;
  std::unique_ptr<CUstream_st, StreamDestroy> stream_;
  std::map<std::string, Tensor> tensors_;
};

}  // namespace

std::string cuda_device_unavailable_reason() {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) return std::string("no usable CUDA device (") + cudaGetErrorString(status) + ")";
  return count > 0 ? "" : "no CUDA device";
}

std::unique_ptr<Network> make_tensorrt_network(const std::string& plan_path, int image_size) {
  return std::make_unique<TensorRTNetwork>(plan_path, image_size);
}

}  // namespace runtime
}  // namespace cpr
