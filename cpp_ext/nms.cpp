// One-stage pose post-processing (YOLO-pose): score threshold over the anchors, then greedy NMS
// (box IoU, or keypoint OKS) of the candidates, reading the network output in place in either
// layout ([5+3K, N] "CN" or [N, 5+3K] "NC"). Returns the kept anchors, best score first; the
// caller gathers their rows and maps coordinates to the image. Numpy reference:
// edgepose.reference.onestage_select.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace ep {

struct OneStageOptions {
    double score_threshold = 0.25;
    bool nms_on = true;
    bool oks = false;             // OKS between poses instead of box IoU
    double nms_threshold = 0.7;   // suppress when IoU / OKS > this
    int max_det = 100;
    int max_candidates = 30000;   // best-scoring candidates considered (Ultralytics' max_nms)
    double bsx = 1, bsy = 1;      // box units -> input pixels (x, y)
    double ksx = 1, ksy = 1;      // keypoint units -> input pixels (x, y)
    double kpt_threshold = 0;     // OKS: keypoints scoring <= this in either pose are ignored
};

namespace {

struct Cand {
    float score;
    int64_t idx;
    double x1, y1, x2, y2, area;
};

inline double iou(const Cand& a, const Cand& b) {
    const double iw = std::min(a.x2, b.x2) - std::max(a.x1, b.x1);
    const double ih = std::min(a.y2, b.y2) - std::max(a.y1, b.y1);
    if (iw <= 0 || ih <= 0) return 0.0;
    const double inter = iw * ih;
    const double uni = a.area + b.area - inter;
    return uni > 0 ? inter / uni : 0.0;
}

}  // namespace

// Returns -1, or the anchor index of a candidate (score above the threshold) whose box or
// keypoints are NaN/inf, or -2 - n for a NaN/inf score at anchor n.
int64_t select_onestage(const float* p, long C, long N, std::ptrdiff_t cs, std::ptrdiff_t ns, int K,
                        const OneStageOptions& o, const double* sigmas, std::vector<int64_t>& keep) {
    keep.clear();
    auto at = [&](long c, long n) { return p[(std::ptrdiff_t)c * cs + (std::ptrdiff_t)n * ns]; };
    std::vector<Cand> cands;
    const double thr = o.score_threshold;   // compared in double: a float32 score equal to the
    for (long n = 0; n < N; ++n) {           // rounded threshold (0.3f > 0.3) counts as above
        const float s = at(4, n);
        if (!std::isfinite(s)) return -2 - (int64_t)n;
        if ((double)s > thr) cands.push_back({s, (int64_t)n, 0, 0, 0, 0, 0});
    }
    auto better = [](const Cand& a, const Cand& b) {
        return a.score > b.score || (a.score == b.score && a.idx < b.idx);
    };
    if ((long)cands.size() > o.max_candidates) {
        std::nth_element(cands.begin(), cands.begin() + o.max_candidates, cands.end(), better);
        cands.resize(o.max_candidates);
    }
    std::sort(cands.begin(), cands.end(), better);
    for (auto& c : cands) {
        const long n = (long)c.idx;
        const double cx = at(0, n) * o.bsx, cy = at(1, n) * o.bsy;
        const double w = at(2, n) * o.bsx, h = at(3, n) * o.bsy;
        if (!std::isfinite(cx) || !std::isfinite(cy) || !std::isfinite(w) || !std::isfinite(h))
            return c.idx;
        for (long j = 5; j < C; ++j)
            if (!std::isfinite(at(j, n))) return c.idx;
        c.x1 = cx - 0.5 * w;
        c.y1 = cy - 0.5 * h;
        c.x2 = cx + 0.5 * w;
        c.y2 = cy + 0.5 * h;
        c.area = std::max(w, 0.0) * std::max(h, 0.0);
    }
    std::vector<double> var(K);
    for (int k = 0; k < K; ++k) var[k] = o.oks ? 4.0 * sigmas[k] * sigmas[k] : 1.0;
    std::vector<const Cand*> kept;
    for (const auto& c : cands) {
        if ((int)kept.size() >= o.max_det) break;
        bool suppressed = false;
        if (o.nms_on) {
            for (const Cand* k : kept) {
                double sim;
                if (!o.oks) {
                    sim = iou(c, *k);
                } else {
                    const double a = 0.5 * (c.area + k->area) + 2.220446049250313e-16;
                    double acc = 0;
                    int cnt = 0;
                    for (int j = 0; j < K; ++j) {
                        const double sc = at(5 + 3 * j + 2, (long)c.idx), sk = at(5 + 3 * j + 2, (long)k->idx);
                        if (o.kpt_threshold > 0 && !(sc > o.kpt_threshold && sk > o.kpt_threshold)) continue;
                        const double dx = (at(5 + 3 * j, (long)c.idx) - at(5 + 3 * j, (long)k->idx)) * o.ksx;
                        const double dy = (at(6 + 3 * j, (long)c.idx) - at(6 + 3 * j, (long)k->idx)) * o.ksy;
                        acc += std::exp(-(dx * dx + dy * dy) / var[j] / a / 2.0);
                        ++cnt;
                    }
                    sim = cnt ? acc / cnt : 0.0;
                }
                if (sim > o.nms_threshold) {
                    suppressed = true;
                    break;
                }
            }
        }
        if (!suppressed) kept.push_back(&c);
    }
    keep.reserve(kept.size());
    for (const Cand* k : kept) keep.push_back(k->idx);
    return -1;
}

}  // namespace ep
