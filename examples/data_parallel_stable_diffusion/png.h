// A minimal PNG writer: 8-bit RGB, no compression (zlib "stored" deflate blocks), so the
// example needs no zlib. Files are ~3 bytes per pixel.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace sd_example {

// Writes `rgb` (height rows of width × 3 bytes, top row first) to `path`; throws
// shardrt::Error when the file cannot be written.
void write_png_rgb(const std::string& path, int width, int height, const std::vector<uint8_t>& rgb);

}  // namespace sd_example
