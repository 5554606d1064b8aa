// `subq train` (train_lm.h): the model (the trainer's Llama, train/teacher.h, with gradients), the data
// mixture, the optimiser loop, checkpoints, export and held-out perplexity. Reuses the distiller's parts:
// WsdLr, FusedAdamW, ClipGradNorm, CheckpointStore + manifests + run fingerprints, BuildCorpus, the
// output-folder lock, Perplexity, CopyTokenizer and plot.py. Single process (no data parallelism).
#include "train/train_lm.h"

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>

#include "eval/probe_score.h"
#include "eval/probes.h"
#include "io/checkpoint.h"
#include "io/checkpoint_manifest.h"
#include "io/hf_write.h"
#include "io/safetensors_write.h"
#include "io/tokenizer.h"
#include "train/checkpoint_store.h"
#include "train/compute.h"
#include "train/data.h"
#include "train/distill.h"
#include "train/export.h"
#include "train/heldout.h"
#include "train/optimizer.h"
#include "train/run_dir.h"
#include "train/run_fingerprint.h"
#include "train/teacher.h"
#include "util/npy.h"
#include "util/plot.h"

namespace subq::train {
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

using Clock = std::chrono::steady_clock;

// A Llama of the recipe's shape with GPT-2 style init: N(0, std) weights, output projections (o, down)
// scaled by 1/sqrt(2 n_layers), unit norms. Seeded by torch's generator.
std::unique_ptr<Teacher> ScratchLlama(const LmModelRecipe& m, const Tokenizer& tok) {
  auto t = std::make_unique<Teacher>();
  ModelConfig& c = t->cfg_;
  c.family = "llama";
  c.vocab_size = tok.vocab_size();
  c.dim = m.dim;
  c.hidden_dim = m.hidden_dim;
  c.n_layers = m.n_layers;
  c.max_seq_len = m.max_seq_len;
  c.norm_eps = static_cast<float>(m.norm_eps);
  c.tie_embeddings = m.tie_embeddings;
  c.bos_id = tok.bos_id();
  c.eos_id = tok.eos_id();
  c.attn.n_heads = m.n_heads;
  c.attn.n_kv_heads = m.n_kv_heads;
  c.attn.head_dim = m.dim / m.n_heads;
  c.attn.rope_theta = static_cast<float>(m.rope_theta);
  c.layers.assign(m.n_layers, LayerConfig{});
  const int64_t D = c.dim, F = c.hidden_dim, V = c.vocab_size, hd = c.attn.head_dim;
  const double sd = m.init_std, so = m.init_std / std::sqrt(2.0 * m.n_layers);
  t->embed = torch::randn({V, D}) * sd;                                      // [V, D]
  t->final_norm = torch::ones({D});
  t->lm_head = m.tie_embeddings ? t->embed : torch::randn({V, D}) * sd;      // [V, D]
  const torch::Tensor inv = InvFreq(c.attn);
  for (int i = 0; i < c.n_layers; ++i) {
    TeacherLayer L;
    L.in_norm = torch::ones({D});
    L.mlp_norm = torch::ones({D});
    L.gate = torch::randn({F, D}) * sd;  // [F, D]
    L.up = torch::randn({F, D}) * sd;    // [F, D]
    L.down = torch::randn({D, F}) * so;  // [D, F]
    L.attn.n_heads = m.n_heads;
    L.attn.n_kv_heads = m.n_kv_heads;
    L.attn.head_dim = static_cast<int>(hd);
    L.attn.inv_freq = inv;
    L.attn.q = torch::randn({m.n_heads * hd, D}) * sd;     // [H*hd, D]
    L.attn.k = torch::randn({m.n_kv_heads * hd, D}) * sd;  // [Hkv*hd, D]
    L.attn.v = torch::randn({m.n_kv_heads * hd, D}) * sd;  // [Hkv*hd, D]
    L.attn.o = torch::randn({D, m.n_heads * hd}) * so;     // [D, H*hd]
    t->layers.push_back(std::move(L));
  }
  return t;
}

// Teacher::Forward without its no-grad guard: the same math, differentiable. [B, L] -> [B, L, V].
torch::Tensor LmLogits(const Teacher& m, const torch::Tensor& ids) {
  const float eps = m.config().norm_eps;
  auto x = torch::embedding(m.embed, ids);  // [B, L, D]
  for (const auto& L : m.layers) {
    x = x + Attention(L.attn, RmsNorm(x, L.in_norm, eps), nullptr);             // [B, L, D]
    x = x + SwiGlu(RmsNorm(x, L.mlp_norm, eps), L.gate, L.up, L.down);          // [B, L, D]
  }
  return torch::linear(RmsNorm(x, m.final_norm, eps), m.lm_head);  // [B, L, V]
}

// Every parameter under its HF Llama name (tied lm_head listed once, as the embedding).
std::vector<NamedTensor> LmParams(Teacher& m) {
  std::vector<NamedTensor> p{{"model.embed_tokens.weight", m.embed}};
  for (size_t i = 0; i < m.layers.size(); ++i) {
    auto& L = m.layers[i];
    const std::string pre = fmt::format("model.layers.{}.", i);
    p.push_back({pre + "input_layernorm.weight", L.in_norm});
    p.push_back({pre + "self_attn.q_proj.weight", L.attn.q});
    p.push_back({pre + "self_attn.k_proj.weight", L.attn.k});
    p.push_back({pre + "self_attn.v_proj.weight", L.attn.v});
    p.push_back({pre + "self_attn.o_proj.weight", L.attn.o});
    p.push_back({pre + "post_attention_layernorm.weight", L.mlp_norm});
    p.push_back({pre + "mlp.gate_proj.weight", L.gate});
    p.push_back({pre + "mlp.up_proj.weight", L.up});
    p.push_back({pre + "mlp.down_proj.weight", L.down});
  }
  p.push_back({"model.norm.weight", m.final_norm});
  if (!m.config().tie_embeddings) p.push_back({"lm_head.weight", m.lm_head});
  return p;
}

// The training mixture. Sequence k is a pure function of (recipe, seed, k): its source is drawn by the
// weights, then a random window of a text source, or seq_len tokens starting at a random example of a
// probe source (so every probe sequence begins with a whole example; the stream wraps around).
struct MixSource {
  std::vector<int> stream;
  std::vector<uint8_t> target;  // loss "answers": 1 where stream[i] is an answer token; empty = every token
  std::vector<int64_t> starts;  // probe: token offset of each example
  bool probe = false;
  double cum_weight = 0;        // cumulative normalised weight
};

struct Mixture {
  std::vector<MixSource> src;
  std::vector<int> held_out;
  std::string held_out_text;
  uint64_t seed = 0;
  int seq_len = 0;

