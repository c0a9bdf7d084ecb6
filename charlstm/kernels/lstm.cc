// The LSTM recurrence of charlstm.fused as two TensorFlow ops for the CPU, with the recurrent
// product of every step through MKL's cblas_sgemm in float32, or with the attribute bf16 in
// bfloat16 (both factors rounded to bfloat16, the products accumulated in float32): with AMX
// MKL's packed cblas_gemm_bf16bf16f32, elsewhere bf16.h's Bf16Gemm (its own AVX512-BF16 loops,
// or on a CPU without bfloat16 instructions the rounded factors through sgemm). Gates and cell
// state stay float32.
//
// CharlstmLstmForward(xw (T, B, 4H), h0 (B, H), c0 (B, H), U (H, 4H), m (B, H))
//     -> hs (T, B, H), cs (T, B, H), gates (T, B, 4H)
//   for t in 0..T-1:
//     z_t = xw[t] + (h_{t-1} * m) @ U                       z_t = [z_i | z_f | z_g | z_o]
//     i, f, o = sigmoid(z_i, z_f, z_o) = tanh(z / 2) / 2 + 1 / 2;   g = tanh(z_g)
//     c_t = f * c_{t-1} + i * g;   h_t = o * tanh(c_t);   gates[t] = [i | f | g | o]
//   (bf16: h_{t-1} * m and U rounded to bfloat16 for the product)
//
// CharlstmLstmBackward(gates, cs, c0, d_hs (T, B, H), d_h, d_c (B, H), U, m)
//     -> dz (T, B, 4H), dh0 (B, H), dc0 (B, H)
//   for t in T-1..0, with dh_next = d_h, dc_next = d_c at the start:
//     dh = d_hs[t] + dh_next;   dc = dc_next + dh * o * (1 - tanh(c_t)^2)
//     dz_i = dc * g * i * (1 - i);   dz_f = dc * c_{t-1} * f * (1 - f)
//     dz_g = dc * i * (1 - g^2);     dz_o = dh * tanh(c_t) * o * (1 - o)
//     dh_next = (dz_t @ U^T) * m;    dc_next = dc * f
//   (bf16: dz_t and U rounded to bfloat16 for the product)
//
// The same equations as charlstm.cell.lstm_update and charlstm.fused._backward_loop; tanh is
// Eigen's vectorized one (the rational approximation XLA's CPU backend uses too). The streams
// (rows of the batch) are independent, so each thread of TensorFlow's pool runs its share of
// them through all T steps with no synchronization between steps (`for_each_shard`).

#include <mkl.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "bf16.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tensorflow/core/platform/threadpool.h"
#include "unsupported/Eigen/CXX11/Tensor"

