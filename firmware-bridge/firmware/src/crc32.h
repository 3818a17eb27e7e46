// CRC-32 (IEEE 802.3, reflected, poly 0xEDB88320): the check of flash records.
#pragma once

#include <stddef.h>
#include <stdint.h>

namespace posko {

// Continues a CRC: start with crc = 0, feed the chunks in order.
uint32_t crc32Update(uint32_t crc, const void* data, size_t n);

inline uint32_t crc32(const void* data, size_t n) { return crc32Update(0, data, n); }

}  // namespace posko
