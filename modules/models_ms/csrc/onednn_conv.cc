// 2-D convolutions (forward, and backward-data with backward-weights) as MindSpore AOT custom
// operators on CPU, calling the oneDNN library MindSpore itself loads (lib/libdnnl.so.3).
//
// Why: MindSpore 2.10's CPU Conv2d hands oneDNN plain NCHW memory with the library's own scratchpad
// mode, so oneDNN runs im2col + GEMM (`gemm:jit`) and every primitive of a compiled graph keeps its
// im2col buffer for the life of the graph (133-142 MB per 256-channel 3x3 convolution at 120x120).
// Here every tensor descriptor the convolution sees is `format_tag::any` (oneDNN picks its blocked
// layouts and the direct `jit:avx2`/`avx512` kernels, as torch gets them), MindSpore's plain tensors
// are reordered in and out, and the scratchpad is user-mode: the blocked copies and the scratchpad live
// in the workspace MindSpore hands each launch and frees after it. Nothing is held between launches
// except the primitives themselves, cached by shape.
//
// Entry points (MindSpore's AOT ABI: params = inputs, outputs, then workspaces), each with its Init
// (plan and workspace size), InferShape and InferType:
//   lsconv_fwd_s<S>p<P>(x, w) -> y                   lsconv_fwd_bias_s<S>p<P>(x, w, b) -> y
//   lsconv_bwd_s<S>p<P>(dy, x, w) -> dx, dw          lsconv_bwd_bias_s<S>p<P>(dy, x, w) -> dx, dw, db
// for the (stride, symmetric padding) pairs of the LSCONV_CONFIG lines; dilation 1, float32, NCHW.
#include <dlfcn.h>
#include <sched.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

#include "oneapi/dnnl/dnnl.hpp"
#include "oneapi/dnnl/dnnl_threadpool.hpp"
#include "threadpool.h"

namespace {

using dnnl::memory;
using tag = dnnl::memory::format_tag;
using dt = dnnl::memory::data_type;

// MindSpore's AotExtra (include/mindspore/ccsrc/utils/custom_aot_extra.h in the 2.10 wheel) is a
// polymorphic class whose first data member is `std::vector<size_t> workspace_`, which its inline
// SetWorkSpace assigns; under the Itanium C++ ABI that member follows the vtable pointer. Its other
// headers pull in MindSpore's IR (and need its libraries at load time), so this view stands in for
// it; the Python builder checks the installed header still declares that member first.
struct AotExtraView {
  const void *vtable;
  std::vector<size_t> workspace;
};

constexpr size_t kAlign = 64;
size_t RoundUp(size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

int CpuCount() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
  return 1;
}

langseg::ThreadPool &Pool() {
  static auto *pool = new langseg::ThreadPool(CpuCount());  // never destroyed: its threads are detached
  return *pool;
}

dnnl::engine &Engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

dnnl::stream &Stream() {  // one per calling thread; every stream shares the pool
  thread_local dnnl::stream stream = dnnl::threadpool_interop::make_stream(Engine(), &Pool());
  return stream;
}

std::mutex error_mutex;
std::string last_error;

void SetError(const std::string &message) {
  std::lock_guard<std::mutex> lock(error_mutex);
  last_error = message;
}

dnnl::primitive_attr UserScratchpad() {
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  return attr;
}

memory::dims Dims(const int64_t *shape, int ndims) { return memory::dims(shape, shape + ndims); }

// One tensor as MindSpore holds it (plain, `user`) and as a primitive wants it (`inner`); when they
// differ, a reorder stages it through the workspace at `offset`.
struct Operand {
  memory::desc user, inner;
  dnnl::reorder reorder;
  size_t offset = 0;
  bool staged = false;
};

class Plan {
 public:
  virtual ~Plan() = default;
  size_t workspace_bytes() const { return size_ + kAlign; }  // slack to align MindSpore's pointer
  virtual void Run(void **params, char *workspace) = 0;

