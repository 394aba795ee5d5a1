// Unicode helpers for tokenizers: UTF-8 decoding and the character classes that GPT-2's
// pre-tokenization regex uses (\p{L}, \p{N}, \s).
#pragma once
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace shardrt::text {

struct CodeRange {
  char32_t first, last;
};

bool is_letter(char32_t c);  // general category L* (unicode_tables.cpp, generated)
bool is_number(char32_t c);  // general category N*
// The White_Space property (what \s matches in the regex engines tokenizers use).
bool is_space(char32_t c);
// False for a character that NFC normalization may change, reorder or combine with the one
// before it (unicode_tables.cpp says which): a text of inert characters is its own NFC.
bool nfc_inert(char32_t c);

// One decoded character: its code point and its bytes in the input. Invalid UTF-8 bytes
// decode one at a time as U+FFFD (they still keep their own byte, so nothing is lost).
struct Utf8Char {
  char32_t cp;
  std::string_view bytes;
};
std::vector<Utf8Char> utf8_chars(std::string_view s);
void append_utf8(std::string& out, char32_t cp);

}  // namespace shardrt::text
