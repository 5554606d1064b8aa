// Speculative decoding with exact state rollback. Each round the draft model proposes k tokens greedily;
// the target consumes [last token, proposal] in one verify block of the batched step and keeps the
// longest agreeing prefix plus its own next token. On a rejection both states go back to snapshots
// taken before the round (no per-token state planes): the target re-feeds the accepted tokens in the
// next step's catch-up (which also yields a token), the draft at the start of its next round.
#include <algorithm>

#include "serve/engine.h"
#include "serve/engine_seq.h"

namespace subq::serve {
namespace {

int Argmax(const float* x, int n) { return static_cast<int>(std::max_element(x, x + n) - x); }

}  // namespace

bool Engine::Speculates(const Seq& s) const {
  if (!draft_ || s.draft.layers.empty() || s.done) return false;
  const int n = static_cast<int>(s.tokens.size());
  const int left = s.req->params.max_tokens - s.generated;
  return s.state->pos() == n - 1 && n - s.draft.pos <= o_.spec_k + 2 && left >= 2 &&
         n + o_.spec_k + 1 <= std::min(max_ctx_, draft_ctx_);
}

void Engine::ProposeDrafts(std::vector<Seq*>& spec) {
  for (Seq* s : spec) {
    s->draft_snap = s->draft.Snapshot();
    s->proposal.clear();
  }
  if (draft_logits_.size() < spec.size() * vocab_) draft_logits_.resize(spec.size() * vocab_);
  for (int r = 0; r < o_.spec_k; ++r) {
    std::vector<SeqInput> batch;
    std::vector<Seq*> who;
    for (Seq* s : spec) {
      const int k = std::min(o_.spec_k, s->req->params.max_tokens - s->generated - 1);
      if (r >= k) continue;
      const int* in = r == 0 ? s->tokens.data() + s->draft.pos : &s->proposal.back();
      const int n = r == 0 ? static_cast<int>(s->tokens.size()) - s->draft.pos : 1;
      batch.push_back(SeqInput{in, n, &s->draft, draft_logits_.data() + who.size() * vocab_, false});
      who.push_back(s);
    }
    if (batch.empty()) break;
    Status st = draft_->Forward(batch, *draft_ws_);
    if (!st.ok()) {  // fall back to plain decoding for this round
      for (Seq* s : spec) {
        s->draft.Restore(*s->draft_snap);
        s->proposal.clear();
      }
      return;
    }
    for (size_t i = 0; i < who.size(); ++i) who[i]->proposal.push_back(Argmax(draft_logits_.data() + i * vocab_, vocab_));
  }
}

// logits holds pending + k rows: row pending - 1 + i is the target's choice after proposal[0, i).
void Engine::AcceptDrafts(Seq& s, const float* logits, int pending) {
  const int k = static_cast<int>(s.proposal.size());
  int accepted = 0;
  for (int i = 0; i <= k && !s.done; ++i) {
    const int g = Argmax(logits + static_cast<size_t>(pending - 1 + i) * vocab_, vocab_);
    const bool agree = i < k && g == s.proposal[i];
    Emit(s, g, nullptr);
    if (!agree) break;
    ++accepted;
  }
  st_proposed_ += k;
  st_accepted_ += accepted;
  // The target consumed rejected tokens: back to before the round.
  if (accepted < k) target_->Restore(*s.target_snap, *s.state);
  // The draft consumed proposal[0, k - 1); it stays valid when all of those were accepted.
  if (accepted < k - 1) s.draft.Restore(*s.draft_snap);
  s.proposal.clear();
  s.target_snap.reset();
  s.draft_snap.reset();
}

// Drafts lagging behind their sequence (a new prompt, or tokens decoded without speculation) are fed in
// chunks, leaving the last token for the next proposal round.
void Engine::DraftCatchUp(int budget) {
  std::vector<SeqInput> batch;
  std::vector<Seq*> who;
  for (auto& sp : running_) {
    Seq& s = *sp;
    if (s.draft.layers.empty() || s.done || !s.proposal.empty()) continue;
    const int lag = static_cast<int>(s.tokens.size()) - s.draft.pos;
    if (lag <= o_.spec_k + 2 || budget <= 0) continue;
    const int n = std::min(lag - 1, budget);
    budget -= n;
    batch.push_back(SeqInput{s.tokens.data() + s.draft.pos, n, &s.draft, nullptr, false});
    who.push_back(&s);
  }
  if (batch.empty()) return;
  if (draft_logits_.size() < batch.size() * vocab_) draft_logits_.resize(batch.size() * vocab_);
  for (size_t i = 0; i < batch.size(); ++i) batch[i].logits = draft_logits_.data() + i * vocab_;
  if (!draft_->Forward(batch, *draft_ws_).ok())
    for (Seq* s : who) s->draft = SequenceState();  // this choice continues without speculation
}

}  // namespace subq::serve
