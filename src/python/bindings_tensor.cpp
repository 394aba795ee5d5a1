// dtype names and the DLPack bridge: Python arrays in (borrowed, zero-copy) and shardrt
// tensors out (HostTensor: __dlpack__ over the tensor's own buffer).
#include <cstring>
#include <stdexcept>

#include "py_dlpack.h"
#include "shardrt/engine.h"

namespace shardrt::py {

const char* py_dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "float32";
    case DType::F16: return "float16";
    case DType::BF16: return "bfloat16";
    case DType::F64: return "float64";
    case DType::I64: return "int64";
    case DType::I32: return "int32";
    case DType::I8: return "int8";
    case DType::U8: return "uint8";
    case DType::Bool: return "bool";
    case DType::Undefined: break;
  }
  return "undefined";
}

DType dtype_from_py(const pyb::handle& h) {
  if (pyb::isinstance<DType>(h)) return h.cast<DType>();
  std::string s = pyb::str(h);
  // torch.float32 prints "torch.float32", numpy's dtype "float32".
  if (auto dot = s.rfind('.'); dot != std::string::npos) s = s.substr(dot + 1);
  static const std::pair<const char*, DType> names[] = {
      {"float32", DType::F32}, {"float", DType::F32},    {"fp32", DType::F32},    {"float16", DType::F16},
      {"half", DType::F16},    {"fp16", DType::F16},     {"bfloat16", DType::BF16}, {"bf16", DType::BF16},
      {"float64", DType::F64}, {"double", DType::F64},   {"fp64", DType::F64},    {"int64", DType::I64},
      {"long", DType::I64},    {"int32", DType::I32},    {"int", DType::I32},     {"int8", DType::I8},
      {"uint8", DType::U8},    {"bool", DType::Bool},    {"bool_", DType::Bool}};
  for (auto& [n, t] : names)
    if (s == n) return t;
  throw pyb::type_error("shardrt: unsupported dtype '" + std::string(pyb::str(h)) +
                        "' (float32, float16, bfloat16, float64, int64, int32, int8, uint8, bool)");
}

DType dtype_from_dl(DLDataType t, const std::string& what) {
  if (t.lanes == 1) {
    if (t.code == kDLFloat && t.bits == 32) return DType::F32;
    if (t.code == kDLFloat && t.bits == 16) return DType::F16;
    if (t.code == kDLFloat && t.bits == 64) return DType::F64;
    if (t.code == kDLBfloat && t.bits == 16) return DType::BF16;
    if (t.code == kDLInt && t.bits == 64) return DType::I64;
    if (t.code == kDLInt && t.bits == 32) return DType::I32;
    if (t.code == kDLInt && t.bits == 8) return DType::I8;
    if (t.code == kDLUInt && t.bits == 8) return DType::U8;
    if (t.code == kDLBool && t.bits == 8) return DType::Bool;
  }
  throw pyb::type_error("shardrt: " + what + ": unsupported DLPack dtype (code " + std::to_string(t.code) + ", " +
                        std::to_string(t.bits) + " bits, " + std::to_string(t.lanes) + " lanes)");
}

DLDataType dl_from_dtype(DType t) {
  switch (t) {
    case DType::F32: return {kDLFloat, 32, 1};
    case DType::F16: return {kDLFloat, 16, 1};
    case DType::F64: return {kDLFloat, 64, 1};
    case DType::BF16: return {kDLBfloat, 16, 1};
    case DType::I64: return {kDLInt, 64, 1};
    case DType::I32: return {kDLInt, 32, 1};
    case DType::I8: return {kDLInt, 8, 1};
    case DType::U8: return {kDLUInt, 8, 1};
    case DType::Bool: return {kDLBool, 8, 1};
    case DType::Undefined: break;
  }
  throw Error("shardrt: an undefined tensor has no DLPack dtype");
}

bool is_contiguous(const int64_t* shape, const int64_t* strides, int ndim, int64_t elem_stride_unit) {
  if (!strides) return true;
  int64_t expect = elem_stride_unit;
  for (int i = ndim - 1; i >= 0; --i) {
    if (shape[i] != 1 && strides[i] != expect) return false;
    expect *= shape[i];
  }
  return true;
}

std::pair<int, int> dlpack_device_of(const pyb::handle& obj) {
  if (!pyb::hasattr(obj, "__dlpack_device__")) return {kDLCPU, 0};
  return obj.attr("__dlpack_device__")().cast<std::pair<int, int>>();
}

