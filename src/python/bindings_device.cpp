// CUDA arrays through DLPack: inputs borrowed from any producer (torch CUDA tensors, CuPy, ...)
// without a copy, with the DLPack stream protocol (the producer orders its work before the
// caller's stream); outputs exposed as `shardrt._C.DeviceTensor` (device memory shardrt
// allocated) whose __dlpack__ orders the consumer's stream after the copies.
#include <string>

#include "py_dlpack.h"

namespace shardrt::py {

namespace {

// shardrt-owned device memory and the stream (DLPack encoding) its contents are ready on.
struct PyDeviceTensor {
  DeviceTensor t;
  int64_t ready_stream = 1;
};

bool is_device_type(int type) { return type == kDLCUDA || type == kDLCUDAManaged; }

}  // namespace

bool is_cuda_array(const pyb::handle& obj) {
  if (pyb::isinstance<PyDeviceTensor>(obj)) return true;
  if (!pyb::hasattr(obj, "__dlpack__")) return false;
  return is_device_type(dlpack_device_of(obj).first);
}

int64_t stream_from_py(const pyb::handle& stream) {
  if (stream.is_none()) return 1;
  pyb::object s = pyb::reinterpret_borrow<pyb::object>(stream);
  if (!pyb::isinstance<pyb::int_>(s) && pyb::hasattr(s, "cuda_stream")) s = s.attr("cuda_stream");
  if (!pyb::isinstance<pyb::int_>(s))
    throw pyb::type_error("shardrt: stream must be None, an int (a cudaStream_t, e.g. torch.cuda.current_stream()"
                          ".cuda_stream) or a torch.cuda.Stream; got " +
                          std::string(pyb::str(pyb::type::handle_of(stream))));
  int64_t v = s.cast<int64_t>();
  if (v < 0) throw pyb::value_error("shardrt: stream " + std::to_string(v) + " is not a CUDA stream");
  return v == 0 ? 1 : v;
}

DeviceTensor borrow_device_tensor(const pyb::handle& obj, const std::string& what, int64_t stream) {
  if (pyb::isinstance<PyDeviceTensor>(obj)) {
    auto& d = obj.cast<PyDeviceTensor&>();
    // Ours: make `stream` wait for the copies that filled it, as __dlpack__ would.
    if (d.ready_stream != stream) {
      pyb::gil_scoped_release nogil;
      cuda_stream_wait(stream_ptr(stream), stream_ptr(d.ready_stream));
    }
    return d.t;
  }
  auto dev = dlpack_device_of(obj);
  if (!is_device_type(dev.first))
    throw pyb::value_error("shardrt: " + what + " is not in CUDA memory (DLPack device type " +
                           std::to_string(dev.first) + ")");
  // The stream protocol: the producer makes its pending work on the array visible to
  // `stream` (torch records an event on its current stream and makes `stream` wait).
  std::shared_ptr<void> owner;
  DLManagedTensor* m = consume_dltensor(obj.attr("__dlpack__")(pyb::arg("stream") = stream), owner);
  const DLTensor& t = m->dl_tensor;
  if (!is_device_type(t.device.device_type))
    throw pyb::value_error("shardrt: " + what + ": its __dlpack_device__ says CUDA but its capsule holds device type " +
                           std::to_string(int(t.device.device_type)));
  DType dt = dtype_from_dl(t.dtype, what);
  if (!is_contiguous(t.shape, t.strides, t.ndim, 1))
    throw pyb::value_error("shardrt: " + what + " is not contiguous; pass tensor.contiguous()");
  DeviceTensor r;
  r.dtype = dt;
  r.dims.assign(t.shape, t.shape + t.ndim);
  r.data = static_cast<char*>(t.data) + t.byte_offset;
  r.device = t.device.device_type == kDLCUDA ? t.device.device_id : -1;  // managed memory: any GPU
  r.owner = std::move(owner);
  return r;
}

pyb::object wrap_device_tensor(DeviceTensor t, int64_t stream) {
  return pyb::cast(PyDeviceTensor{std::move(t), stream});
}

void init_device(pyb::module_& m) {
  pyb::class_<PyDeviceTensor>(
      m, "DeviceTensor",
      "A tensor in GPU memory that shardrt allocated (ExecutionContext.run's outputs for CUDA inputs when no "
      "output buffers are given). torch.from_dlpack(t) / cupy.from_dlpack(t) share its memory; the memory is "
      "freed when the last of them goes.")
      .def(
          "__dlpack__",
          [](const PyDeviceTensor& d, const pyb::object& stream, const pyb::object& max_version,
             const pyb::object& dl_device, const pyb::object& copy) {
            if (!copy.is_none() && copy.cast<bool>())
              throw pyb::buffer_error("shardrt.DeviceTensor: __dlpack__(copy=True) is not supported; "
                                      "copy after the import instead");
            if (!dl_device.is_none()) {
              auto want = dl_device.cast<std::pair<int, int>>();
              if (want.first != kDLCUDA || want.second != d.t.device)
                throw pyb::buffer_error("shardrt.DeviceTensor: it lives on CUDA device " + std::to_string(d.t.device) +
                                        "; exporting to another device is not supported");
            }
            // DLPack: None is the legacy default stream, -1 asks for no synchronisation.
            int64_t s = stream.is_none() ? 1 : stream.cast<int64_t>();
            if (s != -1 && s != d.ready_stream) {
              if (s == 0) throw pyb::value_error("shardrt.DeviceTensor: stream 0 is ambiguous in DLPack; pass 1 or 2");
              pyb::gil_scoped_release nogil;
              cuda_stream_wait(stream_ptr(s), stream_ptr(d.ready_stream));
            }
            bool versioned = !max_version.is_none() && max_version.cast<std::pair<int, int>>().first >= 1;
            auto keep = std::make_shared<DeviceTensor>(d.t);
            return export_dlpack(keep->data, DLDevice{kDLCUDA, d.t.device}, keep->dtype, keep->dims, keep, versioned,
                                 false);
          },
          pyb::kw_only(), pyb::arg("stream") = pyb::none(), pyb::arg("max_version") = pyb::none(),
          pyb::arg("dl_device") = pyb::none(), pyb::arg("copy") = pyb::none())
      .def("__dlpack_device__", [](const PyDeviceTensor& d) { return pyb::make_tuple(int(kDLCUDA), d.t.device); })
      .def_property_readonly("shape", [](const PyDeviceTensor& d) { return pyb::tuple(pyb::cast(d.t.dims)); })
      .def_property_readonly("dtype", [](const PyDeviceTensor& d) { return py_dtype_name(d.t.dtype); })
      .def_property_readonly("device", [](const PyDeviceTensor& d) { return d.t.device; })
      .def_property_readonly("nbytes", [](const PyDeviceTensor& d) { return d.t.nbytes(); })
      .def_property_readonly("data_ptr", [](const PyDeviceTensor& d) { return reinterpret_cast<uintptr_t>(d.t.data); })
      .def("__len__", [](const PyDeviceTensor& d) { return d.t.dims.empty() ? 0 : d.t.dims[0]; })
      .def("__repr__", [](const PyDeviceTensor& d) {
        return "DeviceTensor(" + std::string(py_dtype_name(d.t.dtype)) + dims_str(d.t.dims) + ", cuda:" +
               std::to_string(d.t.device) + ")";
      });

  m.def(
      "cuda_stream_wait",
      [](const pyb::object& waiting, const pyb::object& stream) {
        int64_t w = stream_from_py(waiting), s = stream_from_py(stream);
        pyb::gil_scoped_release nogil;
        cuda_stream_wait(stream_ptr(w), stream_ptr(s));
      },
      pyb::arg("waiting"), pyb::arg("stream"),
      "Makes CUDA stream `waiting` wait (on the GPU) for the work enqueued so far on `stream`.");
}

}  // namespace shardrt::py
