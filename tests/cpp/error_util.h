// What the tests ask of errors: the message a call throws, and whether it says something.
#pragma once
#include <exception>
#include <string>

#include "shardrt/engine.h"

// The message of the shardrt::Error that `f` throws ("" when it throws none; any other
// exception propagates and fails the test).
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const shardrt::Error& e) {
    return e.what();
  }
  return "";
}

// The message of any std::exception that `f` throws ("" when none).
template <class F>
std::string any_error_of(F&& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

inline bool has(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }
