// Helpers shared by C++ tests.
#pragma once
#include <cstdlib>
#include <string>

namespace subq::testing {

// Folder of the real models and texts (../shared/data beside the repo, or $SUBQ_DATA).
inline std::string DataDir() {
  if (const char* d = std::getenv("SUBQ_DATA")) return d;
#ifdef SUBQ_SOURCE_DIR
  return std::string(SUBQ_SOURCE_DIR) + "/../shared/data";
#else
  return "../shared/data";
#endif
}

inline std::string SourceDir() {
#ifdef SUBQ_SOURCE_DIR
  return SUBQ_SOURCE_DIR;
#else
  return ".";
#endif
}

}  // namespace subq::testing
