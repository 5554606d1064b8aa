// subq data: tokenized training shards (io/token_shards.h) and synthetic probe text (eval/probes.h).
//   subq data prepare --tokenizer T --in FILE... --out DIR [--held-out-every N] [--eos] [--no-bos]
//                     [--separator S] [--text-key K] [--shard-tokens N] [--token-bytes 2|4]
//   subq data verify DIR      maps every shard, checks sizes and checksums, prints the totals
//   subq data probe --probe NAME --n N --out F.jsonl [--seed S] [--pairs ...]   probe examples as JSONL
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <string>

#include "apps/commands.h"
#include "apps/common.h"
#include "io/prepare_shards.h"
#include "io/token_shards.h"

namespace subq {
namespace {

std::string Hms(double s) {
  if (!(s >= 0) || s > 1e7) return "--:--";
  const int64_t t = static_cast<int64_t>(s + 0.5);
  return fmt::format("{}:{:02d}", t / 60, t % 60);
}

void PrintProgress(const PrepareStats& s, bool done) {
  const double frac = s.bytes_total > 0 ? static_cast<double>(s.bytes_read) / s.bytes_total : 1.0;
  const double tps = (s.tokens + s.held_out_tokens) / std::max(s.seconds, 1e-9);
  const double eta = frac > 0 ? s.seconds * (1 - frac) / frac : -1;
  const bool tty = ::isatty(STDERR_FILENO);
  fmt::print(stderr, "{}[data] {:5.1f}% {} docs ({} held out), {} tokens, {:.0f} tok/s, eta {}{}",
             tty ? "\r" : "", 100 * frac, s.docs, s.held_out_docs, s.tokens + s.held_out_tokens, tps,
             done ? "0:00" : Hms(eta), tty && !done ? "" : "\n");
}

int RunPrepare(const PrepareOptions& o, const std::string& tokenizer) {
  auto tok = LoadTokenizer(tokenizer);
  if (!tok.ok()) return ReportError(tok.status());
  auto st = PrepareShards(o, **tok, PrintProgress);
  if (!st.ok()) return ReportError(st.status());
  std::printf("wrote %s: %lld training tokens, %lld held-out tokens (%lld of %lld documents) in %.1f s\n",
              o.out_dir.c_str(), static_cast<long long>(st->tokens), static_cast<long long>(st->held_out_tokens),
              static_cast<long long>(st->held_out_docs), static_cast<long long>(st->docs), st->seconds);
  return 0;
}

int RunVerify(const std::string& dir) {
  for (const char* split : {"train", "held_out"}) {
    auto r = ShardReader::Open(dir, split, /*verify_checksums=*/true);
    if (!r.ok()) return ReportError(r.status());
    // Reading every id checks it against the vocab.
    std::vector<int> buf(1 << 20);
    for (int64_t at = 0; at < (*r)->size(); at += static_cast<int64_t>(buf.size())) {
      Status s = (*r)->Read(at, std::min<int64_t>(buf.size(), (*r)->size() - at), buf.data());
      if (!s.ok()) return ReportError(s);
    }
    std::printf("%s: %lld tokens ok\n", split, static_cast<long long>((*r)->size()));
  }
  return 0;
}

int RunProbe(const ProbeOptions& o, const std::string& out) {
  Status s = WriteProbeJsonl(o.spec, o.n, o.seed, out);
  if (!s.ok()) return ReportError(s);
  std::printf("wrote %s: %lld %s examples (seed %llu)\n", out.c_str(), static_cast<long long>(o.n),
              o.spec.name.c_str(), static_cast<unsigned long long>(o.seed));
  return 0;
}

}  // namespace

void AddDataCommand(CLI::App& app) {
  CLI::App* data =
      app.add_subcommand("data", "Training data: prepare and verify shard folders, write probe examples");
  data->require_subcommand(1);
  auto o = std::make_shared<PrepareOptions>();
  auto tokenizer = std::make_shared<std::string>();
  CLI::App* prep = data->add_subcommand("prepare", "Tokenize text / JSONL files into shards with a held-out split");
  prep->add_option("--tokenizer", *tokenizer, "the teacher's tokenizer (.bin, .model, tokenizer.json, folder)")
      ->required();
  prep->add_option("--in", o->inputs, "input files: plain text, or JSONL (.jsonl/.ndjson) with a text field")
      ->required();
  prep->add_option("--out", o->out_dir, "output folder (index.json, *.tok, held_out.txt)")->required();
  prep->add_option("--separator", o->separator, "plain text: document separator (default <|endoftext|>)");
  prep->add_option("--text-key", o->text_key, "JSONL: field holding the text (default text)");
  prep->add_option("--held-out-every", o->held_out_every, "hold out 1 in N documents (default 20; 0 = none)");
  prep->add_option("--shard-tokens", o->shard_tokens, "tokens per shard file (default 64M)");
  prep->add_option("--token-bytes", o->token_bytes, "2 (uint16) or 4 (uint32); default: 2 when the vocab fits");
  prep->add_flag("--eos", o->add_eos, "end every document with EOS");
  prep->add_flag("!--no-bos", o->add_bos, "do not start documents with BOS");
  prep->callback([o, tokenizer] { ExitCode() = RunPrepare(*o, *tokenizer); });

  auto dir = std::make_shared<std::string>();
  CLI::App* ver = data->add_subcommand("verify", "Check every shard of a folder (sizes, checksums, token ids)");
  ver->add_option("dir", *dir, "shard folder")->required();
  ver->callback([dir] { ExitCode() = RunVerify(*dir); });

  auto probe = std::make_shared<ProbeOptions>();
  auto out = std::make_shared<std::string>();
  CLI::App* pr = data->add_subcommand(
      "probe", "Write probe examples as JSONL (text, answers, answer byte spans) for training mixtures");
  AddProbeOptions(pr, probe.get(), /*required=*/true);
  pr->add_option("--out", *out, "JSONL file to write")->required();
  pr->callback([probe, out] { ExitCode() = RunProbe(*probe, *out); });
}

}  // namespace subq