namespace {

Tensor borrow_dlpack(const pyb::handle& obj, const std::string& what) {
  if (pyb::hasattr(obj, "__dlpack_device__")) {
    auto dev = obj.attr("__dlpack_device__")().cast<std::pair<int, int>>();
    if (dev.first != kDLCPU && dev.first != kDLCUDAHost)
      throw pyb::value_error("shardrt: " + what + " is not in host memory (DLPack device type " +
                             std::to_string(dev.first) + "); copy it to the CPU first (tensor.cpu())");
  }
  std::shared_ptr<void> owner;
  DLManagedTensor* m = consume_dltensor(obj.attr("__dlpack__")(), owner);
  const DLTensor& t = m->dl_tensor;
  DType dt = dtype_from_dl(t.dtype, what);
  if (!is_contiguous(t.shape, t.strides, t.ndim, 1))
    throw pyb::value_error("shardrt: " + what + " is not contiguous; pass tensor.contiguous()");
  Dims dims(t.shape, t.shape + t.ndim);
  void* data = static_cast<char*>(t.data) + t.byte_offset;
  return Tensor(dt, std::move(dims), data, std::move(owner));
}

DType dtype_from_format(const std::string& f, size_t itemsize, const std::string& what) {
  char c = f.empty() ? '?' : f.back();  // "<f" and "=f" as well as "f"
  switch (c) {
    case 'f': return DType::F32;
    case 'd': return DType::F64;
    case 'e': return DType::F16;
    case 'b': return DType::I8;
    case 'B': return DType::U8;
    case '?': return DType::Bool;
    case 'i': case 'l': case 'q':
      if (itemsize == 8) return DType::I64;
      if (itemsize == 4) return DType::I32;
      break;
    default: break;
  }
  throw pyb::type_error("shardrt: " + what + ": unsupported buffer format '" + f + "'");
}

Tensor borrow_buffer(const pyb::handle& obj, const std::string& what) {
  pyb::buffer buf = pyb::reinterpret_borrow<pyb::buffer>(obj);
  pyb::buffer_info info = buf.request();
  DType dt = dtype_from_format(info.format, size_t(info.itemsize), what);
  if (!is_contiguous(info.shape.data(), info.strides.data(), int(info.ndim), info.itemsize))
    throw pyb::value_error("shardrt: " + what + " is not contiguous; pass a contiguous copy");
  auto* keep = new pyb::object(pyb::reinterpret_borrow<pyb::object>(obj));
  std::shared_ptr<void> owner(keep, [](void* p) {
    if (!Py_IsInitialized()) return;
    pyb::gil_scoped_acquire gil;
    delete static_cast<pyb::object*>(p);
  });
  return Tensor(dt, Dims(info.shape.begin(), info.shape.end()), info.ptr, std::move(owner));
}

}  // namespace

// What an exported capsule owns: a reference to the memory's owner, and the shape.
struct ExportCtx {
  std::shared_ptr<void> keep;
  std::vector<int64_t> shape;
};

namespace {

void versioned_capsule_destructor(PyObject* cap) {
  if (PyCapsule_IsValid(cap, "dltensor_versioned")) {
    auto* m = static_cast<DLManagedTensorVersioned*>(PyCapsule_GetPointer(cap, "dltensor_versioned"));
    if (m && m->deleter) m->deleter(m);
  }
}

void capsule_destructor(PyObject* cap) {
  // A capsule nobody consumed still owns its DLManagedTensor.
  if (PyCapsule_IsValid(cap, "dltensor")) {
    auto* m = static_cast<DLManagedTensor*>(PyCapsule_GetPointer(cap, "dltensor"));
    if (m && m->deleter) m->deleter(m);
  }
}

// The DLTensor of an exported tensor: contiguous, its shape kept by `ctx`.
void fill_dl_tensor(DLTensor& d, ExportCtx& ctx, void* data, DLDevice dev, DType dt) {
  d.data = data;
  d.device = dev;
  d.ndim = int32_t(ctx.shape.size());
  d.dtype = dl_from_dtype(dt);
  d.shape = ctx.shape.data();
  d.strides = nullptr;
  d.byte_offset = 0;
}

// Fills a managed tensor (either DLPack kind) and wraps it in a capsule named `name`; on
// failure the tensor and `ctx` are freed.
template <class Managed>
PyObject* wrap_capsule(Managed* m, ExportCtx* ctx, void* data, DLDevice dev, DType dt, const char* name,
                       PyCapsule_Destructor destructor) {
  m->manager_ctx = ctx;
  m->deleter = [](Managed* self) {
    delete static_cast<ExportCtx*>(self->manager_ctx);
    delete self;
  };
  try {
    fill_dl_tensor(m->dl_tensor, *ctx, data, dev, dt);
  } catch (...) {
    m->deleter(m);
    throw;
  }
  PyObject* cap = PyCapsule_New(m, name, destructor);
  if (!cap) {
    m->deleter(m);
    throw pyb::error_already_set();
  }
  return cap;
}

}  // namespace

DLManagedTensor* consume_dltensor(const pyb::object& cap, std::shared_ptr<void>& owner) {
  auto* m = static_cast<DLManagedTensor*>(PyCapsule_GetPointer(cap.ptr(), "dltensor"));
  if (!m) throw pyb::error_already_set();
  // From here on the tensor is ours: the capsule must not free it again.
  PyCapsule_SetName(cap.ptr(), "used_dltensor");
  owner = std::shared_ptr<void>(m, [](void* p) {
    auto* mt = static_cast<DLManagedTensor*>(p);
    if (!mt->deleter) return;
    if (!Py_IsInitialized()) return;  // at exit: the producer's memory goes with the process
    pyb::gil_scoped_acquire gil;
    mt->deleter(mt);
  });
  return m;
}

