// pybind11 bindings of the post-processing core: numpy in, numpy out, float32, GIL released
// around the computation, every input validated (a Python exception naming the problem, never
// a crash). The Python API with documentation is edgepose/decode.py.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "kernels.hpp"

namespace py = pybind11;

namespace {

[[noreturn]] void value_error(const std::string& msg) { throw py::value_error(msg); }
[[noreturn]] void type_error(const std::string& msg) { throw py::type_error(msg); }

// A user's string for an error message: one line, printable, at most 40 characters, quoted.
std::string quoted(const std::string& v) {
    std::string s = "'";
    for (size_t i = 0; i < v.size() && i < 40; ++i) s += (v[i] >= 32 && v[i] < 127) ? v[i] : '?';
    return s + (v.size() > 40 ? "...'" : "'");
}

std::string shape_str(const py::array& a) {
    std::string s = "(";
    for (py::ssize_t i = 0; i < a.ndim(); ++i) {
        if (i) s += ", ";
        s += std::to_string(a.shape(i));
    }
    if (a.ndim() == 1) s += ",";
    return s + ")";
}

// Validate a numpy array: type, dtype, rank, contiguity, alignment, non-empty. Returns it as
// py::array.
py::array check_array(const py::handle& obj, const char* name, int nd_a, int nd_b, bool is_float,
                      bool allow_empty = false) {
    if (!py::isinstance<py::array>(obj))
        type_error(std::string(name) + " must be a numpy array, got " +
                   std::string(py::str(py::type::handle_of(obj).attr("__name__"))));
    py::array a = py::reinterpret_borrow<py::array>(obj);
    if (is_float) {
        if (!a.dtype().equal(py::dtype::of<float>()))   // equal, not is: a pickled array has its own dtype object
            type_error(std::string(name) + " must be float32, got " +
                       std::string(py::str(a.dtype())));
    } else if (!a.dtype().equal(py::dtype::of<int64_t>())) {
        type_error(std::string(name) + " must be int64, got " + std::string(py::str(a.dtype())));
    }
    if (a.ndim() != nd_a && a.ndim() != nd_b) {
        std::string want = std::to_string(nd_a);
        if (nd_b != nd_a) want += " or " + std::to_string(nd_b);
        value_error(std::string(name) + " must have " + want + " dimensions, got shape " +
                    shape_str(a));
    }
    if (!(a.flags() & py::array::c_style))
        value_error(std::string(name) + " must be C-contiguous (use np.ascontiguousarray)");
    // a misaligned buffer (np.frombuffer at an odd offset) would be undefined behaviour to read
    if (!(a.flags() & py::detail::npy_api::NPY_ARRAY_ALIGNED_))
        value_error(std::string(name) + " must be aligned (use a.copy())");
    if (!allow_empty && a.size() == 0)
        value_error(std::string(name) + " is empty: shape " + shape_str(a));
    return a;
}

enum class Layout { CHW, HWC };

Layout parse_layout(const std::string& s) {
    if (s == "CHW") return Layout::CHW;
    if (s == "HWC") return Layout::HWC;
    value_error("layout must be 'CHW' or 'HWC', got " + quoted(s));
}

// Channels, height and width of one item: the last three axes of `a` in `layout` order.
struct Dims {
    long C;
    int H, W;
};

Dims item_dims(const py::array& a, Layout layout, const char* name) {
    const int nd = (int)a.ndim();
    const py::ssize_t s0 = a.shape(nd - 3), s1 = a.shape(nd - 2), s2 = a.shape(nd - 1);
    const py::ssize_t C = layout == Layout::CHW ? s0 : s2, H = layout == Layout::CHW ? s1 : s0,
                      W = layout == Layout::CHW ? s2 : s1;
    constexpr py::ssize_t LIM = 0x7fffffff;   // pixel indices are int32
    if (C > LIM || H > LIM || W > LIM || H * W > LIM)
        value_error(std::string(name) + " too large: shape " + shape_str(a) +
                    " (at most 2^31 - 1 channels and pixels per map)");
    return {(long)C, (int)H, (int)W};
}

// Item `n` of a C-contiguous array of items laid out as `layout`, read in place.
ep::Maps item_maps(const float* p, const Dims& d, Layout layout, py::ssize_t n = 0) {
    const float* q = p + (std::ptrdiff_t)n * d.C * d.H * d.W;
    return layout == Layout::CHW ? ep::Maps::chw(q, d.C, d.H, d.W)
                                 : ep::Maps::hwc(q, d.C, d.H, d.W);
}

// None: no affine (empty result). Otherwise 4 finite numbers (sx, bx, sy, by), or, when
// rows >= 0, also an [rows, 4] array of them (one affine per item).
std::vector<ep::Affine> parse_affine(const py::handle& obj, py::ssize_t rows) {
    if (obj.is_none()) return {};
    const std::string what = rows >= 0 ? "affine must be None, 4 finite numbers (sx, bx, sy, by) "
                                         "or an [N,4] array of them"
                                       : "affine must be None or 4 finite numbers (sx, bx, sy, by)";
    py::array a = py::array::ensure(obj);
    if (!a) value_error(what);
    const char kind = a.dtype().kind();
    if (kind != 'f' && kind != 'i' && kind != 'u')
        value_error(what + ", got dtype " + std::string(py::str(a.dtype())));
    auto d = py::array_t<double, py::array::c_style | py::array::forcecast>::ensure(a);
    if (!d) value_error(what);
    const bool one = d.ndim() == 1 && d.shape(0) == 4;
    const bool per_row = rows >= 0 && d.ndim() == 2 && d.shape(0) == rows && d.shape(1) == 4;
    if (!one && !per_row) value_error(what + ", got shape " + shape_str(d));
    const double* v = d.data();
    std::vector<ep::Affine> out((size_t)(one ? 1 : rows));
    for (size_t r = 0; r < out.size(); ++r, v += 4) {
        for (int j = 0; j < 4; ++j)
            if (!std::isfinite(v[j])) value_error(what + ", got a NaN or inf");
        out[r] = {true, v[0], v[1], v[2], v[3]};
    }
    return out;
}

ep::Refine parse_refine(const std::string& r) {
    if (r == "none") return ep::Refine::None;
    if (r == "quarter") return ep::Refine::Quarter;
    if (r == "dark") return ep::Refine::Dark;
    if (r == "centroid") return ep::Refine::Centroid;
    value_error("refine must be one of none, quarter, dark, centroid, got " + quoted(r));
}

void check_kernel(int k) {
    if (k < 1 || k > 99 || k % 2 == 0)
        value_error("dark_kernel must be an odd integer in 1..99, got " + std::to_string(k));
}

ep::GroupOptions parse_group(int paf_samples, double paf_score_threshold,
                             double min_sample_fraction, int min_parts, double min_person_score,
                             const std::string& matching) {
    ep::GroupOptions o;
    if (paf_samples < 1 || paf_samples > 1000)
        value_error("paf_samples must be in 1..1000, got " + std::to_string(paf_samples));
    if (!std::isfinite(paf_score_threshold) || !std::isfinite(min_sample_fraction) ||
        !std::isfinite(min_person_score))
        value_error("grouping thresholds must be finite numbers");
    if (min_parts < 0) value_error("min_parts must be >= 0, got " + std::to_string(min_parts));
    if (matching == "greedy")
        o.hungarian = false;
    else if (matching == "hungarian")
        o.hungarian = true;
    else
        value_error("matching must be 'greedy' or 'hungarian', got " + quoted(matching));
    o.paf_samples = paf_samples;
    o.paf_score_threshold = paf_score_threshold;
    o.min_sample_fraction = min_sample_fraction;
    o.min_parts = min_parts;
    o.min_person_score = min_person_score;
    return o;
}

// limbs [L,4] int64: part indices < K, PAF channels < C.
py::array check_limbs(const py::handle& obj, int K, int C) {
    py::array a = check_array(obj, "limbs", 2, 2, false, true);
    if (a.shape(1) != 4)
        value_error("limbs must be an [L,4] table (part_a, part_b, paf_x, paf_y), got shape " +
                    shape_str(a));
    const int64_t* p = static_cast<const int64_t*>(a.data());
    for (py::ssize_t l = 0; l < a.shape(0); ++l) {
        for (int c = 0; c < 2; ++c)
            if (p[4 * l + c] < 0 || p[4 * l + c] >= K)
                value_error("limbs row " + std::to_string(l) + ": part index " +
                            std::to_string(p[4 * l + c]) + " out of range 0.." +
                            std::to_string(K - 1));
        for (int c = 2; c < 4; ++c)
            if (p[4 * l + c] < 0 || p[4 * l + c] >= C)
                value_error("limbs row " + std::to_string(l) + ": PAF channel " +
                            std::to_string(p[4 * l + c]) + " out of range 0.." +
                            std::to_string(C - 1));
    }
    return a;
}

struct Workspace {
    std::vector<ep::Peak> peaks;
    std::vector<int64_t> offsets;
    ep::PeakScratch ps;
    ep::GroupScratch gs;
    std::vector<float> people, scores;
    std::vector<double> g;
    std::vector<int32_t> idx;
    std::vector<float> vmax;
};

Workspace& workspace() {
    static thread_local Workspace w;
    return w;
}

// Peaks of N items of C maps (read in place in `layout`) into w.peaks / w.offsets (one CSR row
// per map, item-major); returns the first non-finite map (n * C + c) or -1.
long run_peaks(Workspace& w, const float* hm, py::ssize_t N, const Dims& d, Layout layout,
               double thr, int max_peaks, ep::Refine r, int ksize) {
    w.peaks.clear();
    w.offsets.assign(1, 0);
    if (r == ep::Refine::Dark) ep::gaussian_kernel(ksize, w.g);
    for (py::ssize_t n = 0; n < N; ++n) {
        const ep::Maps m = item_maps(hm, d, layout, n);
        if (!ep::row_spans(m, thr, w.ps)) return (long)n * d.C + ep::first_nonfinite_channel(m);
        for (long c = 0; c < d.C; ++c) {
            const size_t row0 = (size_t)c * d.H;
            ep::channel_peaks(m.plane(c), w.ps.first.data() + row0, w.ps.last.data() + row0, thr,
                              max_peaks, r, w.g.data(), ksize, w.ps, w.peaks);
            w.offsets.push_back((int64_t)w.peaks.size());
        }
    }
    return -1;
}

py::array_t<float> people_array(const Workspace& w, int K) {
    const py::ssize_t P = (py::ssize_t)w.scores.size();
    py::array_t<float> out({P, (py::ssize_t)K, (py::ssize_t)3});
    if (P) std::memcpy(out.mutable_data(), w.people.data(), w.people.size() * sizeof(float));
    return out;
}

py::array_t<float> scores_array(const Workspace& w) {
    py::array_t<float> out((py::ssize_t)w.scores.size());
    if (!w.scores.empty())
        std::memcpy(out.mutable_data(), w.scores.data(), w.scores.size() * sizeof(float));
    return out;
}

const ep::Affine& one_affine(const std::vector<ep::Affine>& a) {
    static const ep::Affine identity;
    return a.empty() ? identity : a[0];
}

// ------------------------------------------------------------------------------------------
py::tuple find_peaks(py::handle heatmaps, double threshold, int max_peaks,
                     const std::string& refine, int dark_kernel, const std::string& layout) {
    py::array hm = check_array(heatmaps, "heatmaps", 3, 4, true);
    const Layout lay = parse_layout(layout);
    const ep::Refine r = parse_refine(refine);
    check_kernel(dark_kernel);
    if (max_peaks < 0) value_error("max_peaks must be >= 0");
    if (!std::isfinite(threshold)) value_error("threshold must be finite");
    const Dims d = item_dims(hm, lay, "heatmaps");
    const py::ssize_t N = hm.ndim() == 4 ? hm.shape(0) : 1;
    const float* p = static_cast<const float*>(hm.data());
    Workspace& w = workspace();
    long bad;
    {
        py::gil_scoped_release nogil;
        bad = run_peaks(w, p, N, d, lay, threshold, max_peaks, r, dark_kernel);
    }
    if (bad >= 0) value_error("heatmaps contain NaN or inf (channel " + std::to_string(bad) + ")");
    py::array_t<float> peaks({(py::ssize_t)w.peaks.size(), (py::ssize_t)3});
    if (!w.peaks.empty())
        std::memcpy(peaks.mutable_data(), w.peaks.data(), w.peaks.size() * sizeof(ep::Peak));
    py::array_t<int64_t> offsets((py::ssize_t)w.offsets.size());
    std::memcpy(offsets.mutable_data(), w.offsets.data(), w.offsets.size() * sizeof(int64_t));
    return py::make_tuple(peaks, offsets);
}

py::tuple decode_topdown(py::handle heatmaps, const std::string& refine, int dark_kernel,
                         const std::string& layout, py::handle affine) {
    py::array hm = check_array(heatmaps, "heatmaps", 4, 4, true, true);
    const Layout lay = parse_layout(layout);
    const ep::Refine r = parse_refine(refine);
    check_kernel(dark_kernel);
    const py::ssize_t N = hm.shape(0), K = hm.shape(lay == Layout::CHW ? 1 : 3);
    const std::vector<ep::Affine> aff = parse_affine(affine, N);
    py::array_t<float> coords({N, K, (py::ssize_t)2});
    py::array_t<float> scores({N, K});
    if (N == 0) return py::make_tuple(coords, scores);
    if (hm.size() == 0) value_error("heatmaps is empty: shape " + shape_str(hm));
    const Dims d = item_dims(hm, lay, "heatmaps");
    const float* p = static_cast<const float*>(hm.data());
    float* co = coords.mutable_data();
    float* sc = scores.mutable_data();
    Workspace& w = workspace();
    bool finite = true;
    {
        py::gil_scoped_release nogil;
        if (r == ep::Refine::Dark) ep::gaussian_kernel(dark_kernel, w.g);
        w.idx.resize(K);
        w.vmax.resize(K);
        for (py::ssize_t n = 0; n < N && finite; ++n) {
            const ep::Maps m = item_maps(p, d, lay, n);
            finite = ep::argmax_maps(m, w.idx.data(), w.vmax.data(), w.ps.bmax);
            const ep::Affine& a = aff.size() > 1 ? aff[n] : one_affine(aff);
            for (py::ssize_t k = 0; k < K && finite; ++k) {
                const int y = (int)(w.idx[k] / d.W), x = (int)(w.idx[k] % d.W);
                float fx, fy;
                ep::refine_point(m.plane(k), x, y, r, w.g.data(), dark_kernel, fx, fy);
                float* c = co + 2 * (n * K + k);
                a.apply(fx, fy, c[0], c[1]);
                sc[n * K + k] = w.vmax[k];
            }
        }
    }
    if (!finite) value_error("heatmaps contain NaN or inf");
    return py::make_tuple(coords, scores);
}

py::tuple group_people(py::handle peaks_obj, py::handle offsets_obj, py::handle pafs_obj,
                       py::handle limbs_obj, int paf_samples, double paf_score_threshold,
                       double min_sample_fraction, int min_parts, double min_person_score,
                       const std::string& matching, const std::string& layout,
                       py::handle affine) {
    py::array pk = check_array(peaks_obj, "peaks", 2, 2, true, true);
    if (pk.shape(1) != 3) value_error("peaks must be [M,3] (x, y, score), got shape " + shape_str(pk));
    py::array off = check_array(offsets_obj, "offsets", 1, 1, false);
    py::array pf = check_array(pafs_obj, "pafs", 3, 3, true);
    const Layout lay = parse_layout(layout);
    const int64_t M = pk.shape(0);
    if (M > 0x7fffffff || off.shape(0) > 0x7fffffff)
        value_error("too many peaks: " + std::to_string(M));
    const int K = (int)off.shape(0) - 1;
    const int64_t* o = static_cast<const int64_t*>(off.data());
    if (o[0] != 0 || o[K] != M)
        value_error("offsets must run from 0 to len(peaks)=" + std::to_string(M));
    for (int k = 0; k < K; ++k)
        if (o[k + 1] < o[k]) value_error("offsets must be non-decreasing");
    const Dims d = item_dims(pf, lay, "pafs");
    py::array lt = check_limbs(limbs_obj, K, d.C);
    const ep::GroupOptions opt = parse_group(paf_samples, paf_score_threshold, min_sample_fraction,
                                             min_parts, min_person_score, matching);
    const std::vector<ep::Affine> aff = parse_affine(affine, -1);
    const ep::Peak* pp = static_cast<const ep::Peak*>(pk.data());
    const float* pafs = static_cast<const float*>(pf.data());
    Workspace& w = workspace();
    bool finite;
    {
        py::gil_scoped_release nogil;
        finite = ep::all_finite(reinterpret_cast<const float*>(pp), (size_t)M * 3) &&
                 ep::all_finite(pafs, (size_t)pf.size());
        if (finite)
            ep::group_people(pp, o, K, item_maps(pafs, d, lay),
                             static_cast<const int64_t*>(lt.data()), (int)lt.shape(0), opt,
                             one_affine(aff), w.gs, w.people, w.scores);
    }
    if (!finite) value_error("peaks or pafs contain NaN or inf");
    return py::make_tuple(people_array(w, K), scores_array(w));
}

py::tuple decode_bottomup(py::handle heatmaps, py::handle pafs_obj, py::handle limbs_obj,
                          const std::string& refine, double peak_threshold, int max_peaks,
                          int dark_kernel, int paf_samples, double paf_score_threshold,
                          double min_sample_fraction, int min_parts, double min_person_score,
                          const std::string& matching, const std::string& layout,
                          py::handle affine) {
    py::array hm = check_array(heatmaps, "heatmaps", 3, 3, true);
    py::array pf = check_array(pafs_obj, "pafs", 3, 3, true);
    const Layout lay = parse_layout(layout);
    const Dims dh = item_dims(hm, lay, "heatmaps"), dp = item_dims(pf, lay, "pafs");
    if (dp.H != dh.H || dp.W != dh.W)
        value_error("pafs " + shape_str(pf) + " and heatmaps " + shape_str(hm) + " differ in H, W");
    const int K = (int)dh.C;
    py::array lt = check_limbs(limbs_obj, K, dp.C);
    const ep::Refine r = parse_refine(refine);
    check_kernel(dark_kernel);
    if (max_peaks < 0) value_error("max_peaks must be >= 0");
    if (!std::isfinite(peak_threshold)) value_error("peak_threshold must be finite");
    const ep::GroupOptions opt = parse_group(paf_samples, paf_score_threshold, min_sample_fraction,
                                             min_parts, min_person_score, matching);
    const std::vector<ep::Affine> aff = parse_affine(affine, -1);
    const float* hp = static_cast<const float*>(hm.data());
    const float* pafs = static_cast<const float*>(pf.data());
    Workspace& w = workspace();
    long bad;
    bool finite = true;
    {
        py::gil_scoped_release nogil;
        bad = run_peaks(w, hp, 1, dh, lay, peak_threshold, max_peaks, r, dark_kernel);
        if (bad < 0) finite = ep::all_finite(pafs, (size_t)pf.size());
        if (bad < 0 && finite)
            ep::group_people(w.peaks.data(), w.offsets.data(), K, item_maps(pafs, dp, lay),
                             static_cast<const int64_t*>(lt.data()), (int)lt.shape(0), opt,
                             one_affine(aff), w.gs, w.people, w.scores);
    }
    if (bad >= 0) value_error("heatmaps contain NaN or inf (channel " + std::to_string(bad) + ")");
    if (!finite) value_error("pafs contain NaN or inf");
    return py::make_tuple(people_array(w, K), scores_array(w));
}

// ---- one-stage (YOLO-pose) selection: threshold + NMS, cpp_ext/nms.cpp ----------------------
}  // namespace

