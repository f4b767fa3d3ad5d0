// Peak finding, argmax and sub-pixel refinement (see edgepose/reference.py for the definitions).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "kernels.hpp"

#if defined(__SSE2__) || defined(_M_X64)
#include <emmintrin.h>
#define EP_SSE2 1
#elif defined(__aarch64__) && defined(__ARM_NEON)
#include <arm_neon.h>
#define EP_NEON 1
#endif

namespace ep {

namespace {
constexpr double LOG_FLOOR = 1e-10;

// SSE2 (every x86-64) or NEON (aarch64) intrinsics, scalar otherwise; no -march needed.
// A float is finite iff its exponent bits are not all ones.
constexpr uint32_t EXP_MASK = 0x7f800000u;

inline bool scalar_nonfinite(float v) {
    uint32_t b;
    std::memcpy(&b, &v, 4);
    return (b & EXP_MASK) == EXP_MASK;
}

// max over n values and whether all are finite, in one pass.
inline float max_and_check(const float* p, size_t n, bool& finite) {
    size_t i = 0;
    float r = -std::numeric_limits<float>::infinity();
    bool bad = false;
#if defined(EP_SSE2)
    const __m128i em = _mm_set1_epi32((int)EXP_MASK);
    __m128 m0 = _mm_set1_ps(r), m1 = m0;
    __m128i b0 = _mm_setzero_si128(), b1 = b0;
    for (; i + 8 <= n; i += 8) {
        const __m128 a = _mm_loadu_ps(p + i), c = _mm_loadu_ps(p + i + 4);
        m0 = _mm_max_ps(m0, a);
        m1 = _mm_max_ps(m1, c);
        b0 = _mm_or_si128(b0, _mm_cmpeq_epi32(_mm_and_si128(_mm_castps_si128(a), em), em));
        b1 = _mm_or_si128(b1, _mm_cmpeq_epi32(_mm_and_si128(_mm_castps_si128(c), em), em));
    }
    m0 = _mm_max_ps(m0, m1);
    alignas(16) float mm[4];
    _mm_store_ps(mm, m0);
    for (int j = 0; j < 4; ++j) r = r < mm[j] ? mm[j] : r;
    bad = _mm_movemask_epi8(_mm_or_si128(b0, b1)) != 0;
#elif defined(EP_NEON)
    const uint32x4_t em = vdupq_n_u32(EXP_MASK);
    float32x4_t m0 = vdupq_n_f32(r), m1 = m0;
    uint32x4_t b0 = vdupq_n_u32(0), b1 = b0;
    for (; i + 8 <= n; i += 8) {
        const float32x4_t a = vld1q_f32(p + i), c = vld1q_f32(p + i + 4);
        m0 = vmaxq_f32(m0, a);
        m1 = vmaxq_f32(m1, c);
        b0 = vorrq_u32(b0, vceqq_u32(vandq_u32(vreinterpretq_u32_f32(a), em), em));
        b1 = vorrq_u32(b1, vceqq_u32(vandq_u32(vreinterpretq_u32_f32(c), em), em));
    }
    r = vmaxvq_f32(vmaxq_f32(m0, m1));
    bad = vmaxvq_u32(vorrq_u32(b0, b1)) != 0;
#endif
    for (; i < n; ++i) {
        r = r < p[i] ? p[i] : r;
        bad |= scalar_nonfinite(p[i]);
    }
    finite = !bad;
    return r;
}

inline double sgn(double d) { return d > 0 ? 1.0 : (d < 0 ? -1.0 : 0.0); }

inline void quarter(const Plane& m, int x, int y, float& fx, float& fy) {
    double ox = 0, oy = 0;
    if (x >= 1 && x <= m.W - 2) ox = 0.25 * sgn((double)m.at(x + 1, y) - (double)m.at(x - 1, y));
    if (y >= 1 && y <= m.H - 2) oy = 0.25 * sgn((double)m.at(x, y + 1) - (double)m.at(x, y - 1));
    fx = (float)(x + ox);
    fy = (float)(y + oy);
}

// DARK on the 5x5 window around (x, y): blur only the points the derivatives need.
inline bool dark(const Plane& m, int x, int y, const double* g, int ksize, float& fx, float& fy) {
    const int H = m.H, W = m.W;
    const std::ptrdiff_t xs = m.xs;
    if (!(x >= 2 && x <= W - 3 && y >= 2 && y <= H - 3)) return false;
    const int r = (ksize - 1) / 2;
    // horizontal pass: rows y-2-r .. y+2+r, columns x-2 .. x+2
    const int nrows = 5 + 2 * r;
    double hb[5 + 2 * 49][5];
    for (int i = 0; i < nrows; ++i) {
        const int yy = y - 2 - r + i;
        if (yy < 0 || yy >= H) {
            for (int c = 0; c < 5; ++c) hb[i][c] = 0.0;
            continue;
        }
        const float* row = m.row(yy);
        if (x - 2 - r >= 0 && x + 2 + r <= W - 1) {
            // interior: five independent accumulators (taps in ascending order, as reference)
            const float* b = row + (std::ptrdiff_t)(x - 2 - r) * xs;
            double a0 = 0, a1 = 0, a2 = 0, a3 = 0, a4 = 0;
            for (int t = 0; t < ksize; ++t) {
                const double gt = g[t];
                const float* bt = b + (std::ptrdiff_t)t * xs;
                a0 += gt * (double)bt[0];
                a1 += gt * (double)bt[xs];
                a2 += gt * (double)bt[2 * xs];
                a3 += gt * (double)bt[3 * xs];
                a4 += gt * (double)bt[4 * xs];
            }
            hb[i][0] = a0;
            hb[i][1] = a1;
            hb[i][2] = a2;
            hb[i][3] = a3;
            hb[i][4] = a4;
            continue;
        }
        for (int c = 0; c < 5; ++c) {
            const int cx = x - 2 + c;
            const int t0 = std::max(-r, -cx), t1 = std::min(r, W - 1 - cx);
            double acc = 0.0;
            for (int t = t0; t <= t1; ++t) acc += g[t + r] * (double)row[(std::ptrdiff_t)(cx + t) * xs];
            hb[i][c] = acc;
        }
    }
    // vertical pass -> log of the blurred 5x5 window (the 13 points used), 13 accumulators
    static const int pts[13][2] = {{2, 2}, {2, 1}, {2, 3}, {1, 2}, {3, 2}, {2, 0}, {2, 4},
                                   {0, 2}, {4, 2}, {1, 1}, {1, 3}, {3, 1}, {3, 3}};
    double acc[13] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    for (int t = 0; t < ksize; ++t) {
        const double gt = g[t];
        for (int q = 0; q < 13; ++q) acc[q] += gt * hb[pts[q][0] + t][pts[q][1]];
    }
    double L[5][5];
    for (int q = 0; q < 13; ++q) L[pts[q][0]][pts[q][1]] = std::log(std::max(acc[q], LOG_FLOOR));
    const double dx = 0.5 * (L[2][3] - L[2][1]);
    const double dy = 0.5 * (L[3][2] - L[1][2]);
    const double dxx = 0.25 * (L[2][4] - 2 * L[2][2] + L[2][0]);
    const double dyy = 0.25 * (L[4][2] - 2 * L[2][2] + L[0][2]);
    const double dxy = 0.25 * (L[3][3] - L[1][3] - L[3][1] + L[1][1]);
    const double det = dxx * dyy - dxy * dxy;
    if (!(dxx < 0 && det > 0)) return false;
    double ox = -(dyy * dx - dxy * dy) / det;
    double oy = -(-dxy * dx + dxx * dy) / det;
    ox = std::min(std::max(ox, -1.0), 1.0);
    oy = std::min(std::max(oy, -1.0), 1.0);
    fx = (float)(x + ox);
    fy = (float)(y + oy);
    return true;
}

inline void centroid(const Plane& m, int x, int y, float& fx, float& fy) {
    double sw = 0, sx = 0, sy = 0;
    for (int yy = std::max(0, y - 1); yy < std::min(m.H, y + 2); ++yy)
        for (int xx = std::max(0, x - 1); xx < std::min(m.W, x + 2); ++xx) {
            const double w = std::max((double)m.at(xx, yy), 0.0);
            sw += w;
            sx += w * xx;
            sy += w * yy;
        }
    if (sw > 0) {
        fx = (float)(sx / sw);
        fy = (float)(sy / sw);
    } else {
        fx = (float)x;
        fy = (float)y;
    }
}

// Candidate peaks of one map in scan order (tie rule of the module docstring), visiting in each
// row only the columns first[y]..last[y] (all values above thr lie there).
// UNIT: columns are contiguous (xs == 1, known at compile time).
template <bool UNIT>
void scan_peaks(const Plane& m, const int32_t* first, const int32_t* last, double thr,
                PeakScratch& s) {
    const int H = m.H, W = m.W;
    const std::ptrdiff_t xs = UNIT ? 1 : m.xs;
    for (int y = 0; y < H; ++y) {
        const int x0 = first[y], x1 = last[y];   // locals: s.pos may alias first / last
        if (x0 > x1) continue;
        const float* row = m.row(y);
        const float* up = y > 0 ? row - m.rs : nullptr;
        const float* dn = y + 1 < H ? row + m.rs : nullptr;
        for (int x = x0; x <= x1; ++x) {
            const std::ptrdiff_t i = (std::ptrdiff_t)x * xs;
            const float v = row[i];
            if (!((double)v > thr)) continue;
            const bool l = x > 0, r = x + 1 < W;
            // before in scan order: strictly greater; after: greater or equal
            if (l && !(v > row[i - xs])) continue;
            if (r && !(v >= row[i + xs])) continue;
            if (up) {
                if (!(v > up[i])) continue;
                if (l && !(v > up[i - xs])) continue;
                if (r && !(v > up[i + xs])) continue;
            }
            if (dn) {
                if (!(v >= dn[i])) continue;
                if (l && !(v >= dn[i - xs])) continue;
                if (r && !(v >= dn[i + xs])) continue;
            }
            s.val.push_back(v);
            s.pos.push_back(y * W + x);
        }
    }
}

// The float t with (v > t) == ((double)v > thr) for every finite float v: thr rounded down to
// a float (clamped to the float range first: an out-of-range conversion is undefined).
inline float float_threshold(double thr) {
    const double fmax = std::numeric_limits<float>::max();
    if (thr >= fmax) return std::numeric_limits<float>::max();
    if (thr < -fmax) return -std::numeric_limits<float>::infinity();
    float t = (float)thr;
    if ((double)t > thr) t = std::nextafter(t, -std::numeric_limits<float>::infinity());
    return t;
}

// Per channel c < C: out[c] = the maximum of columns x0..x1 of one row (pixel stride xs,
// channel stride cs); returns nonzero when one of the values is NaN or inf. For maps whose rows
// are not contiguous: the channels of a pixel are read together, four at a time when they are
// contiguous (cs == 1; the last group of four overlaps the previous one when 4 does not divide
// C, harmless for a maximum), so that the data is read in memory order.
inline uint32_t block_max(const float* row, std::ptrdiff_t xs, std::ptrdiff_t cs, long C, int x0,
                          int x1, float* out) {
    const float* blk = row + (std::ptrdiff_t)x0 * xs;
    const int n = x1 - x0 + 1;
    uint32_t bad = 0;
#if defined(EP_SSE2) || defined(EP_NEON)
    if (cs == 1 && C >= 4) {
        for (long c0 = 0; c0 < C; c0 += 4) {
            const long c = std::min(c0, C - 4);
#if defined(EP_SSE2)
            const __m128i em = _mm_set1_epi32((int)EXP_MASK);
            // two accumulators (even / odd columns) halve the dependency chain
            __m128 m0 = _mm_set1_ps(-std::numeric_limits<float>::infinity()), m1 = m0;
            __m128i b = _mm_setzero_si128();
            int x = 0;
            for (; x + 2 <= n; x += 2) {
                const __m128 v0 = _mm_loadu_ps(blk + (std::ptrdiff_t)x * xs + c);
                const __m128 v1 = _mm_loadu_ps(blk + (std::ptrdiff_t)(x + 1) * xs + c);
                m0 = _mm_max_ps(m0, v0);
                m1 = _mm_max_ps(m1, v1);
                b = _mm_or_si128(b, _mm_cmpeq_epi32(_mm_and_si128(_mm_castps_si128(v0), em), em));
                b = _mm_or_si128(b, _mm_cmpeq_epi32(_mm_and_si128(_mm_castps_si128(v1), em), em));
            }
            if (x < n) {
                const __m128 v0 = _mm_loadu_ps(blk + (std::ptrdiff_t)x * xs + c);
                m0 = _mm_max_ps(m0, v0);
                b = _mm_or_si128(b, _mm_cmpeq_epi32(_mm_and_si128(_mm_castps_si128(v0), em), em));
            }
            bad |= (uint32_t)_mm_movemask_epi8(b);
            _mm_storeu_ps(out + c, _mm_max_ps(m0, m1));
#else
            const uint32x4_t em = vdupq_n_u32(EXP_MASK);
            float32x4_t m0 = vdupq_n_f32(-std::numeric_limits<float>::infinity()), m1 = m0;
            uint32x4_t b = vdupq_n_u32(0);
            int x = 0;
            for (; x + 2 <= n; x += 2) {
                const float32x4_t v0 = vld1q_f32(blk + (std::ptrdiff_t)x * xs + c);
                const float32x4_t v1 = vld1q_f32(blk + (std::ptrdiff_t)(x + 1) * xs + c);
                m0 = vmaxq_f32(m0, v0);
                m1 = vmaxq_f32(m1, v1);
                b = vorrq_u32(b, vceqq_u32(vandq_u32(vreinterpretq_u32_f32(v0), em), em));
                b = vorrq_u32(b, vceqq_u32(vandq_u32(vreinterpretq_u32_f32(v1), em), em));
            }
            if (x < n) {
                const float32x4_t v0 = vld1q_f32(blk + (std::ptrdiff_t)x * xs + c);
                m0 = vmaxq_f32(m0, v0);
                b = vorrq_u32(b, vceqq_u32(vandq_u32(vreinterpretq_u32_f32(v0), em), em));
            }
            bad |= vmaxvq_u32(b);
            vst1q_f32(out + c, vmaxq_f32(m0, m1));
#endif
        }
        return bad;
    }
#endif
    for (long c = 0; c < C; ++c) {   // scalar: strided channels, fewer than 4, or no SIMD
        const float* p = blk + c * cs;
        float mx = -std::numeric_limits<float>::infinity();
        for (int x = 0; x < n; ++x) {
            const float v = p[(std::ptrdiff_t)x * xs];
            bad |= (uint32_t)scalar_nonfinite(v);
            mx = mx < v ? v : mx;
        }
        out[c] = mx;
    }
    return bad;
}

// row_spans for maps whose rows are not contiguous: one pass over the data in memory order.
// Each row is cut into blocks of SPAN_BLOCK columns; a channel's span runs from the first to the
// last block whose maximum is above thr (it may include some columns below thr).
constexpr int SPAN_BLOCK = 8;

bool row_spans_pixelwise(const Maps& m, double thr, PeakScratch& s) {
    const long C = m.C;
    const int W = m.W;
    const float t = float_threshold(thr);
    s.bmax.resize(C);
    float* bm = s.bmax.data();
    uint32_t bad = 0;
    for (int y = 0; y < m.H; ++y) {
        for (long c = 0; c < C; ++c) {
            s.first[(size_t)c * m.H + y] = W;
            s.last[(size_t)c * m.H + y] = -1;
        }
        const float* row = m.p + (std::ptrdiff_t)y * m.rs;
        for (int x0 = 0; x0 < W; x0 += SPAN_BLOCK) {
            const int x1 = std::min(W, x0 + SPAN_BLOCK) - 1;
            bad |= block_max(row, m.xs, m.cs, C, x0, x1, bm);
            for (long c = 0; c < C; ++c) {
                if (!(bm[c] > t)) continue;
                int32_t& f = s.first[(size_t)c * m.H + y];
                if (f == W) f = x0;
                s.last[(size_t)c * m.H + y] = x1;
            }
        }
    }
    return bad == 0;
}

// argmax_maps for maps whose planes are not contiguous: the maxima of every row of every channel
// in one pass in memory order, then per channel the first row holding the maximum and the first
// column in it (as the planar argmax does with blocks).
bool argmax_pixelwise(const Maps& m, int32_t* idx, float* vmax, std::vector<float>& rowmax) {
    const long C = m.C;
    rowmax.resize((size_t)m.H * C);   // [H][C]
    uint32_t bad = 0;
    for (int y = 0; y < m.H; ++y)
        bad |= block_max(m.p + (std::ptrdiff_t)y * m.rs, m.xs, m.cs, C, 0, m.W - 1,
                         rowmax.data() + (size_t)y * C);
    if (bad) return false;
    for (long c = 0; c < C; ++c) {
        const float* rm = rowmax.data() + c;
        float mx = rm[0];
        for (int y = 1; y < m.H; ++y) mx = mx < rm[(size_t)y * C] ? rm[(size_t)y * C] : mx;
        int y = 0;
        while (y + 1 < m.H && rm[(size_t)y * C] != mx) ++y;
        const Plane pl = m.plane(c);
        int x = 0;
        while (x + 1 < m.W && pl.at(x, y) != mx) ++x;
        idx[c] = y * m.W + x;
        vmax[c] = pl.at(x, y);
    }
    return true;
}
}  // namespace

bool all_finite(const float* p, size_t n) {
    size_t i = 0;
    bool bad = false;
#if defined(EP_SSE2)
    const __m128i em = _mm_set1_epi32((int)EXP_MASK);
    __m128i b0 = _mm_setzero_si128(), b1 = b0;
    for (; i + 8 <= n; i += 8) {
        const __m128i a = _mm_castps_si128(_mm_loadu_ps(p + i));
        const __m128i c = _mm_castps_si128(_mm_loadu_ps(p + i + 4));
        b0 = _mm_or_si128(b0, _mm_cmpeq_epi32(_mm_and_si128(a, em), em));
        b1 = _mm_or_si128(b1, _mm_cmpeq_epi32(_mm_and_si128(c, em), em));
    }
    bad = _mm_movemask_epi8(_mm_or_si128(b0, b1)) != 0;
#elif defined(EP_NEON)
    const uint32x4_t em = vdupq_n_u32(EXP_MASK);
    uint32x4_t b0 = vdupq_n_u32(0), b1 = b0;
    for (; i + 8 <= n; i += 8) {
        b0 = vorrq_u32(b0, vceqq_u32(vandq_u32(vreinterpretq_u32_f32(vld1q_f32(p + i)), em), em));
        b1 = vorrq_u32(b1,
                       vceqq_u32(vandq_u32(vreinterpretq_u32_f32(vld1q_f32(p + i + 4)), em), em));
    }
    bad = vmaxvq_u32(vorrq_u32(b0, b1)) != 0;
#endif
    for (; i < n; ++i) bad |= scalar_nonfinite(p[i]);
    return !bad;
}

void gaussian_kernel(int ksize, std::vector<double>& g) {
    const double sigma = 0.3 * ((ksize - 1) * 0.5 - 1.0) + 0.8;
    const int r = (ksize - 1) / 2;
    g.resize(ksize);
    double s = 0;
    for (int i = -r; i <= r; ++i) {
        g[i + r] = std::exp(-(double)(i * i) / (2.0 * sigma * sigma));
        s += g[i + r];
    }
    for (auto& v : g) v /= s;
}

void refine_point(const Plane& m, int x, int y, Refine r, const double* g, int ksize, float& fx,
                  float& fy) {
    switch (r) {
        case Refine::None:
            fx = (float)x;
            fy = (float)y;
            return;
        case Refine::Centroid:
            centroid(m, x, y, fx, fy);
            return;
        case Refine::Dark:
            if (dark(m, x, y, g, ksize, fx, fy)) return;
            quarter(m, x, y, fx, fy);
            return;
        case Refine::Quarter:
        default:
            quarter(m, x, y, fx, fy);
            return;
    }
}

long first_nonfinite_channel(const Maps& m) {
    for (long c = 0; c < m.C; ++c)
        for (int y = 0; y < m.H; ++y)
            for (int x = 0; x < m.W; ++x)
                if (scalar_nonfinite(m.plane(c).at(x, y))) return c;
    return -1;
}

bool row_spans(const Maps& m, double thr, PeakScratch& s) {
    s.first.resize((size_t)m.C * m.H);
    s.last.resize((size_t)m.C * m.H);
    if (m.xs != 1)
        return row_spans_pixelwise(m, thr, s);
    // contiguous rows: SIMD max and finiteness check per row, then the span of a row whose
    // maximum is above thr by a search from both ends
    bool finite = true;
    for (long c = 0; c < m.C; ++c) {
        const Plane pl = m.plane(c);
        int32_t* f = s.first.data() + (size_t)c * m.H;
        int32_t* l = s.last.data() + (size_t)c * m.H;
        for (int y = 0; y < m.H; ++y) {
            const float* row = pl.row(y);
            bool fin;
            const float mx = max_and_check(row, (size_t)m.W, fin);
            finite &= fin;
            f[y] = m.W;
            l[y] = -1;
            if (!fin || !((double)mx > thr)) continue;
            int a = 0, b = m.W - 1;
            while (!((double)row[a] > thr)) ++a;
            while (!((double)row[b] > thr)) --b;
            f[y] = a;
            l[y] = b;
        }
    }
    return finite;
}

size_t argmax(const float* p, size_t n, float& vmax, bool& finite) {
    // block maxima (SIMD, with the finiteness check), then the first block holding the global
    // max, then the first index in it: the first maximum in scan order in one pass over the data.
    constexpr size_t B = 64;
    const size_t nb = (n + B - 1) / B;
    float bm_stack[256];
    std::vector<float> bm_heap;
    float* bm = bm_stack;
    if (nb > 256) {
        bm_heap.resize(nb);
        bm = bm_heap.data();
    }
    float m = -std::numeric_limits<float>::infinity();
    finite = true;
    for (size_t b = 0; b < nb; ++b) {
        const size_t i0 = b * B, len = std::min(B, n - i0);
        bool fin;
        bm[b] = max_and_check(p + i0, len, fin);
        finite &= fin;
        m = m < bm[b] ? bm[b] : m;
    }
    size_t b = 0;
    while (b + 1 < nb && bm[b] != m) ++b;
    size_t i = b * B;
    const size_t end = std::min(n, i + B);
    while (i + 1 < end && p[i] != m) ++i;
    vmax = p[i];
    return i;
}

bool argmax_maps(const Maps& m, int32_t* idx, float* vmax, std::vector<float>& scratch) {
    if (m.xs == 1 && m.rs == m.W) {   // contiguous planes: block-wise SIMD argmax per channel
        const size_t n = (size_t)m.H * m.W;
        for (long c = 0; c < m.C; ++c) {
            bool fin;
            idx[c] = (int32_t)argmax(m.plane(c).p, n, vmax[c], fin);
            if (!fin) return false;
        }
        return true;
    }
    return argmax_pixelwise(m, idx, vmax, scratch);
}

void channel_peaks(const Plane& m, const int32_t* first, const int32_t* last, double thr,
                   int max_peaks, Refine r, const double* g, int ksize, PeakScratch& s,
                   std::vector<Peak>& out) {
    s.val.clear();
    s.pos.clear();
    if (m.xs == 1)
        scan_peaks<true>(m, first, last, thr, s);
    else
        scan_peaks<false>(m, first, last, thr, s);
    const int n = (int)s.val.size();
    s.order.resize(n);
    for (int i = 0; i < n; ++i) s.order[i] = i;
    auto better = [&](int a, int b) {
        return s.val[a] > s.val[b] || (s.val[a] == s.val[b] && a < b);
    };
    const int keep = std::min(n, max_peaks);
    if (keep < n)
        std::partial_sort(s.order.begin(), s.order.begin() + keep, s.order.end(), better);
    else
        std::sort(s.order.begin(), s.order.end(), better);
    // Best first; a peak refined onto the position of a stronger one is the same detection
    // (e.g. two DARK steps clipped onto one pixel) and is dropped, and the next one is taken.
    const size_t first_out = out.size();
    int sorted = keep, taken = 0;
    for (int k = 0; k < n && taken < max_peaks; ++k) {
        if (k == sorted) {   // only after a duplicate: order the rest
            std::sort(s.order.begin() + k, s.order.end(), better);
            sorted = n;
        }
        const int i = s.order[k];
        const int y = s.pos[i] / m.W, x = s.pos[i] % m.W;
        Peak p;
        refine_point(m, x, y, r, g, ksize, p.x, p.y);
        p.score = s.val[i];
        bool dup = false;
        for (size_t j = first_out; j < out.size() && !dup; ++j)
            dup = out[j].x == p.x && out[j].y == p.y;
        if (dup) continue;
        out.push_back(p);
        ++taken;
    }
}

}  // namespace ep