 protected:
  // Reserve workspace for `op` if the primitive wants another layout; `input`: MindSpore -> primitive.
  void Stage(Operand &op, const memory::desc &user, const memory::desc &inner, bool input) {
    op.user = user;
    op.inner = inner;
    op.staged = user != inner;
    if (!op.staged) return;
    op.offset = Take(inner.get_size());
    auto pd = input ? dnnl::reorder::primitive_desc(Engine(), user, Engine(), inner, UserScratchpad())
                    : dnnl::reorder::primitive_desc(Engine(), inner, Engine(), user, UserScratchpad());
    Scratch(pd.scratchpad_desc());
    op.reorder = dnnl::reorder(pd);
  }
  void Scratch(const memory::desc &desc) { scratch_ = std::max(scratch_, desc.get_size()); }
  void Finish() { scratch_offset_ = Take(scratch_); }
  size_t Take(size_t bytes) {
    size_t at = size_;
    size_ += RoundUp(bytes);
    return at;
  }

  // The memory a primitive reads or writes for `op`: MindSpore's own buffer, or the staged copy.
  memory Inner(const Operand &op, void *user, char *workspace) {
    return op.staged ? memory(op.inner, Engine(), workspace + op.offset) : memory(op.user, Engine(), user);
  }
  void In(const Operand &op, void *user, char *workspace) {
    if (!op.staged) return;
    memory from(op.user, Engine(), user), to(op.inner, Engine(), workspace + op.offset);
    op.reorder.execute(Stream(), {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}, ScratchArg(workspace)});
  }
  void Out(const Operand &op, void *user, char *workspace) {
    if (!op.staged) return;
    memory from(op.inner, Engine(), workspace + op.offset), to(op.user, Engine(), user);
    op.reorder.execute(Stream(), {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}, ScratchArg(workspace)});
  }
  std::pair<const int, memory> ScratchArg(char *workspace) {
    // every primitive of a plan runs in turn, so they share one scratchpad region (the largest)
    return {DNNL_ARG_SCRATCHPAD,
            memory(memory::desc({static_cast<memory::dim>(scratch_)}, dt::u8, tag::a), Engine(),
                   workspace + scratch_offset_)};
  }

 private:
  size_t size_ = 0, scratch_ = 0, scratch_offset_ = 0;
};

struct Geometry {
  memory::dims x, w, y, strides, pad;
  bool bias = false;
  memory::desc Any(const memory::dims &d) const { return memory::desc(d, dt::f32, tag::any); }
  memory::desc Plain(const memory::dims &d) const { return memory::desc(d, dt::f32, tag::abcd); }
  memory::desc Bias() const { return bias ? memory::desc({w[0]}, dt::f32, tag::a) : memory::desc(); }
  dnnl::convolution_forward::primitive_desc Forward() const {
    return dnnl::convolution_forward::primitive_desc(
        Engine(), dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct, Any(x), Any(w), Bias(),
        Any(y), strides, {0, 0}, pad, pad, UserScratchpad());
  }
};

class ForwardPlan : public Plan {
 public:
  explicit ForwardPlan(const Geometry &g) : bias_(g.bias) {
    auto pd = g.Forward();
    Stage(x_, g.Plain(g.x), pd.src_desc(), true);
    Stage(w_, g.Plain(g.w), pd.weights_desc(), true);
    Stage(y_, g.Plain(g.y), pd.dst_desc(), false);
    Scratch(pd.scratchpad_desc());
    Finish();
    bias_desc_ = g.Bias();
    conv_ = dnnl::convolution_forward(pd);
  }
  void Run(void **p, char *ws) override {  // x, w, [b], y
    void *x = p[0], *w = p[1], *y = p[bias_ ? 3 : 2];
    In(x_, x, ws);
    In(w_, w, ws);
    std::unordered_map<int, memory> args{
        {DNNL_ARG_SRC, Inner(x_, x, ws)}, {DNNL_ARG_WEIGHTS, Inner(w_, w, ws)}, {DNNL_ARG_DST, Inner(y_, y, ws)},
        ScratchArg(ws)};
    if (bias_) args.emplace(DNNL_ARG_BIAS, memory(bias_desc_, Engine(), p[2]));
    conv_.execute(Stream(), args);
    Out(y_, y, ws);
  }

 private:
  bool bias_;
  Operand x_, w_, y_;
  memory::desc bias_desc_;
  dnnl::convolution_forward conv_;
};

