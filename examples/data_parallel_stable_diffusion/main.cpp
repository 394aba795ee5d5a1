// Data parallelism on Stable Diffusion 1.5's UNet: every rank loads (or builds) the same UNet
// engine and samples its contiguous slice of a batch of conditioning vectors with DDIM and
// classifier-free guidance; each rank writes its latents (.npy) and one preview image per
// item (PNG); rank 0 gathers all latents into latents.npy. See README.md.
//
//   mpirun -n 2 data_parallel_stable_diffusion --unet unet.engine --count 4
//   mpirun -n 2 data_parallel_stable_diffusion --unet unet.onnx --device cuda --steps 30
//   mpirun -n 2 data_parallel_stable_diffusion --unet tiny.onnx --cond cond.npy --noise noise.npy --steps 2
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "ddim.h"
#include "dist/bootstrap.h"
#include "dist/communicator.h"
#include "ir/graph.h"
#include "onnx/importer.h"
#include "png.h"
#include "shardrt/engine.h"
#include "shardrt/npy.h"

using namespace shardrt;
namespace fs = std::filesystem;

namespace {

struct Options {
  std::string unet, device, out = "sd_out", cond_path, uncond_path, noise_path;
  int steps = 50;
  float guidance = 7.5f;
  int64_t count = 4;  // images, when --cond is not given
  uint32_t seed = 1234;
  int64_t latent_size = 64, seq = 77, cross_dim = 768;  // when the model leaves them open
  int64_t max_batch = 0;                                 // UNet rows per run; 0: all of a rank's
  int png_scale = 8;
};

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

int64_t parse_int(const std::string& opt, const char* s, int64_t min) {
  char* end = nullptr;
  long long v = std::strtoll(s, &end, 10);
  if (*s == '\0' || *end != '\0' || v < min)
    throw Error(opt + ": expected an integer >= " + std::to_string(min) + ", got '" + s + "'");
  return v;
}

Options parse_args(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "-h" || a == "--help") {
      std::printf(
          "usage: data_parallel_stable_diffusion --unet ENGINE|DIR|MODEL.onnx [--device cpu|cuda] [--steps N]\n"
          "         [--guidance F] [--count N] [--seed N] [--cond FILE.npy] [--uncond FILE.npy] [--noise FILE.npy]\n"
          "         [--latent-size N] [--seq N] [--cross-dim N] [--max-batch N] [--png-scale N] [--out DIR]\n");
      std::exit(0);
    }
    if (i + 1 >= argc) throw Error("unknown option or missing value: '" + a + "' (see --help)");
    const char* v = argv[++i];
    if (a == "--unet") o.unet = v;
    else if (a == "--device") o.device = v;
    else if (a == "--out") o.out = v;
    else if (a == "--cond") o.cond_path = v;
    else if (a == "--uncond") o.uncond_path = v;
    else if (a == "--noise") o.noise_path = v;
    else if (a == "--steps") o.steps = int(parse_int(a, v, 1));
    else if (a == "--guidance") {
      char* end = nullptr;
      o.guidance = std::strtof(v, &end);
      if (*v == '\0' || *end != '\0' || !std::isfinite(o.guidance)) throw Error("--guidance: not a number: '" + std::string(v) + "'");
    } else if (a == "--count") o.count = parse_int(a, v, 1);
    else if (a == "--seed") o.seed = uint32_t(parse_int(a, v, 0));
    else if (a == "--latent-size") o.latent_size = parse_int(a, v, 1);
    else if (a == "--seq") o.seq = parse_int(a, v, 1);
    else if (a == "--cross-dim") o.cross_dim = parse_int(a, v, 1);
    else if (a == "--max-batch") o.max_batch = parse_int(a, v, 1);
    else if (a == "--png-scale") o.png_scale = int(parse_int(a, v, 1));
    else throw Error("unknown option '" + a + "' (see --help)");
  }
  if (o.unet.empty()) throw Error("--unet is required (an engine file, a folder holding one, or an ONNX file; see --help)");
  if (o.device != "" && o.device != "cpu" && o.device != "cuda") throw Error("--device must be cpu or cuda");
  return o;
}

// A float32 copy of a .npy of any float dtype, with its expected rank checked.
Tensor read_f32(const std::string& path, int64_t rank, const char* what) {
  Tensor t = read_npy(path);
  if (t.rank() != rank) throw Error(path + ": " + what + " must have rank " + std::to_string(rank) + ", got " + dims_str(t.dims()));
  if (!is_float(t.dtype())) throw Error(path + ": " + what + " must be a float array, got " + dtype_name(t.dtype()));
  return t.dtype() == DType::F32 ? t : t.cast(DType::F32);
}

