// OpenPose-style grouping of peaks into people with part affinity fields.
// Definitions: edgepose/reference.py (group_people, connection_score, _match, person_score).
#include <algorithm>
#include <cmath>
#include <limits>

#include "kernels.hpp"

namespace ep {

namespace {

// Bilinear samples of the two PAF channels at continuous (x, y), clamped to the map; returns
// their projection on (ux, uy). Same arithmetic as reference.bilinear. Both planes share strides.
inline double paf_dot(const Plane& px, const Plane& py, double x, double y, double ux, double uy) {
    const int H = px.H, W = px.W;
    x = std::min(std::max(x, 0.0), W - 1.0);
    y = std::min(std::max(y, 0.0), H - 1.0);
    const int x0 = (int)x, y0 = (int)y;   // x, y >= 0: truncation is floor
    const int x1 = std::min(x0 + 1, W - 1), y1 = std::min(y0 + 1, H - 1);
    const double ax = x - x0, ay = y - y0;
    const std::ptrdiff_t r0 = (std::ptrdiff_t)y0 * px.rs, r1 = (std::ptrdiff_t)y1 * px.rs;
    const std::ptrdiff_t c0 = (std::ptrdiff_t)x0 * px.xs, c1 = (std::ptrdiff_t)x1 * px.xs;
    const std::ptrdiff_t i00 = r0 + c0, i01 = r0 + c1, i10 = r1 + c0, i11 = r1 + c1;
    const double tx = (1.0 - ax) * (double)px.p[i00] + ax * (double)px.p[i01];
    const double bx = (1.0 - ax) * (double)px.p[i10] + ax * (double)px.p[i11];
    const double ty = (1.0 - ax) * (double)py.p[i00] + ax * (double)py.p[i01];
    const double by = (1.0 - ax) * (double)py.p[i10] + ax * (double)py.p[i11];
    return ((1.0 - ay) * tx + ay * bx) * ux + ((1.0 - ay) * ty + ay * by) * uy;
}

// Connection score of a -> b, or false when not a valid connection. Samples are visited from
// the middle of the segment outwards (wrong pairs fail there first) and sampling stops as soon
// as too many fall at or below the threshold: the result cannot be valid any more.
inline bool connection_score(const Peak& a, const Peak& b, const Plane& px, const Plane& py,
                             const GroupOptions& o, int need, const int* visit, double& score) {
    const double ax = a.x, ay = a.y;
    const double dx = (double)b.x - ax, dy = (double)b.y - ay;
    const double norm = std::sqrt(dx * dx + dy * dy);
    if (norm < 1e-6) return false;
    const double ux = dx / norm, uy = dy / norm;
    const int S = o.paf_samples;
    const int max_fail = S - need;
    if (max_fail < 0) return false;
    int fails = 0;
    double total = 0.0;
    for (int k = 0; k < S; ++k) {
        const int s = visit[k];
        const double t = S > 1 ? s / (S - 1.0) : 0.5;
        const double v = paf_dot(px, py, ax + t * dx, ay + t * dy, ux, uy);
        total += v;
        if (!(v > o.paf_score_threshold) && ++fails > max_fail) return false;
    }
    score = total / S + std::min(0.5 * px.H / norm - 1.0, 0.0);
    return score > 0;
}

// Max-weight bipartite matching on an n x m score matrix (0 = no edge), n <= m:
// Hungarian algorithm with potentials minimising -score. Writes row -> column into best.
void hungarian(GroupScratch& s, int n, int m) {
    const double INF = std::numeric_limits<double>::infinity();
    // cost[i][j] = -score for 1-based i, j (row-major in s.hcost: (i-1)*m + (j-1))
    s.hu.assign(n + 1, 0.0);
    s.hv.assign(m + 1, 0.0);
    s.hp.assign(m + 1, 0);
    s.hway.assign(m + 1, 0);
    s.hminv.resize(m + 1);
    s.hused.resize(m + 1);
    for (int i = 1; i <= n; ++i) {
        s.hp[0] = i;
        int j0 = 0;
        std::fill(s.hminv.begin(), s.hminv.end(), INF);
        std::fill(s.hused.begin(), s.hused.end(), 0);
        do {
            s.hused[j0] = 1;
            const int i0 = s.hp[j0];
            double delta = INF;
            int j1 = 0;
            for (int j = 1; j <= m; ++j) {
                if (s.hused[j]) continue;
                const double cur = -s.hcost[(size_t)(i0 - 1) * m + (j - 1)] - s.hu[i0] - s.hv[j];
                if (cur < s.hminv[j]) {
                    s.hminv[j] = cur;
                    s.hway[j] = j0;
                }
                if (s.hminv[j] < delta) {
                    delta = s.hminv[j];
                    j1 = j;
                }
            }
            for (int j = 0; j <= m; ++j) {
                if (s.hused[j]) {
                    s.hu[s.hp[j]] += delta;
                    s.hv[j] -= delta;
                } else {
                    s.hminv[j] -= delta;
                }
            }
            j0 = j1;
        } while (s.hp[j0] != 0);
        do {
            const int j1 = s.hway[j0];
            s.hp[j0] = s.hp[j1];
            j0 = j1;
        } while (j0);
    }
    s.hbest.assign(n, -1);
    for (int j = 1; j <= m; ++j)
        if (s.hp[j] > 0) s.hbest[s.hp[j] - 1] = j - 1;
}

void match_limb(GroupScratch& s, int na, int nb, bool hung) {
    s.picked.clear();
    if (s.cands.empty()) return;
    if (!hung) {
        std::sort(s.cands.begin(), s.cands.end(), [](const GroupScratch::Cand& p,
                                                     const GroupScratch::Cand& q) {
            return p.score > q.score || (p.score == q.score && p.gen < q.gen);
        });
        s.used_a.assign(na, 0);
        s.used_b.assign(nb, 0);
        for (const auto& c : s.cands) {
            if (s.used_a[c.a] || s.used_b[c.b]) continue;
            s.used_a[c.a] = s.used_b[c.b] = 1;
            s.picked.push_back(c);
        }
        return;
    }
    // Hungarian: the largest total score; pairs without a valid connection weigh 0 and are
    // dropped from the result (equivalent to leaving those peaks unmatched).
    const bool tr = na > nb;   // rows must be the smaller side
    const int n = tr ? nb : na, m = tr ? na : nb;
    s.hcost.assign((size_t)n * m, 0.0);
    for (const auto& c : s.cands) {
        const int i = tr ? c.b : c.a, j = tr ? c.a : c.b;
        s.hcost[(size_t)i * m + j] = c.score;
    }
    hungarian(s, n, m);
    for (int i = 0; i < n; ++i) {
        const int j = s.hbest[i];
        if (j < 0) continue;
        const double sc = s.hcost[(size_t)i * m + j];
        if (!(sc > 0)) continue;
        GroupScratch::Cand c;
        c.score = sc;
        c.a = tr ? j : i;
        c.b = tr ? i : j;
        c.gen = c.a;
        s.picked.push_back(c);
    }
    std::stable_sort(s.picked.begin(), s.picked.end(),
                     [](const GroupScratch::Cand& p, const GroupScratch::Cand& q) {
                         return p.score > q.score || (p.score == q.score && p.a < q.a);
                     });
}

}  // namespace

void group_people(const Peak* peaks, const int64_t* offsets, int K, const Maps& pafs,
                  const int64_t* limbs, int L, const GroupOptions& opt, const Affine& affine,
                  GroupScratch& s, std::vector<float>& people_out, std::vector<float>& scores_out) {
    people_out.clear();
    scores_out.clear();
    const int M = (int)offsets[K];
    s.owner.assign(M, -1);
    s.parts.clear();
    s.conn.clear();
    s.nconn.clear();
    s.alive.clear();
    // more than min_sample_fraction * paf_samples samples must pass: at least `need` of them
    // (clamped to 0 .. paf_samples + 1, so that any finite fraction is well defined)
    const double need_d = std::floor(opt.min_sample_fraction * opt.paf_samples) + 1.0;
    const int need = need_d < 0 ? 0 : (need_d > opt.paf_samples ? opt.paf_samples + 1 : (int)need_d);
    // sample visiting order: middle first, then outwards
    s.visit.resize(opt.paf_samples);
    for (int k = 0; k < opt.paf_samples; ++k) s.visit[k] = k;
    {
        const double mid = 0.5 * (opt.paf_samples - 1);
        std::stable_sort(s.visit.begin(), s.visit.end(),
                         [mid](int p, int q) { return std::fabs(p - mid) < std::fabs(q - mid); });
    }
    for (int l = 0; l < L; ++l) {
        const int pa = (int)limbs[4 * l], pb = (int)limbs[4 * l + 1];
        const Plane px = pafs.plane((long)limbs[4 * l + 2]);
        const Plane py = pafs.plane((long)limbs[4 * l + 3]);
        const int a0 = (int)offsets[pa], na = (int)(offsets[pa + 1] - offsets[pa]);
        const int b0 = (int)offsets[pb], nb = (int)(offsets[pb + 1] - offsets[pb]);
        if (na == 0 || nb == 0) continue;
        s.cands.clear();
        int64_t gen = 0;
        for (int i = 0; i < na; ++i)
            for (int j = 0; j < nb; ++j, ++gen) {
                double sc;
                if (connection_score(peaks[a0 + i], peaks[b0 + j], px, py, opt, need,
                                     s.visit.data(), sc))
                    s.cands.push_back({sc, i, j, gen});
            }
        match_limb(s, na, nb, opt.hungarian);
        for (const auto& c : s.picked) {
            const int gi = a0 + c.a, gj = b0 + c.b;
            const int P = s.owner[gi], Q = s.owner[gj];
            if (P < 0 && Q < 0) {
                const int id = (int)s.alive.size();
                s.parts.resize(s.parts.size() + K, -1);
                s.parts[(size_t)id * K + pa] = gi;
                s.parts[(size_t)id * K + pb] = gj;
                s.conn.push_back(c.score);
                s.nconn.push_back(1);
                s.alive.push_back(1);
                s.owner[gi] = s.owner[gj] = id;
            } else if (P >= 0 && Q < 0) {
                int32_t& slot = s.parts[(size_t)P * K + pb];
                if (slot < 0) {
                    slot = gj;
                    s.conn[P] += c.score;
                    s.nconn[P] += 1;
                    s.owner[gj] = P;
                }
            } else if (P < 0 && Q >= 0) {
                int32_t& slot = s.parts[(size_t)Q * K + pa];
                if (slot < 0) {
                    slot = gi;
                    s.conn[Q] += c.score;
                    s.nconn[Q] += 1;
                    s.owner[gi] = Q;
                }
            } else if (P == Q) {
                s.conn[P] += c.score;
                s.nconn[P] += 1;
            } else {
                const int keep = std::min(P, Q), drop = std::max(P, Q);
                int32_t* pk = &s.parts[(size_t)keep * K];
                int32_t* pd = &s.parts[(size_t)drop * K];
                bool disjoint = true;
                for (int k = 0; k < K; ++k)
                    if (pk[k] >= 0 && pd[k] >= 0) {
                        disjoint = false;
                        break;
                    }
                if (!disjoint) continue;
                for (int k = 0; k < K; ++k)
                    if (pd[k] >= 0) {
                        pk[k] = pd[k];
                        s.owner[pd[k]] = keep;
                        pd[k] = -1;
                    }
                s.conn[keep] += s.conn[drop] + c.score;
                s.nconn[keep] += s.nconn[drop] + 1;
                s.alive[drop] = 0;
            }
        }
    }
    // filter, score, sort
    const int P = (int)s.alive.size();
    s.order.clear();
    s.pscore.assign(P, 0.0);
    for (int p = 0; p < P; ++p) {
        if (!s.alive[p]) continue;
        const int32_t* pp = &s.parts[(size_t)p * K];
        int n = 0;
        double kp = 0.0;
        for (int k = 0; k < K; ++k)
            if (pp[k] >= 0) {
                ++n;
                kp += (double)peaks[pp[k]].score;
            }
        if (n < opt.min_parts) continue;
        // quality (mean of keypoint and connection scores) x sqrt(fraction of keypoints found)
        const double sc = (kp + s.conn[p]) / (double)(n + s.nconn[p]) * std::sqrt((double)n / K);
        if (sc < opt.min_person_score) continue;
        s.pscore[p] = sc;
        s.order.push_back(p);
    }
    std::stable_sort(s.order.begin(), s.order.end(),
                     [&](int a, int b) { return s.pscore[a] > s.pscore[b]; });
    people_out.resize(s.order.size() * (size_t)K * 3);
    scores_out.resize(s.order.size());
    for (size_t r = 0; r < s.order.size(); ++r) {
        const int p = s.order[r];
        const int32_t* pp = &s.parts[(size_t)p * K];
        float* o = &people_out[r * (size_t)K * 3];
        for (int k = 0; k < K; ++k) {
            if (pp[k] >= 0) {
                const Peak& q = peaks[pp[k]];
                affine.apply(q.x, q.y, o[3 * k], o[3 * k + 1]);
                o[3 * k + 2] = q.score;
            } else {
                o[3 * k] = -1.f;
                o[3 * k + 1] = -1.f;
                o[3 * k + 2] = 0.f;
            }
        }
        scores_out[r] = (float)s.pscore[p];
    }
}

}  // namespace ep