  // Sequence k: its tokens in out[0, seq_len) and in is_target[i] whether token i carries the loss.
  void Get(uint64_t k, int* out, uint8_t* is_target) const {
    uint64_t st = seed * 0x9E3779B97F4A7C15ull + k;
    const double u = static_cast<double>(SplitMix64(&st) >> 11) * 0x1.0p-53;
    size_t s = 0;
    while (s + 1 < src.size() && u >= src[s].cum_weight) ++s;
    const MixSource& m = src[s];
    const uint64_t h = SplitMix64(&st);
    const int64_t n = static_cast<int64_t>(m.stream.size());
    const int64_t start = m.probe ? m.starts[h % m.starts.size()] : static_cast<int64_t>(h % (n / seq_len)) * seq_len;
    for (int i = 0; i < seq_len; ++i) {
      out[i] = m.stream[(start + i) % n];
      is_target[i] = m.target.empty() ? 1 : m.target[(start + i) % n];
    }
  }
};

// answers_only: also the loss mask (`target`), and a window of seq_len + 1 tokens from each example's
// start must reach its first answer (its targets are tokens 1..seq_len; an example whose answers lie
// beyond would train on nothing, a silent loss of 0).
Result<std::vector<int>> ReadProbeJsonl(const std::string& path, const Tokenizer& tok, bool answers_only, int seq_len,
                                        std::vector<int64_t>* starts, std::vector<uint8_t>* target) {
  std::ifstream f(path);
  if (!f) return Errorf("{}: cannot open probe JSONL", path);
  std::vector<int> stream;
  int64_t line_no = 0;
  for (std::string line; std::getline(f, line);) {
    ++line_no;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const json j = json::parse(line, nullptr, false);
    auto ex = j.is_discarded() ? Result<ProbeExample>(Errorf("not a probe record (not JSON)")) : ProbeExampleFromJson(j);
    if (!ex.ok()) return Errorf("{}:{}: {}", path, line_no, ex.status().message());
    std::vector<int> ids;
    if (answers_only) {
      // TokenizeProbe locates the answer tokens (and refuses spans the tokenizer merges across).
      auto tp = TokenizeProbe(*ex, tok);
      if (!tp.ok()) return Errorf("{}:{}: {}", path, line_no, tp.status().message());
      if (tp->answers.empty()) return Errorf("{}:{}: loss 'answers' needs records with \"answer_spans\"", path, line_no);
      if (tp->answers.front().first > seq_len)
        return Errorf("{}:{}: the first answer token is at position {}, beyond seq_len {}: with loss 'answers' it "
                      "would never be trained on (raise seq_len or shorten the examples)",
                      path, line_no, tp->answers.front().first, seq_len);
      ids = std::move(tp->tokens);
      std::vector<uint8_t> t(ids.size(), 0);
      for (const auto& [b, e] : tp->answers) std::fill(t.begin() + b, t.begin() + e, uint8_t{1});
      target->insert(target->end(), t.begin(), t.end());
    } else {
      ids = tok.Encode(ex->Text(), /*add_bos=*/true);
    }
    starts->push_back(static_cast<int64_t>(stream.size()));
    stream.insert(stream.end(), ids.begin(), ids.end());
  }
  if (starts->empty()) return Errorf("{}: no probe records", path);
  return stream;
}

Result<Mixture> BuildMixture(const LmRecipe& r, const Tokenizer& tok) {
  Mixture mx;
  mx.seed = r.seed;
  mx.seq_len = r.seq_len;
  double total = 0;
  for (const auto& s : r.sources) total += s.weight;
  double cum = 0;
  for (const auto& s : r.sources) {
    MixSource m;
    if (!s.text.empty()) {
      DataRecipe d;
      d.files = {s.text};
      d.separator = s.separator;
      d.held_out_fraction = r.held_out_fraction;
      d.eval_tokens = r.eval_tokens;
      SUBQ_ASSIGN_OR_RETURN(Corpus c, BuildCorpus(d, tok, r.seq_len));
      m.stream = std::move(c.train);
      mx.held_out.insert(mx.held_out.end(), c.held_out.begin(), c.held_out.end());
      mx.held_out_text += c.held_out_text;
    } else {
      m.probe = true;
      SUBQ_ASSIGN_OR_RETURN(m.stream,
                            ReadProbeJsonl(s.probe, tok, s.loss == "answers", r.seq_len, &m.starts, &m.target));
    }
    for (int id : m.stream)
      if (id < 0 || id >= tok.vocab_size()) return Errorf("tokenizer produced id {} outside its vocab", id);
    cum += s.weight / total;
    m.cum_weight = cum;
    mx.src.push_back(std::move(m));
  }
  return mx;
}

uint32_t TensorCrc(const torch::Tensor& t) { return Crc32(t.data_ptr(), t.numel() * t.element_size()); }

struct LmProgress {
  int64_t step = 0;
  double train_seconds = 0;
};

std::string SaveBytes(const std::vector<NamedTensor>& params, const LmProgress& p, torch::optim::Optimizer& opt,
                      CheckpointManifest* m) {
  torch::serialize::OutputArchive ar;
  std::string names;
  for (size_t i = 0; i < params.size(); ++i) {
    const torch::Tensor t = params[i].t.detach().to(torch::kCPU).contiguous();
    ar.write(fmt::format("p{}", i), t);
    m->records.emplace_back(params[i].name, TensorCrc(t));
    names += params[i].name + "\n";
  }
  ar.write("names", c10::IValue(names));
  ar.write("progress", torch::tensor({p.step}));
  ar.write("train_seconds", torch::tensor({p.train_seconds}, torch::kFloat64));
  ar.write("cpu_rng", at::detail::getDefaultCPUGenerator().get_state());
  torch::serialize::OutputArchive oa;
  opt.save(oa);
  ar.write("optim", oa);
  std::ostringstream bytes;
  ar.save_to(bytes);
  m->progress = fmt::format("step {}", p.step);
  return bytes.str();
}

// Restores parameters, progress, RNG and optimiser from verified checkpoint bytes (records checked first).
Status LoadBytes(const std::string& bytes, const std::string& path, const CheckpointManifest& m,
                 const std::vector<NamedTensor>& params, LmProgress* p, torch::optim::Optimizer& opt) {
  try {
    torch::serialize::InputArchive ar;
    ar.load_from(bytes.data(), bytes.size());
    c10::IValue names;
    ar.read("names", names);
    std::string want;
    for (const auto& x : params) want += x.name + "\n";
    if (names.toStringRef() != want || m.records.size() != params.size())
      return Errorf("{}: checkpoint holds a different model (parameter names differ)", path);
    std::vector<torch::Tensor> loaded(params.size());
    for (size_t i = 0; i < params.size(); ++i) {
      ar.read(fmt::format("p{}", i), loaded[i]);
      loaded[i] = loaded[i].contiguous();
      if (!loaded[i].sizes().equals(params[i].t.sizes()) || TensorCrc(loaded[i]) != m.records[i].second)
        return Errorf("{}: record {} ({}) does not match its shape or checksum", path, i, params[i].name);
    }
    torch::NoGradGuard ng;
    for (size_t i = 0; i < params.size(); ++i) params[i].t.copy_(loaded[i]);
    torch::Tensor prog, secs, rng;
    ar.read("progress", prog);
    ar.read("train_seconds", secs);
    ar.read("cpu_rng", rng);
    at::Generator gen = at::detail::getDefaultCPUGenerator();
    gen.set_state(rng);
    p->step = prog[0].item<int64_t>();
    p->train_seconds = secs[0].item<double>();
    torch::serialize::InputArchive oa;
    ar.read("optim", oa);
    opt.load(oa);
  } catch (const c10::Error& e) {
    return Errorf("{}: cannot read checkpoint: {}", path, FirstLine(e.what_without_backtrace()));
  }
  return Status::Ok();
}

Status AppendLine(const fs::path& path, const std::string& line) {
  std::ofstream f(path, std::ios::app);
  f << line << "\n";
  f.close();
  if (!f) return Errorf("{}: cannot append metrics (disk full?)", path.string());
  return Status::Ok();
}

// Keeps metrics lines of steps before `step` (a killed run may have logged steps it redoes).
Status TrimMetrics(const fs::path& path, int64_t step) {
  std::ifstream in(path);
  if (!in) return Status::Ok();
  std::string text;
  for (std::string line; std::getline(in, line);) {
    const json j = json::parse(line, nullptr, false);
    if (j.is_discarded() || (j.contains("step") && j["step"].get<int64_t>() > step)) continue;
    text += line + "\n";
  }
  return WriteFileAtomically(path.string(), text);
}

Result<TrainResult> RunTrainImpl(const TrainOptions& o) {
  const auto t0 = Clock::now();
  SUBQ_ASSIGN_OR_RETURN(LmRecipe r, LoadLmRecipe(o.recipe, o.overrides));
  if (o.device != "cpu" && o.device != "cuda") return Errorf("--device must be cpu or cuda, got '{}'", o.device);
  if (o.device == "cuda" && !torch::cuda::is_available())
    return Errorf("--device cuda: CUDA is not available (no GPU or libtorch without CUDA)");
  if (o.out_dir.empty()) return Errorf("--out is required");
  const torch::Device dev = o.device == "cuda" ? torch::Device(torch::kCUDA) : torch::Device(torch::kCPU);
  if (o.threads > 0) torch::set_num_threads(o.threads);
  ConfigureMatmulPrecision(dev, true);
  SUBQ_RETURN_IF_ERROR(PrepareOutputDir(o.out_dir));
  SUBQ_ASSIGN_OR_RETURN(RunDirLock lock, RunDirLock::Acquire(o.out_dir));
  const fs::path out(o.out_dir);

  torch::manual_seed(r.seed);
  std::unique_ptr<Tokenizer> tok;
  std::unique_ptr<Teacher> model;
  if (!r.model.from.empty()) {
    auto m = Teacher::Load(r.model.from);
    if (!m.ok()) return Errorf("cannot load model '{}': {}", r.model.from, m.status().message());
    model = std::move(m.value());
    if (!r.model.tokenizer.empty()) {
      SUBQ_ASSIGN_OR_RETURN(tok, LoadTokenizer(r.model.tokenizer));
    } else {
      SUBQ_ASSIGN_OR_RETURN(Checkpoint ck, ReadCheckpoint(r.model.from));
      SUBQ_ASSIGN_OR_RETURN(tok, TokenizerForCheckpoint(ck));
    }
    if (tok->vocab_size() > model->config().vocab_size)
      return Errorf("tokenizer {} has {} tokens but the model's vocab is {}", tok->name(), tok->vocab_size(),
                    model->config().vocab_size);
    if (r.seq_len > model->config().max_seq_len)
      return Errorf("seq_len {} is above the model's context limit of {}", r.seq_len, model->config().max_seq_len);
  } else {
    SUBQ_ASSIGN_OR_RETURN(tok, LoadTokenizer(r.model.tokenizer));
    model = ScratchLlama(r.model, *tok);
  }
  SUBQ_ASSIGN_OR_RETURN(Mixture mix, BuildMixture(r, *tok));

  CheckpointStore store(o.out_dir, o.keep_checkpoints);
  if (!o.resume && !store.Empty())
    return Errorf("{} holds a checkpoint of an earlier run: pass --resume to continue it or use another --out",
                  o.out_dir);
  json fp = {{"recipe", r.yaml}};
  std::vector<std::string> inputs{r.model.from, r.model.tokenizer};
  for (const auto& s : r.sources) inputs.push_back(s.text.empty() ? s.probe : s.text);
  for (const std::string& p : inputs) {
    if (p.empty()) continue;
    SUBQ_ASSIGN_OR_RETURN(json id, PathIdentity(p));
    fp["files"][fs::path(p).filename().string()] = std::move(id);
  }

  model->To(dev);
  const auto params = LmParams(*model);
  std::vector<torch::Tensor> all;
  int64_t n_params = 0;
  for (const auto& p : params) {
    p.t.set_requires_grad(true);
    all.push_back(p.t);
    n_params += p.t.numel();
  }
  FusedAdamW opt(AdamWGroups(all, r.train.lr, r.optim), AdamWDefaults(r.train.lr, r.optim));

  LmProgress pr;
  std::error_code ec;
  if (o.resume && !store.Empty()) {
    std::vector<std::string> problems;
    bool done = false;
    for (const CheckpointManifest& m : store.List(&problems)) {
      const std::string path = store.PathOf(m);
      if (const auto diffs = FingerprintDifferences(m.fingerprint, fp); !diffs.empty()) {
        const std::string what = fmt::format("{} was written by a different run: {}", path, fmt::join(diffs, "; "));
        if (!o.resume_anyway) return Errorf("{}; pass --resume-anyway to resume regardless, or use another --out", what);
        fmt::print(stderr, "[train] warning: {}; resuming anyway (--resume-anyway)\n", what);
      }
      auto bytes = store.ReadVerified(m);
      Status st = bytes.ok() ? LoadBytes(*bytes, path, m, params, &pr, opt) : bytes.status();
      if (!st.ok()) {
        problems.push_back(st.message());
        fmt::print(stderr, "[train] warning: checkpoint damaged, falling back to an older one: {}\n", st.message());
        continue;
      }
      fmt::print(stderr, "[train] resuming from {} ({})\n", path, m.progress);
      done = true;
      break;
    }
    if (!done) return Errorf("no intact checkpoint to resume from: {}", fmt::join(problems, "; "));
    SUBQ_RETURN_IF_ERROR(TrimMetrics(out / "metrics.jsonl", pr.step));
  } else {
    fs::remove(out / "metrics.jsonl", ec);
  }

  const int64_t seqs = r.train.batch_tokens / r.seq_len, steps = r.train.tokens / r.train.batch_tokens;
  const int64_t micro = std::min<int64_t>(seqs, r.micro_batch), accum = seqs / micro;
  const ModelConfig& mc = model->config();
  fmt::print(stderr, "[train] llama {} layers, d_model {}, {} heads ({} kv), vocab {}, {} params; {} sources, {} "
             "held-out tokens; {} steps x {} tokens ({} x {} seqs of {}), lr {:g}, device {}, {} threads\n",
             mc.n_layers, mc.dim, mc.attn.n_heads, mc.attn.n_kv_heads, mc.vocab_size, n_params, mix.src.size(),
             mix.held_out.size(), steps, r.train.batch_tokens, accum, micro, r.seq_len, r.train.lr, o.device,
             torch::get_num_threads());
  auto save = [&]() -> Status {
    if (r.checkpoint_every == 0) return Status::Ok();
    CheckpointManifest m;
    m.fingerprint = fp;
    std::string bytes = SaveBytes(params, pr, opt, &m);
    return store.Save(bytes, std::move(m));
  };
  const auto t_start = Clock::now();
  const double secs0 = pr.train_seconds;
  const int64_t step0 = pr.step;
  int64_t steps_here = 0;
  std::vector<int> buf(micro * (r.seq_len + 1));
  std::vector<uint8_t> is_target(buf.size());
  mix.seq_len = r.seq_len + 1;
  for (int64_t step = pr.step; step < steps; ++step) {
    const double lr = WsdLr(step, steps, r.train.lr, r.optim.warmup_fraction, r.optim.decay_fraction, r.optim.min_lr);
    for (auto& g : opt.param_groups()) static_cast<torch::optim::AdamWOptions&>(g.options()).lr(lr);
    opt.zero_grad();
    torch::Tensor loss_acc;
    for (int64_t a = 0; a < accum; ++a) {
      // Sequences of seq_len + 1 tokens: inputs are the first seq_len, targets the last seq_len.
      for (int64_t i = 0; i < micro; ++i) {
        const uint64_t k = static_cast<uint64_t>((step * accum + a) * micro + i);
        mix.Get(k, buf.data() + i * (r.seq_len + 1), is_target.data() + i * (r.seq_len + 1));
      }
      auto ids = torch::tensor(std::vector<int64_t>(buf.begin(), buf.end()), torch::kInt64)
                     .view({micro, r.seq_len + 1}).to(dev);  // [b, L+1]
      auto weight = torch::tensor(std::vector<float>(is_target.begin(), is_target.end()), torch::kFloat32)
                        .view({micro, r.seq_len + 1}).narrow(1, 1, r.seq_len).to(dev);  // [b, L] 1 = loss token
      auto logits = LmLogits(*model, ids.narrow(1, 0, r.seq_len));  // [b, L, V]
      auto nll = torch::nn::functional::cross_entropy(
                     logits.reshape({-1, logits.size(-1)}), ids.narrow(1, 1, r.seq_len).reshape({-1}),
                     torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kNone))
                     .view({micro, r.seq_len});  // [b, L]
      // Mean over each sequence's loss tokens, then over the sequences that have any.
      auto count = weight.sum(1);                                                       // [b]
      auto per_seq = (nll * weight).sum(1) / count.clamp_min(1);                        // [b]
      auto loss = per_seq.sum() / (count > 0).sum().clamp_min(1) / static_cast<double>(accum);
      loss.backward();
      loss_acc = loss_acc.defined() ? loss_acc + loss.detach() : loss.detach();
    }
    torch::Tensor gnorm_t = r.optim.grad_clip > 0 ? ClipGradNorm(all, r.optim.grad_clip) : torch::zeros({});
    opt.step();
    const double loss = loss_acc.item<double>(), gnorm = gnorm_t.item<double>();
    if (!std::isfinite(loss)) return Errorf("step {}: loss is {} (lower the learning rate?)", step + 1, loss);
    pr.step = step + 1;
    pr.train_seconds = secs0 + std::chrono::duration<double>(Clock::now() - t_start).count();
    const double el = std::chrono::duration<double>(Clock::now() - t_start).count();
    const int64_t done = pr.step * r.train.batch_tokens, total = steps * r.train.batch_tokens;
    const double tps = (pr.step - step0) * r.train.batch_tokens / std::max(el, 1e-9);
    if (pr.step % 10 == 0 || pr.step == steps || pr.step == step0 + 1)
      fmt::print(stderr, "[train] step {:>5}/{} tokens {}/{} loss {:.4f} lr {:.2e} {:.0f} tok/s eta {}\n", pr.step,
                 steps, done, total, loss, lr, tps, Hms((total - done) / std::max(tps, 1e-9)));
    SUBQ_RETURN_IF_ERROR(AppendLine(out / "metrics.jsonl",
        json{{"stage", 1}, {"step", pr.step}, {"steps", steps}, {"tokens", done}, {"loss", loss}, {"lr", lr},
             {"grad_norm", gnorm}, {"tokens_per_s", tps}, {"train_seconds", pr.train_seconds}}.dump()));
    ++steps_here;
    const bool stop = o.stop_after_steps >= 0 && steps_here >= o.stop_after_steps;
    if ((r.checkpoint_every > 0 && pr.step % r.checkpoint_every == 0) || pr.step == steps || stop)
      SUBQ_RETURN_IF_ERROR(save());
    if (stop) return Errorf("stopped after {} steps (--stop-after-steps)", steps_here);
  }
  for (auto& t : all) t.set_requires_grad(false);
  {
    Status st = RunPlotScript({"loss", "--metrics", (out / "metrics.jsonl").string(), "--stage", "1", "--skip-empty",
                               "--title", "next-token loss", "--out", (out / "loss.png").string()});
    if (!st.ok()) fmt::print(stderr, "[train] warning: {}\n", st.message());
  }

