// bfloat16 products for the compiled kernels (lstm.cc, generate.cc): rounding to bfloat16,
// and Bf16Gemm, c (rows, n) = beta * c + a (rows, k) @ b (k, n) with both factors rounded to
// bfloat16 and the sums in float32, b rounded and laid out once. On a CPU with AVX512-BF16 and
// no AMX it runs this file's own vdpbf16ps loops: MKL uses AVX512-BF16 on Intel CPUs only, and
// on an AMD Zen 4 the loops of a 2 x 256 training step took 125 ms with MKL's bfloat16 product
// and 63 ms with this one (docs/results.md). On a CPU with no bfloat16 instructions it rounds
// the factors to bfloat16 and multiplies them with MKL's sgemm: a product of two bfloat16
// numbers is exact in float32, so the arithmetic is the same; through MKL's bfloat16 GEMM one
// stream's generation ran 14-19 x slower there (AMD EPYC Zen 3, docs/results.md). With AMX it
// calls MKL's bfloat16 GEMM. kOwnBf16: Bf16Gemm is this file's (else the callers may pack MKL's
// bfloat16 GEMM themselves).
#ifndef CHARLSTM_KERNELS_BF16_H_
#define CHARLSTM_KERNELS_BF16_H_

#include <immintrin.h>
#include <mkl.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

