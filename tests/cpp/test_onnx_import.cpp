// ONNX importer: models are built here as ModelProtos (no committed model files), imported,
// and the resulting graph checked: values, shapes, canonical forms, and the errors for
// models shardrt refuses.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "ir/graph.h"
#include "ir/op_schema.h"
#include "onnx/importer.h"
#include "onnx/onnx.pb.h"
#include "runtime/reference_run.h"

using namespace shardrt;
namespace fs = std::filesystem;

namespace {

// Builds small models. Dims: a number is a dim_value, "?" no dim at all, other text a
// dim_param.
struct ModelBuilder {
  onnx::ModelProto m;
  explicit ModelBuilder(int opset = 17) {
    m.set_ir_version(8);
    auto* o = m.add_opset_import();
    o->set_domain("");
    o->set_version(opset);
    m.mutable_graph()->set_name("g");
  }
  onnx::GraphProto& g() { return *m.mutable_graph(); }
  static void set_type(onnx::ValueInfoProto* v, int elem, const std::vector<std::string>& dims) {
    auto* tt = v->mutable_type()->mutable_tensor_type();
    tt->set_elem_type(elem);
    auto* sh = tt->mutable_shape();
    for (auto& d : dims) {
      auto* dd = sh->add_dim();
      if (d == "?") continue;
      if (std::isdigit(static_cast<unsigned char>(d[0]))) dd->set_dim_value(std::stoll(d));
      else dd->set_dim_param(d);
    }
  }
  void input(const std::string& name, int elem, const std::vector<std::string>& dims) {
    auto* v = g().add_input();
    v->set_name(name);
    set_type(v, elem, dims);
  }
  void output(const std::string& name, int elem) {
    auto* v = g().add_output();
    v->set_name(name);
    v->mutable_type()->mutable_tensor_type()->set_elem_type(elem);
  }
  onnx::NodeProto* node(const std::string& op, std::vector<std::string> ins, std::vector<std::string> outs,
                        const std::string& name = "") {
    auto* n = g().add_node();
    n->set_op_type(op);
    if (!name.empty()) n->set_name(name);
    for (auto& i : ins) n->add_input(i);
    for (auto& o : outs) n->add_output(o);
    return n;
  }
  onnx::TensorProto* init_f32(const std::string& name, std::vector<int64_t> dims, std::vector<float> v) {
    auto* t = g().add_initializer();
    t->set_name(name);
    t->set_data_type(onnx::TensorProto::FLOAT);
    for (auto d : dims) t->add_dims(d);
    t->set_raw_data(std::string(reinterpret_cast<const char*>(v.data()), v.size() * 4));
    return t;
  }
  std::string bytes() const { return m.SerializeAsString(); }
};

void attr_ints(onnx::NodeProto* n, const std::string& k, std::vector<int64_t> v) {
  auto* a = n->add_attribute();
  a->set_name(k);
  a->set_type(onnx::AttributeProto::INTS);
  for (auto x : v) a->add_ints(x);
}
void attr_int(onnx::NodeProto* n, const std::string& k, int64_t v) {
  auto* a = n->add_attribute();
  a->set_name(k);
  a->set_type(onnx::AttributeProto::INT);
  a->set_i(v);
}

Graph import(const ModelBuilder& b, const std::string& dir = "") { return import_onnx_model_bytes(b.bytes(), dir, "test"); }

std::string import_error(const ModelBuilder& b, const std::string& dir = "") {
  try {
    import(b, dir);
  } catch (const GraphError& e) {
    return e.what();
  }
  return "";
}

const Node* find_node(const Graph& g, const std::string& name) {
  for (auto& n : g.nodes)
    if (n->name == name) return n.get();
  return nullptr;
}

struct TempDir {
  fs::path path;
  TempDir() {
    path = fs::temp_directory_path() / ("shardrt_onnx_test_" + std::to_string(::getpid()) + "_" +
                                        std::to_string(reinterpret_cast<uintptr_t>(this)));
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
};

}  // namespace

TEST(OnnxImport, SimpleGraphShapesNamesAndWeights) {
  ModelBuilder b(17);
  b.input("x", onnx::TensorProto::FLOAT, {"batch", "3"});
  // Old exporters list weights among the inputs too: those must not become graph inputs.
  b.input("w", onnx::TensorProto::FLOAT, {"3"});
  b.init_f32("w", {3}, {1, 2, 3});
  b.node("Add", {"x", "w"}, {"s"}, "block/add");
  b.node("Relu", {"s"}, {"y"});  // unnamed: gets "Relu_1"
  b.output("y", onnx::TensorProto::FLOAT);
  Graph g = import(b);
  ASSERT_EQ(g.inputs.size(), 1u);
  EXPECT_EQ(g.inputs[0]->name, "x");
  EXPECT_EQ(g.inputs[0]->shape[0].str(), "batch");
  EXPECT_EQ(g.inputs[0]->shape[1].value, 3);
  ASSERT_NE(find_node(g, "block/add"), nullptr);
  ASSERT_NE(find_node(g, "Relu_1"), nullptr);
  EXPECT_EQ(find_node(g, "Relu_1")->opset, 17);
  Value* w = g.find_value("w");
  ASSERT_TRUE(w && w->is_constant());
  EXPECT_EQ(w->constant->get_f(2), 3.0);
  ASSERT_EQ(g.outputs.size(), 1u);
  EXPECT_EQ(g.outputs[0]->dtype, DType::F32);
  EXPECT_EQ(shape_str(g.outputs[0]->shape), "[batch,3]");

  // And it runs: relu(x + w).
  Graph g2 = import(b);
  auto out = run_graph_reference(g2, {{"x", Tensor::from_f32({2, 3}, {-5, 0, 1, 2, -3, -4})}});
  const Tensor& y = out.at("y");
  std::vector<double> want = {0, 2, 4, 3, 0, 0};
  for (int i = 0; i < 6; ++i) EXPECT_EQ(y.get_f(i), want[size_t(i)]) << i;
}

TEST(OnnxImport, MissingDimBecomesAnonymousSymbol) {
  ModelBuilder b(17);
  b.input("x", onnx::TensorProto::FLOAT, {"?", "4"});
  b.node("Relu", {"x"}, {"y"});
  b.output("y", onnx::TensorProto::FLOAT);
  Graph g = import(b);
  EXPECT_FALSE(g.inputs[0]->shape[0].known());
  EXPECT_EQ(g.inputs[0]->shape[1].value, 4);
}

TEST(OnnxImport, TypedFieldsOfTensorProto) {
  onnx::TensorProto t;
  t.set_name("t");
  t.add_dims(3);
  // fp16 bit patterns in int32_data: 1.0, -2.0, 0.5
  t.set_data_type(onnx::TensorProto::FLOAT16);
  for (int v : {0x3c00, 0xc000, 0x3800}) t.add_int32_data(v);
  Tensor h = tensor_from_proto(t, "");
  EXPECT_EQ(h.dtype(), DType::F16);
  EXPECT_EQ(h.get_f(0), 1.0);
  EXPECT_EQ(h.get_f(1), -2.0);
  EXPECT_EQ(h.get_f(2), 0.5);

  t.clear_int32_data();
  t.set_data_type(onnx::TensorProto::BFLOAT16);
  for (int v : {0x3f80, 0xc040, 0x4100}) t.add_int32_data(v);  // 1, -3, 8
  Tensor bf = tensor_from_proto(t, "");
  EXPECT_EQ(bf.get_f(0), 1.0);
  EXPECT_EQ(bf.get_f(1), -3.0);
  EXPECT_EQ(bf.get_f(2), 8.0);

  t.clear_int32_data();
  t.set_data_type(onnx::TensorProto::INT8);
  for (int v : {-128, 5, 127}) t.add_int32_data(v);
  Tensor i8 = tensor_from_proto(t, "");
  EXPECT_EQ(i8.get_i(0), -128);
  EXPECT_EQ(i8.get_i(2), 127);

  t.clear_int32_data();
  t.set_data_type(onnx::TensorProto::UINT8);
  for (int v : {0, 200, 255}) t.add_int32_data(v);
  EXPECT_EQ(tensor_from_proto(t, "").get_i(1), 200);

  t.clear_int32_data();
  t.set_data_type(onnx::TensorProto::BOOL);
  for (int v : {1, 0, 1}) t.add_int32_data(v);
  Tensor bo = tensor_from_proto(t, "");
  EXPECT_EQ(bo.dtype(), DType::Bool);
  EXPECT_EQ(bo.get_i(0), 1);
  EXPECT_EQ(bo.get_i(1), 0);

  t.clear_int32_data();
  t.set_data_type(onnx::TensorProto::INT32);
  for (int v : {-7, 0, 1 << 30}) t.add_int32_data(v);
  EXPECT_EQ(tensor_from_proto(t, "").get_i(2), 1 << 30);

  t.clear_int32_data();
  t.set_data_type(onnx::TensorProto::INT64);
  for (int64_t v : {int64_t(1) << 40, int64_t(-1), int64_t(2)}) t.add_int64_data(v);
  EXPECT_EQ(tensor_from_proto(t, "").get_i(0), int64_t(1) << 40);

  t.clear_int64_data();
  t.set_data_type(onnx::TensorProto::DOUBLE);
  for (double v : {0.1, -1e300, 3.0}) t.add_double_data(v);
  Tensor d = tensor_from_proto(t, "");
  EXPECT_EQ(d.dtype(), DType::F64);
  EXPECT_EQ(d.get_f(0), 0.1);  // exact: stored and read as double
  EXPECT_EQ(d.get_f(1), -1e300);

  t.clear_double_data();
  t.set_data_type(onnx::TensorProto::FLOAT);
  for (float v : {1.5f, -2.25f, 1e-30f}) t.add_float_data(v);
  EXPECT_EQ(tensor_from_proto(t, "").get_f(2), double(1e-30f));

  // Wrong count and unsupported types are clear errors naming the tensor.
  t.add_float_data(1);
  try {
    tensor_from_proto(t, "");
    FAIL() << "expected an error";
  } catch (const GraphError& e) {
    EXPECT_NE(std::string(e.what()).find("'t'"), std::string::npos) << e.what();
  }
  t.set_data_type(onnx::TensorProto::STRING);
  EXPECT_THROW(tensor_from_proto(t, ""), UnsupportedModelError);
}

TEST(OnnxImport, ExternalDataIsMappedAndChecked) {
  TempDir dir;
  // A small tensor at an odd offset (copied) and a big one at a page offset (borrowed).
  std::vector<float> small = {1, 2, 3}, big(4096);
  for (size_t i = 0; i < big.size(); ++i) big[i] = float(i) * 0.5f;
  {
    std::ofstream f(dir.path / "weights.bin", std::ios::binary);
    std::string pad(4, 'x');
    f.write(pad.data(), 4);
    f.write(reinterpret_cast<const char*>(small.data()), 12);
    std::string fill(4096 - 16, '\0');
    f.write(fill.data(), std::streamsize(fill.size()));
    f.write(reinterpret_cast<const char*>(big.data()), std::streamsize(big.size() * 4));
  }
  auto ext = [](onnx::TensorProto* t, const std::string& loc, int64_t off, int64_t len) {
    t->set_data_location(onnx::TensorProto::EXTERNAL);
    auto add = [&](const char* k, const std::string& v) {
      auto* e = t->add_external_data();
      e->set_key(k);
      e->set_value(v);
    };
    add("location", loc);
    add("offset", std::to_string(off));
    if (len >= 0) add("length", std::to_string(len));
  };
  ModelBuilder b(17);
  b.input("x", onnx::TensorProto::FLOAT, {"3"});
  auto* s = b.g().add_initializer();
  s->set_name("s");
  s->set_data_type(onnx::TensorProto::FLOAT);
  s->add_dims(3);
  ext(s, "weights.bin", 4, 12);
  auto* w = b.g().add_initializer();
  w->set_name("w");
  w->set_data_type(onnx::TensorProto::FLOAT);
  w->add_dims(4096);
  ext(w, "weights.bin", 4096, -1);
  b.node("Add", {"x", "s"}, {"y"});
  b.node("Relu", {"w"}, {"z"});
  b.output("y", onnx::TensorProto::FLOAT);
  b.output("z", onnx::TensorProto::FLOAT);
  {
    Graph g = import(b, dir.path.string());
    const Tensor& sv = *g.find_value("s")->constant;
    EXPECT_EQ(sv.get_f(0), 1.0);
    EXPECT_EQ(sv.get_f(2), 3.0);
    const Tensor& wv = *g.find_value("w")->constant;
    EXPECT_EQ(wv.get_f(4095), 4095 * 0.5);
  }
  // Through a file too: external data is found relative to the model's folder.
  {
    std::ofstream f(dir.path / "m.onnx", std::ios::binary);
    f << b.bytes();
  }
  Graph gf = import_onnx_file((dir.path / "m.onnx").string());
  EXPECT_EQ(gf.find_value("w")->constant->get_f(7), 3.5);

  // Data past the end of the file: an error naming the tensor and the file.
  w->mutable_external_data(1)->set_value("8192");
  std::string err = import_error(b, dir.path.string());
  EXPECT_NE(err.find("'w'"), std::string::npos) << err;
  EXPECT_NE(err.find("weights.bin"), std::string::npos) << err;
  // Paths outside the model's folder are refused.
  w->mutable_external_data(1)->set_value("4096");
  w->mutable_external_data(0)->set_value("/etc/passwd");
  EXPECT_NE(import_error(b, dir.path.string()).find("relative"), std::string::npos);
  w->mutable_external_data(0)->set_value("../weights.bin");
  EXPECT_NE(import_error(b, dir.path.string()).find("must not leave"), std::string::npos);
  w->mutable_external_data(0)->set_value("missing.bin");
  EXPECT_NE(import_error(b, dir.path.string()).find("missing.bin"), std::string::npos);
}

TEST(OnnxImport, ConstantNodesBecomeConstantValues) {
  ModelBuilder b(17);
  auto* c1 = b.node("Constant", {}, {"cf"});
  auto* a = c1->add_attribute();
  a->set_name("value_float");
  a->set_type(onnx::AttributeProto::FLOAT);
  a->set_f(2.5f);
  auto* c2 = b.node("Constant", {}, {"ci"});
  attr_ints(c2, "value_ints", {4, 5, 6});
  auto* c3 = b.node("Constant", {}, {"cs"});
  attr_int(c3, "value_int", 7);
  auto* c4 = b.node("Constant", {}, {"cfs"});
  a = c4->add_attribute();
  a->set_name("value_floats");
  a->set_type(onnx::AttributeProto::FLOATS);
  a->add_floats(1);
  a->add_floats(2);
  auto* c5 = b.node("Constant", {}, {"ct"});
  a = c5->add_attribute();
  a->set_name("value");
  a->set_type(onnx::AttributeProto::TENSOR);
  a->mutable_t()->set_data_type(onnx::TensorProto::INT32);
  a->mutable_t()->add_dims(2);
  a->mutable_t()->add_int32_data(-1);
  a->mutable_t()->add_int32_data(9);
  b.node("Relu", {"cfs"}, {"y"});
  b.output("y", onnx::TensorProto::FLOAT);
  b.output("cf", onnx::TensorProto::FLOAT);
  // Unused values are dropped at import: keep the constants alive as outputs.
  b.output("ci", onnx::TensorProto::INT64);
  b.output("cs", onnx::TensorProto::INT64);
  b.output("ct", onnx::TensorProto::INT32);
  Graph g = import(b);
  for (const char* n : {"cf", "ci", "cs", "cfs", "ct"}) ASSERT_NE(g.find_value(n), nullptr) << n;
  EXPECT_EQ(g.nodes.size(), 1u);  // only the Relu: constants are values, not nodes
  Value* cf = g.find_value("cf");
  ASSERT_TRUE(cf && cf->is_constant());
  EXPECT_EQ(cf->constant->dtype(), DType::F32);
  EXPECT_EQ(cf->constant->rank(), 0);
  EXPECT_EQ(cf->constant->get_f(0), 2.5);
  EXPECT_EQ(g.find_value("ci")->constant->dtype(), DType::I64);
  EXPECT_EQ(g.find_value("ci")->constant->get_i(2), 6);
  EXPECT_EQ(g.find_value("cs")->constant->rank(), 0);
  EXPECT_EQ(g.find_value("cs")->constant->get_i(0), 7);
  EXPECT_EQ(g.find_value("cfs")->constant->dims(), Dims({2}));
  EXPECT_EQ(g.find_value("ct")->constant->dtype(), DType::I32);
  EXPECT_EQ(g.find_value("ct")->constant->get_i(1), 9);

  // sparse_value is refused clearly.
  ModelBuilder s(17);
  auto* sc = s.node("Constant", {}, {"c"}, "sparse");
  auto* sa = sc->add_attribute();
  sa->set_name("sparse_value");
  sa->set_type(onnx::AttributeProto::SPARSE_TENSOR);
  s.output("c", onnx::TensorProto::FLOAT);
  try {
    import(s);
    FAIL() << "expected an error";
  } catch (const UnsupportedModelError& e) {
    EXPECT_NE(std::string(e.what()).find("sparse"), std::string::npos) << e.what();
  }
}

TEST(OnnxImport, OpsetRange) {
  for (int opset : {9, 12, 26}) {
    ModelBuilder b(opset);
    b.input("x", onnx::TensorProto::FLOAT, {"2"});
    b.node("Relu", {"x"}, {"y"});
    b.output("y", onnx::TensorProto::FLOAT);
    std::string err = import_error(b);
    EXPECT_NE(err.find("opset " + std::to_string(opset)), std::string::npos) << err;
    EXPECT_NE(err.find("13"), std::string::npos) << err;
  }
  // Opset 22 only added types to Relu's older form (14): accepted.
  ModelBuilder b(22);
  b.input("x", onnx::TensorProto::FLOAT, {"2"});
  b.node("Relu", {"x"}, {"y"});
  b.output("y", onnx::TensorProto::FLOAT);
  EXPECT_EQ(import(b).nodes.size(), 1u);
}

TEST(OnnxImport, NewerOpFormsByMeaning) {
  // Attention-24 changed how is_causal combines with the mask: refused at opset 24 whether
  // or not an Attention schema exists.
  ModelBuilder a(24);
  a.input("q", onnx::TensorProto::FLOAT, {"1", "2", "4", "8"});
  a.node("Attention", {"q", "q", "q"}, {"y"}, "att");
  a.output("y", onnx::TensorProto::FLOAT);
  std::string err = import_error(a);
  EXPECT_NE(err.find("node 'att' (Attention, opset 24): op version 24 differs"), std::string::npos) << err;

  // Cast-24/25 changed only float8/4-bit behaviour (types shardrt lacks): accepted.
  if (!find_schema("Cast")) GTEST_SKIP() << "no Cast schema yet";
  ModelBuilder b(25);
  b.input("x", onnx::TensorProto::FLOAT, {"2"});
  attr_int(b.node("Cast", {"x"}, {"y"}, "c"), "to", onnx::TensorProto::INT64);
  b.output("y", onnx::TensorProto::INT64);
  EXPECT_EQ(import(b).outputs[0]->dtype, DType::I64);
}

TEST(OnnxImport, ConstantSubgraphsFold) {
  for (const char* op : {"ConstantOfShape", "Concat", "Cast", "Shape", "Reshape"})
    if (!find_schema(op)) GTEST_SKIP() << "no " << op << " schema yet";
  // Reshape's target computed from constants and Shape(x), as ONNX's function expansions
  // do: folding makes the output's rank known at import.
  ModelBuilder b(18);
  b.input("x", onnx::TensorProto::FLOAT, {"2", "6"});
  attr_ints(b.node("Constant", {}, {"one"}), "value_ints", {1});
  attr_ints(b.node("Constant", {}, {"six"}), "value_ints", {6});
  attr_int(b.node("Shape", {"x"}, {"xs"}), "end", 1);                // [2]
  b.node("ConstantOfShape", {"one"}, {"zero"});                       // [0.0f]
  attr_int(b.node("Cast", {"zero"}, {"zeroi"}), "to", onnx::TensorProto::INT64);
  b.node("Add", {"zeroi", "one"}, {"k"});                             // [1]
  attr_int(b.node("Concat", {"xs", "six", "k"}, {"target"}), "axis", 0);  // [2, 6, 1]
  b.node("Reshape", {"x", "target"}, {"y"}, "rs");
  b.output("y", onnx::TensorProto::FLOAT);
  Graph g = import(b);
  ASSERT_EQ(g.nodes.size(), 1u) << g.print();  // only the Reshape is left
  EXPECT_EQ(g.nodes[0]->name, "rs");
  ASSERT_TRUE(g.nodes[0]->inputs[1]->is_constant());
  EXPECT_EQ(g.nodes[0]->inputs[1]->constant->to_i64_vector(), std::vector<int64_t>({2, 6, 1}));
  EXPECT_EQ(shape_str(g.outputs[0]->shape), "[2,6,1]");
}

TEST(OnnxImport, AllProblemsAreListedAtOnce) {
  ModelBuilder b(18);
  b.input("x", onnx::TensorProto::FLOAT, {"2"});
  b.node("If", {"x"}, {"a"}, "attn/If_3");
  b.node("NoSuchOp", {"a"}, {"b"}, "mystery");
  attr_int(b.node("Relu", {"b"}, {"c"}, "r"), "bogus", 1);
  auto* ms = b.node("FusedMatMul", {"c", "c"}, {"y"}, "ms");
  ms->set_domain("com.microsoft");
  b.output("y", onnx::TensorProto::FLOAT);
  try {
    import(b);
    FAIL() << "expected an error";
  } catch (const UnsupportedModelError& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("node 'attn/If_3' (If, opset 18): op is not supported"), std::string::npos) << m;
    EXPECT_NE(m.find("node 'mystery' (NoSuchOp, opset 18)"), std::string::npos) << m;
    EXPECT_NE(m.find("node 'r' (Relu, opset 18): attribute 'bogus' is not supported"), std::string::npos) << m;
    EXPECT_NE(m.find("domain 'com.microsoft'"), std::string::npos) << m;
    EXPECT_EQ(e.problems.size(), 4u);
  }
}

