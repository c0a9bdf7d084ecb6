// Text generation from a stacked LSTM as one TensorFlow op for the CPU: each call draws up to
// S characters for B streams, every step's products in float32 (MKL's sgemm, or this file's
// loop for one stream), or with the attribute bf16 in bfloat16 (bf16.h's Bf16Gemm: both
// factors rounded to bfloat16, the sums in float32; the cell state and gates stay float32).
//
// CharlstmGenerate(table (V, 4H), recurrent (N, H, 4H), kernels (N-1, H, 4H), biases (N-1, 4H),
//                  head (H, V), head_bias (V,), h0 (N, B, H), c0 (N, B, H), last (B,) int32,
//                  uniforms (S, B), temperature, top_k, top_p, steps)
//     -> ids (B, S) int32, last (B,) int32, h (N, B, H), c (N, B, H)
//   for s in 0..steps-1:
//     z^0 = table[last] + h^0 @ recurrent[0]                     (table = Embedding @ W^0 + b^0)
//     z^l = x^(l-1) @ kernels[l-1] + biases[l-1] + h^l @ recurrent[l]          for l >= 1
//     i, f, o = sigmoid(z_i, z_f, z_o);  g = tanh(z_g);  c^l = f * c^l + i * g;
//     x^l = h^l = o * tanh(c^l)
//     logits = h^(N-1) @ head + head_bias                       (head_bias: the bias + never)
//     last = ids[:, s] = pick(logits, uniforms[s])
//   ids[:, steps:] = 0.
//
// pick is charlstm.sample.pick_next: temperature <= 0 takes the argmax (the lowest id of a
// tie); otherwise the logits / max(temperature, 1e-6) are filtered (top-k, then top-p over the
// k) and one id is drawn by inverting the cumulative softmax at u * total, u = uniforms[s, b]
// (charlstm.sample.draw; the caller makes the uniforms as the XLA sampler does).
//
// Parallelism: the units of every layer are cut into one range per thread; each thread keeps
// its share of every weight matrix (columns of its units' four gates) in a block of its own,
// so one stream's step reads each weight once, split across the cores. The threads meet at a
// spinning barrier after each layer; every thread computes the small head and the pick for all
// streams itself (identical arithmetic, identical ids), which saves a barrier per step.

#include <immintrin.h>
#include <mkl.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <numeric>
#include <thread>
#include <vector>

#include "bf16.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tensorflow/core/platform/threadpool.h"
#include "unsupported/Eigen/CXX11/Tensor"

namespace {

using charlstm::Bf16Gemm;
using tensorflow::DEVICE_CPU;
using tensorflow::OpKernel;
using tensorflow::OpKernelConstruction;
using tensorflow::OpKernelContext;
using tensorflow::Status;
using tensorflow::Tensor;
using tensorflow::errors::InvalidArgument;
using tensorflow::shape_inference::InferenceContext;

using Row = Eigen::Map<Eigen::ArrayXf>;
using ConstRow = Eigen::Map<const Eigen::ArrayXf>;

// All threads wait here until the last arrives (sense by generation count); spins, then yields.
class Barrier {
 public:
  explicit Barrier(int threads) : threads_(threads) {}
  void wait() {
    if (threads_ == 1) return;
    const int generation = generation_.load(std::memory_order_acquire);
    if (arrived_.fetch_add(1, std::memory_order_acq_rel) == threads_ - 1) {
      arrived_.store(0, std::memory_order_relaxed);
      generation_.fetch_add(1, std::memory_order_release);
      return;
    }
    for (int spins = 0; generation_.load(std::memory_order_acquire) == generation; ++spins) {
      if (spins < 1 << 14) {
        _mm_pause();
      } else {
        std::this_thread::yield();
      }
    }
  }