namespace charlstm {

// x rounded to the nearest bfloat16 (ties to even); a NaN stays a NaN.
inline MKL_BF16 to_bf16(float x) {
  uint32_t bits;
  std::memcpy(&bits, &x, 4);
  const uint32_t rounded = (bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16;
  return static_cast<MKL_BF16>((bits & 0x7FFFFFFFu) > 0x7F800000u ? (bits >> 16) | 0x40u
                                                                  : rounded);
}

inline void to_bf16(const float* x, MKL_BF16* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = to_bf16(x[i]);
}

// b (k, n) row-major from u (or from u^T, u (n, k)) with rows of `ld` floats, each entry
// through `round`
template <typename T, typename Round>
std::vector<T> laid_out(const float* u, int64_t k, int64_t n, int64_t ld, bool transposed,
                        Round round) {
  std::vector<T> b(k * n);
  for (int64_t row = 0; row < k; ++row)
    for (int64_t col = 0; col < n; ++col)
      b[row * n + col] = round(transposed ? u[col * ld + row] : u[row * ld + col]);
  return b;
}

#if defined(__AVX512BF16__) && !defined(__AMX_BF16__)
constexpr bool kOwnBf16 = true;

// c (rows, n) = beta * c + a (rows, k) @ b (k, n) with both factors in bfloat16 and float32
// sums, through AVX512-BF16's vdpbf16ps (16 float32 sums of 2 products each). b is packed once:
// per block of 16 columns, per pair of rows of b, the 16 columns' pairs side by side (k and n
// padded with zeros to even and to 16); a is rounded per product into pairs along k.
class Bf16Gemm {
 public:
  // b (k, n) = u (transposed: u^T, u (n, k)) with rows of `ld` floats
  Bf16Gemm(const float* u, int64_t k, int64_t n, int64_t ld, bool transposed)
      : k_(k), n_(n), pairs_((k + 1) / 2), blocks_((n + 15) / 16),
        b_(blocks_ * pairs_ * 32, 0) {
    for (int64_t j = 0; j < blocks_; ++j)
      for (int64_t p = 0; p < pairs_; ++p)
        for (int64_t col = 16 * j; col < std::min(16 * j + 16, n); ++col)
          for (int64_t half = 0; half < 2 && 2 * p + half < k; ++half) {
            const int64_t row = 2 * p + half;
            b_[(j * pairs_ + p) * 32 + 2 * (col - 16 * j) + half] =
                to_bf16(transposed ? u[col * ld + row] : u[row * ld + col]);
          }
  }

  void multiply(const float* a, int64_t rows, float beta, float* c) {
    a_.assign(rows * pairs_ * 2, 0);
    for (int64_t r = 0; r < rows; ++r) to_bf16(a + r * k_, a_.data() + r * pairs_ * 2, k_);
    const auto* pairs = reinterpret_cast<const uint32_t*>(a_.data());
    for (int64_t j = 0; j < blocks_; j += 4) {
      switch (std::min<int64_t>(4, blocks_ - j)) {
        case 4: column_tiles<4>(pairs, rows, j, beta, c); break;
        case 3: column_tiles<3>(pairs, rows, j, beta, c); break;
        case 2: column_tiles<2>(pairs, rows, j, beta, c); break;
        default: column_tiles<1>(pairs, rows, j, beta, c);
      }
    }
  }

 private:
  template <int NB>
  void column_tiles(const uint32_t* a, int64_t rows, int64_t j, float beta, float* c) {
    int64_t r = 0;
    for (; r + 4 <= rows; r += 4) tile<4, NB>(a, r, j, beta, c);
    switch (rows - r) {
      case 3: tile<3, NB>(a, r, j, beta, c); break;
      case 2: tile<2, NB>(a, r, j, beta, c); break;
      case 1: tile<1, NB>(a, r, j, beta, c); break;
      default: break;
    }
  }

  // rows r..r+R-1 of c, column blocks j..j+NB-1, in R x NB registers of 16 float32 sums
  template <int R, int NB>
  void tile(const uint32_t* a, int64_t r, int64_t j, float beta, float* c) {
    __m512 sums[R][NB];
    for (int i = 0; i < R; ++i)
      for (int q = 0; q < NB; ++q) sums[i][q] = _mm512_setzero_ps();
    const uint16_t* b = b_.data() + j * pairs_ * 32;
    for (int64_t p = 0; p < pairs_; ++p) {
      __m512bh column[NB];
      for (int q = 0; q < NB; ++q)
        column[q] = (__m512bh)_mm512_loadu_si512(b + (q * pairs_ + p) * 32);
      for (int i = 0; i < R; ++i) {
        const __m512bh row = (__m512bh)_mm512_set1_epi32(a[(r + i) * pairs_ + p]);
        for (int q = 0; q < NB; ++q) sums[i][q] = _mm512_dpbf16_ps(sums[i][q], row, column[q]);
      }
    }
    for (int q = 0; q < NB; ++q) {
      const int64_t col = 16 * (j + q), left = std::min<int64_t>(16, n_ - col);
      const __mmask16 keep = static_cast<__mmask16>((1u << left) - 1u);
      for (int i = 0; i < R; ++i) {
        float* out = c + (r + i) * n_ + col;
        __m512 v = sums[i][q];
        if (beta != 0.0f)
          v = _mm512_fmadd_ps(_mm512_set1_ps(beta), _mm512_maskz_loadu_ps(keep, out), v);
        _mm512_mask_storeu_ps(out, keep, v);
      }
    }
  }

  const int64_t k_, n_, pairs_, blocks_;
  std::vector<uint16_t> b_;
  std::vector<MKL_BF16> a_;
};
#elif !defined(__AMX_BF16__)
constexpr bool kOwnBf16 = true;

// No bfloat16 instructions: both factors rounded to bfloat16 and held as float32 (exactly),
// multiplied by MKL's sgemm, b packed for the first call's row count (again if it changes).
class Bf16Gemm {
 public:
  Bf16Gemm(const float* u, int64_t k, int64_t n, int64_t ld, bool transposed)
      : k_(k), n_(n), b_(laid_out<float>(u, k, n, ld, transposed, rounded)) {}
  ~Bf16Gemm() { mkl_free(packed_); }
  Bf16Gemm(const Bf16Gemm&) = delete;
  Bf16Gemm& operator=(const Bf16Gemm&) = delete;

  void multiply(const float* a, int64_t rows, float beta, float* c) {
    if (rows != packed_rows_) {
      mkl_free(packed_);
      packed_ = static_cast<float*>(
          mkl_malloc(cblas_sgemm_pack_get_size(CblasBMatrix, rows, n_, k_), 64));
      cblas_sgemm_pack(CblasRowMajor, CblasBMatrix, CblasNoTrans, rows, n_, k_, 1.0f,
                       b_.data(), n_, packed_);
      packed_rows_ = rows;
    }
    a_.resize(rows * k_);
    for (int64_t i = 0; i < rows * k_; ++i) a_[i] = rounded(a[i]);
    cblas_sgemm_compute(CblasRowMajor, CblasNoTrans, CblasPacked, rows, n_, k_, a_.data(), k_,
                        packed_, n_, beta, c, n_);
  }

 private:
  // x rounded to the nearest bfloat16, as float32
  static float rounded(float x) {
    const uint32_t bits = static_cast<uint32_t>(to_bf16(x)) << 16;
    float out;
    std::memcpy(&out, &bits, 4);
    return out;
  }

  const int64_t k_, n_;
  std::vector<float> b_, a_;
  float* packed_ = nullptr;
  int64_t packed_rows_ = -1;
};
#else
constexpr bool kOwnBf16 = false;

// The same product through MKL's cblas_gemm_bf16bf16f32 (AMX).
class Bf16Gemm {
 public:
  Bf16Gemm(const float* u, int64_t k, int64_t n, int64_t ld, bool transposed)
      : k_(k), n_(n),
        b_(laid_out<MKL_BF16>(u, k, n, ld, transposed, [](float x) { return to_bf16(x); })) {}

  void multiply(const float* a, int64_t rows, float beta, float* c) {
    a_.resize(rows * k_);
    to_bf16(a, a_.data(), rows * k_);
    cblas_gemm_bf16bf16f32(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, n_, k_, 1.0f,
                           a_.data(), k_, b_.data(), n_, beta, c, n_);
  }

 private:
  const int64_t k_, n_;
  std::vector<MKL_BF16> b_, a_;
};
#endif

}  // namespace charlstm

#endif  // CHARLSTM_KERNELS_BF16_H_