TEST(OnnxImport, ReduceAxesAttributeBecomesInput) {
  if (!find_schema("ReduceMax")) GTEST_SKIP() << "no ReduceMax schema yet";
  ModelBuilder b(13);
  b.input("x", onnx::TensorProto::FLOAT, {"2", "3"});
  auto* n = b.node("ReduceMax", {"x"}, {"y"}, "rm");
  attr_ints(n, "axes", {1});
  attr_int(n, "keepdims", 0);
  b.output("y", onnx::TensorProto::FLOAT);
  Graph g = import(b);
  const Node* rm = find_node(g, "rm");
  ASSERT_NE(rm, nullptr);
  EXPECT_FALSE(rm->has_attr("axes"));
  ASSERT_EQ(rm->inputs.size(), 2u);
  ASSERT_TRUE(rm->inputs[1] && rm->inputs[1]->is_constant());
  EXPECT_EQ(rm->inputs[1]->constant->to_i64_vector(), std::vector<int64_t>({1}));
  EXPECT_EQ(shape_str(g.outputs[0]->shape), "[2]");
  Graph g2 = import(b);
  auto out = run_graph_reference(g2, {{"x", Tensor::from_f32({2, 3}, {1, 5, 2, -1, -4, -2})}});
  EXPECT_EQ(out.at("y").get_f(0), 5.0);
  EXPECT_EQ(out.at("y").get_f(1), -1.0);
}

