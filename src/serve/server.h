// The HTTP front of the engine (cpp-httplib): OpenAI-compatible /v1/completions, /v1/chat/completions
// (JSON or SSE streaming), /v1/models, /health and Prometheus /metrics. Handlers validate and tokenize,
// submit to the Engine and relay its events; a client that disconnects mid-stream cancels its request.
#pragma once
#include <memory>
#include <string>

#include "io/tokenizer.h"
#include "serve/api.h"
#include "serve/chat_template.h"
#include "serve/engine.h"

namespace httplib {
class Server;
}

namespace subq::serve {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8000;              // 0: any free port (see port())
  std::string model_name = "subq";
  int http_threads = 256;       // connections served at once (each stream holds one)
  size_t max_body_bytes = size_t{4} << 20;
};

class Server {
 public:
  // chat may be null: /v1/chat/completions then answers 400.
  Server(Engine& engine, const Tokenizer& tok, const ChatTemplate* chat, ServerOptions o);
  ~Server();
  // Registers the routes and binds (port() is known afterwards); Serve() then blocks until Stop().
  Status Bind();
  Status Serve();
  int port() const { return port_; }
  void Stop();

 private:
  struct Prepared;
  std::variant<Prepared, ApiError> Prepare(const std::string& body, bool chat) const;
  std::string Metrics() const;

  Engine& engine_;
  const Tokenizer& tok_;
  const ChatTemplate* chat_;
  ServerOptions o_;
  int port_ = 0;
  std::unique_ptr<httplib::Server> http_;
};

}  // namespace subq::serve