namespace ep {
struct OneStageOptions {
    double score_threshold = 0.25;
    bool nms_on = true;
    bool oks = false;
    double nms_threshold = 0.7;
    int max_det = 100;
    int max_candidates = 30000;
    double bsx = 1, bsy = 1;
    double ksx = 1, ksy = 1;
    double kpt_threshold = 0;
};
int64_t select_onestage(const float* p, long C, long N, std::ptrdiff_t cs, std::ptrdiff_t ns, int K,
                        const OneStageOptions& o, const double* sigmas, std::vector<int64_t>& keep);
}  // namespace ep

namespace {

py::array select_onestage(const py::handle& predictions, const std::string& layout, int num_keypoints,
                          double score_threshold, const std::string& nms, double nms_threshold,
                          int max_det, std::pair<double, double> box_scale,
                          std::pair<double, double> keypoint_scale, const py::handle& sigmas,
                          double keypoint_threshold) {
    py::array a = check_array(predictions, "predictions", 2, 3, true);
    if (layout != "CN" && layout != "NC") value_error("layout must be 'CN' or 'NC', got " + quoted(layout));
    if (a.ndim() == 3 && a.shape(0) != 1)
        value_error("predictions must hold one image (batch 1), got shape " + shape_str(a));
    if (num_keypoints < 1 || num_keypoints > 10000)
        value_error("num_keypoints must be in 1..10000, got " + std::to_string(num_keypoints));
    const int nd = (int)a.ndim();
    const bool cn = layout == "CN";
    const long C = (long)(cn ? a.shape(nd - 2) : a.shape(nd - 1));
    const long N = (long)(cn ? a.shape(nd - 1) : a.shape(nd - 2));
    if (C != 5 + 3L * num_keypoints)
        value_error("predictions " + shape_str(a) + " in layout " + layout + " hold " + std::to_string(C) +
                    " values per anchor, not 5 + 3 x " + std::to_string(num_keypoints));
    for (double v : {score_threshold, nms_threshold, box_scale.first, box_scale.second, keypoint_scale.first,
                     keypoint_scale.second, keypoint_threshold})
        if (!std::isfinite(v)) value_error("thresholds and scales must be finite numbers");
    if (nms != "iou" && nms != "oks" && nms != "none")
        value_error("nms must be 'iou', 'oks' or 'none', got " + quoted(nms));
    if (max_det < 1) value_error("max_det must be >= 1, got " + std::to_string(max_det));
    ep::OneStageOptions o;
    o.score_threshold = score_threshold;
    o.nms_on = nms != "none";
    o.oks = nms == "oks";
    o.nms_threshold = nms_threshold;
    o.max_det = max_det;
    o.bsx = box_scale.first;
    o.bsy = box_scale.second;
    o.ksx = keypoint_scale.first;
    o.ksy = keypoint_scale.second;
    o.kpt_threshold = keypoint_threshold;
    std::vector<double> sig((size_t)num_keypoints, 0.0);
    if (o.oks) {
        if (sigmas.is_none()) value_error("nms='oks' needs sigmas (one per keypoint)");
        auto s = py::array_t<double, py::array::c_style | py::array::forcecast>::ensure(sigmas);
        if (!s || s.ndim() != 1 || s.shape(0) != num_keypoints)
            value_error("sigmas must be " + std::to_string(num_keypoints) + " numbers");
        for (int k = 0; k < num_keypoints; ++k) {
            sig[k] = s.data()[k];
            if (!(sig[k] > 0) || !std::isfinite(sig[k])) value_error("sigmas must be positive finite numbers");
        }
    }
    std::vector<int64_t> keep;
    int64_t bad;
    {
        py::gil_scoped_release release;
        bad = ep::select_onestage(static_cast<const float*>(a.data()), C, N, cn ? N : 1, cn ? 1 : C,
                                  num_keypoints, o, sig.data(), keep);
    }
    if (bad <= -2) value_error("predictions contain a NaN or inf score (anchor " + std::to_string(-2 - bad) + ")");
    if (bad >= 0) value_error("predictions contain NaN or inf (anchor " + std::to_string(bad) + ")");
    py::array_t<int64_t> out((py::ssize_t)keep.size());
    if (!keep.empty()) std::memcpy(out.mutable_data(), keep.data(), keep.size() * sizeof(int64_t));
    return out;
}

}  // namespace