// Normal(0, 1) values, one seeded generator per item so an item's values do not depend on
// how the items are split between ranks.
Tensor seeded_normal(Dims d, uint32_t seed) {
  Tensor t(DType::F32, d);
  const int64_t per = d[0] ? t.numel() / d[0] : 0;
  for (int64_t i = 0; i < d[0]; ++i) {
    std::mt19937 rng(seed + uint32_t(i) * 7919u);
    std::normal_distribution<float> nd(0.f, 1.f);
    for (int64_t j = 0; j < per; ++j) t.data<float>()[i * per + j] = nd(rng);
  }
  return t;
}

// The engine's input bindings by name, checked for what the UNet needs.
struct UNetIO {
  const Binding* sample = nullptr;
  const Binding* timestep = nullptr;
  const Binding* ehs = nullptr;
  std::string output;
  int64_t min_batch = 1, max_batch = 1;
};

int64_t numeric(const std::string& d) {
  char* end = nullptr;
  long long v = std::strtoll(d.c_str(), &end, 10);
  return (!d.empty() && *end == '\0') ? v : -1;
}

UNetIO unet_io(const Engine& e) {
  UNetIO io;
  for (const Binding& b : e.inputs()) {
    if (b.name == "sample") io.sample = &b;
    else if (b.name == "timestep") io.timestep = &b;
    else if (b.name == "encoder_hidden_states") io.ehs = &b;
    else throw Error("the UNet has an unexpected input '" + b.name + "' (expected sample, timestep, encoder_hidden_states)");
  }
  if (!io.sample || !io.timestep || !io.ehs)
    throw Error("the UNet needs inputs sample, timestep and encoder_hidden_states (scripts/export_sd_unet.py writes them)");
  if (io.sample->dims.size() != 4 || io.ehs->dims.size() != 3 || io.timestep->dims.size() > 1)
    throw Error("the UNet's inputs must be sample [B, 4, H, W], timestep [B] or [], encoder_hidden_states [B, S, D]");
  if (e.outputs().size() != 1) throw Error("the UNet must have one output (the predicted noise)");
  io.output = e.outputs()[0].name;
  // Batch range: a number, or the profile's range of a symbolic dim.
  const int64_t fixed = numeric(io.sample->dims[0]);
  if (fixed > 0) {
    io.min_batch = io.max_batch = fixed;
  } else if (io.sample->profile) {
    io.min_batch = std::max<int64_t>(1, io.sample->profile->min[0]);
    io.max_batch = io.sample->profile->max[0];
  }
  return io;
}

// A dim of a binding: its number, else `dflt`.
int64_t dim_or(const Binding& b, size_t i, int64_t dflt) {
  const int64_t v = numeric(b.dims[i]);
  return v > 0 ? v : dflt;
}

// Loads an engine file (or the one engine in a folder), or builds an ONNX file for
// `device` with the batch dim ranging over [1, max_batch].
Engine load_unet(const Options& o, int64_t max_batch, const Tensor* cond, const Tensor* noise) {
  fs::path p(o.unet);
  if (fs::is_directory(p)) {
    std::vector<fs::path> engines;
    for (auto& f : fs::directory_iterator(p))
      if (f.path().extension() == ".engine") engines.push_back(f.path());
    if (fs::exists(p / "unet.engine")) engines = {p / "unet.engine"};
    if (engines.size() != 1)
      throw Error(o.unet + ": expected one .engine file (or unet.engine) in the folder, found " + std::to_string(engines.size()));
    p = engines[0];
  }
  if (p.extension() != ".onnx") return Engine::load(p.string());
  // Build: the profile needs every input's full dims; the ONNX file gives the fixed ones.
  Graph g = import_onnx_file(p.string());
  BuildConfig bc;
  bc.device = o.device.empty() ? "cpu" : o.device;
  for (const Value* v : g.inputs) {
    Dims lo, hi;
    for (size_t i = 0; i < v->shape.size(); ++i) {
      int64_t d = v->shape[i].known() ? v->shape[i].value : -1;
      if (i == 0 && v->shape.size() > 0 && !v->shape[i].known()) {
        lo.push_back(1);
        hi.push_back(max_batch);
        continue;
      }
      if (d < 0) {
        // Open non-batch dims: from the given arrays, else SD-1.5's sizes (or the options).
        if (v->name == "sample") d = noise ? noise->dim(int64_t(i)) : (i == 1 ? 4 : o.latent_size);
        else if (v->name == "encoder_hidden_states") d = cond ? cond->dim(int64_t(i)) : (i == 1 ? o.seq : o.cross_dim);
        else throw Error(o.unet + ": input '" + v->name + "' has an open dim " + std::to_string(i));
      }
      lo.push_back(d);
      hi.push_back(d);
    }
    bc.shapes[v->name] = {lo, hi, hi};
  }
  return build_engine_from_graph(std::move(g), bc);
}

