// sRGB to CIE Lab (D65, 2 degree observer) with scikit-image's rgb2lab
// constants and formulas, in double, stored as float: what ssn.color used to
// get from scikit-image (in float32 for float32 input), to float rounding, at
// a fraction of the time. Plain C on raw pointers, loaded with ctypes.
// (Branch-free float selects need no-trapping-math to vectorise.)
//
// For each pixel, with v the channel value in [0, 1]:
//   lin(v) = ((v + 0.055) / 1.055)^2.4 if v > 0.04045, else v / 12.92
//   X, Y, Z = M lin(r, g, b), divided by the white (0.95047, 1, 1.08883)
//   f(t) = cbrt(t) if t > 0.008856, else 7.787 t + 16 / 116
//   L = 116 f(Y) - 16, a = 500 (f(X) - f(Y)), b = 200 (f(Y) - f(Z))

#pragma GCC optimize("O3", "no-trapping-math")

#include <cmath>
#include <cstdint>
#include <system_error>
#include <thread>
#include <vector>

// (Constants have internal linkage; outside the namespace for cpplint.)
const double kMatrix[3][3] = {
    {0.412453, 0.357580, 0.180423},
    {0.212671, 0.715160, 0.072169},
    {0.019334, 0.119193, 0.950227}};
const double kWhite[3] = {0.95047, 1.0, 1.08883};