  // Export: HF Llama folder (config.json, model.safetensors, tokenizer files).
  {
    std::vector<std::pair<std::string, Tensor>> tensors;
    for (const auto& p : params) {
      auto c = p.t.detach().to(torch::kCPU, torch::kFloat32).contiguous();
      Tensor t(std::vector<int64_t>(c.sizes().begin(), c.sizes().end()));
      std::memcpy(t.ptr(), c.data_ptr<float>(), t.numel() * sizeof(float));
      tensors.emplace_back(p.name, std::move(t));
    }
    SUBQ_RETURN_IF_ERROR(WriteSafetensors((out / "model.safetensors").string(), tensors));
    ModelConfig c = mc;
    c.attn.rope_interleaved = false;
    SUBQ_RETURN_IF_ERROR(WriteJsonAtomic((out / "config.json").string(), LlamaConfigJson(c)));
    SUBQ_RETURN_IF_ERROR(CopyTokenizer(r.model.from, r.model.tokenizer, mc.vocab_size, o.out_dir));
    std::vector<std::string> written;
    SUBQ_RETURN_IF_ERROR(WriteLlamaTokenizerConfig(o.out_dir, mc.max_seq_len, &written));
  }
  TrainResult res;
  {
    torch::NoGradGuard ng;
    // Probe logits for parity checks against the engine.
    std::vector<int> probe = tok->Encode("Once upon a time there was a little girl", true);
    auto pids = torch::tensor(std::vector<int64_t>(probe.begin(), probe.end()), torch::kInt64).view({1, -1}).to(dev);
    auto lg = LmLogits(*model, pids)[0].to(torch::kCPU).contiguous();  // [L, V]
    Tensor t({lg.size(0), lg.size(1)});
    std::memcpy(t.ptr(), lg.data_ptr<float>(), t.numel() * sizeof(float));
    SUBQ_RETURN_IF_ERROR(WriteNpy(t, (out / "probe_logits.npy").string()));
    SUBQ_RETURN_IF_ERROR(WriteFileAtomically((out / "probe_ids.txt").string(), fmt::format("{}\n", fmt::join(probe, ","))));
  }
  {
    torch::NoGradGuard ng;
    // Held-out perplexity as the engine defines it (train/heldout.h): `subq eval --model OUT --text
    // OUT/held_out.txt --window W` prints the same number (W = min(512, seq_len), the training context).
    std::string sep = "<|endoftext|>";
    for (const auto& s : r.sources)
      if (!s.text.empty()) {
        sep = s.separator;
        break;
      }
    SUBQ_ASSIGN_OR_RETURN(const HeldOutSet held, WriteHeldOut(mix.held_out_text, sep, *tok, r.eval_tokens, r.seq_len,
                                                              (out / "held_out.txt").string()));
    auto src = TorchLogits([&](const torch::Tensor& x) { return LmLogits(*model, x); }, mc.vocab_size, mc.max_seq_len,
                           true, dev);
    SUBQ_ASSIGN_OR_RETURN(const PerplexityResult pp, subq::Perplexity(*src, held.tokens, held.window, held.stride));
    res.held_out_ppl = pp.perplexity;
    res.eval_tokens = pp.tokens;
    res.window = held.window;
  }
  res.steps = pr.step;
  res.params = n_params;
  res.train_seconds = pr.train_seconds;
  res.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  json summary = {{"held_out_ppl", res.held_out_ppl}, {"eval_tokens", res.eval_tokens}, {"window", res.window}, {"steps", res.steps},
                  {"params", res.params}, {"train_seconds", res.train_seconds}, {"seconds", res.seconds},
                  {"recipe", r.path}, {"device", o.device}, {"threads", torch::get_num_threads()}};
  SUBQ_RETURN_IF_ERROR(WriteFileAtomically((out / "summary.json").string(), summary.dump(2) + "\n"));
  return res;
}

}  // namespace

Result<TrainResult> RunTrain(const TrainOptions& o) {
  try {
    return RunTrainImpl(o);
  } catch (const c10::Error& e) {
    return Errorf("train failed: {}", FirstLine(e.what_without_backtrace()));
  } catch (const std::exception& e) {
    return Errorf("train failed: {}", FirstLine(e.what()));
  }
}

}  // namespace subq::train
