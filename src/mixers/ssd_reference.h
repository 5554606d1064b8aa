// Plain scalar references of the Mamba-2 and Discrete Mamba-2 mixers: the SPEC recurrences token by token,
// in double, with no chunking, no BLAS and no shared code with the fast paths. Test oracles only.
#pragma once
#include <vector>

#include "mixers/discrete_mamba2.h"
#include "mixers/mamba2.h"

namespace subq::reference {

// S_t = exp(loga_t) S_{t-1} + x_t b_t^T ; y_t = S_t c_t per head (group h / (H/G)).
// x [L, H, P], b/c [L, G, N], loga [L, H], state [H, P, N] (in/out), returns y [L, H, P].
std::vector<double> SsdScan(int H, int P, int N, int G, int L, const std::vector<double>& x,
                            const std::vector<double>& b, const std::vector<double>& c,
                            const std::vector<double>& loga, std::vector<double>& state);

// Whole mixer from a fresh state: u [L, dim] -> out [L, dim].
std::vector<double> Mamba2Forward(const Mamba2Config& c, const Mamba2Weights& w, int dim, const float* u, int L);
// Discrete Mamba-2 without kept attention heads.
std::vector<double> DiscreteMamba2Forward(const DiscreteMamba2Config& c, const DiscreteMamba2Weights& w, int dim,
                                        const float* u, int L);

}  // namespace subq::reference
