// subq serve: an OpenAI-compatible HTTP server over the continuous-batching engine (serve/).
#include <signal.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "apps/commands.h"
#include "apps/common.h"
#include "serve/server.h"
#ifdef SUBQ_HAVE_CUDA
#include "serve/backend_cuda.h"
#endif

namespace subq {
namespace {

struct ServeOptions {
  std::string model, tokenizer, device = "cpu", draft_model, chat_template, name;
  std::string cache_bytes = "256M";
  serve::EngineOptions engine;
  serve::ServerOptions server;
};

std::atomic<bool>& StopRequested() {
  static std::atomic<bool> stop{false};
  return stop;
}

// "512", "64K", "256M", "2G" -> bytes.
Result<size_t> ParseBytes(const std::string& s) {
  size_t used = 0;
  double v = 0;
  try {
    v = std::stod(s, &used);
  } catch (const std::exception&) {
    return Errorf("bad byte count '{}'", s);
  }
  const std::string unit = s.substr(used);
  const double mul = unit.empty() ? 1 : unit == "K" ? 1 << 10 : unit == "M" ? 1 << 20 : unit == "G" ? 1 << 30 : -1;
  if (mul < 0 || v < 0) return Errorf("bad byte count '{}' (use a number with an optional K, M or G)", s);
  return static_cast<size_t>(v * mul);
}

// The tokenizer_config.json of the model: inside an HF folder, or beside a single-file checkpoint.
std::string TokenizerConfigPath(const std::string& model) {
  namespace fs = std::filesystem;
  const fs::path p(model);
  const fs::path cfg = fs::is_directory(p) ? p / "tokenizer_config.json" : p.parent_path() / "tokenizer_config.json";
  return fs::exists(cfg) ? cfg.string() : "";
}

int RunServe(ServeOptions o) {
  if (Status st = RequireDevice(o.device); !st.ok()) return ReportError(st);
  if (o.device == "cuda" && !o.draft_model.empty())
    return ReportError(Errorf("--draft-model: speculative decoding is CPU-only for now (serve without --device cuda)"));
  auto bytes = ParseBytes(o.cache_bytes);
  if (!bytes.ok()) return ReportError(bytes.status());
  o.engine.cache_bytes = *bytes;
  auto lm = LoadModel(o.model, o.tokenizer, /*load_tokenizer=*/true);
  if (!lm.ok()) return ReportError(lm.status());
  LoadedModel draft;
  if (!o.draft_model.empty()) {
    auto d = LoadModel(o.draft_model, "", /*load_tokenizer=*/false);
    if (!d.ok()) return ReportError(d.status());
    draft = std::move(*d);
    if (draft.model->config().vocab_size != lm->model->config().vocab_size)
      return ReportError(Errorf("--draft-model {} has a vocabulary of {}, the model {} one of {}", o.draft_model,
                                draft.model->config().vocab_size, o.model, lm->model->config().vocab_size));
  }
  std::unique_ptr<serve::ChatTemplate> chat;
  if (!o.chat_template.empty()) {
    std::ifstream f(o.chat_template);
    if (!f) return ReportError(Errorf("cannot open --chat-template {}", o.chat_template));
    std::stringstream ss;
    ss << f.rdbuf();
    auto t = serve::ChatTemplate::FromSource(ss.str(), "<s>", "</s>");
    if (!t.ok()) return ReportError(Errorf("{}: {}", o.chat_template, t.status().message()));
    chat = std::move(*t);
  } else if (const std::string cfg = TokenizerConfigPath(o.model); !cfg.empty()) {
    auto t = serve::ChatTemplate::FromTokenizerConfig(cfg);
    if (!t.ok()) return ReportError(t.status());
    chat = std::move(*t);
  }
  o.server.model_name = o.name.empty() ? std::filesystem::path(o.model).filename().string() : o.name;

  std::unique_ptr<serve::Backend> backend;
  if (o.device == "cuda") {
#ifdef SUBQ_HAVE_CUDA
    const int limit = lm->model->context_limit();
    serve::CudaBackendOptions co;
    co.slots = std::max(o.engine.max_batch, 16);  // n > 1 choices of one request may exceed --max-batch
    co.context_limit = o.engine.max_context > 0 ? std::min(o.engine.max_context, limit) : limit;
    co.max_context = co.context_limit;
    co.max_rows = 512;
    auto b = serve::MakeCudaBackend(lm->ckpt->config, lm->ckpt->tensors, co, &o.engine.cache_bytes);
    if (!b.ok()) return ReportError(b.status());
    backend = std::move(*b);
#endif
  } else {
    backend = serve::MakeCpuBackend(*lm->model, o.engine.step_tokens + o.engine.max_batch * (o.engine.spec_k + 2),
                                    o.engine.threads > 0 ? Threads{o.engine.threads} : Threads::Default());
  }
  serve::Engine engine(std::move(backend), draft.model.get(), *lm->tokenizer, o.engine);
  serve::Server server(engine, *lm->tokenizer, chat.get(), o.server);
  if (Status st = server.Bind(); !st.ok()) return ReportError(st);
  // SIGTERM / SIGINT only set a flag (libraries such as OpenBLAS start threads before main, so masking
  // the signals for a sigwait thread is not possible); a watcher thread stops the server when it is set.
  struct sigaction sa = {};
  sa.sa_handler = [](int) { StopRequested() = true; };
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  std::atomic<bool> served{false};
  std::thread waiter([&] {
    while (!StopRequested() && !served) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    engine.Shutdown();  // open streams end (finish_reason "abort"), so the HTTP workers can be joined
    server.Stop();
  });
  std::fprintf(stderr, "subq serve: %s on http://%s:%d (%s, context %d, max batch %d, chat template %s%s)\n",
               o.server.model_name.c_str(), o.server.host.c_str(), server.port(), o.device.c_str(),
               engine.max_context(), o.engine.max_batch, chat ? "yes" : "none", draft.model ? ", speculative" : "");
  if (o.engine.cache_bytes < *bytes)
    std::fprintf(stderr, "subq serve: --cache-bytes capped at %.1f MiB (half the free device memory)\n",
                 o.engine.cache_bytes / 1048576.0);
  std::fflush(stderr);
  Status st = server.Serve();
  served = true;
  waiter.join();
  engine.Shutdown();
  std::fprintf(stderr, "subq serve: stopped\n");
  return st.ok() ? 0 : ReportError(st);
}

}  // namespace

void AddServeCommand(CLI::App& app) {
  auto o = std::make_shared<ServeOptions>();
  CLI::App* c = app.add_subcommand("serve", "OpenAI-compatible HTTP server (continuous batching, prefix cache)");
  c->add_option("--model", o->model, "llama2.c .bin, .gguf, or a Hugging Face-style folder")->required();
  c->add_option("--tokenizer", o->tokenizer, "tokenizer file (default: the one beside/inside the model)");
  c->add_option("--device", o->device, "cpu or cuda (weights and states on the GPU, decode under CUDA graphs)");
  c->add_option("--host", o->server.host, "address to listen on (default 127.0.0.1)");
  c->add_option("--port", o->server.port, "port (0: any free port; the chosen one is printed)")->check(CLI::Range(0, 65535));
  c->add_option("--name", o->name, "model id reported by /v1/models (default: the model's file name)");
  c->add_option("--max-batch", o->engine.max_batch, "sequences decoded together")->check(CLI::Range(1, 4096));
  c->add_option("--max-context", o->engine.max_context, "tokens per sequence (0: the model's limit)")->check(CLI::NonNegativeNumber);
  c->add_option("--max-queue", o->engine.max_queue, "waiting requests before 429")->check(CLI::Range(1, 1 << 20));
  c->add_option("--step-tokens", o->engine.step_tokens, "prefill tokens per scheduler step")->check(CLI::Range(1, 1 << 16));
  c->add_option("--cache-bytes", o->cache_bytes, "prefix-state cache budget (e.g. 256M; 0 disables)");
  c->add_option("--cache-every", o->engine.cache_every, "also snapshot every this many prompt tokens (0: off)")->check(CLI::NonNegativeNumber);
  c->add_option("--draft-model", o->draft_model, "draft model for speculative decoding of greedy requests");
  c->add_option("--spec-k", o->engine.spec_k, "draft tokens per speculative round")->check(CLI::Range(1, 16));
  c->add_option("--threads", o->engine.threads, "compute threads (0: all cores)")->check(CLI::NonNegativeNumber);
  c->add_option("--http-threads", o->server.http_threads, "connections served at once")->check(CLI::Range(1, 4096));
  c->add_option("--chat-template", o->chat_template, "Jinja chat template file (default: tokenizer_config.json's)");
  c->callback([o] { ExitCode() = RunServe(*o); });
}

}  // namespace subq
