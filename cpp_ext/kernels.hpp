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

// True when every value is finite (no NaN, no inf).
bool all_finite(const float* p, size_t n);

// Gaussian kernel of OpenCV's getGaussianKernel(ksize, 0) (normalised, double).
void gaussian_kernel(int ksize, std::vector<double>& g);

// Sub-pixel position of the integer peak (x, y) of one map [H, W].
void refine_point(const float* hm, int H, int W, int x, int y, Refine r, const double* g, int ksize,
                  float& fx, float& fy);

// Peaks of one map, best first, at most max_peaks, refined; appended to out.
// The map must be finite (check with all_finite first). Returns true.
struct PeakScratch {
    std::vector<float> val;
    std::vector<int32_t> pos;
    std::vector<int32_t> order;
};
bool channel_peaks(const float* hm, int H, int W, double thr, int max_peaks, Refine r,
                   const double* g, int ksize, PeakScratch& s, std::vector<Peak>& out);

// Argmax (first in scan order) of n values; returns the index, writes the value and whether
// all n values are finite.
size_t argmax(const float* p, size_t n, float& vmax, bool& finite);

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
        int32_t gen;    // generation order (a-major) for deterministic ties
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

// Group peaks (CSR per keypoint type: offsets[K+1]) with PAFs [C, H, W] and limbs [L, 4].
// Writes people [P, K, 3] into people_out and scores [P] into scores_out (sorted).
void group_people(const Peak* peaks, const int64_t* offsets, int K, const float* pafs, int C,
                  int H, int W, const int64_t* limbs, int L, const GroupOptions& opt,
                  GroupScratch& s, std::vector<float>& people_out, std::vector<float>& scores_out);

}  // namespace ep