TEST(OnnxImport, SplitBeforeOpset18GetsNumOutputs) {
  if (!find_schema("Split")) GTEST_SKIP() << "no Split schema yet";
  ModelBuilder b(13);
  b.input("x", onnx::TensorProto::FLOAT, {"6"});
  b.node("Split", {"x"}, {"a", "b", "c"}, "sp");
  b.output("a", onnx::TensorProto::FLOAT);
  b.output("c", onnx::TensorProto::FLOAT);
  Graph g = import(b);
  const Node* sp = find_node(g, "sp");
  ASSERT_NE(sp, nullptr);
  EXPECT_EQ(sp->attr_i("num_outputs", 0), 3);
  EXPECT_EQ(shape_str(g.outputs[1]->shape), "[2]");
}

TEST(OnnxImport, CorruptAndTruncatedFiles) {
  TempDir dir;
  ModelBuilder b(17);
  b.input("x", onnx::TensorProto::FLOAT, {"2"});
  b.init_f32("w", {256}, std::vector<float>(256, 1.0f));
  b.node("Relu", {"x"}, {"y"});
  b.output("y", onnx::TensorProto::FLOAT);
  std::string bytes = b.bytes();
  auto write = [&](const std::string& name, const std::string& data) {
    std::ofstream f(dir.path / name, std::ios::binary);
    f.write(data.data(), std::streamsize(data.size()));
    return (dir.path / name).string();
  };
  for (size_t cut : {size_t(1), size_t(7), bytes.size() / 2, bytes.size() - 3}) {
    std::string p = write("cut.onnx", bytes.substr(0, cut));
    try {
      import_onnx_file(p);
      ADD_FAILURE() << "truncated at " << cut << " was accepted";
    } catch (const GraphError& e) {
      EXPECT_NE(std::string(e.what()).find("cut.onnx"), std::string::npos) << e.what();
    }
  }
  std::string junk(1000, '\xff');
  std::string p = write("junk.onnx", junk);
  EXPECT_THROW(import_onnx_file(p), GraphError);
  EXPECT_THROW(import_onnx_file(write("empty.onnx", "")), GraphError);
  EXPECT_THROW(import_onnx_file((dir.path / "absent.onnx").string()), GraphError);
}