 private:
  const int threads_;
  std::atomic<int> arrived_{0};
  std::atomic<int> generation_{0};
};

// The next id of one stream from its logits (V,), as charlstm.sample.pick_next.
class Picker {
 public:
  Picker(int64_t vocab, float temperature, int top_k, float top_p)
      : vocab_(vocab), temperature_(temperature), top_k_(top_k), top_p_(top_p),
        filtering_(top_k > 0 || top_p < 1.0f), scaled_(vocab), probs_(vocab), order_(vocab) {}

  int32_t operator()(const float* logits, float u) {
    const int64_t V = vocab_;
    if (!(temperature_ > 0.0f)) {
      return static_cast<int32_t>(std::max_element(logits, logits + V) - logits);
    }
    const float t = std::max(temperature_, 1e-6f);
    for (int64_t v = 0; v < V; ++v) scaled_[v] = logits[v] / t;
    if (filtering_) filter();
    // draw: softmax, cumulative sum, the first id whose cumulative passes u * total, capped at
    // the last drawable id
    const float top = *std::max_element(scaled_.begin(), scaled_.end());
    float total = 0.0f;
    int64_t last = 0;
    for (int64_t v = 0; v < V; ++v) {
      probs_[v] = std::exp(scaled_[v] - top);
      total += probs_[v];
    }
    float cumulative = 0.0f;
    for (int64_t v = 0; v < V; ++v) {
      probs_[v] /= total;
      if (probs_[v] > 0.0f) last = v;
    }
    // the cumulative distribution, and its last value, as the XLA sampler sums it
    std::vector<float>& cum = scaled_;
    for (int64_t v = 0; v < V; ++v) cum[v] = cumulative += probs_[v];
    const float target = u * cum[V - 1];
    int64_t count = 0;
    for (int64_t v = 0; v < V; ++v) count += cum[v] <= target;
    return static_cast<int32_t>(std::min(count, last));
  }

 private:
  // top_k_top_p_filter on scaled_: in the order of decreasing logits (ties: the lower id
  // first) keep position r while r < k and the mass before r, over the k, is < p; then every
  // logit at least the last kept one.
  void filter() {
    const int64_t V = vocab_;
    std::iota(order_.begin(), order_.end(), 0);
    const auto ahead = [&](int64_t a, int64_t b) {
      return scaled_[a] > scaled_[b] || (scaled_[a] == scaled_[b] && a < b);
    };
    const int64_t k = top_k_ > 0 ? std::min<int64_t>(top_k_, V) : V;
    std::partial_sort(order_.begin(), order_.begin() + k, order_.end(), ahead);
    const float top = scaled_[order_[0]];
    float total = 0.0f;
    for (int64_t r = 0; r < k; ++r) total += probs_[r] = std::exp(scaled_[order_[r]] - top);
    float before = 0.0f, cutoff = top;
    for (int64_t r = 0; r < k; ++r) {
      if (!(before < top_p_ || top_p_ >= 1.0f)) break;
      cutoff = scaled_[order_[r]];
      before += probs_[r] / total;
    }
    const float neg_inf = -std::numeric_limits<float>::infinity();
    for (int64_t v = 0; v < V; ++v) {
      if (!(scaled_[v] >= cutoff)) scaled_[v] = neg_inf;
    }
  }

  const int64_t vocab_;
  const float temperature_;
  const int top_k_;
  const float top_p_;
  const bool filtering_;
  std::vector<float> scaled_, probs_;
  std::vector<int64_t> order_;
};

// A matrix's columns as one thread multiplies by them, in memory of its own (64-byte aligned).
// One stream (rows == 1): in panels of 64 columns, panel p (k, 64) contiguous, read from
// start to end by an AVX2 loop (matrix-vector products are bound by reading the weights: this
// reads them at about 3 x the rate of MKL's sgemv here). More streams: dense (k, padded), for
// MKL's sgemm; in bfloat16 (any number of streams), Bf16Gemm's layout. `padded` is the column
// count rounded up to 64; the extra columns are zeros.
class Block {
 public:
  // columns[j] is the source column of column j; source is (k, ld) row-major
  Block(const float* source, int64_t k, int64_t ld, const std::vector<int64_t>& columns,
        bool panels, bool bf16)
      : k_(k), padded_((static_cast<int64_t>(columns.size()) + 63) / 64 * 64), panels_(panels),
        data_(static_cast<float*>(mkl_calloc(k * padded_, sizeof(float), 64)), mkl_free) {
    for (int64_t r = 0; r < k; ++r) {
      for (size_t j = 0; j < columns.size(); ++j) {
        const int64_t at = panels ? (j / 64 * 64) * k + r * 64 + j % 64 : r * padded_ + j;
        data_.get()[at] = source[r * ld + columns[j]];
      }
    }
    if (bf16) bf16_ = std::make_unique<Bf16Gemm>(data_.get(), k, padded_, padded_, false);
  }

