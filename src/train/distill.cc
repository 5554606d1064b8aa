// The MOHAWK driver: validation, the stage loop (AdamW + WSD per stage, gradient accumulation, data-parallel
// gradient averaging, clipping), atomic checkpoints with optimiser / RNG / data position (rank 0 writes),
// progress lines, metrics, plots and export.
#include "train/distill.h"

#include <torch/torch.h>

#include <chrono>
#include <climits>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <optional>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "io/checkpoint.h"
#include "io/checkpoint_manifest.h"
#include "io/tokenizer.h"
#include "train/checkpoint_store.h"
#include "train/compute.h"
#include "train/data.h"
#include "train/distributed.h"
#include "train/export.h"
#include "train/heldout.h"
#include "train/losses.h"
#include "train/optimizer.h"
#include "train/student.h"
#include "train/teacher.h"
#include "train/recipe.h"
#include "train/run_dir.h"
#include "train/run_fingerprint.h"
#include "util/npy.h"
#include "util/plot.h"

namespace subq::train {
namespace fs = std::filesystem;

double WsdLr(int64_t step, int64_t steps, double peak, double warmup_fraction, double decay_fraction,
             double min_lr) {
  const int64_t warm = static_cast<int64_t>(std::ceil(warmup_fraction * steps));
  const int64_t decay = static_cast<int64_t>(std::ceil(decay_fraction * steps));
  if (step < warm) return peak * static_cast<double>(step + 1) / warm;
  const int64_t decay_start = steps - decay;
  if (decay > 0 && step >= decay_start) {
    const double f = static_cast<double>(step - decay_start + 1) / decay;  // (0, 1]
    return peak + (min_lr - peak) * f;
  }
  return peak;
}

std::string FirstLine(const std::string& s) { return s.substr(0, s.find('\n')); }

std::string Hms(double s) {
  if (!std::isfinite(s) || s < 0) return "--:--";
  const int64_t t = static_cast<int64_t>(s + 0.5);
  return t >= 3600 ? fmt::format("{}:{:02d}:{:02d}", t / 3600, (t / 60) % 60, t % 60)
                   : fmt::format("{}:{:02d}", t / 60, t % 60);
}

namespace {

using Clock = std::chrono::steady_clock;

// Where a run stands: the next optimiser step of `stage` (0-based) and the data position.
struct Progress {
  int stage = 0;
  int64_t step = 0;
  uint64_t data_pos = 0;
  double train_seconds = 0;  // wall time spent training so far (across resumes)
};

struct StagePlan {
  int64_t steps = 0, micro = 0, accum = 0;
};

// Sequences per optimiser step are split evenly over the ranks; each rank runs accum micro-batches.
Result<StagePlan> Plan(const Recipe& r, int s, int world) {
  const auto& st = r.stages[s];
  StagePlan p;
  p.steps = st.tokens / st.batch_tokens;
  const int64_t seqs = st.batch_tokens / r.seq_len;
  if (seqs % world != 0)
    return Errorf("stage {}: {} sequences per step (batch_tokens / seq_len) do not split over {} ranks", s + 1, seqs,
                  world);
  const int64_t per_rank = seqs / world;
  p.micro = std::min<int64_t>(per_rank, r.micro_batch);
  if (per_rank % p.micro != 0)
    return Errorf("stage {}: {} sequences per rank and step are not a multiple of micro_batch {}", s + 1, per_rank,
                  p.micro);
  p.accum = per_rank / p.micro;
  return p;
}

// Where checkpoints go and what they must match: the keep-K store, this run's fingerprint, and the
// verified bytes of the checkpoint a --resume continues from.
struct RunCheckpoints {
  CheckpointStore store;
  nlohmann::json fingerprint;
  std::string resume_bytes, resume_path;
  CheckpointManifest resume_manifest;
};

uint32_t TensorCrc(const torch::Tensor& cpu_contiguous) {
  return Crc32(cpu_contiguous.data_ptr(), cpu_contiguous.numel() * cpu_contiguous.element_size());
}

class Trainer;

// What a student parameter is, for the stage table's "which parameters train".
enum class ParamRole { kMixer, kKeptAttention, kMlp, kOther };  // kOther: embeddings, block and final norms
// What the teacher must trace for a stage's loss.
enum class TeacherTrace { kLayerInputs, kLogits };

// The MOHAWK stages (SPEC 6), one row each: the recipe name, the loss, which parameters train and what
// the teacher traces. Trainer::Trainable and Trainer::LossBackward read this table and nothing else.
struct StageDef {
  const char* name;  // StageName(s): the recipe's stages.<name>
  const char* loss;  // losses.h
  TeacherTrace teacher;
  bool (*trains)(ParamRole role, const StageRecipe& st);
  // Loss on ids times `scale`, back-propagated; returns it detached.
  torch::Tensor (Trainer::*loss_backward)(const torch::Tensor& ids, double scale);
};

class Trainer {
 public:
  Trainer(const Recipe& r, const DistillOptions& o, Teacher& t, Student& s, SequenceSampler& sampler,
          torch::Device dev, std::vector<int> probe, RunCheckpoints& ck, DataParallel& dp)
      : r_(r), o_(o), teacher_(t), student_(s), sampler_(sampler), dev_(dev), out_(o.out_dir), probe_(std::move(probe)),
        ck_(ck), dp_(dp) {}