// Backward-data and backward-weights in one operator: the output gradient is staged once for both.
class BackwardPlan : public Plan {
 public:
  explicit BackwardPlan(const Geometry &g) : bias_(g.bias) {
    auto hint = g.Forward();
    dnnl::convolution_backward_data::primitive_desc data(Engine(), dnnl::algorithm::convolution_direct,
                                                         g.Any(g.x), g.Any(g.w), g.Any(g.y), g.strides, g.pad,
                                                         g.pad, hint, UserScratchpad());
    dnnl::convolution_backward_weights::primitive_desc weights(
        Engine(), dnnl::algorithm::convolution_direct, g.Any(g.x), g.Any(g.w), g.Bias(), g.Any(g.y), g.strides,
        g.pad, g.pad, hint, UserScratchpad());
    Stage(dy_data_, g.Plain(g.y), data.diff_dst_desc(), true);
    dy_shared_ = weights.diff_dst_desc() == data.diff_dst_desc();
    if (!dy_shared_) Stage(dy_weights_, g.Plain(g.y), weights.diff_dst_desc(), true);
    Stage(w_, g.Plain(g.w), data.weights_desc(), true);
    Stage(dx_, g.Plain(g.x), data.diff_src_desc(), false);
    Stage(x_, g.Plain(g.x), weights.src_desc(), true);
    Stage(dw_, g.Plain(g.w), weights.diff_weights_desc(), false);
    Scratch(data.scratchpad_desc());
    Scratch(weights.scratchpad_desc());
    Finish();
    bias_desc_ = g.Bias();
    data_ = dnnl::convolution_backward_data(data);
    weights_ = dnnl::convolution_backward_weights(weights);
  }
  void Run(void **p, char *ws) override {  // dy, x, w, dx, dw, [db]
    void *dy = p[0], *x = p[1], *w = p[2], *dx = p[3], *dw = p[4];
    const Operand &dy_weights = dy_shared_ ? dy_data_ : dy_weights_;
    In(dy_data_, dy, ws);
    In(w_, w, ws);
    data_.execute(Stream(), {{DNNL_ARG_DIFF_DST, Inner(dy_data_, dy, ws)},
                             {DNNL_ARG_WEIGHTS, Inner(w_, w, ws)},
                             {DNNL_ARG_DIFF_SRC, Inner(dx_, dx, ws)},
                             ScratchArg(ws)});
    Out(dx_, dx, ws);
    if (!dy_shared_) In(dy_weights_, dy, ws);
    In(x_, x, ws);
    std::unordered_map<int, memory> args{{DNNL_ARG_DIFF_DST, Inner(dy_weights, dy, ws)},
                                         {DNNL_ARG_SRC, Inner(x_, x, ws)},
                                         {DNNL_ARG_DIFF_WEIGHTS, Inner(dw_, dw, ws)},
                                         ScratchArg(ws)};
    if (bias_) args.emplace(DNNL_ARG_DIFF_BIAS, memory(bias_desc_, Engine(), p[5]));
    weights_.execute(Stream(), args);
    Out(dw_, dw, ws);
  }

 private:
  bool bias_, dy_shared_ = false;
  Operand dy_data_, dy_weights_, w_, dx_, x_, dw_;
  memory::desc bias_desc_;
  dnnl::convolution_backward_data data_;
  dnnl::convolution_backward_weights weights_;
};

// Plans by (direction, bias, stride, padding, shapes): made in the Init call MindSpore makes when it
// builds a kernel (which must also say the workspace size), found again at each launch.
std::mutex plans_mutex;
std::map<std::vector<int64_t>, std::shared_ptr<Plan>> plans;

template <bool kBackward, bool kBias>
constexpr int kInputs = kBackward ? 3 : (kBias ? 3 : 2);
template <bool kBackward, bool kBias>
constexpr int kOutputs = kBackward ? (kBias ? 3 : 2) : 1;

template <bool kBackward, bool kBias, int kStride, int kPad>
std::vector<int64_t> Key(int *ndims, int64_t **shapes, const char **dtypes) {
  constexpr int tensors = kInputs<kBackward, kBias> + kOutputs<kBackward, kBias>;
  std::vector<int64_t> key{kBackward, kBias, kStride, kPad};
  for (int i = 0; i < tensors; ++i) {
    const bool is_bias = kBias && i == (kBackward ? tensors - 1 : 2);  // fwd: x, w, b, y; bwd: ..., db
    if (std::strcmp(dtypes[i], "float32") != 0) {
      throw std::runtime_error("tensor " + std::to_string(i) + " is " + dtypes[i] + ", not float32");
    }
    if (ndims[i] != (is_bias ? 1 : 4)) {
      throw std::runtime_error("tensor " + std::to_string(i) + " has rank " + std::to_string(ndims[i]));
    }
    key.insert(key.end(), shapes[i], shapes[i] + ndims[i]);
  }
  return key;
}

