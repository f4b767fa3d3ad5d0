// Area resize (OpenCV's INTER_AREA box average) in integers, for edgepose.preprocess: the
// weights are computed once in Python (edgepose/preprocess.py, _area_taps: the footprint
// overlaps in 1/2^bits, each output pixel's summing to 2^bits) and applied here as int32 sums
// with one rounding shift, so the result is the same bytes on every CPU (OpenCV's own
// INTER_AREA differs between its x86 and aarch64 builds). preprocess.py's numpy path computes
// the identical sums; tests/test_preprocess_exact.py checks that they agree byte for byte.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>
#include <vector>

namespace py = pybind11;

namespace {

using Taps = py::array_t<int64_t, py::array::c_style>;
using Weights = py::array_t<int32_t, py::array::c_style>;

void check_taps(const Taps& idx, const Weights& w, long n_in, int bits, const char* axis) {
    const std::string a(axis);
    if (idx.ndim() != 2 || w.ndim() != 2 || idx.shape(0) != w.shape(0) || idx.shape(1) != w.shape(1) ||
        idx.shape(0) < 1 || idx.shape(1) < 1)
        throw py::value_error(a + " taps: index and weight arrays must both be [n_out, K], n_out, K >= 1");
    const int64_t* ip = idx.data();
    const int32_t* wp = w.data();
    const long n = (long)idx.shape(0), K = (long)idx.shape(1);
    for (long j = 0; j < n; ++j) {
        int64_t sum = 0;
        for (long t = 0; t < K; ++t) {
            if (ip[j * K + t] < 0 || ip[j * K + t] >= n_in)
                throw py::value_error(a + " taps: index out of range");
            if (wp[j * K + t] < 0) throw py::value_error(a + " taps: negative weight");
            sum += wp[j * K + t];
        }
        if (sum != (int64_t(1) << bits))
            throw py::value_error(a + " taps: the weights of an output pixel must sum to 2^bits");
    }
}

py::array area_resize(const py::array_t<uint8_t, py::array::c_style>& img, const Taps& yi, const Weights& yw,
                      const Taps& xi, const Weights& xw, int bits) {
    if (img.ndim() != 2 && img.ndim() != 3) throw py::value_error("image must be H x W or H x W x C uint8");
    if (bits < 1 || bits > 11) throw py::value_error("bits must be in 1..11 (int32 sums)");
    const long H0 = (long)img.shape(0), W0 = (long)img.shape(1), C = img.ndim() == 3 ? (long)img.shape(2) : 1;
    if (H0 < 1 || W0 < 1 || C < 1) throw py::value_error("image is empty");
    check_taps(yi, yw, H0, bits, "row");
    check_taps(xi, xw, W0, bits, "column");
    const long h = (long)yi.shape(0), Ky = (long)yi.shape(1), w = (long)xi.shape(0), Kx = (long)xi.shape(1);
    std::vector<py::ssize_t> shape = {(py::ssize_t)h, (py::ssize_t)w};
    if (img.ndim() == 3) shape.push_back((py::ssize_t)C);
    py::array_t<uint8_t> out(shape);
    const uint8_t* src = img.data();
    uint8_t* dst = out.mutable_data();
    const int64_t* yip = yi.data();
    const int32_t* ywp = yw.data();
    const int64_t* xip = xi.data();
    const int32_t* xwp = xw.data();
    {
        py::gil_scoped_release release;
        const long row_len = W0 * C;
        const int shift = 2 * bits;
        const int32_t half = int32_t(1) << (shift - 1);
        std::vector<int32_t> row((size_t)row_len);
        for (long y = 0; y < h; ++y) {
            // rows: sum of weight x source row (at most 255 * 2^bits)
            std::fill(row.begin(), row.end(), 0);
            for (long t = 0; t < Ky; ++t) {
                const int32_t wt = ywp[y * Ky + t];
                if (!wt) continue;
                const uint8_t* s = src + yip[y * Ky + t] * row_len;
                for (long i = 0; i < row_len; ++i) row[(size_t)i] += wt * (int32_t)s[i];
            }
            // columns: at most 255 * 2^(2 bits) <= 255 * 2^22 < 2^31
            uint8_t* d = dst + y * w * C;
            for (long x = 0; x < w; ++x) {
                for (long c = 0; c < C; ++c) {
                    int32_t acc = half;
                    for (long t = 0; t < Kx; ++t)
                        acc += xwp[x * Kx + t] * row[(size_t)(xip[x * Kx + t] * C + c)];
                    d[x * C + c] = (uint8_t)(acc >> shift);
                }
            }
        }
    }
    return out;
}

}  // namespace

void register_resize(py::module_& m) {
    m.def("area_resize", &area_resize, py::arg("image"), py::arg("row_index"), py::arg("row_weight"),
          py::arg("col_index"), py::arg("col_weight"), py::arg("bits"),
          "INTER_AREA-style shrink of a uint8 image in integers with precomputed taps "
          "(edgepose.preprocess.resize_exact)");
}