  Status Run(Progress start);

  // The stage losses of the table. Layer-local ones (1, 2) go layer by layer, and head chunk by head chunk
  // in stage 1, so only one layer's activations live at a time.
  torch::Tensor MatrixOrientationBackward(const torch::Tensor& ids, double scale);
  torch::Tensor HiddenStateBackward(const torch::Tensor& ids, double scale);
  torch::Tensor EndToEndBackward(const torch::Tensor& ids, double scale);

 private:
  // Parameters trained by stage s, as (name, tensor) pairs in a fixed order.
  std::vector<NamedTensor> Trainable(int s) const;
  torch::Tensor LossBackward(int s, const torch::Tensor& ids, double scale);
  Status SaveCheckpoint(const Progress& p, torch::optim::Optimizer* opt);
  Status StageEnd(int s);
  Status Log(const nlohmann::json& j);

  const Recipe& r_;
  const DistillOptions& o_;
  Teacher& teacher_;
  Student& student_;
  SequenceSampler& sampler_;
  torch::Device dev_;
  fs::path out_;
  std::vector<int> probe_;  // probe prompt ids for the mixing-matrix plots
  RunCheckpoints& ck_;
  DataParallel& dp_;
  int64_t steps_this_process_ = 0;
};

// Layer-local stages leave kept attention layers alone (their teacher weights already match).
const StageDef kStages[3] = {
    {"matrix_orientation", "MatrixOrientationLoss(student M, teacher attention), mean over heads and layers",
     TeacherTrace::kLayerInputs, [](ParamRole r, const StageRecipe&) { return r == ParamRole::kMixer; },
     &Trainer::MatrixOrientationBackward},
    {"hidden_state", "HiddenStateLoss(student block(x_l), teacher x_{l+1}), summed over layers",
     TeacherTrace::kLayerInputs,
     [](ParamRole r, const StageRecipe& st) { return r == ParamRole::kMixer || (st.train_mlp && r == ParamRole::kMlp); },
     &Trainer::HiddenStateBackward},
    {"end_to_end", "SoftCrossEntropy(student logits, teacher logits, temperature)", TeacherTrace::kLogits,
     [](ParamRole r, const StageRecipe& st) { return !(st.freeze_mlp && r == ParamRole::kMlp); },
     &Trainer::EndToEndBackward},
};

std::vector<NamedTensor> Trainer::Trainable(int s) const {
  std::vector<NamedTensor> out;
  for (const auto& p : student_.Params()) {
    const ParamRole role = student_.IsKeptAttentionParam(p.name) ? ParamRole::kKeptAttention
                           : student_.IsMixerParam(p.name)       ? ParamRole::kMixer
                           : student_.IsMlpParam(p.name)         ? ParamRole::kMlp
                                                                 : ParamRole::kOther;
    if (kStages[s].trains(role, r_.stages[s])) out.push_back(p);
  }
  return out;
}

torch::Tensor Trainer::LossBackward(int s, const torch::Tensor& ids, double scale) {
  AutocastScope autocast(dev_, r_.compute.dtype == "bf16");
  return (this->*kStages[s].loss_backward)(ids, scale);
}

torch::Tensor Trainer::EndToEndBackward(const torch::Tensor& ids, double scale) {
  auto t_logits = teacher_.Forward(ids);  // TeacherTrace::kLogits
  auto loss = SoftCrossEntropy(student_.Logits(ids), t_logits, r_.stages[2].temperature) * scale;
  loss.backward();
  return loss.detach();
}

torch::Tensor Trainer::HiddenStateBackward(const torch::Tensor& ids, double scale) {
  Teacher::Trace tr;  // TeacherTrace::kLayerInputs
  teacher_.Forward(ids, &tr);
  torch::Tensor total = torch::zeros({}, ids.options().dtype(torch::kFloat32));
  for (int l = 0; l < static_cast<int>(student_.layers.size()); ++l) {  // the loss is the sum of per-layer losses
    if (student_.is_attention(l)) continue;
    auto ll = HiddenStateLoss(student_.Block(l, tr.inputs[l]), tr.inputs[l + 1]) * scale;
    ll.backward();
    total += ll.detach();
  }
  return total;
}

torch::Tensor Trainer::MatrixOrientationBackward(const torch::Tensor& ids, double scale) {
  Teacher::Trace tr;  // TeacherTrace::kLayerInputs; attention probabilities per head chunk below
  teacher_.Forward(ids, &tr);
  torch::Tensor total = torch::zeros({}, ids.options().dtype(torch::kFloat32));
  for (int l = 0; l < static_cast<int>(student_.layers.size()); ++l) {
    if (student_.is_attention(l)) continue;
    const torch::Tensor& x = tr.inputs[l];
    // The mean over heads of per-head losses, materialised stage1_head_chunk heads at a time.
    const int64_t H = student_.layers[l].mixer->num_heads();
    const int64_t chunk = r_.compute.stage1_head_chunk > 0 ? std::min<int64_t>(r_.compute.stage1_head_chunk, H) : H;
    const TeacherLayer& tl = teacher_.layers[l];
    for (int64_t h0 = 0; h0 < H; h0 += chunk) {
      const int64_t nh = std::min(chunk, H - h0);
      torch::Tensor probs;
      {
        torch::NoGradGuard ng;
        probs = AttentionProbs(tl.attn, RmsNorm(x, tl.in_norm, teacher_.config().norm_eps), h0, nh);
      }
      auto ll = MatrixOrientationLoss(student_.MaterializeOnInput(l, x, h0, nh), probs) *
                (scale * static_cast<double>(nh) / static_cast<double>(H));
      ll.backward();
      total += ll.detach();
    }
  }
  return total;
}

Status Trainer::Log(const nlohmann::json& j) {
  if (!dp_.is_main()) return Status::Ok();  // rank 0 alone writes the metrics
  const fs::path path = out_ / "metrics.jsonl";
  std::ofstream f(path, std::ios::app);
  f << j.dump() << "\n";
  f.close();
  if (!f) return Errorf("{}: cannot append metrics (disk full?)", path.string());
  return Status::Ok();
}

Status Trainer::SaveCheckpoint(const Progress& p, torch::optim::Optimizer* opt) {
  if (!dp_.is_main()) return Status::Ok();  // rank 0 writes; every rank holds the same state
  if (r_.checkpoint_every == 0) return Status::Ok();  // checkpoints are off (recipe.h)
  torch::serialize::OutputArchive ar;
  CheckpointManifest m;
  const auto params = student_.Params();
  for (size_t i = 0; i < params.size(); ++i) {
    const torch::Tensor t = params[i].t.detach().to(torch::kCPU).contiguous();
    ar.write(fmt::format("p{}", i), t);
    m.records.emplace_back(params[i].name, TensorCrc(t));
  }
  std::string names;
  for (const auto& p2 : params) names += p2.name + "\n";
  ar.write("names", c10::IValue(names));
  ar.write("progress", torch::tensor({static_cast<int64_t>(p.stage), p.step, static_cast<int64_t>(p.data_pos)}));
  ar.write("train_seconds", torch::tensor({p.train_seconds}, torch::kFloat64));
  ar.write("cpu_rng", at::detail::getDefaultCPUGenerator().get_state());
  ar.write("world_size", torch::tensor({static_cast<int64_t>(dp_.world())}));
  if (opt) {
    torch::serialize::OutputArchive oa;
    opt->save(oa);
    ar.write("optim", oa);
  }
  std::ostringstream bytes;
  ar.save_to(bytes);
  m.progress = fmt::format("stage {} step {}", p.stage + 1, p.step);
  m.fingerprint = ck_.fingerprint;
  return ck_.store.Save(bytes.str(), std::move(m));
}

// Restores the student (and, when `opt` is given, the optimiser) from checkpoint bytes, after checking
// every parameter record against the manifest's CRC-32 (nothing is copied unless all match).
Status LoadCheckpoint(const std::string& bytes, const std::string& path, const CheckpointManifest& m, Student& st,
                      Progress* p, torch::optim::Optimizer* opt) {
  try {
    torch::serialize::InputArchive ar;
    ar.load_from(bytes.data(), bytes.size());
    c10::IValue names;
    ar.read("names", names);
    const auto params = st.Params();
    std::string want;
    for (const auto& x : params) want += x.name + "\n";
    if (names.toStringRef() != want)
      return Errorf("{}: checkpoint holds a different student (parameter names differ); was the recipe changed?",
                    path);
    if (m.records.size() != params.size())
      return Errorf("{}: manifest lists {} records but the student has {} parameters", path, m.records.size(),
                    params.size());
    torch::NoGradGuard ng;
    std::vector<torch::Tensor> loaded(params.size());
    for (size_t i = 0; i < params.size(); ++i) {
      torch::Tensor& t = loaded[i];
      ar.read(fmt::format("p{}", i), t);
      if (!t.sizes().equals(params[i].t.sizes()))
        return Errorf("{}: checkpoint tensor {} has shape {} but the student expects {}", path, params[i].name,
                      fmt::format("{}", t.sizes()), fmt::format("{}", params[i].t.sizes()));
      t = t.contiguous();
      if (m.records[i].first != params[i].name || TensorCrc(t) != m.records[i].second)
        return Errorf("{}: record {} ({}) does not match its checksum", path, i, params[i].name);
    }
    for (size_t i = 0; i < params.size(); ++i) params[i].t.copy_(loaded[i]);
    torch::Tensor prog, secs, rng;
    ar.read("progress", prog);
    ar.read("train_seconds", secs);
    ar.read("cpu_rng", rng);
    at::Generator gen = at::detail::getDefaultCPUGenerator();
    gen.set_state(rng);
    p->stage = static_cast<int>(prog[0].item<int64_t>());
    p->step = prog[1].item<int64_t>();
    p->data_pos = static_cast<uint64_t>(prog[2].item<int64_t>());
    p->train_seconds = secs[0].item<double>();
    if (opt) {
      torch::serialize::InputArchive oa;
      if (ar.try_read("optim", oa)) opt->load(oa);
    }
  } catch (const c10::Error& e) {
    return Errorf("{}: cannot read checkpoint: {}", path, FirstLine(e.what_without_backtrace()));
  } catch (const std::exception& e) {
    return Errorf("{}: cannot read checkpoint: {}", path, FirstLine(e.what()));
  }
  return Status::Ok();
}

// The newest checkpoint that is intact and belongs to this run. A damaged one (truncated, flipped
// bytes) falls back to the previous; a different run's (recipe, teacher, data, world size) is refused
// unless resume_anyway. Fills ck's resume_* fields and *p.
Status SelectCheckpoint(RunCheckpoints& ck, bool resume_anyway, Student& st, Progress* p) {
  std::vector<std::string> problems;
  for (const CheckpointManifest& m : ck.store.List(&problems)) {
    const std::string path = ck.store.PathOf(m);
    // Another world size is refused even with --resume-anyway: the per-rank batch split and the
    // optimiser state belong to the ranks that wrote it.
    if (m.fingerprint.contains("world_size") && ck.fingerprint.contains("world_size") &&
        m.fingerprint["world_size"] != ck.fingerprint["world_size"]) {
      const auto saved = m.fingerprint["world_size"].dump(), now = ck.fingerprint["world_size"].dump();
      return Errorf("{}: checkpoint was written by {} data-parallel ranks; resume it with --nproc {} (got {})", path,
                    saved, saved, now);
    }
    if (const auto diffs = FingerprintDifferences(m.fingerprint, ck.fingerprint); !diffs.empty()) {
      const std::string what = fmt::format("{} was written by a different run: {}", path, fmt::join(diffs, "; "));
      if (!resume_anyway) return Errorf("{}; pass --resume-anyway to resume regardless, or use another --out", what);
      fmt::print(stderr, "[distill] warning: {}; resuming anyway (--resume-anyway)\n", what);
    }
    auto bytes = ck.store.ReadVerified(m);
    Status loaded = bytes.ok() ? LoadCheckpoint(*bytes, path, m, st, p, nullptr) : bytes.status();
    if (!loaded.ok()) {
      problems.push_back(loaded.message());
      fmt::print(stderr, "[distill] warning: checkpoint damaged, falling back to an older one: {}\n", loaded.message());
      continue;
    }
    ck.resume_bytes = std::move(*bytes);
    ck.resume_path = path;
    ck.resume_manifest = m;
    fmt::print(stderr, "[distill] resuming from {} ({})\n", path, m.progress);
    return Status::Ok();
  }
  return Errorf("no intact checkpoint to resume from{}{}", problems.empty() ? "" : ": ", fmt::join(problems, "; "));
}

// Rank 0 selects the checkpoint (fingerprint, checksums, keep-K fallback) and sends its save number;
// every other rank then loads exactly that checkpoint, verified against its manifest, so all ranks
// resume from the same state. A failure on rank 0 is sent too (seq -1), so the others stop at once.
Status ResumeOnEveryRank(RunCheckpoints& ck, bool resume_anyway, Student& st, Progress* p, DataParallel& dp) {
  torch::Tensor seq = torch::full({1}, int64_t{-1}, torch::kInt64);
  Status selected = Status::Ok();
  if (dp.is_main()) {
    selected = SelectCheckpoint(ck, resume_anyway, st, p);
    if (selected.ok()) seq.fill_(ck.resume_manifest.seq);
  }
  if (dp.world() > 1) {
    // c10d broadcasts tensors of the group's device (CUDA for NCCL).
    torch::Tensor t = seq.to(st.Params().front().t.device());
    dp.Broadcast({t});
    seq = t.to(torch::kCPU);
  }
  if (dp.is_main()) return selected;
  const int64_t want = seq.item<int64_t>();
  if (want < 0) return Errorf("rank 0 found no checkpoint to resume from (see its error)");
  std::vector<std::string> problems;
  for (const CheckpointManifest& m : ck.store.List(&problems)) {
    if (m.seq != want) continue;
    const std::string path = ck.store.PathOf(m);
    SUBQ_ASSIGN_OR_RETURN(std::string bytes, ck.store.ReadVerified(m));
    SUBQ_RETURN_IF_ERROR(LoadCheckpoint(bytes, path, m, st, p, nullptr));
    ck.resume_bytes = std::move(bytes);
    ck.resume_path = path;
    ck.resume_manifest = m;
    return Status::Ok();
  }
  return Errorf("checkpoint {} that rank 0 resumes from is not readable here{}{}", want, problems.empty() ? "" : ": ",
                fmt::join(problems, "; "));
}

// Keeps metrics lines of steps before the resume point (a killed run may have logged steps past its
// last checkpoint; they are redone).
Status TrimMetrics(const fs::path& path, const Progress& p) {
  std::ifstream in(path);
  if (!in) return Status::Ok();
  std::vector<std::string> keep;
  for (std::string line; std::getline(in, line);) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded()) continue;
    if (j.contains("step") && j.contains("stage")) {
      const int s = j["stage"].get<int>() - 1;
      const int64_t step = j["step"].get<int64_t>() - 1;
      if (s > p.stage || (s == p.stage && step >= p.step)) continue;
    }
    keep.push_back(line);
  }
  in.close();
  std::string text;
  for (const auto& l : keep) text += l + "\n";
  return WriteFileAtomically(path.string(), text);
}

