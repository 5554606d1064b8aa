// The CUDA runner against the CPU engine (Model::Forward) on the same checkpoints: stories260K (HF folder)
// and random models of every family the CPU engine runs (Llama, Mamba-2, Llamba, Llamba keeping attention
// heads, Mamba-3 SISO and MIMO, Gated DeltaNet, Mamba-2 + attention layers; weights rounded to bf16
// values, so both engines run the same weights). The GPU feeds bf16 activations to every GEMM and
// the CPU runs f32: logits relative L2 error <= 3e-2. Prefill of a prompt, then greedy decode of two
// sequences batched (both engines fed the CPU's tokens).
#include <algorithm>
#include <cstring>

#include "engine_cuda/cuda_runner.h"
#include "engine_cuda/host_tensors.h"
#include "io/io_test_util.h"
#include "model/model_test_util.h"
#include "ops/cuda/test_util.h"

namespace subq::cuda::test {
namespace {

constexpr double kTol = 3e-2;

// The same checkpoint with every tensor rounded to the nearest bf16 value (kept as f32).
Checkpoint RoundedToBF16(const Checkpoint& ck) {
  Checkpoint out = ck;
  out.tensors = TensorStore();
  out.tensors.source = ck.tensors.source;
  for (const TensorInfo& t : ck.tensors.tensors()) {
    auto v = ck.tensors.LoadAny(t.name);
    EXPECT_TRUE(v.ok());
    std::vector<uint8_t> bytes(v->data.size() * sizeof(float));
    for (size_t i = 0; i < v->data.size(); ++i) {
      const float r = ops::BF16BitsToFloat(ops::FloatToBF16Bits(v->data[i]));
      std::memcpy(bytes.data() + i * sizeof(float), &r, sizeof(float));
    }
    TensorInfo ti = t;
    ti.dtype = DType::kF32;
    ti.nbytes = bytes.size();
    ti.data = out.tensors.Own(std::move(bytes));
    EXPECT_TRUE(out.tensors.Add(ti).ok());
  }
  return out;
}

void ExpectParity(const Checkpoint& ck, int prompt_len, int steps) {
  auto cpu = Model::FromCheckpoint(ck);
  ASSERT_TRUE(cpu.ok()) << cpu.status().message();
  std::string err;
  auto gpu = CudaModel::Upload(ck.config, FromStore(ck.tensors), &err);
  ASSERT_TRUE(gpu) << err;
  const int V = ck.config.vocab_size, ctx = prompt_len + steps + 1;
  CudaRunner run(*gpu, 2, ctx, 16);  // prompts go in pieces of 16 rows
  Workspace ws(**cpu, 64);
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> tokd(3, V - 1);
  std::vector<SequenceState> seqs;
  std::vector<int> last(2);
  int argmax_agree = 0, argmax_total = 0;
  for (int s = 0; s < 2; ++s) {
    std::vector<int> prompt(prompt_len - 5 * s);
    for (int& t : prompt) t = tokd(rng);
    seqs.push_back((*cpu)->NewSequence(ctx).value());
    std::vector<float> ref(V), out;
    ASSERT_TRUE((*cpu)->Forward(prompt.data(), static_cast<int>(prompt.size()), seqs[s], ws, ref.data()).ok());
    run.Prefill(s, prompt.data(), static_cast<int>(prompt.size()), &out);
    EXPECT_REL(out, ref, kTol);
    last[s] = static_cast<int>(std::max_element(ref.begin(), ref.end()) - ref.begin());
  }
  std::vector<int> slots = {0, 1}, next(2);
  for (int step = 0; step < steps; ++step) {
    std::vector<float> out;
    run.Decode(2, slots.data(), last.data(), next.data(), &out);
    for (int s = 0; s < 2; ++s) {
      std::vector<float> ref(V);
      ASSERT_TRUE((*cpu)->Forward(&last[s], 1, seqs[s], ws, ref.data()).ok());
      const std::vector<float> row(out.begin() + size_t(s) * V, out.begin() + size_t(s + 1) * V);
      EXPECT_REL(row, ref, kTol);
      last[s] = static_cast<int>(std::max_element(ref.begin(), ref.end()) - ref.begin());
      argmax_agree += next[s] == last[s], ++argmax_total;
    }
  }
  std::printf("  greedy tokens equal to the CPU's: %d of %d\n", argmax_agree, argmax_total);
  ::testing::Test::RecordProperty("greedy_agree", std::to_string(argmax_agree) + "/" + std::to_string(argmax_total));
}

TEST_F(CudaTest, Stories260KMatchesCpuEngine) {
  auto ck = ReadHfFolder(subq::testing::Stories("hf"));
  if (!ck.ok()) GTEST_SKIP() << "stories260K not found: " << ck.status().message();
  ExpectParity(*ck, 40, 12);
}

class RandomParity : public CudaTest, public ::testing::WithParamInterface<const char*> {};

TEST_P(RandomParity, MatchesCpuEngine) {
  auto ck = subq::testing::RandomCheckpoint(subq::testing::RandomModelConfig(GetParam()), 11);
  ASSERT_TRUE(ck.ok()) << ck.status().message();
  ExpectParity(RoundedToBF16(*ck), 37, 8);
}

// Every kind the CPU engine's batch tests cover: each family, the layer hybrid and the head hybrid.
INSTANTIATE_TEST_SUITE_P(Families, RandomParity, ::testing::ValuesIn(subq::testing::kModelKinds),
                         [](const ::testing::TestParamInfo<const char*>& i) { return std::string(i.param); });

}  // namespace
}  // namespace subq::cuda::test
