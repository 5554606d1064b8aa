// The subq command line: generate, inspect, eval, heads, logits, tokenize, serve, sample, quantize, convert,
// bench, data, distill.
#include <csignal>
#include <cstdio>
#include <exception>

#include "apps/commands.h"

int main(int argc, char** argv) {
  // A file-size limit (ulimit -f) then fails the write with EFBIG, reported like a full disk, instead of
  // killing the process.
  std::signal(SIGXFSZ, SIG_IGN);
  CLI::App app{"subq: distill Transformers into subquadratic language models and run them"};
  app.require_subcommand(1);
  subq::AddGenerateCommand(app);
  subq::AddInspectCommand(app);
  subq::AddEvalCommand(app);
  subq::AddHeadsCommand(app);
  subq::AddLogitsCommand(app);
  subq::AddTokenizeCommand(app);
  subq::AddServeCommand(app);
  subq::AddSampleCommand(app);
  subq::AddQuantizeCommand(app);
  subq::AddConvertCommand(app);
  subq::AddBenchCommand(app);
  subq::AddDataCommand(app);
#ifdef SUBQ_HAVE_TORCH
  subq::AddDistillCommand(app);
  subq::AddTrainCommand(app);
#endif
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "subq: error: %s\n", e.what());
    return 1;
  }
  return subq::ExitCode();
}

int& subq::ExitCode() {
  static int code = 0;
  return code;
}