template <bool kBackward, bool kBias, int kStride, int kPad>
Geometry GeometryOf(int64_t **shapes) {
  Geometry g;
  g.bias = kBias;
  g.strides = {kStride, kStride};
  g.pad = {kPad, kPad};
  if (kBackward) {  // dy, x, w
    g.y = Dims(shapes[0], 4), g.x = Dims(shapes[1], 4), g.w = Dims(shapes[2], 4);
  } else {  // x, w, [b], y
    g.x = Dims(shapes[0], 4), g.w = Dims(shapes[1], 4), g.y = Dims(shapes[kBias ? 3 : 2], 4);
  }
  return g;
}

int Fail(const char *where, const std::string &why) {
  std::string message = std::string(where) + ": " + why;
  SetError(message);
  std::fprintf(stderr, "lang_seg oneDNN convolution: %s\n", message.c_str());
  return 1;
}

template <bool kBackward, bool kBias, int kStride, int kPad>
int Prepare(int *ndims, int64_t **shapes, const char **dtypes, void *extra) {
  try {
    auto key = Key<kBackward, kBias, kStride, kPad>(ndims, shapes, dtypes);
    std::lock_guard<std::mutex> lock(plans_mutex);
    auto &plan = plans[key];
    if (!plan) {
      // primitives are built for as many threads as the pool runs (oneDNN reads this per thread)
      dnnl_threadpool_interop_set_max_concurrency(Pool().get_num_threads());
      auto g = GeometryOf<kBackward, kBias, kStride, kPad>(shapes);
      if (kBackward) {
        plan = std::make_shared<BackwardPlan>(g);
      } else {
        plan = std::make_shared<ForwardPlan>(g);
      }
    }
    static_cast<AotExtraView *>(extra)->workspace = {plan->workspace_bytes()};
    return 0;
  } catch (const dnnl::error &e) {
    return Fail("init", std::string(e.what()) + " (oneDNN status " + std::to_string(static_cast<int>(e.status)) + ")");
  } catch (const std::exception &e) {
    return Fail("init", e.what());
  }
}

template <bool kBackward, bool kBias, int kStride, int kPad>
int Launch(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes) {
  try {
    constexpr int tensors = kInputs<kBackward, kBias> + kOutputs<kBackward, kBias>;
    if (nparam != tensors + 1) {
      return Fail("launch", "expected " + std::to_string(tensors) + " tensors and a workspace, got " +
                                std::to_string(nparam) + " pointers");
    }
    auto key = Key<kBackward, kBias, kStride, kPad>(ndims, shapes, dtypes);
    std::shared_ptr<Plan> plan;
    {
      std::lock_guard<std::mutex> lock(plans_mutex);
      auto found = plans.find(key);
      if (found != plans.end()) plan = found->second;
    }
    if (!plan) return Fail("launch", "no plan for these shapes (the kernel's Init saw others)");
    auto base = reinterpret_cast<uintptr_t>(params[tensors]);
    plan->Run(params, reinterpret_cast<char *>((base + kAlign - 1) / kAlign * kAlign));
    return 0;
  } catch (const dnnl::error &e) {
    return Fail("launch", std::string(e.what()) + " (oneDNN status " + std::to_string(static_cast<int>(e.status)) + ")");
  } catch (const std::exception &e) {
    return Fail("launch", e.what());
  }
}

// Output shapes and dtypes, for MindSpore's C++ shape inference (the operators are built with neither
// out_shape nor out_dtype): graphs that MindSpore re-infers at run time (a dict returned through its
// JIT fallback does that) have no Python to ask. dtypes follow the inputs; launch checks float32.
template <int kStride, int kPad>
std::vector<int64_t> ForwardShape(int64_t **shapes) {
  const int64_t *x = shapes[0], *w = shapes[1];
  auto out = [](int64_t size, int64_t kernel) { return (size + 2 * kPad - kernel) / kStride + 1; };
  return {x[0], w[0], out(x[2], w[2]), out(x[3], w[3])};
}
template <bool kBias>
std::vector<std::vector<int64_t>> BackwardShapes(int *ndims, int64_t **shapes) {  // dy, x, w -> dx, dw, [db]
  std::vector<std::vector<int64_t>> out{Dims(shapes[1], ndims[1]), Dims(shapes[2], ndims[2])};
  if (kBias) out.push_back({shapes[2][0]});
  return out;
}

}  // namespace

