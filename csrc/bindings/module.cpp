// cpr_engine._C: Python bindings of cpr/ops.h and cpr/tail.h. Convert, check, release the GIL, call; nothing else.
//
// Host functions take numpy.ndarray inputs (never converted) and return new arrays.
// `_C.cuda.<op>` take device-buffer descriptors (data_ptr, shape, dtype, contiguous) for inputs and
// caller-allocated outputs plus a cudaStream_t as an int, and return nothing.
// std::invalid_argument -> ValueError, std::out_of_range -> IndexError, TypeError for non-arrays.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>
#include <vector>

#include "bindings/arrays.h"
#include "cpr/ops.h"
#include "cpr/tail.h"

namespace py = pybind11;
using cpr::binding::ArrayRef;
using cpr::binding::Dim;
using cpr::binding::Spec;

namespace {

using Fetch = ArrayRef (*)(py::handle, const Spec&);

std::vector<py::ssize_t> dims(std::initializer_list<int64_t> d) {
  std::vector<py::ssize_t> out;
  for (int64_t v : d) out.push_back(static_cast<py::ssize_t>(v < 0 ? 0 : v));
  return out;
}

cpr::Context cuda_context(uintptr_t stream) {
  return cpr::Context{cpr::Device::kCUDA, reinterpret_cast<void*>(stream)};
}

// ---- codebook_histogram ------------------------------------------------------------------------
struct CodebookArgs {
  ArrayRef features, centers;
  int64_t B, C, H, W, M;
};

CodebookArgs codebook_args(py::handle features, py::handle centers, Fetch fetch) {
  const char* op = "codebook_histogram";
  CodebookArgs a;
  a.features = fetch(features, Spec{op, "features", {{"B"}, {"C"}, {"H"}, {"W"}}, {"float32"}});
  a.B = a.features.shape[0], a.C = a.features.shape[1], a.H = a.features.shape[2],
  a.W = a.features.shape[3];
  a.centers = fetch(centers, Spec{op, "centers", {{"M"}, {"C", a.C}}, {"float32"},
                                  " to match features " + cpr::binding::shape_str(a.features.shape)});
  a.M = a.centers.shape[0];
  return a;
}

py::tuple codebook_histogram_host(py::handle features, py::handle centers, int64_t grid) {
  CodebookArgs a = codebook_args(features, centers, cpr::binding::host_input);
  py::array_t<int64_t> ids(dims({a.B, a.H, a.W}));
  py::array_t<float> hists(dims({a.B, grid * grid, a.M + 1}));
  int64_t* ids_p = ids.mutable_data();
  float* hists_p = hists.mutable_data();
  {
    py::gil_scoped_release release;
    cpr::codebook_histogram(static_cast<const float*>(a.features.data), a.B, a.C, a.H, a.W,
                            static_cast<const float*>(a.centers.data), a.M, grid, ids_p, hists_p);
  }
  return py::make_tuple(ids, hists);
}

void codebook_histogram_cuda(py::handle features, py::handle centers, int64_t grid,
                             py::handle ids, py::handle hists, uintptr_t stream) {
  const char* op = "codebook_histogram";
  CodebookArgs a = codebook_args(features, centers, cpr::binding::device_array);
  ArrayRef i = cpr::binding::device_array(ids, Spec{op, "ids", {{"B", a.B}, {"H", a.H}, {"W", a.W}}, {"int64"}});
  ArrayRef h = cpr::binding::device_array(
      hists, Spec{op, "hists", {{"B", a.B}, {"S*S", grid * grid}, {"M+1", a.M + 1}}, {"float32"}});
  py::gil_scoped_release release;
  cpr::codebook_histogram(static_cast<const float*>(a.features.data), a.B, a.C, a.H, a.W,
                          static_cast<const float*>(a.centers.data), a.M, grid,
                          static_cast<int64_t*>(i.data), static_cast<float*>(h.data),
                          cuda_context(stream));
}

// ---- hist_match --------------------------------------------------------------------------------
struct HistArgs {
  ArrayRef query, refs;
  int64_t B, N, S2, M1;
};

HistArgs hist_args(py::handle query, py::handle refs, Fetch fetch) {
  const char* op = "hist_match";
  HistArgs a;
  a.query = fetch(query, Spec{op, "query", {{"B"}, {"S*S"}, {"M+1"}}, {"float32"}});
  a.B = a.query.shape[0], a.S2 = a.query.shape[1], a.M1 = a.query.shape[2];
  a.refs = fetch(refs, Spec{op, "refs", {{"N"}, {"S*S", a.S2}, {"M+1", a.M1}}, {"float32"},
                            " to match query " + cpr::binding::shape_str(a.query.shape)});
  a.N = a.refs.shape[0];
  return a;
}

py::array_t<float> hist_match_host(py::handle query, py::handle refs, int64_t kept_blocks) {
  HistArgs a = hist_args(query, refs, cpr::binding::host_input);
  py::array_t<float> out(dims({a.B, a.N}));
  float* out_p = out.mutable_data();
  {
    py::gil_scoped_release release;
    cpr::hist_match(static_cast<const float*>(a.query.data), a.B,
                    static_cast<const float*>(a.refs.data), a.N, a.S2, a.M1, kept_blocks, out_p);
  }
  return out;
}

void hist_match_cuda(py::handle query, py::handle refs, int64_t kept_blocks, py::handle distances,
                     uintptr_t stream) {
  HistArgs a = hist_args(query, refs, cpr::binding::device_array);
  ArrayRef d = cpr::binding::device_array(
      distances, Spec{"hist_match", "distances", {{"B", a.B}, {"N", a.N}}, {"float32"}});
  py::gil_scoped_release release;
  cpr::hist_match(static_cast<const float*>(a.query.data), a.B,
                  static_cast<const float*>(a.refs.data), a.N, a.S2, a.M1, kept_blocks,
                  static_cast<float*>(d.data), cuda_context(stream));
}

// ---- top_k -------------------------------------------------------------------------------------
struct TopKArgs {
  ArrayRef distances, exclude;
  bool has_exclude = false;
  int64_t B, N;
};

TopKArgs top_k_args(py::handle distances, py::handle exclude, Fetch fetch) {
  const char* op = "top_k";
  TopKArgs a;
  a.distances = fetch(distances, Spec{op, "distances", {{"B"}, {"N"}}, {"float32"}});
  a.B = a.distances.shape[0], a.N = a.distances.shape[1];
  if (!exclude.is_none()) {
    a.exclude = fetch(exclude, Spec{op, "exclude", {{"B", a.B}}, {"int64"},
                                    " to match distances " +
                                        cpr::binding::shape_str(a.distances.shape)});
    a.has_exclude = true;
  }
  return a;
}

py::array_t<int64_t> top_k_host(py::handle distances, int64_t k, py::handle exclude) {
  TopKArgs a = top_k_args(distances, exclude, cpr::binding::host_input);
  py::array_t<int64_t> out(dims({a.B, cpr::top_k_count(a.N, k, a.has_exclude)}));
  int64_t* out_p = out.mutable_data();
  {
    py::gil_scoped_release release;
    cpr::top_k(static_cast<const float*>(a.distances.data), a.B, a.N, k,
               a.has_exclude ? static_cast<const int64_t*>(a.exclude.data) : nullptr, out_p);
  }
  return out;
}

void top_k_cuda(py::handle distances, int64_t k, py::handle exclude, py::handle indices,
                uintptr_t stream) {
  TopKArgs a = top_k_args(distances, exclude, cpr::binding::device_array);
  ArrayRef i = cpr::binding::device_array(
      indices,
      Spec{"top_k", "indices", {{"B", a.B}, {"K", cpr::top_k_count(a.N, k, a.has_exclude)}}, {"int64"}});
  py::gil_scoped_release release;
  cpr::top_k(static_cast<const float*>(a.distances.data), a.B, a.N, k,
             a.has_exclude ? static_cast<const int64_t*>(a.exclude.data) : nullptr,
             static_cast<int64_t*>(i.data), cuda_context(stream));
}

// ---- nn_search ---------------------------------------------------------------------------------
struct NNArgs {
  std::vector<cpr::NNSearchScale> scales;
  ArrayRef index;
  int64_t B = 0, K = 0;
};

// scales: sequence of (query, bank, window[, out]); outputs are checked when `with_out`.
NNArgs nn_args(py::sequence scales, py::handle index, Fetch fetch, bool with_out) {
  const char* op = "nn_search";
  const size_t n = py::len(scales);
  if (n == 0) throw std::invalid_argument("nn_search: scales must hold at least one scale; got 0");
  NNArgs a;
  for (size_t i = 0; i < n; ++i) {
    py::handle item = scales[i];
    const size_t want = with_out ? 4 : 3;
    if (!py::isinstance<py::sequence>(item) || py::len(item) != want) {
      throw py::type_error(std::string("nn_search: scales[") + std::to_string(i) + "] must be a (query, bank, window" +
                           (with_out ? ", out" : "") + ") tuple");
    }
    auto t = py::reinterpret_borrow<py::sequence>(item);
    const std::string tag = n == 1 ? "" : "scales[" + std::to_string(i) + "].";
    const std::string q_arg = tag + "query", b_arg = tag + "bank", o_arg = tag + "out";
    ArrayRef q = fetch(t[0], Spec{op, q_arg.c_str(), {{"B", i == 0 ? -1 : a.B}, {"D"}, {"H"}, {"W"}}, {"float32"}});
    if (i == 0) {
      a.B = q.shape[0];
      a.index = fetch(index, Spec{op, "index", {{"B", a.B}, {"K"}}, {"int64"},
                                  " to match query " + cpr::binding::shape_str(q.shape)});
      a.K = a.index.shape[1];
    }
    const int64_t D = q.shape[1], H = q.shape[2], W = q.shape[3];
    ArrayRef b = fetch(t[1], Spec{op, b_arg.c_str(), {{"N"}, {"D", D}, {"H", H}, {"W", W}},
                                  {"float32", "float16"},
                                  " to match query " + cpr::binding::shape_str(q.shape)});
    cpr::NNSearchScale s;
    s.query = static_cast<const float*>(q.data);
    s.bank = b.data;
    s.bank_dtype = b.dtype == "float16" ? cpr::DType::kFloat16 : cpr::DType::kFloat32;
    s.n_bank = b.shape[0];
    s.dim = D;
    s.height = H;
    s.width = W;
    s.window = t[2].cast<int64_t>();
    if (with_out) {
      ArrayRef o = fetch(t[3], Spec{op, o_arg.c_str(), {{"B", a.B}, {"H", H}, {"W", W}}, {"float32"}});
      s.out = static_cast<float*>(o.data);
    }
    a.scales.push_back(s);
  }
  return a;
}

py::list nn_search_host(py::sequence scales, py::handle index) {
  NNArgs a = nn_args(scales, index, cpr::binding::host_input, false);
  py::list outs;
  for (auto& s : a.scales) {
    py::array_t<float> o(dims({a.B, s.height, s.width}));
    s.out = o.mutable_data();
    outs.append(o);
  }
  {
    py::gil_scoped_release release;
    cpr::nn_search(a.scales.data(), static_cast<int64_t>(a.scales.size()), a.B,
                   static_cast<const int64_t*>(a.index.data), a.K);
  }
  return outs;
}

void nn_search_cuda(py::sequence scales, py::handle index, uintptr_t stream, bool check_index) {
  NNArgs a = nn_args(scales, index, cpr::binding::device_array, true);
  py::gil_scoped_release release;
  cpr::nn_search(a.scales.data(), static_cast<int64_t>(a.scales.size()), a.B,
                 static_cast<const int64_t*>(a.index.data), a.K, cuda_context(stream), check_index);
}

// ---- postprocess -------------------------------------------------------------------------------
struct PostArgs {
  std::vector<cpr::MapView> maps;
  const float* foreground = nullptr;
  int64_t B = 0;
};

PostArgs post_args(py::sequence maps, py::handle foreground, Fetch fetch) {
  const char* op = "postprocess";
  const size_t n = py::len(maps);
  if (n == 0) throw std::invalid_argument("postprocess: maps must hold at least one map; got 0");
  PostArgs a;
  for (size_t i = 0; i < n; ++i) {
    const std::string arg = "maps[" + std::to_string(i) + "]";
    ArrayRef m = fetch(maps[i], Spec{op, arg.c_str(), {{"B", i == 0 ? -1 : a.B}, {"h"}, {"w"}}, {"float32"}});
    if (i == 0) a.B = m.shape[0];
    a.maps.push_back(cpr::MapView{static_cast<const float*>(m.data), m.shape[1], m.shape[2]});
  }
  if (!foreground.is_none()) {
    ArrayRef f = fetch(foreground, Spec{op, "foreground",
                                        {{"B", a.B}, {"h0", a.maps[0].height}, {"w0", a.maps[0].width}},
                                        {"float32"}, " to match maps[0]"});
    a.foreground = static_cast<const float*>(f.data);
  }
  return a;
}

py::tuple postprocess_host(py::sequence maps, py::handle foreground, int64_t out_size, float sigma,
                           int64_t top_t) {
  PostArgs a = post_args(maps, foreground, cpr::binding::host_input);
  py::array_t<float> amap(dims({a.B, out_size, out_size}));
  py::array_t<float> score(dims({a.B}));
  float* amap_p = amap.mutable_data();
  float* score_p = score.mutable_data();
  {
    py::gil_scoped_release release;
    cpr::postprocess(a.maps.data(), static_cast<int64_t>(a.maps.size()), a.B, a.foreground,
                     out_size, sigma, top_t, amap_p, score_p);
  }
  return py::make_tuple(amap, score);
}

void postprocess_cuda(py::sequence maps, py::handle foreground, int64_t out_size, float sigma,
                      int64_t top_t, py::handle anomaly_map, py::handle score, uintptr_t stream) {
  const char* op = "postprocess";
  PostArgs a = post_args(maps, foreground, cpr::binding::device_array);
  ArrayRef m = cpr::binding::device_array(
      anomaly_map, Spec{op, "anomaly_map", {{"B", a.B}, {"S", out_size}, {"S", out_size}}, {"float32"}});
  ArrayRef s = cpr::binding::device_array(score, Spec{op, "score", {{"B", a.B}}, {"float32"}});
  py::gil_scoped_release release;
  cpr::postprocess(a.maps.data(), static_cast<int64_t>(a.maps.size()), a.B, a.foreground, out_size,
                   sigma, top_t, static_cast<float*>(m.data), static_cast<float*>(s.data),
                   cuda_context(stream));
}

// ---- score_tail (the whole scoring tail of cpr/tail.h) ---------------------------------------------
struct TailArgs {
  cpr::TailState state;
  cpr::TailSettings settings;
  const float* features = nullptr;
  const float* descriptors[2] = {nullptr, nullptr};
  const float* foreground = nullptr;
  const int64_t* exclude = nullptr;
  int64_t B = 0;
};

// state: an object with the training state's arrays as attributes (cpr_engine.tail.TailState: centers,
// train_hists, banks, bank_fg, memories, location_offset, memory_sources); settings: one with grid,
// kept_blocks, top_k, windows, image_size, blur_sigma, top_t, foreground_on_map (CPRConfig, RuntimeSettings).
TailArgs tail_args(py::sequence descriptors, py::handle features, py::handle foreground, py::handle state,
                   py::handle settings, py::handle exclude, Fetch fetch) {
  const char* op = "score_tail";
  const py::object banks = state.attr("banks"), memories = state.attr("memories"), windows = settings.attr("windows");
  if (py::len(descriptors) != 2 || py::len(banks) != 2 || py::len(memories) != 2 || py::len(windows) != 2)
    throw std::invalid_argument(std::string(op) + ": descriptors, banks, memories and windows must give 2 scales");
  TailArgs a;
  a.settings = cpr::TailSettings{settings.attr("grid").cast<int64_t>(), settings.attr("kept_blocks").cast<int64_t>(),
                                 settings.attr("top_k").cast<int64_t>(), settings.attr("image_size").cast<int64_t>(),
                                 settings.attr("blur_sigma").cast<float>(), settings.attr("top_t").cast<int64_t>(),
                                 settings.attr("foreground_on_map").cast<bool>()};
  const int64_t grid = a.settings.grid;
  ArrayRef f = fetch(features, Spec{op, "features", {{"B"}, {"C"}, {"h0"}, {"h0"}}, {"float32"}});
  const int64_t B = f.shape[0], C = f.shape[1], h0 = f.shape[2];
  if (f.shape[3] != h0) throw std::invalid_argument(std::string(op) + ": features must be square (B, C, h0, h0)");
  ArrayRef c = fetch(state.attr("centers"), Spec{op, "centers", {{"n_codes"}, {"C", C}}, {"float32"}, " to match features"});
  ArrayRef h = fetch(state.attr("train_hists"), Spec{op, "train_hists", {{"N"}, {"grid^2", grid * grid}, {"n_codes+1",
                                                                                  c.shape[0] + 1}}, {"float32"}});
  const int64_t N = h.shape[0];
  cpr::TailState& tail = a.state;
  tail.centers = static_cast<const float*>(c.data);
  tail.n_codes = c.shape[0];
  tail.channels = C;
  tail.train_hists = static_cast<const float*>(h.data);
  tail.n_train = N;
  for (int s = 0; s < 2; ++s) {
    const int64_t side = s == 0 ? h0 : -1;
    ArrayRef d = fetch(descriptors[s], Spec{op, s == 0 ? "descriptors[0]" : "descriptors[1]",
                                            {{"B", B}, {"D"}, {"h", side}, {"h", side}}, {"float32"}});
    ArrayRef b = fetch(banks[py::int_(s)], Spec{op, s == 0 ? "banks[0]" : "banks[1]",
                                                {{"N", N}, {"D", d.shape[1]}, {"h", d.shape[2]}, {"h", d.shape[2]}},
                                                {"float32", "float16"}, " to match its descriptors"});
    ArrayRef m = fetch(memories[py::int_(s)], Spec{op, s == 0 ? "memories[0]" : "memories[1]",
                                                   {{"M"}, {"D", d.shape[1]}, {"h", d.shape[2]}, {"h", d.shape[2]}},
                                                   {"float32", "float16"}, " to match its descriptors"});
    if (d.shape[3] != d.shape[2]) throw std::invalid_argument(std::string(op) + ": descriptors must be square");
    a.descriptors[s] = static_cast<const float*>(d.data);
    const auto dtype = [](const ArrayRef& x) { return x.dtype == "float16" ? cpr::DType::kFloat16 : cpr::DType::kFloat32; };
    tail.scales[s] = {b.data, m.data, dtype(b), dtype(m), m.shape[0], d.shape[1], d.shape[2],
                      windows[py::int_(s)].cast<int64_t>()};
  }
  tail.location_offset = static_cast<const float*>(
      fetch(state.attr("location_offset"), Spec{op, "location_offset", {{"h0", h0}, {"h0", h0}}, {"float32"}}).data);
  if (!foreground.is_none()) {
    a.foreground = static_cast<const float*>(
        fetch(foreground, Spec{op, "foreground", {{"B", B}, {"h0", h0}, {"h0", h0}}, {"float32"}}).data);
    tail.bank_fg = static_cast<const float*>(
        fetch(state.attr("bank_fg"), Spec{op, "bank_fg", {{"N", N}, {"h0", h0}, {"h0", h0}}, {"float32"}}).data);
  }
  if (!exclude.is_none()) {  // leave-one-out: the memory's sources per scale come with it
    a.exclude = static_cast<const int64_t*>(fetch(exclude, Spec{op, "exclude", {{"B", B}}, {"int64"}}).data);
    const py::object sources = state.attr("memory_sources");
    if (sources.is_none() || py::len(sources) != 2)
      throw std::invalid_argument(std::string(op) + ": exclude needs memory_sources, one (M, h, h) int64 per scale");
    for (int s = 0; s < 2; ++s) {
      const int64_t side = tail.scales[s].side;
      tail.scales[s].memory_sources = static_cast<const int64_t*>(
          fetch(sources[py::int_(s)], Spec{op, s == 0 ? "memory_sources[0]" : "memory_sources[1]",
                                           {{"M", tail.scales[s].n_memory}, {"h", side}, {"h", side}}, {"int64"},
                                           " to match its memory"}).data);
    }
  }
  a.features = static_cast<const float*>(f.data);
  a.B = B;
  return a;
}

py::tuple score_tail_host(py::sequence descriptors, py::handle features, py::handle foreground, py::handle state,
                          py::handle settings, py::handle exclude) {
  TailArgs a = tail_args(descriptors, features, foreground, state, settings, exclude, cpr::binding::host_input);
  const int64_t S = a.settings.image_size;
  py::array_t<float> amap(dims({a.B, S, S}));
  py::array_t<float> score(dims({a.B}));
  float* amap_p = amap.mutable_data();
  float* score_p = score.mutable_data();
  {
    py::gil_scoped_release release;
    cpr::score_tail(a.state, a.settings, a.B, a.features, a.descriptors, a.foreground, amap_p, score_p, a.exclude);
  }
  return py::make_tuple(amap, score);
}

void score_tail_cuda(py::sequence descriptors, py::handle features, py::handle foreground, py::handle state,
                     py::handle settings, py::handle anomaly_map, py::handle score, uintptr_t stream) {
  const char* op = "score_tail";
  TailArgs a = tail_args(descriptors, features, foreground, state, settings, py::none(), cpr::binding::device_array);
  const int64_t S = a.settings.image_size;
  ArrayRef m = cpr::binding::device_array(anomaly_map, Spec{op, "anomaly_map", {{"B", a.B}, {"S", S}, {"S", S}},
                                                            {"float32"}});
  ArrayRef s = cpr::binding::device_array(score, Spec{op, "score", {{"B", a.B}}, {"float32"}});
  py::gil_scoped_release release;
  cpr::score_tail(a.state, a.settings, a.B, a.features, a.descriptors, a.foreground, static_cast<float*>(m.data),
                  static_cast<float*>(s.data), nullptr, cuda_context(stream));
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "cpr-engine native kernels (cpr/ops.h); use them through cpr_engine.ops";
  m.attr("WITH_CUDA") = cpr::cuda_compiled();
  m.attr("TAIL_WITH_BLAS") = cpr::score_tail_uses_blas();
  m.def("cpu_isa", &cpr::cpu_isa, "Instruction set of the CPU kernels: 'avx2+fma' or 'portable'.");
  m.def("set_cpu_isa", [](const std::string& isa) { cpr::set_cpu_isa(isa.c_str()); }, py::arg("isa"),
        "'auto' (default) or 'portable' (force the baseline copies of the CPU loops).");

  m.def("codebook_histogram", &codebook_histogram_host, py::arg("features"), py::arg("centers"),
        py::arg("grid"),
        "features (B, C, H, W) float32, centers (M, C) float32 -> ids (B, H, W) int64, "
        "hists (B, grid*grid, M+1) float32");
  m.def("hist_match", &hist_match_host, py::arg("query"), py::arg("refs"), py::arg("kept_blocks"),
        "query (B, S*S, M+1) float32, refs (N, S*S, M+1) float32 -> distances (B, N) float32");
  m.def("top_k", &top_k_host, py::arg("distances"), py::arg("k"), py::arg("exclude") = py::none(),
        "distances (B, N) float32, exclude (B,) int64 or None -> indices (B, K') int64");
  m.def("nn_search", &nn_search_host, py::arg("scales"), py::arg("index"),
        "scales [(query (B, D, H, W) float32, bank (N, D, H, W) float32|float16, window)], "
        "index (B, K) int64 -> [(B, H, W) float32 per scale]");
  m.def("postprocess", &postprocess_host, py::arg("maps"), py::arg("foreground"),
        py::arg("out_size"), py::arg("sigma"), py::arg("top_t"),
        "maps [(B, h, w) float32, finest first], foreground (B, h0, w0) float32 or None -> "
        "anomaly_map (B, S, S) float32, score (B,) float32");

  m.def("score_tail", &score_tail_host, py::arg("descriptors"), py::arg("features"), py::arg("foreground"),
        py::arg("state"), py::arg("settings"), py::arg("exclude") = py::none(),
        "The whole scoring tail (cpr/tail.h): descriptors [(B, D_s, h_s, h_s) float32], features (B, C, h0, h0) "
        "float32, foreground (B, h0, h0) float32 or None, the training state (cpr_engine.tail.TailState of arrays) "
        "and settings (grid, kept_blocks, top_k, windows, image_size, blur_sigma, top_t, foreground_on_map) -> "
        "anomaly_map (B, S, S) float32, score (B,) float32; exclude (B,) int64: leave-one-out scoring (reads "
        "state.memory_sources)");

  py::module_ cuda = m.def_submodule(
      "cuda", "Same operations on CUDA device buffers: (data_ptr, shape, dtype, contiguous) tuples, "
              "caller-allocated outputs, a cudaStream_t as int. Raise RuntimeError without CUDA.");
  cuda.def("codebook_histogram", &codebook_histogram_cuda, py::arg("features"), py::arg("centers"),
           py::arg("grid"), py::arg("ids"), py::arg("hists"), py::arg("stream"));
  cuda.def("hist_match", &hist_match_cuda, py::arg("query"), py::arg("refs"),
           py::arg("kept_blocks"), py::arg("distances"), py::arg("stream"));
  cuda.def("top_k", &top_k_cuda, py::arg("distances"), py::arg("k"), py::arg("exclude"),
           py::arg("indices"), py::arg("stream"));
  cuda.def("nn_search", &nn_search_cuda, py::arg("scales"), py::arg("index"), py::arg("stream"),
           py::arg("check_index") = true);
  cuda.def("postprocess", &postprocess_cuda, py::arg("maps"), py::arg("foreground"),
           py::arg("out_size"), py::arg("sigma"), py::arg("top_t"), py::arg("anomaly_map"),
           py::arg("score"), py::arg("stream"));
  cuda.def("score_tail", &score_tail_cuda, py::arg("descriptors"), py::arg("features"), py::arg("foreground"),
           py::arg("state"), py::arg("settings"), py::arg("anomaly_map"), py::arg("score"), py::arg("stream"));
}