namespace {

using charlstm::Bf16Gemm;
using charlstm::kOwnBf16;
using charlstm::to_bf16;
using tensorflow::DEVICE_CPU;
using tensorflow::OpKernel;
using tensorflow::OpKernelConstruction;
using tensorflow::OpKernelContext;
using tensorflow::Status;
using tensorflow::Tensor;
using tensorflow::TensorShape;
using tensorflow::errors::InvalidArgument;
using tensorflow::shape_inference::InferenceContext;
using tensorflow::shape_inference::ShapeHandle;

using Row = Eigen::Map<Eigen::ArrayXf>;
using ConstRow = Eigen::Map<const Eigen::ArrayXf>;

// The activations of one step's z (B, 4H) in place: [i | f | g | o].
void activate(float* z, int64_t batch, int64_t units) {
  for (int64_t b = 0; b < batch; ++b) {
    float* row = z + b * 4 * units;
    Row i(row, units), f(row + units, units), g(row + 2 * units, units),
        o(row + 3 * units, units);
    i = (i * 0.5f).tanh() * 0.5f + 0.5f;
    f = (f * 0.5f).tanh() * 0.5f + 0.5f;
    g = g.tanh();
    o = (o * 0.5f).tanh() * 0.5f + 0.5f;
  }
}

Status check_shapes(const Tensor& xw, const Tensor& h0, const Tensor& c0, const Tensor& u,
                    const Tensor& mask) {
  if (xw.dims() != 3 || h0.dims() != 2 || c0.dims() != 2 || u.dims() != 2 || mask.dims() != 2)
    return InvalidArgument("xw must be (T, B, 4H), h0, c0, U, m two-dimensional");
  const int64_t batch = xw.dim_size(1), units = h0.dim_size(1);
  if (xw.dim_size(2) != 4 * units || h0.dim_size(0) != batch || c0.shape() != h0.shape() ||
      mask.shape() != h0.shape() || u.dim_size(0) != units || u.dim_size(1) != 4 * units)
    return InvalidArgument("shapes disagree: xw ", xw.shape().DebugString(), ", h0 ",
                           h0.shape().DebugString(), ", U ", u.shape().DebugString());
  return Status();
}

// Every stream (row of the batch) runs its own recurrence: the rows are cut into one shard
// per thread of TensorFlow's CPU pool, and each shard runs all T steps alone, its products
// through MKL on that thread (MKL's own threads would compete with the pool's), with U packed
// once per window for its row count.
template <typename Work>
void for_each_shard(OpKernelContext* context, int64_t batch, Work work) {
  auto* pool = context->device()->tensorflow_cpu_worker_threads()->workers;
  const int64_t shards = std::max<int64_t>(1, std::min<int64_t>(pool->NumThreads(), batch));
  pool->ParallelFor(shards, /*cost_per_unit=*/int64_t{1} << 40, [&](int64_t first, int64_t last) {
    for (int64_t s = first; s < last; ++s) work(batch * s / shards, batch * (s + 1) / shards);
  });
}

// MKL runs on the calling thread only: the pool's threads are the parallelism. Set when the
// library loads, before any MKL call (no other part of the process uses this MKL).
const int kSequentialMkl = mkl_set_threading_layer(MKL_THREADING_SEQUENTIAL);

// B = U (transposed: U^T) packed for products with `rows` rows: in an MKL buffer (float32,
// or with bf16 in bfloat16 from u16, U rounded to bfloat16), or for Bf16Gemm (kOwnBf16).
class Packed {
 public:
  Packed(const float* u, bool bf16, const MKL_BF16* u16, int64_t units, int64_t rows,
         bool transposed)
      : n_(transposed ? units : 4 * units),
        k_(transposed ? 4 * units : units),
        bf16_(bf16),
        own_(kOwnBf16 && bf16 ? new Bf16Gemm(u, k_, n_, 4 * units, transposed) : nullptr) {
    const auto trans = transposed ? CblasTrans : CblasNoTrans;
    if (own_) {
      data_ = nullptr;
    } else if (bf16_) {
      data_ = mkl_malloc(cblas_gemm_bf16bf16f32_pack_get_size(CblasBMatrix, rows, n_, k_), 64);
      cblas_gemm_bf16bf16f32_pack(CblasRowMajor, CblasBMatrix, trans, rows, n_, k_, u16,
                                  4 * units, static_cast<MKL_BF16*>(data_));
      scratch_.resize(rows * k_);
    } else {
      data_ = mkl_malloc(cblas_sgemm_pack_get_size(CblasBMatrix, rows, n_, k_), 64);
      cblas_sgemm_pack(CblasRowMajor, CblasBMatrix, trans, rows, n_, k_, 1.0f, u, 4 * units,
                       static_cast<float*>(data_));
    }
  }
  ~Packed() { mkl_free(data_); }
  Packed(const Packed&) = delete;
  Packed& operator=(const Packed&) = delete;

  // c (rows, n) = beta * c + a (rows, k) @ B
  void multiply(const float* a, int64_t rows, float beta, float* c) {
    if (own_) {
      own_->multiply(a, rows, beta, c);
    } else if (bf16_) {
      to_bf16(a, scratch_.data(), rows * k_);
      cblas_gemm_bf16bf16f32_compute(CblasRowMajor, CblasNoTrans, CblasPacked, rows, n_, k_,
                                     1.0f, scratch_.data(), k_,
                                     static_cast<const MKL_BF16*>(data_), n_, beta, c, n_);
    } else {
      cblas_sgemm_compute(CblasRowMajor, CblasNoTrans, CblasPacked, rows, n_, k_, a, k_,
                          static_cast<const float*>(data_), n_, beta, c, n_);
    }
  }

 private:
  const int64_t n_, k_;
  const bool bf16_;
  std::unique_ptr<Bf16Gemm> own_;
  void* data_;
  std::vector<MKL_BF16> scratch_;
};

// U rounded to bfloat16 once per op for MKL where the attribute bf16 is set; else empty.
std::vector<MKL_BF16> rounded(const Tensor& u, bool bf16) {
  bf16 = bf16 && !kOwnBf16;
  std::vector<MKL_BF16> out(bf16 ? u.NumElements() : 0);
  if (bf16) to_bf16(u.flat<float>().data(), out.data(), u.NumElements());
  return out;
}

class ForwardOp : public OpKernel {
 public:
  explicit ForwardOp(OpKernelConstruction* context) : OpKernel(context) {
    OP_REQUIRES_OK(context, context->GetAttr("bf16", &bf16_));
  }

