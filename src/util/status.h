// Errors as values: Status and Result<T>. Engine code returns these instead of throwing.
#pragma once
#include <optional>
#include <string>
#include <utility>
#include <variant>

#include <fmt/format.h>

namespace subq {

class Status {
 public:
  Status() = default;
  static Status Ok() { return Status(); }
  static Status Error(std::string msg) { Status s; s.msg_ = std::move(msg); s.ok_ = false; return s; }
  bool ok() const { return ok_; }
  const std::string& message() const { return msg_; }

 private:
  bool ok_ = true;
  std::string msg_;
};

template <typename... Args>
Status Errorf(fmt::format_string<Args...> f, Args&&... args) {
  return Status::Error(fmt::format(f, std::forward<Args>(args)...));
}

template <typename T>
class Result {
 public:
  Result(T value) : v_(std::move(value)) {}          // NOLINT: implicit by design
  Result(Status status) : v_(std::move(status)) {}   // NOLINT: must be an error
  bool ok() const { return std::holds_alternative<T>(v_); }
  Status status() const { return ok() ? Status::Ok() : std::get<Status>(v_); }
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() { return value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace subq

#define SUBQ_CONCAT_(a, b) a##b
#define SUBQ_CONCAT(a, b) SUBQ_CONCAT_(a, b)
// Propagate an error Status.
#define SUBQ_RETURN_IF_ERROR(expr)            \
  do {                                        \
    ::subq::Status _st = (expr);              \
    if (!_st.ok()) return _st;                \
  } while (0)
// Unwrap a Result<T> into `lhs`, or propagate its error.
#define SUBQ_ASSIGN_OR_RETURN(lhs, expr)                          \
  auto SUBQ_CONCAT(_res_, __LINE__) = (expr);                     \
  if (!SUBQ_CONCAT(_res_, __LINE__).ok())                         \
    return SUBQ_CONCAT(_res_, __LINE__).status();                 \
  lhs = std::move(SUBQ_CONCAT(_res_, __LINE__)).value()
