// edgepose post-processing kernels (no Python in here; see module.cpp for the bindings).
// Behaviour is specified by edgepose/reference.py and documented in edgepose/decode.py.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace ep {

enum class Refine { None = 0, Quarter = 1, Dark = 2, Centroid = 3 };

struct Peak {
    float x, y, score;
};

// One 2-D map read in place through element strides: the value at pixel (x, y) is
// p[y * rs + x * xs]. Planar maps have xs = 1; interleaved ([H,W,C]) maps have xs = C.
struct Plane {
    const float* p;
    int H, W;
    std::ptrdiff_t rs, xs;   // row stride, column stride (elements)
    const float* row(int y) const { return p + (std::ptrdiff_t)y * rs; }
    float at(int x, int y) const { return p[(std::ptrdiff_t)y * rs + (std::ptrdiff_t)x * xs]; }
};

// C maps of H x W read in place (no transposed copy): channel c at pixel (x, y) is
// p[c * cs + y * rs + x * xs]. Any strides work; the two layouts the API offers are
// planar [C,H,W] (cs, rs, xs) = (H*W, W, 1) and interleaved [H,W,C] (1, W*C, C).
struct Maps {
    const float* p;
    long C;
    int H, W;
    std::ptrdiff_t cs, rs, xs;
    static Maps chw(const float* p, long C, int H, int W) {
        return {p, C, H, W, (std::ptrdiff_t)H * W, W, 1};
    }
    static Maps hwc(const float* p, long C, int H, int W) {
        return {p, C, H, W, 1, (std::ptrdiff_t)W * C, (std::ptrdiff_t)C};
    }
    Plane plane(long c) const { return {p + (std::ptrdiff_t)c * cs, H, W, rs, xs}; }
};

// Output affine of decoded keypoints: x' = sx * x + bx, y' = sy * y + by (in double, rounded
// to float32). `on` false = identity (the coordinates are copied untouched).
struct Affine {
    bool on = false;
    double sx = 1, bx = 0, sy = 1, by = 0;
    void apply(float x, float y, float& ox, float& oy) const {
        if (on) {
            ox = (float)(sx * (double)x + bx);
            oy = (float)(sy * (double)y + by);
        } else {
            ox = x;
            oy = y;
        }
    }
};

// True when every value is finite (no NaN, no inf).
bool all_finite(const float* p, size_t n);

// Index of the first channel holding a NaN or inf, or -1.
long first_nonfinite_channel(const Maps& m);

// Gaussian kernel of OpenCV's getGaussianKernel(ksize, 0) (normalised, double).
void gaussian_kernel(int ksize, std::vector<double>& g);

// Sub-pixel position of the integer peak (x, y) of one map.
void refine_point(const Plane& m, int x, int y, Refine r, const double* g, int ksize, float& fx,
                  float& fy);

// Peak finding. Before the tie-rule scan, one pass over all channels (in memory order, fused
// with the finiteness check) finds per channel and row the columns first..last that hold every
// value above the threshold; the scan visits only those (first > last: none).
struct PeakScratch {
    std::vector<float> val;
    std::vector<int32_t> pos;
    std::vector<int32_t> order;
    std::vector<int32_t> first, last;   // [C * H] spans, channel-major
    std::vector<float> bmax;            // [C] block maxima (maps with non-contiguous rows)
};

// Fills s.first / s.last for every channel of m. Returns false when a value is NaN or inf.
bool row_spans(const Maps& m, double thr, PeakScratch& s);

// Peaks of one finite map, best first, at most max_peaks, refined; appended to out.
// first / last: its H row spans from row_spans.
void channel_peaks(const Plane& m, const int32_t* first, const int32_t* last, double thr,
                   int max_peaks, Refine r, const double* g, int ksize, PeakScratch& s,
                   std::vector<Peak>& out);

// Argmax (first in scan order) of n contiguous values; returns the index, writes the value and
// whether all n values are finite.
size_t argmax(const float* p, size_t n, float& vmax, bool& finite);

// Argmax (first in scan order) of every channel of non-empty maps: idx[c] = y * W + x
// (H * W < 2^31) and vmax[c] its value. Returns false when a value is NaN or inf.
bool argmax_maps(const Maps& m, int32_t* idx, float* vmax, std::vector<float>& scratch);

// Defaults equal to edgepose.metadata.DECODE_DEFAULTS["bottomup"] (the one table; the Python API
// always passes every value, these only serve C++ callers).
struct GroupOptions {
    int paf_samples = 10;
    double paf_score_threshold = 0.05;
    double min_sample_fraction = 0.8;
    int min_parts = 3;
    double min_person_score = 0.1;
    bool hungarian = false;
};

struct GroupScratch {
    struct Cand {
        double score;
        int32_t a, b;   // local indices within the limb's part_a / part_b peaks
        int64_t gen;    // generation order (a-major) for deterministic ties
    };
    std::vector<Cand> cands, picked;
    std::vector<uint8_t> used_a, used_b;
    std::vector<int32_t> owner;      // per global peak: person id or -1
    std::vector<int32_t> parts;      // per person: K global peak indices (-1 missing)
    std::vector<double> conn;        // per person: sum of connection scores
    std::vector<int32_t> nconn;
    std::vector<uint8_t> alive;
    std::vector<double> hcost, hu, hv, hminv;   // Hungarian
    std::vector<int32_t> hp, hway, hbest;
    std::vector<uint8_t> hused;
    std::vector<int32_t> order, visit;
    std::vector<double> pscore;
};

// Group peaks (CSR per keypoint type: offsets[K+1]) with the PAF maps and limbs [L, 4].
// Writes people [P, K, 3] into people_out (found keypoints through `affine`, missing ones
// (-1, -1, 0)) and scores [P] into scores_out (sorted).
void group_people(const Peak* peaks, const int64_t* offsets, int K, const Maps& pafs,
                  const int64_t* limbs, int L, const GroupOptions& opt, const Affine& affine,
                  GroupScratch& s, std::vector<float>& people_out, std::vector<float>& scores_out);

}  // namespace ep