Status Trainer::StageEnd(int s) {
  if (!dp_.is_main()) return Status::Ok();
  // Loss curve of this stage from the metrics file (complete across resumes), drawn by plot.py; a
  // missing python3/matplotlib only costs the PNG (metrics.jsonl holds the numbers).
  const std::string metrics = (out_ / "metrics.jsonl").string();
  Status st = RunPlotScript({"loss", "--metrics", metrics, "--stage", std::to_string(s + 1), "--skip-empty", "--title",
                             fmt::format("stage {}: {} loss", s + 1, kStages[s].name), "--out",
                             (out_ / fmt::format("loss_stage{}.png", s + 1)).string()});
  if (!st.ok()) fmt::print(stderr, "[distill] warning: {}\n", st.message());
  return Status::Ok();
}

Status Trainer::Run(Progress pr) {
  for (int s = 0; s < 3; ++s)
    if (std::string(kStages[s].name) != StageName(s))
      return Errorf("internal error: stage table row {} is '{}', the recipe's stage is '{}'", s + 1, kStages[s].name,
                    StageName(s));
  const auto t_start = Clock::now();
  const double secs0 = pr.train_seconds;
  for (int s = pr.stage; s < 3; ++s) {
    const auto& st = r_.stages[s];
    const bool selected = o_.stages.empty() || std::count(o_.stages.begin(), o_.stages.end(), s + 1);
    if (st.tokens == 0 || !selected) {
      pr = {s + 1, 0, sampler_.position(), pr.train_seconds};
      continue;
    }
    SUBQ_ASSIGN_OR_RETURN(const StagePlan plan, Plan(r_, s, dp_.world()));
    // Only this stage's parameters get gradients; the optimiser restarts per stage.
    const auto trainable = Trainable(s);
    for (const auto& p : student_.Params()) p.t.set_requires_grad(false);
    std::vector<torch::Tensor> all;
    for (const auto& p : trainable) {
      p.t.set_requires_grad(true);
      all.push_back(p.t);
    }
    FusedAdamW opt(AdamWGroups(all, st.lr, r_.optim), AdamWDefaults(st.lr, r_.optim));
    if (pr.step > 0) {  // resuming inside this stage
      SUBQ_RETURN_IF_ERROR(LoadCheckpoint(ck_.resume_bytes, ck_.resume_path, ck_.resume_manifest, student_, &pr, &opt));
    }
    sampler_.SetPosition(pr.data_pos);
    const int64_t n_params = [&] {
      int64_t n = 0;
      for (auto& t : all) n += t.numel();
      return n;
    }();
    if (dp_.is_main())
      fmt::print(stderr, "[distill] stage {}/3 {}: {} steps x {} tokens ({} ranks x {} x {} seqs of {}), lr {:g}, {} params trained\n",
                 s + 1, kStages[s].name, plan.steps, st.batch_tokens, dp_.world(), plan.accum, plan.micro, r_.seq_len,
                 st.lr, n_params);
    const auto stage_t0 = Clock::now();
    const int64_t step0 = pr.step;
    std::vector<int> buf(plan.micro * r_.seq_len);
    for (int64_t step = pr.step; step < plan.steps; ++step) {
      const double lr = WsdLr(step, plan.steps, st.lr, r_.optim.warmup_fraction, r_.optim.decay_fraction,
                              r_.optim.min_lr);
      for (auto& g : opt.param_groups()) static_cast<torch::optim::AdamWOptions&>(g.options()).lr(lr);
      opt.zero_grad();
      // Global sequence order: micro-batch a of rank r reads sequences pos + (a * world + r) * micro + i,
      // so any world size walks the same sequences per step. No host sync until the log line.
      const uint64_t pos = sampler_.position();
      torch::Tensor loss_acc;
      for (int64_t a = 0; a < plan.accum; ++a) {
        const uint64_t first = pos + static_cast<uint64_t>((a * dp_.world() + dp_.rank()) * plan.micro);
        for (int64_t i = 0; i < plan.micro; ++i)
          SUBQ_RETURN_IF_ERROR(sampler_.Get(first + static_cast<uint64_t>(i), buf.data() + i * r_.seq_len));
        auto ids = torch::tensor(std::vector<int64_t>(buf.begin(), buf.end()), torch::kInt64)
                       .view({plan.micro, r_.seq_len});
        // Pinned and non-blocking on CUDA: the copy does not wait for the device.
        ids = dev_.is_cuda() ? ids.pin_memory().to(dev_, /*non_blocking=*/true) : ids;
        auto l = LossBackward(s, ids, 1.0 / static_cast<double>(plan.accum));
        loss_acc = loss_acc.defined() ? loss_acc + l : l;
      }
      sampler_.SetPosition(pos + static_cast<uint64_t>(plan.accum * plan.micro * dp_.world()));
      dp_.AverageGradients(all, r_.compute.bucket_mb << 20);
      torch::Tensor gnorm_t = r_.optim.grad_clip > 0 ? ClipGradNorm(all, r_.optim.grad_clip) : torch::zeros({});
      opt.step();
      dp_.AverageInPlace(loss_acc);  // logging: the loss over the whole global batch
      const double loss_sum = loss_acc.item<double>(), gnorm = gnorm_t.item<double>();
      if (!std::isfinite(loss_sum))
        return Errorf("stage {} step {}: loss is {} (lower the learning rate?)", s + 1, step + 1, loss_sum);
      pr.step = step + 1;
      pr.data_pos = sampler_.position();
      const double el = std::chrono::duration<double>(Clock::now() - stage_t0).count();
      pr.train_seconds = secs0 + std::chrono::duration<double>(Clock::now() - t_start).count();
      const int64_t done = pr.step * st.batch_tokens, total = plan.steps * st.batch_tokens;
      const double tps = (pr.step - step0) * st.batch_tokens / std::max(el, 1e-9);
      if (dp_.is_main())
        fmt::print(stderr, "[distill] stage {}/3 {:<18} step {:>5}/{} tokens {}/{} loss {:.5f} lr {:.2e} {:.0f} tok/s eta {}\n",
                   s + 1, kStages[s].name, pr.step, plan.steps, done, total, loss_sum, lr, tps,
                   Hms((total - done) / std::max(tps, 1e-9)));
      SUBQ_RETURN_IF_ERROR(Log({{"stage", s + 1}, {"stage_name", kStages[s].name}, {"step", pr.step}, {"steps", plan.steps},
           {"tokens", done}, {"tokens_total", total}, {"loss", loss_sum}, {"lr", lr}, {"grad_norm", gnorm},
           {"tokens_per_s", tps}, {"train_seconds", pr.train_seconds}}));
      ++steps_this_process_;
      const bool stop = o_.stop_after_steps >= 0 && steps_this_process_ >= o_.stop_after_steps;
      if ((r_.checkpoint_every > 0 && pr.step % r_.checkpoint_every == 0) || pr.step == plan.steps || stop)
        SUBQ_RETURN_IF_ERROR(SaveCheckpoint(pr, &opt));
      if (stop) return Errorf("stopped after {} steps (--stop-after-steps)", steps_this_process_);
    }
    for (auto& t : all) t.set_requires_grad(false);
    SUBQ_RETURN_IF_ERROR(StageEnd(s));
    if (s == 0 && dp_.is_main()) {  // teacher vs student mixing matrices after matrix orientation
      Status ps = WriteMixingPng(teacher_, student_, probe_, dev_, (out_ / "mixing_stage1.png").string());
      if (!ps.ok()) fmt::print(stderr, "[distill] warning: {}\n", ps.message());
    }
    pr = {s + 1, 0, sampler_.position(), pr.train_seconds};
    SUBQ_RETURN_IF_ERROR(SaveCheckpoint(pr, nullptr));
  }
  return Status::Ok();
}

