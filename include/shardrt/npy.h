// NumPy .npy files (format versions 1–3, C order) for every shardrt dtype. bfloat16 uses the
// descriptor 'bfloat16' (what NumPy writes once `ml_dtypes` is imported).
#pragma once
#include <string>

#include "shardrt/tensor.h"

namespace shardrt {

Tensor read_npy(const std::string& path);  // throws shardrt::Error naming the file
void write_npy(const std::string& path, const Tensor& t);
Tensor parse_npy(const std::string& bytes, const std::string& what);  // `what` names it in errors

}  // namespace shardrt