  void Compute(OpKernelContext* context) override {
    const Tensor &xw = context->input(0), &h0 = context->input(1), &c0 = context->input(2),
                 &u = context->input(3), &mask = context->input(4);
    OP_REQUIRES_OK(context, check_shapes(xw, h0, c0, u, mask));
    const int64_t steps = xw.dim_size(0), batch = xw.dim_size(1), units = h0.dim_size(1);
    Tensor *hs, *cs, *gates;
    OP_REQUIRES_OK(context, context->allocate_output(0, {steps, batch, units}, &hs));
    OP_REQUIRES_OK(context, context->allocate_output(1, {steps, batch, units}, &cs));
    OP_REQUIRES_OK(context, context->allocate_output(2, xw.shape(), &gates));
    Tensor masked_h;
    OP_REQUIRES_OK(context, context->allocate_temp(tensorflow::DT_FLOAT, h0.shape(), &masked_h));
    if (steps == 0 || batch == 0) return;

    const int64_t n = batch * units, H = units;
    const float* U = u.flat<float>().data();
    const float* m = mask.flat<float>().data();
    const float* x = xw.flat<float>().data();
    float* hm = masked_h.flat<float>().data();
    float* z_all = gates->flat<float>().data();
    float* c_all = cs->flat<float>().data();
    float* h_all = hs->flat<float>().data();
    const std::vector<MKL_BF16> u16 = rounded(u, bf16_);
    for_each_shard(context, batch, [&](int64_t b0, int64_t b1) {
      const int64_t rows = b1 - b0;
      if (rows == 0) return;
      Packed packed(U, bf16_, u16.data(), H, rows, /*transposed=*/false);
      const float* h_prev = h0.flat<float>().data() + b0 * H;
      const float* c_prev = c0.flat<float>().data() + b0 * H;
      float* hm_rows = hm + b0 * H;
      for (int64_t t = 0; t < steps; ++t) {
        float* z = z_all + t * 4 * n + b0 * 4 * H;
        float* c = c_all + t * n + b0 * H;
        float* h = h_all + t * n + b0 * H;
        std::memcpy(z, x + t * 4 * n + b0 * 4 * H, rows * 4 * H * sizeof(float));
        Row(hm_rows, rows * H) = ConstRow(h_prev, rows * H) * ConstRow(m + b0 * H, rows * H);
        packed.multiply(hm_rows, rows, 1.0f, z);
        activate(z, rows, H);
        for (int64_t b = 0; b < rows; ++b) {
          const float* a = z + b * 4 * H;
          ConstRow i(a, H), f(a + H, H), g(a + 2 * H, H), o(a + 3 * H, H);
          Row c_b(c + b * H, H), h_b(h + b * H, H);
          c_b = f * ConstRow(c_prev + b * H, H) + i * g;
          h_b = o * c_b.tanh();
        }
        h_prev = h;
        c_prev = c;
      }
    });
  }

 private:
  bool bf16_;
};

class BackwardOp : public OpKernel {
 public:
  explicit BackwardOp(OpKernelConstruction* context) : OpKernel(context) {
    OP_REQUIRES_OK(context, context->GetAttr("bf16", &bf16_));
  }

