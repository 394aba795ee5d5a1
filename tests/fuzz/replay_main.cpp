// A plain driver for the fuzz targets outside libFuzzer: feeds each file named on the
// command line (or every file of a folder named there) to LLVMFuzzerTestOneInput once, in
// name order. Built with each target's .cpp in the normal build so that ctest — and the
// AddressSanitizer + UndefinedBehaviorSanitizer build — replays every fixed finding kept in
// tests/fuzz/regressions/<target>/. A finding that comes back shows as an escaping
// exception (std::terminate), a sanitizer report or a crash; a clean replay exits 0.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

int main(int argc, char** argv) {
  namespace fs = std::filesystem;
  std::vector<fs::path> files;
  for (int i = 1; i < argc; ++i) {
    fs::path p(argv[i]);
    if (fs::is_directory(p)) {
      std::vector<fs::path> in_dir;
      for (auto& e : fs::directory_iterator(p))
        if (e.is_regular_file()) in_dir.push_back(e.path());
      std::sort(in_dir.begin(), in_dir.end());
      files.insert(files.end(), in_dir.begin(), in_dir.end());
    } else {
      files.push_back(p);
    }
  }
  if (files.empty()) {
    std::fprintf(stderr, "usage: %s FILE_OR_FOLDER...\n", argv[0]);
    return 2;
  }
  for (auto& f : files) {
    std::ifstream in(f, std::ios::binary);
    if (!in) {
      std::fprintf(stderr, "cannot read %s\n", f.string().c_str());
      return 2;
    }
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::printf("replay %s (%zu bytes)\n", f.string().c_str(), bytes.size());
    std::fflush(stdout);
    // libFuzzer hands the target a buffer of exactly the input's size; a copy of that
    // size lets AddressSanitizer catch reads one past the end as it would there.
    std::vector<uint8_t> buf(bytes.begin(), bytes.end());
    LLVMFuzzerTestOneInput(buf.empty() ? nullptr : buf.data(), buf.size());
  }
  std::printf("replayed %zu input(s): no finding\n", files.size());
  return 0;
}