TEST(OnnxImport, DeclaredOutputTypeMustMatch) {
  ModelBuilder b(17);
  b.input("x", onnx::TensorProto::FLOAT, {"2"});
  b.node("Relu", {"x"}, {"y"});
  b.output("y", onnx::TensorProto::INT64);
  std::string err = import_error(b);
  EXPECT_NE(err.find("graph output 'y' is declared int64"), std::string::npos) << err;
}

TEST(OnnxImport, UndefinedInputsAndUnsortedNodes) {
  ModelBuilder b(17);
  b.input("x", onnx::TensorProto::FLOAT, {"2"});
  // Listed out of order: the importer sorts.
  b.node("Relu", {"a"}, {"y"}, "second");
  b.node("Relu", {"x"}, {"a"}, "first");
  b.output("y", onnx::TensorProto::FLOAT);
  Graph g = import(b);
  ASSERT_EQ(g.nodes.size(), 2u);
  EXPECT_EQ(g.nodes[0]->name, "first");

  ModelBuilder u(17);
  u.input("x", onnx::TensorProto::FLOAT, {"2"});
  u.node("Relu", {"nowhere"}, {"y"}, "r");
  u.output("y", onnx::TensorProto::FLOAT);
  std::string err = import_error(u);
  EXPECT_NE(err.find("'nowhere'"), std::string::npos) << err;
}

TEST(OnnxImport, UnsupportedInputTypesAreRefused) {
  ModelBuilder b(17);
  b.input("s", onnx::TensorProto::STRING, {"2"});
  b.node("Identity", {"s"}, {"y"});
  b.output("y", onnx::TensorProto::STRING);
  try {
    import(b);
    FAIL() << "expected an error";
  } catch (const UnsupportedModelError& e) {
    EXPECT_NE(std::string(e.what()).find("string"), std::string::npos) << e.what();
  }
}