Result<std::unique_ptr<Tokenizer>> LoadTeacherTokenizer(const Recipe& r) {
  if (!r.tokenizer.empty()) return LoadTokenizer(r.tokenizer);
  SUBQ_ASSIGN_OR_RETURN(Checkpoint ck, ReadCheckpoint(r.teacher));
  return TokenizerForCheckpoint(ck);
}

Result<DistillResult> RunDistillRank(const DistillOptions& o) {
  const auto t0 = Clock::now();
  SUBQ_ASSIGN_OR_RETURN(Recipe r, LoadRecipe(o.recipe, o.overrides));
  for (int s : o.stages)
    if (s < 1 || s > 3) return Errorf("--stages: stage {} does not exist (1, 2 or 3)", s);
  if (o.device != "cpu" && o.device != "cuda") return Errorf("--device must be cpu or cuda, got '{}'", o.device);
  if (o.device == "cuda" && !torch::cuda::is_available())
    return Errorf("--device cuda: CUDA is not available (no GPU or libtorch without CUDA)");
  SUBQ_ASSIGN_OR_RETURN(const DistEnv env, DistEnvFromEnvironment());
  const torch::Device dev = o.device == "cuda" ? torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(env.local_rank))
                                               : torch::Device(torch::kCPU);
  if (o.threads > 0) {
    torch::set_num_threads(o.threads);
  } else if (const char* lw = std::getenv("LOCAL_WORLD_SIZE"); lw && std::atoi(lw) > 1) {
    torch::set_num_threads(std::max(1, static_cast<int>(std::thread::hardware_concurrency()) / std::atoi(lw)));
  }
  if (o.out_dir.empty()) return Errorf("--out is required");
  ConfigureMatmulPrecision(dev, r.compute.tf32);
  // Rank 0 alone writes into the output folder: it proves it writable and holds its lock until it returns
  // (a failure here stops the run; the launcher stops the other ranks).
  std::optional<RunDirLock> lock;
  if (env.rank == 0) {
    SUBQ_RETURN_IF_ERROR(PrepareOutputDir(o.out_dir));
    SUBQ_ASSIGN_OR_RETURN(RunDirLock l, RunDirLock::Acquire(o.out_dir));
    lock.emplace(std::move(l));
  }

  auto teacher_r = Teacher::Load(r.teacher);
  if (!teacher_r.ok()) return Errorf("cannot load teacher '{}': {}", r.teacher, teacher_r.status().message());
  std::unique_ptr<Teacher> teacher = std::move(teacher_r.value());
  const ModelConfig& tc = teacher->config();
  if (r.seq_len > tc.max_seq_len)
    return Errorf("seq_len {} is above the teacher's context limit of {} tokens (max_seq_len of {})", r.seq_len,
                  tc.max_seq_len, r.teacher);
  auto tok_r = LoadTeacherTokenizer(r);
  if (!tok_r.ok()) return Errorf("cannot load the teacher's tokenizer: {}", tok_r.status().message());
  std::unique_ptr<Tokenizer> tok = std::move(tok_r.value());
  if (tok->vocab_size() > tc.vocab_size)
    return Errorf("tokenizer {} has {} tokens but the teacher's vocab is {}", tok->name(), tok->vocab_size(),
                  tc.vocab_size);
  // Stage 1 compares heads one to one.
  const bool want_stage1 = r.stages[0].tokens > 0 && (o.stages.empty() || std::count(o.stages.begin(), o.stages.end(), 1));
  if (want_stage1 && r.student.n_v_heads != tc.attn.n_heads)
    return Errorf("stage 1 (matrix_orientation) needs as many student heads as teacher heads: n_v_heads {} vs {}",
                  r.student.n_v_heads, tc.attn.n_heads);
  SUBQ_ASSIGN_OR_RETURN(std::unique_ptr<Student> student, Student::FromTeacher(*teacher, r.student, r.seed));
  SUBQ_ASSIGN_OR_RETURN(Corpus corpus, BuildCorpus(r.data, *tok, r.seq_len));
  student->checkpoint_blocks = r.compute.activation_checkpointing;

  std::error_code ec;
  const fs::path out(o.out_dir);
  RunCheckpoints ck{CheckpointStore(o.out_dir, o.keep_checkpoints), {}, {}, {}, {}};
  if (!o.resume && !ck.store.Empty())
    return Errorf("{} holds a checkpoint of an earlier run: pass --resume to continue it or use another --out",
                  o.out_dir);
  // The world size is part of the fingerprint: a checkpoint resumes only with the ranks that wrote it.
  if (env.rank == 0) {
    SUBQ_ASSIGN_OR_RETURN(ck.fingerprint, RunFingerprint(r, env.world));
  }
  // Every rank has looked at the folder before rank 0 writes into it.
  SUBQ_ASSIGN_OR_RETURN(std::unique_ptr<DataParallel> dp, DataParallel::Join(env, dev, /*timeout_s=*/600));
  dp->Barrier();
  torch::set_num_interop_threads(1);
  teacher->To(dev);
  student->To(dev);

  const bool main = dp->is_main();
  if (main)
    fmt::print(stderr, "[distill] teacher {} ({} layers, d_model {}, {} heads), student {} ({}), device {}, {} threads, "
               "{} rank(s), {}\n", r.teacher, tc.n_layers, tc.dim, tc.attn.n_heads, r.student.kind, r.student.init,
               o.device, torch::get_num_threads(), dp->world(), r.compute.dtype);
  std::vector<int> train_stream = corpus.train;
  if (r.data.teacher_samples > 0) {
    if (main) fmt::print(stderr, "[distill] sampling {} sequences from the teacher\n", r.data.teacher_samples);
    train_stream = SampleFromTeacher(*teacher, r.data.teacher_samples, r.seq_len, r.data.sample_temperature,
                                     r.seed, dev);
  }
  VectorTokenSource text_source(&train_stream);
  const TokenSource* source = &text_source;
  if (corpus.shards && r.data.teacher_samples == 0) source = corpus.shards.get();
  SequenceSampler sampler(source, r.seq_len, r.seed);
  if (main)
    fmt::print(stderr, "[distill] data: {} training tokens ({} sequences of {}), {} held-out tokens{}\n",
             source->size(), sampler.num_sequences(), r.seq_len, corpus.held_out.size(),
             corpus.shards ? fmt::format(" (shards {})", r.data.shards) : "");

  Progress pr;
  if (o.resume && !ck.store.Empty()) {
    SUBQ_RETURN_IF_ERROR(ResumeOnEveryRank(ck, o.resume_anyway, *student, &pr, *dp));
    if (main) SUBQ_RETURN_IF_ERROR(TrimMetrics(out / "metrics.jsonl", pr));
    if (main) fmt::print(stderr, "[distill] resuming at stage {} step {}\n", pr.stage + 1, pr.step);
  } else if (main) {
    fs::remove(out / "metrics.jsonl", ec);
  }
  {  // every rank starts from rank 0's weights
    std::vector<torch::Tensor> params;
    for (const auto& p : student->Params()) params.push_back(p.t);
    dp->Broadcast(params);
  }
  std::vector<int> probe = tok->Encode(r.probe_prompt, true);
  if (probe.size() > 64) probe.resize(64);
  Trainer trainer(r, o, *teacher, *student, sampler, dev, probe, ck, *dp);
  SUBQ_RETURN_IF_ERROR(trainer.Run(pr));
  if (!main) {  // rank 0 exports and scores
    DistillResult res;
    res.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    return res;
  }
  {
    Status st = WriteMixingPng(*teacher, *student, probe, dev, (out / "mixing_final.png").string());
    if (!st.ok()) fmt::print(stderr, "[distill] warning: {}\n", st.message());
  }

  // Export, then the probe logits for parity checks against the engine.
  SUBQ_RETURN_IF_ERROR(ExportStudent(*student, o.out_dir));
  SUBQ_RETURN_IF_ERROR(CopyTokenizer(r.teacher, r.tokenizer, tc.vocab_size, o.out_dir));
  {
    torch::NoGradGuard ng;
    auto ids = torch::tensor(std::vector<int64_t>(probe.begin(), probe.end()), torch::kInt64).view({1, -1}).to(dev);
    auto lg = student->Logits(ids)[0].to(torch::kCPU).contiguous();  // [L, V]
    Tensor t({lg.size(0), lg.size(1)});
    std::memcpy(t.ptr(), lg.data_ptr<float>(), t.numel() * sizeof(float));
    SUBQ_RETURN_IF_ERROR(WriteNpy(t, (out / "probe_logits.npy").string()));
    SUBQ_RETURN_IF_ERROR(WriteFileAtomically((out / "probe_ids.txt").string(), fmt::format("{}\n", fmt::join(probe, ","))));
  }
  // Held-out perplexity as the engine defines it (eval/perplexity.h: per-document BOS, sliding window), on
  // the documents written to held_out.txt: `subq eval --text OUT/held_out.txt --window W` gives the same.
  SUBQ_ASSIGN_OR_RETURN(
      const HeldOutSet held,
      WriteHeldOut(corpus.held_out_text, r.data.shards.empty() ? r.data.separator : "<|endoftext|>", *tok,
                   r.data.eval_tokens, tc.max_seq_len, (out / "held_out.txt").string()));
  DistillResult res;
  {
    const bool hybrid = !r.student.attention_layers.empty() || !r.student.kept_heads.empty();
    auto ts = TorchLogits([&](const torch::Tensor& x) { return teacher->Forward(x); }, tc.vocab_size, tc.max_seq_len,
                          true, dev);
    auto ss = TorchLogits([&](const torch::Tensor& x) { return student->Logits(x); }, tc.vocab_size,
                          hybrid ? tc.max_seq_len : INT_MAX, hybrid, dev);
    SUBQ_ASSIGN_OR_RETURN(const PerplexityResult tp, subq::Perplexity(*ts, held.tokens, held.window, held.stride));
    SUBQ_ASSIGN_OR_RETURN(const PerplexityResult sp, subq::Perplexity(*ss, held.tokens, held.window, held.stride));
    res.teacher_ppl = tp.perplexity;
    res.student_ppl = sp.perplexity;
    res.eval_tokens = tp.tokens;
    fmt::print(stderr, "[distill] held-out: {} documents, {} tokens scored (window {}, stride {}): teacher {:.4f}, "
               "student {:.4f}\n", held.docs, tp.tokens, held.window, held.stride, tp.perplexity, sp.perplexity);
  }
  res.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  nlohmann::json summary = {{"teacher_ppl", res.teacher_ppl}, {"student_ppl", res.student_ppl},
                            {"ppl_ratio", res.student_ppl / res.teacher_ppl}, {"eval_tokens", res.eval_tokens},
                            {"eval_window", held.window}, {"eval_stride", held.stride},
                            {"eval_text", (out / "held_out.txt").string()},
                            {"seconds", res.seconds}, {"recipe", r.path}, {"device", o.device}};
  SUBQ_RETURN_IF_ERROR(WriteFileAtomically((out / "summary.json").string(), summary.dump(2) + "\n"));
  return res;
}

}  // namespace

// The edge of the trainer: libtorch and the standard library report failures (disk full, out of memory,
// bad tensors, c10d timeouts) by exception; none may escape as an abort. Errors of a data-parallel rank
// name the rank.
Result<DistillResult> RunDistill(const DistillOptions& o) {
  const char* rank = std::getenv("RANK");
  const std::string who = rank && std::getenv("WORLD_SIZE") && std::atoi(std::getenv("WORLD_SIZE")) > 1
                              ? fmt::format("rank {}: ", rank) : "";
  try {
    auto r = RunDistillRank(o);
    if (!r.ok() && !who.empty()) return Errorf("{}{}", who, r.status().message());
    return r;
  } catch (const c10::Error& e) {
    return Errorf("{}distill failed: {}", who, FirstLine(e.what_without_backtrace()));
  } catch (const std::exception& e) {
    return Errorf("{}distill failed: {}", who, FirstLine(e.what()));
  }
}

}  // namespace subq::train
