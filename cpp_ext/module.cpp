// pybind11 bindings of the post-processing core: numpy in, numpy out, float32, GIL released
// around the computation, every input validated (a Python exception naming the problem, never
// a crash). The Python API with documentation is edgepose/decode.py.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "kernels.hpp"

namespace py = pybind11;

namespace {

[[noreturn]] void value_error(const std::string& msg) { throw py::value_error(msg); }
[[noreturn]] void type_error(const std::string& msg) { throw py::type_error(msg); }

std::string shape_str(const py::array& a) {
    std::string s = "(";
    for (py::ssize_t i = 0; i < a.ndim(); ++i) {
        if (i) s += ", ";
        s += std::to_string(a.shape(i));
    }
    if (a.ndim() == 1) s += ",";
    return s + ")";
}

// Validate a numpy array: type, dtype, rank, contiguity, non-empty. Returns it as py::array.
py::array check_array(const py::handle& obj, const char* name, int nd_a, int nd_b, bool is_float,
                      bool allow_empty = false) {
    if (!py::isinstance<py::array>(obj))
        type_error(std::string(name) + " must be a numpy array, got " +
                   std::string(py::str(py::type::handle_of(obj).attr("__name__"))));
    py::array a = py::reinterpret_borrow<py::array>(obj);
    if (is_float) {
        if (!a.dtype().is(py::dtype::of<float>()))
            type_error(std::string(name) + " must be float32, got " +
                       std::string(py::str(a.dtype())));
    } else if (!a.dtype().is(py::dtype::of<int64_t>())) {
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
    if (!allow_empty && a.size() == 0)
        value_error(std::string(name) + " is empty: shape " + shape_str(a));
    return a;
}

ep::Refine parse_refine(const std::string& r) {
    if (r == "none") return ep::Refine::None;
    if (r == "quarter") return ep::Refine::Quarter;
    if (r == "dark") return ep::Refine::Dark;
    if (r == "centroid") return ep::Refine::Centroid;
    value_error("refine must be one of none, quarter, dark, centroid, got '" + r + "'");
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
        value_error("matching must be 'greedy' or 'hungarian', got '" + matching + "'");
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
};

Workspace& workspace() {
    static thread_local Workspace w;
    return w;
}

// Peaks of C maps [C,H,W] into w.peaks / w.offsets; returns the first non-finite channel or -1.
long run_peaks(Workspace& w, const float* hm, long C, int H, int W, double thr, int max_peaks,
               ep::Refine r, int ksize) {
    w.peaks.clear();
    w.offsets.assign(1, 0);
    if (r == ep::Refine::Dark) ep::gaussian_kernel(ksize, w.g);
    const size_t plane = (size_t)H * W;
    if (!ep::all_finite(hm, plane * C)) {
        for (long c = 0; c < C; ++c)
            if (!ep::all_finite(hm + plane * c, plane)) return c;
    }
    for (long c = 0; c < C; ++c) {
        ep::channel_peaks(hm + plane * c, H, W, thr, max_peaks, r, w.g.data(), ksize, w.ps,
                          w.peaks);
        w.offsets.push_back((int64_t)w.peaks.size());
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

// ------------------------------------------------------------------------------------------
py::tuple find_peaks(py::handle heatmaps, double threshold, int max_peaks,
                     const std::string& refine, int dark_kernel) {
    py::array hm = check_array(heatmaps, "heatmaps", 3, 4, true);
    const ep::Refine r = parse_refine(refine);
    check_kernel(dark_kernel);
    if (max_peaks < 0) value_error("max_peaks must be >= 0");
    if (!std::isfinite(threshold)) value_error("threshold must be finite");
    const int nd = (int)hm.ndim();
    const long C = nd == 4 ? (long)(hm.shape(0) * hm.shape(1)) : (long)hm.shape(0);
    const int H = (int)hm.shape(nd - 2), W = (int)hm.shape(nd - 1);
    const float* p = static_cast<const float*>(hm.data());
    Workspace& w = workspace();
    long bad;
    {
        py::gil_scoped_release nogil;
        bad = run_peaks(w, p, C, H, W, threshold, max_peaks, r, dark_kernel);
    }
    if (bad >= 0) value_error("heatmaps contain NaN or inf (channel " + std::to_string(bad) + ")");
    py::array_t<float> peaks({(py::ssize_t)w.peaks.size(), (py::ssize_t)3});
    if (!w.peaks.empty())
        std::memcpy(peaks.mutable_data(), w.peaks.data(), w.peaks.size() * sizeof(ep::Peak));
    py::array_t<int64_t> offsets((py::ssize_t)w.offsets.size());
    std::memcpy(offsets.mutable_data(), w.offsets.data(), w.offsets.size() * sizeof(int64_t));
    return py::make_tuple(peaks, offsets);
}

py::tuple decode_topdown(py::handle heatmaps, const std::string& refine, int dark_kernel) {
    py::array hm = check_array(heatmaps, "heatmaps", 4, 4, true, true);
    const ep::Refine r = parse_refine(refine);
    check_kernel(dark_kernel);
    const py::ssize_t N = hm.shape(0), K = hm.shape(1);
    if (hm.size() == 0 && N != 0) value_error("heatmaps is empty: shape " + shape_str(hm));
    const int H = (int)hm.shape(2), W = (int)hm.shape(3);
    py::array_t<float> coords({N, K, (py::ssize_t)2});
    py::array_t<float> scores({N, K});
    const float* p = static_cast<const float*>(hm.data());
    float* co = coords.mutable_data();
    float* sc = scores.mutable_data();
    Workspace& w = workspace();
    bool finite = true;
    {
        py::gil_scoped_release nogil;
        if (r == ep::Refine::Dark) ep::gaussian_kernel(dark_kernel, w.g);
        const size_t plane = (size_t)H * W;
        for (py::ssize_t i = 0; i < N * K; ++i) {
            const float* m = p + plane * i;
            float v;
            bool fin;
            const size_t idx = ep::argmax(m, plane, v, fin);
            if (!fin) {
                finite = false;
                break;
            }
            const int y = (int)(idx / W), x = (int)(idx % W);
            ep::refine_point(m, H, W, x, y, r, w.g.data(), dark_kernel, co[2 * i], co[2 * i + 1]);
            sc[i] = v;
        }
    }
    if (!finite) value_error("heatmaps contain NaN or inf");
    return py::make_tuple(coords, scores);
}

py::tuple group_people(py::handle peaks_obj, py::handle offsets_obj, py::handle pafs_obj,
                       py::handle limbs_obj, int paf_samples, double paf_score_threshold,
                       double min_sample_fraction, int min_parts, double min_person_score,
                       const std::string& matching) {
    py::array pk = check_array(peaks_obj, "peaks", 2, 2, true, true);
    if (pk.shape(1) != 3) value_error("peaks must be [M,3] (x, y, score), got shape " + shape_str(pk));
    py::array off = check_array(offsets_obj, "offsets", 1, 1, false);
    py::array pf = check_array(pafs_obj, "pafs", 3, 3, true);
    const int K = (int)off.shape(0) - 1;
    const int64_t* o = static_cast<const int64_t*>(off.data());
    const int64_t M = pk.shape(0);
    if (o[0] != 0 || o[K] != M)
        value_error("offsets must run from 0 to len(peaks)=" + std::to_string(M));
    for (int k = 0; k < K; ++k)
        if (o[k + 1] < o[k]) value_error("offsets must be non-decreasing");
    const int C = (int)pf.shape(0), H = (int)pf.shape(1), W = (int)pf.shape(2);
    py::array lt = check_limbs(limbs_obj, K, C);
    const ep::GroupOptions opt = parse_group(paf_samples, paf_score_threshold, min_sample_fraction,
                                             min_parts, min_person_score, matching);
    const ep::Peak* pp = static_cast<const ep::Peak*>(pk.data());
    const float* pafs = static_cast<const float*>(pf.data());
    Workspace& w = workspace();
    bool finite;
    {
        py::gil_scoped_release nogil;
        finite = ep::all_finite(reinterpret_cast<const float*>(pp), (size_t)M * 3) &&
                 ep::all_finite(pafs, (size_t)C * H * W);
        if (finite)
            ep::group_people(pp, o, K, pafs, C, H, W, static_cast<const int64_t*>(lt.data()),
                             (int)lt.shape(0), opt, w.gs, w.people, w.scores);
    }
    if (!finite) value_error("peaks or pafs contain NaN or inf");
    return py::make_tuple(people_array(w, K), scores_array(w));
}

py::tuple decode_bottomup(py::handle heatmaps, py::handle pafs_obj, py::handle limbs_obj,
                          const std::string& refine, double peak_threshold, int max_peaks,
                          int dark_kernel, int paf_samples, double paf_score_threshold,
                          double min_sample_fraction, int min_parts, double min_person_score,
                          const std::string& matching) {
    py::array hm = check_array(heatmaps, "heatmaps", 3, 3, true);
    py::array pf = check_array(pafs_obj, "pafs", 3, 3, true);
    const int K = (int)hm.shape(0), H = (int)hm.shape(1), W = (int)hm.shape(2);
    const int C = (int)pf.shape(0);
    if (pf.shape(1) != H || pf.shape(2) != W)
        value_error("pafs " + shape_str(pf) + " and heatmaps " + shape_str(hm) + " differ in H, W");
    py::array lt = check_limbs(limbs_obj, K, C);
    const ep::Refine r = parse_refine(refine);
    check_kernel(dark_kernel);
    if (max_peaks < 0) value_error("max_peaks must be >= 0");
    if (!std::isfinite(peak_threshold)) value_error("peak_threshold must be finite");
    const ep::GroupOptions opt = parse_group(paf_samples, paf_score_threshold, min_sample_fraction,
                                             min_parts, min_person_score, matching);
    const float* hp = static_cast<const float*>(hm.data());
    const float* pafs = static_cast<const float*>(pf.data());
    Workspace& w = workspace();
    long bad;
    bool finite = true;
    {
        py::gil_scoped_release nogil;
        bad = run_peaks(w, hp, K, H, W, peak_threshold, max_peaks, r, dark_kernel);
        if (bad < 0) finite = ep::all_finite(pafs, (size_t)C * H * W);
        if (bad < 0 && finite)
            ep::group_people(w.peaks.data(), w.offsets.data(), K, pafs, C, H, W,
                             static_cast<const int64_t*>(lt.data()), (int)lt.shape(0), opt, w.gs,
                             w.people, w.scores);
    }
    if (bad >= 0) value_error("heatmaps contain NaN or inf (channel " + std::to_string(bad) + ")");
    if (!finite) value_error("pafs contain NaN or inf");
    return py::make_tuple(people_array(w, K), scores_array(w));
}

}  // namespace

PYBIND11_MODULE(_ext, m) {
    m.doc() = "edgepose post-processing core (see edgepose.decode for the documented API)";
    m.def("find_peaks", &find_peaks, py::arg("heatmaps"), py::arg("threshold"),
          py::arg("max_peaks"), py::arg("refine"), py::arg("dark_kernel"));
    m.def("decode_topdown", &decode_topdown, py::arg("heatmaps"), py::arg("refine"),
          py::arg("dark_kernel"));
    m.def("group_people", &group_people, py::arg("peaks"), py::arg("offsets"), py::arg("pafs"),
          py::arg("limbs"), py::arg("paf_samples"), py::arg("paf_score_threshold"),
          py::arg("min_sample_fraction"), py::arg("min_parts"), py::arg("min_person_score"),
          py::arg("matching"));
    m.def("decode_bottomup", &decode_bottomup, py::arg("heatmaps"), py::arg("pafs"),
          py::arg("limbs"), py::arg("refine"), py::arg("peak_threshold"), py::arg("max_peaks"),
          py::arg("dark_kernel"), py::arg("paf_samples"), py::arg("paf_score_threshold"),
          py::arg("min_sample_fraction"), py::arg("min_parts"), py::arg("min_person_score"),
          py::arg("matching"));
}
