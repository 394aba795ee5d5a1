// Engine build, file round trip, integrity checks, input checks, memory planning.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <cstring>
#include <unistd.h>

#include "api/cli_util.h"
#include "build/memory_plan.h"
#include "ir/graph.h"
#include "shardrt/engine.h"
#include "shardrt/network.h"
#include "shardrt/npy.h"

using namespace shardrt;
namespace fs = std::filesystem;

namespace {

std::string tmp_path(const std::string& name) {
  return (fs::temp_directory_path() / ("shardrt_test_" + std::to_string(::getpid()) + "_" + name)).string();
}

Tensor randn(Dims d, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd;
  Tensor t(DType::F32, d);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = nd(rng);
  return t;
}

// y = relu(x·W1 + b) + x·W2, dynamic batch.
Engine small_engine() {
  Network net("small");
  ITensor x = net.input("x", DType::F32, {-1, 8}, {"batch"});
  ITensor w1 = net.weight("w1", randn({8, 8}, 1)), w2 = net.weight("w2", randn({8, 8}, 2));
  ITensor b = net.weight("b", randn({8}, 3));
  ITensor h = net.relu(net.add(net.matmul(x, w1), b));
  net.output(net.add(h, net.matmul(x, w2)), "y");
  BuildConfig cfg;
  cfg.shapes["x"] = {{1, 8}, {4, 8}, {16, 8}};
  return build_engine(net, cfg);
}

std::vector<float> reference(const Tensor& x) {
  Tensor w1 = randn({8, 8}, 1), w2 = randn({8, 8}, 2), b = randn({8}, 3);
  int64_t m = x.dim(0);
  std::vector<float> y(size_t(m * 8));
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < 8; ++j) {
      double h = b.data<float>()[j], z = 0;
      for (int64_t k = 0; k < 8; ++k) {
        h += double(x.data<float>()[i * 8 + k]) * w1.data<float>()[k * 8 + j];
        z += double(x.data<float>()[i * 8 + k]) * w2.data<float>()[k * 8 + j];
      }
      y[size_t(i * 8 + j)] = float((h > 0 ? h : 0) + z);
    }
  return y;
}

void expect_close(const Tensor& y, const std::vector<float>& ref) {
  ASSERT_EQ(size_t(y.numel()), ref.size());
  // 8-term fp32 dot products against a double reference: a few ulp of values of order 10.
  for (size_t i = 0; i < ref.size(); ++i) EXPECT_NEAR(y.data<float>()[i], ref[i], 1e-4) << i;
}

}  // namespace

TEST(Engine, BuildRunSaveLoadAtSeveralBatchSizes) {
  Engine e = small_engine();
  std::string p = tmp_path("small.engine");
  e.save(p);
  Engine loaded = Engine::load(p);
  for (Engine* eng : {&e, &loaded}) {
    ExecutionContext ctx(*eng);
    for (int64_t batch : {1, 5, 16}) {
      Tensor x = randn({batch, 8}, 10 + unsigned(batch));
      auto out = ctx.run({{"x", x}});
      expect_close(out.at("y"), reference(x));
    }
  }
  EXPECT_GT(loaded.arena_bytes(), 0u);
  EXPECT_NE(loaded.inspect(false).find("memory: arena"), std::string::npos);
  fs::remove(p);
}

TEST(Engine, RefusesTruncatedCorruptedAndForeignFiles) {
  Engine e = small_engine();
  std::string p = tmp_path("good.engine");
  e.save(p);
  std::string bytes;
  {
    std::ifstream f(p, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(f), {});
  }
  auto write = [&](const std::string& name, const std::string& b) {
    std::string q = tmp_path(name);
    std::ofstream(q, std::ios::binary).write(b.data(), std::streamsize(b.size()));
    return q;
  };
  auto expect_error = [&](const std::string& file, const std::string& what) {
    try {
      Engine::load(file);
      ADD_FAILURE() << "loaded " << file;
    } catch (const Error& err) {
      EXPECT_NE(std::string(err.what()).find(what), std::string::npos) << err.what();
    }
    fs::remove(file);
  };
  expect_error(write("trunc.engine", bytes.substr(0, bytes.size() / 2)), "size check failed");
  expect_error(write("short.engine", bytes.substr(0, 20)), "truncated");
  std::string flipped = bytes;
  flipped[flipped.size() - 3] ^= 0x40;  // inside the weights
  expect_error(write("flip.engine", flipped), "checksum check failed");
  std::string foreign = bytes;
  foreign[0] = 'X';
  expect_error(write("foreign.engine", foreign), "magic check failed");
  std::string ver = bytes;
  ver[8] = 99;
  expect_error(write("ver.engine", ver), "format version check failed");
  fs::remove(p);
}