  int64_t padded() const { return padded_; }

  // y (rows, padded) += x (rows, k) @ this
  void multiply(const float* x, float* y, int64_t rows) const {
    if (bf16_) {
      bf16_->multiply(x, rows, 1.0f, y);
      return;
    }
    if (!panels_) {
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, padded_, k_, 1.0f, x, k_,
                  data_.get(), padded_, 1.0f, y, padded_);
      return;
    }
    for (int64_t p = 0; p < padded_; p += 64) {
      const float* w = data_.get() + p * k_;
      __m256 acc[8];
      for (auto& a : acc) a = _mm256_setzero_ps();
      for (int64_t r = 0; r < k_; ++r, w += 64) {
        const __m256 xr = _mm256_broadcast_ss(x + r);
        for (int j = 0; j < 8; ++j) acc[j] = _mm256_fmadd_ps(xr, _mm256_load_ps(w + 8 * j), acc[j]);
      }
      for (int j = 0; j < 8; ++j) {
        float* out = y + p + 8 * j;
        _mm256_storeu_ps(out, _mm256_add_ps(acc[j], _mm256_loadu_ps(out)));
      }
    }
  }

 private:
  const int64_t k_, padded_;
  const bool panels_;
  std::unique_ptr<float, void (*)(void*)> data_;
  std::unique_ptr<Bf16Gemm> bf16_;  // set in bfloat16
};

class GenerateOp : public OpKernel {
 public:
  explicit GenerateOp(OpKernelConstruction* context) : OpKernel(context) {
    OP_REQUIRES_OK(context, context->GetAttr("bf16", &bf16_));
  }