#define LSCONV_API extern "C" __attribute__((visibility("default")))

// MindSpore calls the Infer functions through pointers to these C++ signatures (custom_op_infer.cc).
#pragma GCC diagnostic ignored "-Wreturn-type-c-linkage"

#define LSCONV_FORWARD(NAME, BIAS, S, P)                                                                  \
  LSCONV_API int NAME##_s##S##p##P(int n, void **p, int *nd, int64_t **sh, const char **t, void *, void *) { \
    return Launch<false, BIAS, S, P>(n, p, nd, sh, t);                                                      \
  }                                                                                                        \
  LSCONV_API int NAME##_s##S##p##P##Init(int *nd, int64_t **sh, const char **t, void *extra) {             \
    return Prepare<false, BIAS, S, P>(nd, sh, t, extra);                                                     \
  }                                                                                                        \
  LSCONV_API std::vector<int64_t> NAME##_s##S##p##P##InferShape(int *, int64_t **sh, void *) {             \
    return ForwardShape<S, P>(sh);                                                                          \
  }                                                                                                        \
  LSCONV_API int NAME##_s##S##p##P##InferType(std::vector<int> types, void *) { return types[0]; }
#define LSCONV_BACKWARD(NAME, BIAS, S, P)                                                                 \
  LSCONV_API int NAME##_s##S##p##P(int n, void **p, int *nd, int64_t **sh, const char **t, void *, void *) { \
    return Launch<true, BIAS, S, P>(n, p, nd, sh, t);                                                       \
  }                                                                                                        \
  LSCONV_API int NAME##_s##S##p##P##Init(int *nd, int64_t **sh, const char **t, void *extra) {             \
    return Prepare<true, BIAS, S, P>(nd, sh, t, extra);                                                      \
  }                                                                                                        \
  LSCONV_API std::vector<std::vector<int64_t>> NAME##_s##S##p##P##InferShape(int *nd, int64_t **sh, void *) { \
    return BackwardShapes<BIAS>(nd, sh);                                                                    \
  }                                                                                                        \
  LSCONV_API std::vector<int> NAME##_s##S##p##P##InferType(std::vector<int> types, void *) {               \
    std::vector<int> out{types[1], types[2]};                                                               \
    if (BIAS) out.push_back(types[2]);                                                                      \
    return out;                                                                                             \
  }
#define LSCONV_CONFIG(S, P)                      \
  LSCONV_FORWARD(lsconv_fwd, false, S, P)        \
  LSCONV_FORWARD(lsconv_fwd_bias, true, S, P)    \
  LSCONV_BACKWARD(lsconv_bwd, false, S, P)       \
  LSCONV_BACKWARD(lsconv_bwd_bias, true, S, P)

// (stride, padding) pairs LSeg's convolutions use: 1x1 (1, 0), 3x3 (1, 1), the 3x3 resampling (2, 1)
LSCONV_CONFIG(1, 0)
LSCONV_CONFIG(1, 1)
LSCONV_CONFIG(2, 1)

// For the loader's checks: the oneDNN headers built against, the library resolved at run time.
LSCONV_API int lsconv_header_version() { return DNNL_VERSION_MAJOR * 10000 + DNNL_VERSION_MINOR * 100 + DNNL_VERSION_PATCH; }
LSCONV_API int lsconv_runtime_version() {
  const dnnl_version_t *v = dnnl_version();
  return v->major * 10000 + v->minor * 100 + v->patch;
}
LSCONV_API unsigned lsconv_runtime_cpu_runtime() { return dnnl_version()->cpu_runtime; }
LSCONV_API const char *lsconv_dnnl_path() {
  Dl_info info;
  return dladdr(reinterpret_cast<void *>(&dnnl_version), &info) && info.dli_fname ? info.dli_fname : "";
}
LSCONV_API int lsconv_threads() { return Pool().get_num_threads(); }
LSCONV_API uint64_t lsconv_worker_tasks() { return Pool().worker_tasks(); }
LSCONV_API const char *lsconv_last_error() {
  std::lock_guard<std::mutex> lock(error_mutex);
  static thread_local std::string copy;
  copy = last_error;
  return copy.c_str();
}