namespace {

double Linear(double v) {
  return v > 0.04045 ? std::pow((v + 0.055) / 1.055, 2.4) : v / 12.92;
}

// lin(k / 255) for the 256 values of 8-bit images (which arrive as k / 255f).
struct Table {
  double value[256];
  Table() {
    for (int k = 0; k < 256; ++k) value[k] = Linear(static_cast<float>(k) / 255.f);
  }
};

double LinearOf(float v, const Table& table) {
  const float scaled = v * 255.f + 0.5f;
  if (scaled >= 0.f && scaled < 256.f) {
    const int k = static_cast<int>(scaled);
    if (static_cast<float>(k) / 255.f == v) return table.value[k];
  }
  return Linear(v);
}

// Pixels per block: linear values of a block go through a buffer, so that the
// arithmetic below is one branch-free loop that the compiler vectorises.
const int kBlock = 256;
// cbrt's first guess is fit on [kCompressFrom, kGuessTo]; larger t (only from
// values beyond [0, 1]) take std::cbrt.
const double kCompressFrom = 0.008856, kGuessTo = 1.1;

// cbrt(t) for t in [kCompressFrom, kGuessTo]: a cubic fit of cbrt (relative
// error within 32%), then three Halley steps (within 1e-15).
inline double CubeRoot(double t) {
  double y = ((1.2037114356221976 * t - 2.532968389179909) * t + 2.076400103812433) * t +
             0.2538079960484789;
  for (int i = 0; i < 3; ++i) {
    const double cube = y * y * y;
    y *= (cube + 2 * t) / (2 * cube + t);
  }
  return y;
}

inline double Compress(double t) {
  return t > kCompressFrom ? CubeRoot(t) : 7.787 * t + 16.0 / 116.0;
}

// Lab of `count` <= kBlock pixels from their linear R, G and B.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
__attribute__((target_clones("arch=x86-64-v3", "default")))
#endif
void LabBlock(const double* r, const double* g, const double* b, int count, float* l_plane,
              float* a_plane, float* b_plane) {
  for (int p = 0; p < count; ++p) {
    double f[3];
    for (int i = 0; i < 3; ++i) {
      const double xyz = kMatrix[i][0] * r[p] + kMatrix[i][1] * g[p] + kMatrix[i][2] * b[p];
      f[i] = Compress(xyz / kWhite[i]);
    }
    l_plane[p] = static_cast<float>(116.0 * f[1] - 16.0);
    a_plane[p] = static_cast<float>(500.0 * (f[0] - f[1]));
    b_plane[p] = static_cast<float>(200.0 * (f[1] - f[2]));
  }
}

// Lab of `count` pixels of `rgb` (pixel-interleaved) into 3 planes of `lab`,
// `plane` values apart; linear(value) gives a channel's linear value.
template <typename In, typename Linearise>
void ToLab(const In* rgb, int64_t count, float* lab, int64_t plane, Linearise linear) {
  double values[3][kBlock];
  for (int64_t first = 0; first < count; first += kBlock) {
    const int n = static_cast<int>(count - first < kBlock ? count - first : kBlock);
    const In* in = rgb + 3 * first;
    bool outside = false;
    for (int p = 0; p < n; ++p) {
      for (int c = 0; c < 3; ++c) {
        values[c][p] = linear(in[3 * p + c]);
        outside = outside || values[c][p] > 1;
      }
    }
    LabBlock(values[0], values[1], values[2], n, lab + first, lab + plane + first,
             lab + 2 * plane + first);
    if (!outside) continue;
    for (int p = 0; p < n; ++p) {  // the rare pixel past cbrt's fit: exactly
      double f[3];
      for (int i = 0; i < 3; ++i) {
        const double t = (kMatrix[i][0] * values[0][p] + kMatrix[i][1] * values[1][p] +
                          kMatrix[i][2] * values[2][p]) / kWhite[i];
        f[i] = t > kCompressFrom ? std::cbrt(t) : 7.787 * t + 16.0 / 116.0;
      }
      lab[first + p] = static_cast<float>(116.0 * f[1] - 16.0);
      lab[plane + first + p] = static_cast<float>(500.0 * (f[0] - f[1]));
      lab[2 * plane + first + p] = static_cast<float>(200.0 * (f[1] - f[2]));
    }
  }
}

const Table& TheTable() {
  static const Table table;
  return table;
}

// Below this many pixels a thread costs more to start than it saves.
const int64_t kPixelsPerThread = 32768;

// Converts `count` pixels on up to `threads` threads (the caller's one among
// them, and no more than the hardware runs at once), each a range of whole
// blocks; every pixel is converted alone, so the result does not depend on
// the split. A thread that cannot start leaves its range to the caller.
template <typename In, typename Linearise>
void ToLabThreaded(const In* rgb, int64_t count, float* lab, int threads, Linearise linear) {
  const int64_t hardware = std::thread::hardware_concurrency();
  int64_t parts = (count + kPixelsPerThread - 1) / kPixelsPerThread;
  if (threads < parts) parts = threads;
  if (hardware > 0 && hardware < parts) parts = hardware;
  if (parts <= 1) {
    ToLab(rgb, count, lab, count, linear);
    return;
  }
  const int64_t blocks = (count + kBlock - 1) / kBlock;
  const auto range = [&](int64_t part) {
    const int64_t first = blocks * part / parts * kBlock;
    const int64_t last = blocks * (part + 1) / parts * kBlock;
    ToLab(rgb + 3 * first, (last < count ? last : count) - first, lab + first, count, linear);
  };
  std::vector<std::thread> helpers;
  for (int64_t part = 1; part < parts; ++part) {
    try {
      helpers.emplace_back(range, part);
    } catch (const std::system_error&) {
      range(part);
    }
  }
  range(0);
  for (std::thread& helper : helpers) helper.join();
}

}  // namespace

extern "C" {

// rgb: count interleaved RGB pixels; lab: the L, a and b planes of count values
// each; threads: at most this many threads (1: the caller's alone).
void ssn_rgb_to_lab(const float* rgb, int64_t count, float* lab, int32_t threads) {
  const Table& table = TheTable();
  ToLabThreaded(rgb, count, lab, threads, [&table](float v) { return LinearOf(v, table); });
}

void ssn_rgb8_to_lab(const uint8_t* rgb, int64_t count, float* lab, int32_t threads) {
  const Table& table = TheTable();
  ToLabThreaded(rgb, count, lab, threads, [&table](uint8_t v) { return table.value[v]; });
}

}  // extern "C"