  void Compute(OpKernelContext* context) override {
    const Tensor &table = context->input(0), &recurrent = context->input(1),
                 &kernels = context->input(2), &biases = context->input(3),
                 &head = context->input(4), &head_bias = context->input(5),
                 &h0 = context->input(6), &c0 = context->input(7), &last0 = context->input(8),
                 &uniforms = context->input(9);
    OP_REQUIRES(context, table.dims() == 2 && recurrent.dims() == 3 && h0.dims() == 3,
                InvalidArgument("table must be (V, 4H), recurrent (N, H, 4H), h0 (N, B, H)"));
    const int64_t V = table.dim_size(0), N = recurrent.dim_size(0), H = recurrent.dim_size(1),
                  B = h0.dim_size(1), S = uniforms.dims() == 2 ? uniforms.dim_size(0) : -1;
    OP_REQUIRES(
        context,
        N >= 1 && table.dim_size(1) == 4 * H && recurrent.dim_size(2) == 4 * H &&
            kernels.shape() == tensorflow::TensorShape({N - 1, H, 4 * H}) &&
            biases.shape() == tensorflow::TensorShape({N - 1, 4 * H}) &&
            head.shape() == tensorflow::TensorShape({H, V}) &&
            head_bias.shape() == tensorflow::TensorShape({V}) &&
            h0.shape() == tensorflow::TensorShape({N, B, H}) && c0.shape() == h0.shape() &&
            last0.shape() == tensorflow::TensorShape({B}) && S >= 0 &&
            uniforms.dim_size(1) == B,
        InvalidArgument("CharlstmGenerate: the shapes disagree"));
    const float temperature = context->input(10).scalar<float>()();
    const int top_k = context->input(11).scalar<int32_t>()();
    const float top_p = context->input(12).scalar<float>()();
    const int64_t steps = std::min<int64_t>(context->input(13).scalar<int32_t>()(), S);

    Tensor *ids_out, *last_out, *h_out, *c_out;
    OP_REQUIRES_OK(context, context->allocate_output(0, {B, S}, &ids_out));
    OP_REQUIRES_OK(context, context->allocate_output(1, {B}, &last_out));
    OP_REQUIRES_OK(context, context->allocate_output(2, h0.shape(), &h_out));
    OP_REQUIRES_OK(context, context->allocate_output(3, c0.shape(), &c_out));
    int32_t* ids = ids_out->flat<int32_t>().data();
    std::fill(ids, ids + B * S, 0);
    std::memcpy(c_out->flat<float>().data(), c0.flat<float>().data(), N * B * H * 4);
    std::memcpy(h_out->flat<float>().data(), h0.flat<float>().data(), N * B * H * 4);
    std::memcpy(last_out->flat<int32_t>().data(), last0.flat<int32_t>().data(), B * 4);
    const int32_t* start = last0.flat<int32_t>().data();
    for (int64_t b = 0; b < B; ++b) {
      OP_REQUIRES(context, 0 <= start[b] && start[b] < V,
                  InvalidArgument("CharlstmGenerate: an id outside the vocabulary"));
    }
    if (steps <= 0 || B == 0) return;

    // h of every layer, twice: step s reads one copy and writes the other
    std::vector<float> h_buffers(2 * N * B * H);
    for (int64_t l = 0; l < N; ++l) {
      std::memcpy(&h_buffers[(2 * l) * B * H], h0.flat<float>().data() + l * B * H, B * H * 4);
    }
    auto h_of = [&](int64_t l, int64_t parity) { return &h_buffers[(2 * l + parity) * B * H]; };

    auto* pool = context->device()->tensorflow_cpu_worker_threads()->workers;
    const int threads = static_cast<int>(
        std::max<int64_t>(1, std::min<int64_t>(pool->NumThreads(), H / 16)));
    Barrier barrier(threads);
    const float* U = recurrent.flat<float>().data();
    const float* W = kernels.flat<float>().data();
    const float* bias = biases.flat<float>().data();
    const float* T0 = table.flat<float>().data();
    const float* u_all = uniforms.flat<float>().data();
    float* c_all = c_out->flat<float>().data();

    const bool panels = B == 1 && !bf16_;
    auto work = [&](int thread) {
      // this thread's units [u0, u1), n of them, and its columns of every matrix: the four
      // gates' columns of its units, [i | f | g | o]
      const int64_t u0 = H * thread / threads, u1 = H * (thread + 1) / threads, n = u1 - u0;
      std::vector<int64_t> mine;
      for (int64_t gate = 0; gate < 4; ++gate) {
        for (int64_t unit = u0; unit < u1; ++unit) mine.push_back(gate * H + unit);
      }
      std::vector<int64_t> every(V);
      std::iota(every.begin(), every.end(), 0);
      const Block head_block(head.flat<float>().data(), H, V, every, panels, bf16_);
      std::vector<Block> u_block, w_block;
      std::vector<std::vector<float>> b_block(N), table_block(1);
      const int64_t width = 4 * n;  // of z's rows, and of the table's and biases' rows
      for (int64_t l = 0; l < N; ++l) {
        u_block.emplace_back(U + l * H * 4 * H, H, 4 * H, mine, panels, bf16_);
        w_block.emplace_back(l > 0 ? W + (l - 1) * H * 4 * H : U, l > 0 ? H : 0, 4 * H, mine,
                             panels, bf16_);
      }
      auto rows_of = [&](const float* m, int64_t rows, std::vector<float>& out) {
        out.resize(rows * width);
        for (int64_t r = 0; r < rows; ++r) {
          for (int64_t j = 0; j < width; ++j) out[r * width + j] = m[r * 4 * H + mine[j]];
        }
      };
      rows_of(T0, V, table_block[0]);
      for (int64_t l = 1; l < N; ++l) rows_of(bias + (l - 1) * 4 * H, 1, b_block[l]);
      const int64_t zw = u_block[0].padded();  // z (B, zw): this thread's 4n columns, padded
      std::vector<float> z(B * zw, 0.0f), logits(B * head_block.padded(), 0.0f);
      const int64_t lw = head_block.padded();
      std::vector<int32_t> last(start, start + B);
      Picker pick(V, temperature, top_k, top_p);
      for (int64_t s = 0; s < steps; ++s) {
        const int64_t read = s & 1, write = read ^ 1;
        for (int64_t l = 0; l < N; ++l) {
          for (int64_t b = 0; b < B; ++b) {
            const float* first = l == 0 ? &table_block[0][last[b] * width] : b_block[l].data();
            std::memcpy(&z[b * zw], first, width * 4);
          }
          if (l > 0) w_block[l].multiply(h_of(l - 1, write), z.data(), B);
          u_block[l].multiply(h_of(l, read), z.data(), B);
          float* h_new = h_of(l, write);
          for (int64_t b = 0; b < B; ++b) {
            float* a = &z[b * zw];
            Row i(a, n), f(a + n, n), g(a + 2 * n, n), o(a + 3 * n, n);
            i = (i * 0.5f).tanh() * 0.5f + 0.5f;
            f = (f * 0.5f).tanh() * 0.5f + 0.5f;
            g = g.tanh();
            o = (o * 0.5f).tanh() * 0.5f + 0.5f;
            Row c(c_all + (l * B + b) * H + u0, n);
            c = f * c + i * g;
            Row(h_new + b * H + u0, n) = o * c.tanh();
          }
          barrier.wait();
        }
        for (int64_t b = 0; b < B; ++b) {
          std::memcpy(&logits[b * lw], head_bias.flat<float>().data(), V * 4);
        }
        head_block.multiply(h_of(N - 1, write), logits.data(), B);
        for (int64_t b = 0; b < B; ++b) {
          last[b] = pick(&logits[b * lw], u_all[s * B + b]);
          if (thread == 0) ids[b * S + s] = last[b];
        }
      }
      if (thread == 0) {
        std::memcpy(last_out->flat<int32_t>().data(), last.data(), B * 4);
        for (int64_t l = 0; l < N; ++l) {
          std::memcpy(h_out->flat<float>().data() + l * B * H, h_of(l, steps & 1), B * H * 4);
        }
      }
    };
    std::vector<std::thread> helpers;
    for (int t = 1; t < threads; ++t) helpers.emplace_back(work, t);
    work(0);
    for (auto& helper : helpers) helper.join();
  }

 private:
  bool bf16_;
};

}  // namespace

REGISTER_OP("CharlstmGenerate")
    .Input("table: float")
    .Input("recurrent_kernels: float")
    .Input("kernels: float")
    .Input("biases: float")
    .Input("head: float")
    .Input("head_bias: float")
    .Input("h0: float")
    .Input("c0: float")
    .Input("last: int32")
    .Input("uniforms: float")
    .Input("temperature: float")
    .Input("top_k: int32")
    .Input("top_p: float")
    .Input("steps: int32")
    .Output("ids: int32")
    .Output("last_ids: int32")
    .Output("h: float")
    .Output("c: float")
    .Attr("bf16: bool = false")
    .SetShapeFn([](InferenceContext* c) {
      c->set_output(0, c->Matrix(c->Dim(c->input(6), 1), c->Dim(c->input(9), 0)));
      c->set_output(1, c->input(8));
      c->set_output(2, c->input(6));
      c->set_output(3, c->input(7));
      return Status();
    });

REGISTER_KERNEL_BUILDER(Name("CharlstmGenerate").Device(DEVICE_CPU), GenerateOp);
