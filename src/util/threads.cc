#include "util/threads.h"

#include <unistd.h>

#include <cstdlib>

namespace subq {

Threads Threads::Default() {
  if (const char* e = std::getenv("SUBQ_THREADS")) {
    const int n = std::atoi(e);
    if (n >= 1) return {n};
  }
  const long n = ::sysconf(_SC_NPROCESSORS_ONLN);
  return {n >= 1 ? static_cast<int>(n) : 1};
}

}  // namespace subq
