#include "serve/server.h"

#include <httplib.h>

#include <chrono>
#include <random>

namespace subq::serve {
namespace {

using nlohmann::json;

int64_t UnixTime() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

void SendError(httplib::Response& res, const ApiError& e) {
  res.status = e.status;
  res.set_content(ErrorBody(e), "application/json");
}

// What the events of one choice add up to.
struct Choice {
  std::string text, finish;
  std::vector<int> tokens;
  std::vector<float> logprobs;
  std::vector<std::vector<TopLogprob>> top;
};

}  // namespace

struct Server::Prepared {
  ApiRequest api;
  std::shared_ptr<Request> req;
  std::string id;
};

Server::Server(Engine& engine, const Tokenizer& tok, const ChatTemplate* chat, ServerOptions o)
    : engine_(engine), tok_(tok), chat_(chat), o_(std::move(o)), http_(std::make_unique<httplib::Server>()) {}

Server::~Server() = default;

std::variant<Server::Prepared, ApiError> Server::Prepare(const std::string& body, bool chat) const {
  ApiLimits lim;
  lim.vocab = tok_.vocab_size();
  auto parsed = ParseRequest(body, chat, lim);
  if (auto* e = std::get_if<ApiError>(&parsed)) return *e;
  ApiRequest api = std::move(std::get<ApiRequest>(parsed));
  std::vector<int> ids;
  if (chat) {
    if (!chat_) return ApiError{400, "this model has no chat template (tokenizer_config.json has no chat_template); "
                                     "use /v1/completions", "invalid_request_error", "messages"};
    auto text = chat_->Apply(api.messages, /*add_generation_prompt=*/true);
    if (!text.ok()) return ApiError{400, "chat template: " + text.status().message(), "invalid_request_error", "messages"};
    ids = tok_.Encode(*text, /*add_bos=*/false);  // the template writes any BOS itself
  } else {
    ids = api.prompt_ids.empty() ? tok_.Encode(api.prompt, /*add_bos=*/true) : api.prompt_ids;
  }
  if (ids.empty()) return ApiError{400, "the prompt encodes to no tokens", "invalid_request_error", "prompt"};
  const int ctx = engine_.max_context();
  const int64_t plen = static_cast<int64_t>(ids.size());
  if (plen >= ctx)
    return ApiError{400, fmt::format("the prompt has {} tokens; this model's context limit is {}", plen, ctx),
                    "invalid_request_error", chat ? "messages" : "prompt"};
  GenParams p = api.params;
  if (p.max_tokens == 0) p.max_tokens = static_cast<int>(ctx - plen);
  if (plen + p.max_tokens > ctx)
    return ApiError{400, fmt::format("this model's context limit is {} tokens; the prompt has {} and max_tokens is {}",
                                     ctx, plen, p.max_tokens), "invalid_request_error", "max_tokens"};
  if (!api.seeded) p.sampler.seed = std::random_device{}();
  Prepared out;
  out.req = std::make_shared<Request>(std::move(ids), std::move(p), api.n);
  static std::atomic<uint64_t> counter{0};
  out.id = fmt::format("{}-{:x}{:06x}", chat ? "chatcmpl" : "cmpl", UnixTime(), ++counter);
  out.api = std::move(api);
  return out;
}

std::string Server::Metrics() const {
  const EngineStats s = engine_.Stats();
  std::string m;
  auto add = [&](const char* name, const char* type, const char* help, double v) {
    m += fmt::format("# HELP subq_{0} {1}\n# TYPE subq_{0} {2}\nsubq_{0} {3}\n", name, help, type, v);
  };
  add("queue_length", "gauge", "Requests waiting for a batch slot.", s.queued);
  add("running_sequences", "gauge", "Sequences (choices) in the running batch.", s.running);
  add("requests_total", "counter", "Requests accepted.", s.requests);
  add("prompt_tokens_total", "counter", "Prompt tokens of accepted requests.", s.prompt_tokens);
  add("prefill_tokens_total", "counter", "Prompt tokens actually prefilled (not restored from the cache).",
      s.prefilled_tokens);
  add("generated_tokens_total", "counter", "Tokens generated.", s.generated_tokens);
  add("steps_total", "counter", "Scheduler steps (one batched forward each).", s.steps);
  add("tokens_per_second", "gauge", "Generated tokens per second over the last seconds.", s.tokens_per_s);
  add("prefix_cache_hits_total", "counter", "Prompts that restored a cached prefix state.", s.cache_hits);
  add("prefix_cache_misses_total", "counter", "Prompts with no cached prefix.", s.cache_misses);
  add("prefix_cache_bytes", "gauge", "Bytes held by prefix-state snapshots.", s.cache_bytes);
  add("prefix_cache_entries", "gauge", "Prefix-state snapshots held.", s.cache_entries);
  add("state_bytes", "gauge", "Bytes of sequence state of the running batch.", s.state_bytes);
  add("spec_proposed_tokens_total", "counter", "Draft tokens proposed.", s.spec_proposed);
  add("spec_accepted_tokens_total", "counter", "Draft tokens accepted by the target.", s.spec_accepted);
  return m;
}

namespace {

json Bytes(const std::string& s) {
  json b = json::array();
  for (unsigned char c : s) b.push_back(c);
  return b;
}

// The logprobs object of one choice (or of one streamed event), in the completions or the chat form.
json LogprobsJson(const Tokenizer& tok, bool chat, const std::vector<int>& tokens, const std::vector<float>& lps,
                  const std::vector<std::vector<TopLogprob>>& top, size_t text_offset) {
  if (lps.empty()) return nullptr;
  if (chat) {
    json content = json::array();
    for (size_t i = 0; i < lps.size(); ++i) {
      const std::string t = tok.Decode({tokens[i]});
      json alts = json::array();
      for (const auto& a : top[i]) {
        const std::string at = tok.Decode({a.token});
        alts.push_back({{"token", at}, {"logprob", a.logprob}, {"bytes", Bytes(at)}});
      }
      content.push_back({{"token", t}, {"logprob", lps[i]}, {"bytes", Bytes(t)}, {"top_logprobs", alts}});
    }
    return json{{"content", content}};
  }
  json toks = json::array(), lp = json::array(), tops = json::array(), offs = json::array();
  for (size_t i = 0; i < lps.size(); ++i) {
    const std::string t = tok.Decode({tokens[i]});
    toks.push_back(t);
    lp.push_back(lps[i]);
    json alts = json::object();
    for (const auto& a : top[i]) alts[tok.Decode({a.token})] = a.logprob;
    tops.push_back(alts);
    offs.push_back(text_offset);
    text_offset += t.size();
  }
  return json{{"tokens", toks}, {"token_logprobs", lp}, {"top_logprobs", tops}, {"text_offset", offs}};
}

json Usage(size_t prompt, size_t completion) {
  return {{"prompt_tokens", prompt}, {"completion_tokens", completion}, {"total_tokens", prompt + completion}};
}

void Accumulate(Choice& c, const Event& e) {
  c.text += e.text;
  c.tokens.insert(c.tokens.end(), e.tokens.begin(), e.tokens.end());
  c.logprobs.insert(c.logprobs.end(), e.logprobs.begin(), e.logprobs.end());
  c.top.insert(c.top.end(), e.top.begin(), e.top.end());
  if (!e.finish.empty()) c.finish = e.finish;
}

}  // namespace

Status Server::Bind() {
  auto& h = *http_;
  h.new_task_queue = [n = o_.http_threads] { return new httplib::ThreadPool(n); };
  h.set_payload_max_length(o_.max_body_bytes);
  h.set_error_handler([](const httplib::Request&, httplib::Response& res) {
    if (!res.body.empty()) return;
    const int st = res.status;
    const std::string msg = st == 413 ? "request body too large" : st == 404 ? "no such endpoint" : "request failed";
    res.set_content(ErrorBody(ApiError{st, msg, st >= 500 ? "server_error" : "invalid_request_error", ""}),
                    "application/json");
  });
  h.Get("/health", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(R"({"status":"ok"})", "application/json");
  });
  h.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(Metrics(), "text/plain; version=0.0.4");
  });
  h.Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) {
    json m = {{"id", o_.model_name}, {"object", "model"}, {"created", 0}, {"owned_by", "subq"},
              {"max_model_len", engine_.max_context()}};
    res.set_content(json{{"object", "list"}, {"data", json::array({m})}}.dump(), "application/json");
  });
  for (const bool chat : {false, true}) {
    h.Post(chat ? "/v1/chat/completions" : "/v1/completions",
           [this, chat](const httplib::Request& hreq, httplib::Response& res) {
      auto prepared = Prepare(hreq.body, chat);
      if (auto* e = std::get_if<ApiError>(&prepared)) return SendError(res, *e);
      auto p = std::make_shared<Prepared>(std::move(std::get<Prepared>(prepared)));
      switch (engine_.Submit(p->req)) {
        case Engine::Admission::kQueued: break;
        case Engine::Admission::kQueueFull:
          return SendError(res, {429, "the server is busy (request queue full); retry later", "rate_limit_exceeded", ""});
        case Engine::Admission::kShuttingDown:
          return SendError(res, {503, "the server is shutting down", "server_error", ""});
      }
      const int64_t created = UnixTime();
      const std::string object = chat ? "chat.completion" : "text_completion";
      if (!p->api.stream) {
        std::vector<Choice> choices(p->req->n);
        for (int left = p->req->n; left > 0;) {
          auto e = p->req->Pop(1000);
          if (!e) continue;
          if (!e->error.empty()) {
            p->req->Cancel();
            return SendError(res, {500, "generation failed: " + e->error, "server_error", ""});
          }
          Accumulate(choices[e->choice], *e);
          if (!e->finish.empty()) --left;
        }
        json out = {{"id", p->id}, {"object", object}, {"created", created}, {"model", o_.model_name}};
        size_t completion = 0;
        json arr = json::array();
        for (size_t i = 0; i < choices.size(); ++i) {
          const Choice& c = choices[i];
          completion += c.tokens.size();
          json ch = {{"index", i}, {"finish_reason", c.finish == "cancelled" ? "abort" : c.finish},
                     {"logprobs", LogprobsJson(tok_, chat, c.tokens, c.logprobs, c.top, 0)}};
          if (chat) ch["message"] = {{"role", "assistant"}, {"content", c.text}};
          else ch["text"] = c.text;
          arr.push_back(std::move(ch));
        }
        out["choices"] = std::move(arr);
        out["usage"] = Usage(p->req->prompt.size(), completion);
        return res.set_content(out.dump(), "application/json");
      }
      auto state = std::make_shared<std::vector<Choice>>(p->req->n);
      auto left = std::make_shared<int>(p->req->n);
      res.set_header("Cache-Control", "no-cache");
      res.set_chunked_content_provider(
          "text/event-stream",
          [this, p, chat, created, object, state, left](size_t, httplib::DataSink& sink) {
            auto send = [&](const json& j) {
              const std::string s = "data: " + j.dump() + "\n\n";
              return sink.write(s.data(), s.size());
            };
            auto e = p->req->Pop(200);
            if (!e) {
              if (sink.is_writable && !sink.is_writable()) return false;
              return true;
            }
            Choice& c = (*state)[e->choice];
            const bool first = c.tokens.empty() && c.text.empty() && c.finish.empty();
            const size_t offset = c.text.size();
            Accumulate(c, *e);
            json ch = {{"index", e->choice},
                       {"logprobs", LogprobsJson(tok_, chat, e->tokens, e->logprobs, e->top, offset)},
                       {"finish_reason", e->finish.empty() ? json(nullptr)
                                                           : json(e->finish == "cancelled" ? "abort" : e->finish)}};
            if (!e->error.empty()) ch["finish_reason"] = "error";
            if (chat) {
              json delta = json::object();
              if (first) delta["role"] = "assistant";
              if (!e->text.empty() || first) delta["content"] = e->text;
              ch["delta"] = delta;
            } else {
              ch["text"] = e->text;
            }
            json chunk = {{"id", p->id}, {"object", chat ? "chat.completion.chunk" : object}, {"created", created},
                          {"model", o_.model_name}, {"choices", json::array({ch})}};
            if (!send(chunk)) return false;
            if (!e->finish.empty() && --*left == 0) {
              if (p->api.include_usage) {
                size_t completion = 0;
                for (const auto& s : *state) completion += s.tokens.size();
                json u = {{"id", p->id}, {"object", chat ? "chat.completion.chunk" : object}, {"created", created},
                          {"model", o_.model_name}, {"choices", json::array()},
                          {"usage", Usage(p->req->prompt.size(), completion)}};
                if (!send(u)) return false;
              }
              const std::string done = "data: [DONE]\n\n";
              if (!sink.write(done.data(), done.size())) return false;
              sink.done();
            }
            return true;
          },
          [p](bool success) {
            if (!success) p->req->Cancel();  // the client went away: free its sequences
          });
    });
  }
  int listen_fd = -1;
  h.set_socket_options([&listen_fd](socket_t sock) {
    httplib::default_socket_options(sock);
    listen_fd = sock;
  });
  port_ = o_.port == 0 ? h.bind_to_any_port(o_.host) : (h.bind_to_port(o_.host, o_.port) ? o_.port : -1);
  if (port_ <= 0) return Errorf("cannot listen on {}:{}", o_.host, o_.port);
  // cpp-httplib listens with a backlog of 5, which resets connections when many clients connect at once;
  // listen() again on the bound socket raises it (Linux).
  if (listen_fd >= 0) ::listen(listen_fd, 1024);
  return Status::Ok();
}

Status Server::Serve() {
  if (!http_->listen_after_bind()) return Errorf("the HTTP server on {}:{} stopped with an error", o_.host, port_);
  return Status::Ok();
}

void Server::Stop() { http_->stop(); }

}  // namespace subq::serve