void register_resize(py::module_& m);   // resize.cpp: edgepose.preprocess's integer area resize

PYBIND11_MODULE(_ext, m) {
    m.doc() = "edgepose post-processing core (see edgepose.decode for the documented API)";
    register_resize(m);
    m.def("find_peaks", &find_peaks, py::arg("heatmaps"), py::arg("threshold"),
          py::arg("max_peaks"), py::arg("refine"), py::arg("dark_kernel"),
          py::arg("layout") = "CHW");
    m.def("decode_topdown", &decode_topdown, py::arg("heatmaps"), py::arg("refine"),
          py::arg("dark_kernel"), py::arg("layout") = "CHW", py::arg("affine") = py::none());
    m.def("group_people", &group_people, py::arg("peaks"), py::arg("offsets"), py::arg("pafs"),
          py::arg("limbs"), py::arg("paf_samples"), py::arg("paf_score_threshold"),
          py::arg("min_sample_fraction"), py::arg("min_parts"), py::arg("min_person_score"),
          py::arg("matching"), py::arg("layout") = "CHW", py::arg("affine") = py::none());
    m.def("decode_bottomup", &decode_bottomup, py::arg("heatmaps"), py::arg("pafs"),
          py::arg("limbs"), py::arg("refine"), py::arg("peak_threshold"), py::arg("max_peaks"),
          py::arg("dark_kernel"), py::arg("paf_samples"), py::arg("paf_score_threshold"),
          py::arg("min_sample_fraction"), py::arg("min_parts"), py::arg("min_person_score"),
          py::arg("matching"), py::arg("layout") = "CHW", py::arg("affine") = py::none());
    m.def("select_onestage", &select_onestage, py::arg("predictions"), py::arg("layout"),
          py::arg("num_keypoints"), py::arg("score_threshold"), py::arg("nms"), py::arg("nms_threshold"),
          py::arg("max_det"), py::arg("box_scale") = std::make_pair(1.0, 1.0),
          py::arg("keypoint_scale") = std::make_pair(1.0, 1.0), py::arg("sigmas") = py::none(),
          py::arg("keypoint_threshold") = 0.0);
}