TEST(Engine, ChecksInputsByNameDtypeAndProfile) {
  Engine e = small_engine();
  ExecutionContext ctx(e);
  auto msg = [&](const std::map<std::string, Tensor>& in) {
    try {
      ctx.run(in);
    } catch (const Error& err) {
      return std::string(err.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(msg({{"z", randn({2, 8}, 0)}}).find("unknown input 'z'"), std::string::npos);
  EXPECT_NE(msg({}).find("input 'x' is missing"), std::string::npos);
  EXPECT_NE(msg({{"x", Tensor(DType::I64, {2, 8})}}).find("dtype int64"), std::string::npos);
  EXPECT_NE(msg({{"x", randn({17, 8}, 0)}}).find("outside the engine's profile"), std::string::npos);
  EXPECT_NE(msg({{"x", randn({2, 8, 1}, 0)}}).find("rank 3"), std::string::npos);
}

TEST(Engine, DynamicInputWithoutProfileIsRefused) {
  Network net("n");
  ITensor x = net.input("x", DType::F32, {-1, 4}, {"batch"});
  net.output(net.relu(x), "y");
  try {
    build_engine(net, BuildConfig{});
    ADD_FAILURE() << "built without a profile";
  } catch (const Error& err) {
    EXPECT_NE(std::string(err.what()).find("--shapes x:"), std::string::npos) << err.what();
  }
}

TEST(MemoryPlan, SharesBytesOnlyBetweenDisjointLifetimes) {
  // a -> b -> c -> d chain: a and c may share, b and d may share; neighbours may not.
  Graph g;
  Value* x = g.add_input("x", DType::F32, {Dim(256)});
  Value* v = x;
  std::vector<std::string> names;
  for (int i = 0; i < 4; ++i) {
    Node* n = g.add_node("Relu", "r" + std::to_string(i), {v}, {"v" + std::to_string(i)});
    v = n->outputs[0];
    names.push_back(v->name);
  }
  Node* last = g.add_node("Relu", "out", {v}, {"y"});
  g.outputs = {last->outputs[0]};
  std::map<std::string, size_t> bytes;
  for (auto& n : names) bytes[n] = 1024;
  MemoryPlan p = plan_memory(g, bytes);
  ASSERT_EQ(p.slots.size(), 4u);
  auto overlap = [&](const std::string& a, const std::string& b) {
    auto& x1 = p.slots.at(a);
    auto& x2 = p.slots.at(b);
    return x1.offset < x2.offset + x2.bytes && x2.offset < x1.offset + x1.bytes;
  };
  for (size_t i = 0; i + 1 < names.size(); ++i) EXPECT_FALSE(overlap(names[i], names[i + 1]));
  EXPECT_EQ(p.arena_bytes, 2048u);  // two slots suffice for a chain
  EXPECT_EQ(p.unplanned_bytes_sum, 4096u);
}

TEST(Npy, RoundTripsEveryDtypeAndRejectsGarbage) {
  for (DType t : {DType::F32, DType::F16, DType::BF16, DType::F64, DType::I64, DType::I32, DType::I8, DType::U8, DType::Bool}) {
    Tensor a(t, {2, 3});
    for (int64_t i = 0; i < a.numel(); ++i) a.set_f(i, double(i % 2));
    std::string p = tmp_path(std::string("a_") + dtype_name(t) + ".npy");
    write_npy(p, a);
    Tensor b = read_npy(p);
    EXPECT_EQ(b.dtype(), t);
    EXPECT_EQ(b.dims(), a.dims());
    EXPECT_EQ(std::memcmp(a.raw(), b.raw(), a.nbytes()), 0);
    fs::remove(p);
  }
  EXPECT_THROW(parse_npy("hello", "x"), Error);
  EXPECT_THROW(parse_npy(std::string("\x93NUMPY\x01\x00\x10\x00{'descr': '<f4',", 26), "x"), Error);
}

TEST(Cli, ParsesShapesAndEscapesNames) {
  auto s = parse_shapes("ids:1x16/4x128/8x512,mask:2x3");
  EXPECT_EQ(s.at("ids").min, (Dims{1, 16}));
  EXPECT_EQ(s.at("ids").max, (Dims{8, 512}));
  EXPECT_EQ(s.at("mask").opt, (Dims{2, 3}));
  EXPECT_THROW(parse_shapes("ids:1xq"), Error);
  EXPECT_THROW(parse_shapes("ids:1x2/3x4"), Error);
  EXPECT_EQ(escape_file_name("logits"), "logits");
  EXPECT_EQ(escape_file_name("a/b:c"), "a%2Fb%3Ac");
  EXPECT_EQ(escape_file_name(".hidden"), "%2Ehidden");
  EXPECT_EQ(escape_file_name(""), "%");
}