  void Compute(OpKernelContext* context) override {
    const Tensor &gates = context->input(0), &cs = context->input(1), &c0 = context->input(2),
                 &d_hs = context->input(3), &d_h = context->input(4), &d_c = context->input(5),
                 &u = context->input(6), &mask = context->input(7);
    OP_REQUIRES_OK(context, check_shapes(gates, c0, d_h, u, mask));
    OP_REQUIRES(context, cs.shape() == d_hs.shape() && d_c.shape() == c0.shape(),
                InvalidArgument("cs and d_hs must be (T, B, H), d_c (B, H)"));
    const int64_t steps = gates.dim_size(0), batch = gates.dim_size(1), units = c0.dim_size(1);
    Tensor *dz_out, *dh0, *dc0;
    OP_REQUIRES_OK(context, context->allocate_output(0, gates.shape(), &dz_out));
    OP_REQUIRES_OK(context, context->allocate_output(1, c0.shape(), &dh0));
    OP_REQUIRES_OK(context, context->allocate_output(2, c0.shape(), &dc0));
    Tensor work;  // dh, dc, tanh(c_t): (3, B, H)
    OP_REQUIRES_OK(context,
                   context->allocate_temp(tensorflow::DT_FLOAT, {3, batch, units}, &work));
    const int64_t n = batch * units, H = units;
    // dh_next and dc_next are carried in place in the outputs dh0 and dc0
    std::memcpy(dh0->flat<float>().data(), d_h.flat<float>().data(), n * sizeof(float));
    std::memcpy(dc0->flat<float>().data(), d_c.flat<float>().data(), n * sizeof(float));
    if (steps == 0 || batch == 0) return;

    const float* U = u.flat<float>().data();
    const float* m = mask.flat<float>().data();
    const std::vector<MKL_BF16> u16 = rounded(u, bf16_);
    for_each_shard(context, batch, [&](int64_t b0, int64_t b1) {
      const int64_t rows = b1 - b0, r = rows * H;
      if (rows == 0) return;
      Packed packed(U, bf16_, u16.data(), H, rows, /*transposed=*/true);
      float* dh = work.flat<float>().data() + b0 * H;
      float* dc = dh + n;
      float* tanh_c = dc + n;
      float* dh_next = dh0->flat<float>().data() + b0 * H;
      float* dc_next = dc0->flat<float>().data() + b0 * H;
      const float* m_rows = m + b0 * H;
      for (int64_t t = steps - 1; t >= 0; --t) {
        const float* a = gates.flat<float>().data() + t * 4 * n + b0 * 4 * H;
        const float* c = cs.flat<float>().data() + t * n + b0 * H;
        const float* c_prev = (t > 0 ? cs.flat<float>().data() + (t - 1) * n
                                     : c0.flat<float>().data()) + b0 * H;
        float* dz = dz_out->flat<float>().data() + t * 4 * n + b0 * 4 * H;
        Row(tanh_c, r) = ConstRow(c, r).tanh();
        const float* d_hs_t = d_hs.flat<float>().data() + t * n + b0 * H;
        Row(dh, r) = ConstRow(d_hs_t, r) + ConstRow(dh_next, r);
        for (int64_t b = 0; b < rows; ++b) {
          const float* a_b = a + b * 4 * H;
          ConstRow i(a_b, H), f(a_b + H, H), g(a_b + 2 * H, H), o(a_b + 3 * H, H);
          ConstRow dh_b(dh + b * H, H), tc(tanh_c + b * H, H);
          Row dc_b(dc + b * H, H), dc_next_b(dc_next + b * H, H);
          dc_b = dc_next_b + dh_b * o * (1.0f - tc * tc);
          float* dz_b = dz + b * 4 * H;
          Row(dz_b, H) = dc_b * g * i * (1.0f - i);
          Row(dz_b + H, H) = dc_b * ConstRow(c_prev + b * H, H) * f * (1.0f - f);
          Row(dz_b + 2 * H, H) = dc_b * i * (1.0f - g * g);
          Row(dz_b + 3 * H, H) = dh_b * tc * o * (1.0f - o);
          dc_next_b = dc_b * f;
        }
        packed.multiply(dz, rows, 0.0f, dh_next);
        Row(dh_next, r) *= ConstRow(m_rows, r);
      }
    });
  }

 private:
  bool bf16_;
};

Status forward_shapes(InferenceContext* c) {
  ShapeHandle xw, h0;
  TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 3, &xw));
  TF_RETURN_IF_ERROR(c->WithRank(c->input(1), 2, &h0));
  ShapeHandle states = c->MakeShape({c->Dim(xw, 0), c->Dim(xw, 1), c->Dim(h0, 1)});
  c->set_output(0, states);
  c->set_output(1, states);
  c->set_output(2, xw);
  return Status();
}

Status backward_shapes(InferenceContext* c) {
  c->set_output(0, c->input(0));
  c->set_output(1, c->input(2));
  c->set_output(2, c->input(2));
  return Status();
}

}  // namespace

REGISTER_OP("CharlstmLstmForward")
    .Input("xw: float")
    .Input("h0: float")
    .Input("c0: float")
    .Input("recurrent_kernel: float")
    .Input("h_mask: float")
    .Output("hs: float")
    .Output("cs: float")
    .Output("gates: float")
    .Attr("bf16: bool = false")
    .SetShapeFn(forward_shapes);

REGISTER_OP("CharlstmLstmBackward")
    .Input("gates: float")
    .Input("cs: float")
    .Input("c0: float")
    .Input("d_hs: float")
    .Input("d_h: float")
    .Input("d_c: float")
    .Input("recurrent_kernel: float")
    .Input("h_mask: float")
    .Output("dz: float")
    .Output("dh0: float")
    .Output("dc0: float")
    .Attr("bf16: bool = false")
    .SetShapeFn(backward_shapes);

REGISTER_KERNEL_BUILDER(Name("CharlstmLstmForward").Device(DEVICE_CPU), ForwardOp);
REGISTER_KERNEL_BUILDER(Name("CharlstmLstmBackward").Device(DEVICE_CPU), BackwardOp);