// SD's commonly used linear approximation of the VAE decoder: latent channels → RGB in
// [-1, 1] (computed by keturn, for the SD-1.x VAE's scaled latents), then [0, 255].
const float kLatentRgb[4][3] = {
    {0.298f, 0.207f, 0.208f},
    {0.187f, 0.286f, 0.173f},
    {-0.158f, 0.189f, 0.264f},
    {-0.184f, -0.271f, -0.473f},
};

void write_preview(const std::string& path, const float* lat, int64_t h, int64_t w, int scale) {
  const int W = int(w * scale), H = int(h * scale);
  std::vector<uint8_t> rgb(size_t(W) * size_t(H) * 3);
  for (int y = 0; y < H; ++y)
    for (int x = 0; x < W; ++x) {
      const int64_t at = (y / scale) * w + (x / scale);  // nearest-neighbour upscaling
      for (int c = 0; c < 3; ++c) {
        float v = 0.f;
        for (int k = 0; k < 4; ++k) v += lat[k * h * w + at] * kLatentRgb[k][c];
        const float u = std::clamp((v + 1.f) * 0.5f * 255.f + 0.5f, 0.f, 255.f);
        rgb[(size_t(y) * W + x) * 3 + c] = uint8_t(u);
      }
    }
  sd_example::write_png_rgb(path, W, H, rgb);
}

// Runs the UNet over `rows` rows: row r is latent latents[lat_of[r]] with embedding
// embeds[emb_of[r]]; writes the predicted noise of row r to eps + r·per. Rows go in runs of
// at most io.max_batch (padded with copies of the last row up to io.min_batch).
void unet_rows(ExecutionContext& ctx, const UNetIO& io, int64_t t, const Tensor& latents, const Tensor& embeds,
               const std::vector<int64_t>& lat_of, const std::vector<int64_t>& emb_of, float* eps) {
  const int64_t rows = int64_t(lat_of.size());
  const int64_t per = latents.numel() / latents.dim(0), per_e = embeds.numel() / embeds.dim(0);
  const bool scalar_t = io.timestep->dims.empty();
  for (int64_t r0 = 0; r0 < rows; r0 += io.max_batch) {
    const int64_t n = std::min(io.max_batch, rows - r0), b = std::max(n, io.min_batch);
    Dims sd = latents.dims(), ed = embeds.dims();
    sd[0] = b;
    ed[0] = b;
    Tensor x(DType::F32, sd), e(DType::F32, ed), ts(DType::F32, scalar_t ? Dims{} : Dims{b});
    for (int64_t i = 0; i < b; ++i) {
      const int64_t r = r0 + std::min(i, n - 1);
      std::copy_n(latents.data<float>() + lat_of[size_t(r)] * per, per, x.data<float>() + i * per);
      std::copy_n(embeds.data<float>() + emb_of[size_t(r)] * per_e, per_e, e.data<float>() + i * per_e);
    }
    std::fill(ts.data<float>(), ts.data<float>() + ts.numel(), float(t));
    auto as = [](const Tensor& v, DType d) { return v.dtype() == d ? v : v.cast(d); };
    auto outs = ctx.run({{"sample", as(x, io.sample->dtype)},
                         {"timestep", as(ts, io.timestep->dtype)},
                         {"encoder_hidden_states", as(e, io.ehs->dtype)}});
    Tensor y = outs.at(io.output);
    if (y.dtype() != DType::F32) y = y.cast(DType::F32);
    if (y.numel() != b * per) throw Error("the UNet's output is " + dims_str(y.dims()) + ", expected the sample's shape");
    std::copy_n(y.data<float>(), n * per, eps + r0 * per);
  }
}

}  // namespace