pyb::capsule export_dlpack(void* data, DLDevice dev, DType dt, const Dims& dims, std::shared_ptr<void> keep,
                           bool versioned, bool is_copy) {
  auto* ctx = new ExportCtx{std::move(keep), dims};
  if (!numel(dims)) data = nullptr;
  PyObject* cap = nullptr;
  if (versioned) {
    // DLPack 1.0: writable (numpy honours the flag), for consumers that ask with max_version.
    auto* m = new DLManagedTensorVersioned{};
    m->version = {1, 0};
    m->flags = is_copy ? 2u : 0u;
    cap = wrap_capsule(m, ctx, data, dev, dt, "dltensor_versioned", versioned_capsule_destructor);
  } else {
    cap = wrap_capsule(new DLManagedTensor{}, ctx, data, dev, dt, "dltensor", capsule_destructor);
  }
  return pyb::reinterpret_steal<pyb::capsule>(cap);
}

namespace {

// The output type: a host tensor the caller can hand to torch.from_dlpack / np.from_dlpack.
struct HostTensor {
  Tensor t;
};

}  // namespace

Tensor borrow_tensor(const pyb::handle& obj, const std::string& what) {
  if (pyb::isinstance<HostTensor>(obj)) return obj.cast<HostTensor&>().t;
  if (pyb::hasattr(obj, "__dlpack__")) return borrow_dlpack(obj, what);
  if (PyObject_CheckBuffer(obj.ptr())) return borrow_buffer(obj, what);
  throw pyb::type_error("shardrt: " + what + " must be an array with __dlpack__ or the buffer protocol (got " +
                        std::string(pyb::str(pyb::type::handle_of(obj))) + ")");
}

pyb::object wrap_tensor(Tensor t) { return pyb::cast(HostTensor{std::move(t)}); }

void init_tensor(pyb::module_& m) {
  pyb::enum_<DType>(m, "DType")
      .value("float32", DType::F32)
      .value("float16", DType::F16)
      .value("bfloat16", DType::BF16)
      .value("float64", DType::F64)
      .value("int64", DType::I64)
      .value("int32", DType::I32)
      .value("int8", DType::I8)
      .value("uint8", DType::U8)
      .value("bool", DType::Bool);

  pyb::class_<HostTensor>(m, "HostTensor",
                          "A shardrt host tensor. torch.from_dlpack(t) / numpy.from_dlpack(t) share its memory.")
      .def(pyb::init([](const pyb::handle& a) { return HostTensor{borrow_tensor(a, "array")}; }), pyb::arg("array"),
           "Wraps (without copying) an array with __dlpack__ or the buffer protocol.")
      .def(
          "__dlpack__",
          [](const HostTensor& h, const pyb::object& stream, const pyb::object& max_version,
             const pyb::object& dl_device, const pyb::object& copy) {
            bool do_copy = !copy.is_none() && copy.cast<bool>();
            auto t = std::make_shared<Tensor>(do_copy ? h.t.clone() : h.t);
            bool versioned = !max_version.is_none() && max_version.cast<std::pair<int, int>>().first >= 1;
            return export_dlpack(t->raw(), DLDevice{kDLCPU, 0}, t->dtype(), t->dims(), t, versioned, do_copy);
          },
          pyb::kw_only(), pyb::arg("stream") = pyb::none(), pyb::arg("max_version") = pyb::none(),
          pyb::arg("dl_device") = pyb::none(), pyb::arg("copy") = pyb::none())
      .def("__dlpack_device__", [](const HostTensor&) { return pyb::make_tuple(int(kDLCPU), 0); })
      .def_property_readonly("shape", [](const HostTensor& h) { return pyb::tuple(pyb::cast(h.t.dims())); })
      .def_property_readonly("dtype", [](const HostTensor& h) { return py_dtype_name(h.t.dtype()); })
      .def_property_readonly("nbytes", [](const HostTensor& h) { return h.t.nbytes(); })
      .def_property_readonly("data_ptr", [](const HostTensor& h) { return reinterpret_cast<uintptr_t>(h.t.raw()); })
      .def("numpy", [](const HostTensor& h) {
        // bfloat16 has no numpy dtype: numpy refuses it, as it would any bf16 DLPack tensor.
        return pyb::module_::import("numpy").attr("from_dlpack")(pyb::cast(h));
      })
      .def("__len__", [](const HostTensor& h) { return h.t.rank() ? h.t.dim(0) : 0; })
      .def("__repr__", [](const HostTensor& h) {
        return "HostTensor(" + std::string(py_dtype_name(h.t.dtype())) + dims_str(h.t.dims()) + ")";
      });
}

}  // namespace shardrt::py
