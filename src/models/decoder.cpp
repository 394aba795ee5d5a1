#include "models/decoder.h"

#include "dist/mesh.h"
#include "models/decoder_common.h"

namespace shardrt::models {

Network build_decoder_network(const std::string& model_dir, const DecoderConfig& cfg, const DecoderBuildOptions& o) {
  check_build(cfg, o);
  // The collectives' shape rules see this rank's place in its tensor-parallel group.
  dist::ScopedGroupShapes groups(1, o.tp_size, o.tp_rank);
  if (cfg.family == "gpt2") return build_gpt2(model_dir, cfg, o);
  if (cfg.family == "llama") return build_llama(model_dir, cfg, o);
  throw Error("decoder family '" + cfg.family + "' is not supported (gpt2, llama)");
}

}  // namespace shardrt::models