int main(int argc, char** argv) {
  auto t_start = std::chrono::steady_clock::now();
  try {
    auto world = dist::communicator_from_env();
    const int ranks = world->size(), rank = world->rank();
    Options o = parse_args(argc, argv);

    // Every rank reads the same files (or makes the same seeded arrays) and keeps its slice.
    Tensor cond_all, noise_all, uncond;
    bool have_cond = !o.cond_path.empty(), have_noise = !o.noise_path.empty();
    if (have_cond) cond_all = read_f32(o.cond_path, 3, "--cond");
    if (have_noise) noise_all = read_f32(o.noise_path, 4, "--noise");
    const int64_t items = have_cond ? cond_all.dim(0) : have_noise ? noise_all.dim(0) : o.count;
    if (have_cond && have_noise && noise_all.dim(0) != items)
      throw Error("--cond has " + std::to_string(items) + " items, --noise " + std::to_string(noise_all.dim(0)));

    // Contiguous slices: rank r takes items [first[r], first[r] + count[r]); the first
    // items % ranks ranks take one more.
    std::vector<int64_t> count(static_cast<size_t>(ranks)), first(static_cast<size_t>(ranks));
    for (int r = 0, at = 0; r < ranks; ++r) {
      count[size_t(r)] = items / ranks + (r < items % ranks ? 1 : 0);
      first[size_t(r)] = at;
      at += int(count[size_t(r)]);
    }
    const int64_t mine = count[size_t(rank)], base = first[size_t(rank)];
    // Classifier-free guidance runs each item twice (unconditional and conditional rows).
    const int64_t rows_wanted = o.max_batch > 0 ? o.max_batch : std::max<int64_t>(2, 2 * count[0]);

    auto t0 = std::chrono::steady_clock::now();
    Engine engine = load_unet(o, rows_wanted, have_cond ? &cond_all : nullptr, have_noise ? &noise_all : nullptr);
    UNetIO io = unet_io(engine);
    if (o.max_batch > 0) io.max_batch = std::min(io.max_batch, o.max_batch);
    if (io.max_batch < 1) throw Error("the UNet engine has no usable batch range");
    const int64_t C = dim_or(*io.sample, 1, 4), H = dim_or(*io.sample, 2, o.latent_size), W = dim_or(*io.sample, 3, o.latent_size);
    const int64_t S = dim_or(*io.ehs, 1, have_cond ? cond_all.dim(1) : o.seq);
    const int64_t D = dim_or(*io.ehs, 2, have_cond ? cond_all.dim(2) : o.cross_dim);
    if (have_cond && (cond_all.dim(1) != S || cond_all.dim(2) != D))
      throw Error(o.cond_path + ": conditioning is " + dims_str(cond_all.dims()) + ", the UNet takes [N, " + std::to_string(S) +
                  ", " + std::to_string(D) + "]");
    if (have_noise && (noise_all.dim(1) != C || noise_all.dim(2) != H || noise_all.dim(3) != W))
      throw Error(o.noise_path + ": noise is " + dims_str(noise_all.dims()) + ", the UNet takes [N, " + std::to_string(C) + ", " +
                  std::to_string(H) + ", " + std::to_string(W) + "]");
    if (!have_cond) cond_all = seeded_normal({items, S, D}, o.seed + 1000003u);  // stand-in for CLIP text embeddings
    if (!have_noise) noise_all = seeded_normal({items, C, H, W}, o.seed);      // DDIM's init_noise_sigma is 1
    if (!o.uncond_path.empty()) {
      uncond = read_f32(o.uncond_path, 3, "--uncond");
      if (uncond.dim(0) != 1 || uncond.dim(1) != S || uncond.dim(2) != D)
        throw Error(o.uncond_path + ": the unconditional embedding must be [1, " + std::to_string(S) + ", " + std::to_string(D) + "]");
    } else {
      // No text encoder here: the unconditional embedding is zeros.
      uncond = Tensor(DType::F32, {1, S, D});
      std::fill(uncond.data<float>(), uncond.data<float>() + uncond.numel(), 0.f);
    }
    const double load_s = seconds_since(t0);
    if (rank == 0)
      std::printf("UNet %s: sample [B, %lld, %lld, %lld], text [B, %lld, %lld], batch %lld..%lld, on %s; %lld images over %d "
                  "ranks, %d DDIM steps, guidance %.2f; engine ready in %.2f s\n",
                  o.unet.c_str(), (long long)C, (long long)H, (long long)W, (long long)S, (long long)D,
                  (long long)io.min_batch, (long long)io.max_batch, o.device.empty() ? "the engine's device" : o.device.c_str(),
                  (long long)items, ranks, o.steps, double(o.guidance), load_s);

    // This rank's items: latents and embeddings (row 0: unconditional, then the items').
    const int64_t per = C * H * W, per_e = S * D;
    Tensor lat(DType::F32, {std::max<int64_t>(mine, 1), C, H, W});
    Tensor emb(DType::F32, {mine + 1, S, D});
    std::copy_n(uncond.data<float>(), per_e, emb.data<float>());
    for (int64_t i = 0; i < mine; ++i) {
      std::copy_n(noise_all.data<float>() + (base + i) * per, per, lat.data<float>() + i * per);
      std::copy_n(cond_all.data<float>() + (base + i) * per_e, per_e, emb.data<float>() + (i + 1) * per_e);
    }
    // Rows as diffusers batches them: all unconditional rows, then all conditional ones.
    std::vector<int64_t> lat_of, emb_of;
    for (int64_t i = 0; i < mine; ++i) lat_of.push_back(i), emb_of.push_back(0);
    for (int64_t i = 0; i < mine; ++i) lat_of.push_back(i), emb_of.push_back(i + 1);

    t0 = std::chrono::steady_clock::now();
    sd_example::Ddim ddim(o.steps);
    if (mine > 0) {
      ContextOptions co;
      co.device = o.device;
      ExecutionContext ctx(engine, co);
      std::vector<float> eps(size_t(2 * mine * per)), guided(size_t(mine * per));
      for (int64_t t : ddim.timesteps()) {
        unet_rows(ctx, io, t, lat, emb, lat_of, emb_of, eps.data());
        // eps = eps_uncond + g·(eps_cond − eps_uncond)
        const float* eu = eps.data();
        const float* ec = eps.data() + mine * per;
        for (int64_t k = 0; k < mine * per; ++k) guided[size_t(k)] = eu[k] + o.guidance * (ec[k] - eu[k]);
        ddim.step(t, guided.data(), lat.data<float>(), mine * per);
      }
    }
    const double sample_s = seconds_since(t0);

    // Outputs: this rank's latents and previews; rank 0 also writes everyone's latents.
    fs::create_directories(o.out);
    Tensor mine_lat = Tensor(DType::F32, {mine, C, H, W});
    std::copy_n(lat.data<float>(), mine * per, mine_lat.data<float>());
    if (mine > 0) {
      write_npy((fs::path(o.out) / ("latents_rank" + std::to_string(rank) + ".npy")).string(), mine_lat);
      for (int64_t i = 0; i < mine; ++i) {
        char name[64];
        std::snprintf(name, sizeof(name), "image_%03lld.png", (long long)(base + i));
        write_preview((fs::path(o.out) / name).string(), lat.data<float>() + i * per, H, W, o.png_scale);
      }
    }
    std::vector<int64_t> counts;
    for (int64_t k : count) counts.push_back(k * per);
    Tensor all(DType::F32, {items, C, H, W});
    world->all_gather(mine_lat.data<float>(), all.data<float>(), counts, DType::F32, {"", "AllGather"});
    double slowest = sample_s;
    world->all_reduce(&slowest, &slowest, 1, DType::F64, dist::ReduceOp::Max, {"", "AllReduce"});
    std::printf("rank %d: items %lld..%lld, %d steps in %.2f s (%.3f s per step)\n", rank, (long long)base,
                (long long)(base + mine), o.steps, sample_s, sample_s / o.steps);
    if (rank == 0) {
      const std::string p = (fs::path(o.out) / "latents.npy").string();
      write_npy(p, all);
      bool finite = true;
      for (int64_t k = 0; k < all.numel(); ++k) finite = finite && std::isfinite(all.data<float>()[k]);
      std::printf("data parallel sampling (%d ranks): %.2f s (slowest rank); latents %s -> %s; previews image_*.png "
                  "(linear latent->RGB approximation, not the VAE); %s (total %.2f s)\n",
                  ranks, slowest, dims_str(all.dims()).c_str(), p.c_str(), finite ? "OK" : "NON-FINITE LATENTS",
                  seconds_since(t_start));
      if (!finite) return 1;
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "data_parallel_stable_diffusion: error: %s\n", e.what());
    return 1;
  }
}
