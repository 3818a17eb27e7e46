// A RAM NOR flash for the host tests, with power-cut simulation.
//
// Semantics: erase sets a sector to 0xFF; write ANDs (bits only go 1 -> 0) and counts any
// attempt to raise a bit (a firmware bug on real flash). A power cut is armed as a budget: each
// byte written costs 1, each erase costs 1. When the budget runs out the operation in progress is
// torn and the "device" is dead (every later call fails) until powerOn():
//   - a torn write: the bytes before the cut are programmed, the byte at the cut partly (only the
//     bits of `tornMask` among those it should clear), the rest untouched
//   - a torn erase: per `eraseTear`, nothing / a prefix / a suffix / a random subset of the
//     sector's bytes are back to 0xFF, the rest keep their old value
// The memory can also be saved to / loaded from a file (a "file-backed" flash).
#pragma once

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <string>
#include <vector>

#include "../src/ring_buffer.h"

namespace posko_test {

class FakeFlash : public posko::FlashStore {
 public:
  enum class EraseTear { Nothing, Prefix, Suffix, Random };

  FakeFlash(uint32_t sectorSize, uint32_t sectors)
      : ss_(sectorSize), n_(sectors), mem_(static_cast<size_t>(sectorSize) * sectors, 0xFF), erases_(sectors, 0) {}

  bool read(uint32_t addr, void* buf, size_t n) override {
    if (dead_ || !inRange(addr, n)) return false;
    memcpy(buf, &mem_[addr], n);
    return true;
  }

  bool write(uint32_t addr, const void* buf, size_t n) override {
    if (dead_ || !inRange(addr, n)) return false;
    if (failWrites_ > 0) {
      --failWrites_;
      return false;
    }
    const uint8_t* src = static_cast<const uint8_t*>(buf);
    for (size_t i = 0; i < n; ++i) {
      uint8_t& cell = mem_[addr + i];
      const uint8_t v = src[i];
      if (budget_ == 0) {
        cell = static_cast<uint8_t>(cell & ~(~v & tornMask_));
        dead_ = true;
        return false;
      }
      if ((v & ~cell) != 0) ++violations_;
      cell &= v;
      ++bytesWritten_;
      ++units_;
      if (budget_ > 0) --budget_;
    }
    return true;
  }

  bool erase(uint32_t sector) override {
    if (dead_ || sector >= n_) return false;
    uint8_t* p = &mem_[static_cast<size_t>(sector) * ss_];
    if (budget_ == 0) {
      switch (tear_) {
        case EraseTear::Nothing: break;
        case EraseTear::Prefix: memset(p, 0xFF, tearParam_ % (ss_ + 1)); break;
        case EraseTear::Suffix: {
          const uint32_t k = tearParam_ % (ss_ + 1);
          memset(p + ss_ - k, 0xFF, k);
          break;
        }
        case EraseTear::Random: {
          uint32_t x = tearParam_ | 1u;
          for (uint32_t i = 0; i < ss_; ++i) {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            if (x & 1u) p[i] = 0xFF;
          }
          break;
        }
      }
      dead_ = true;
      return false;
    }
    if (budget_ > 0) --budget_;
    ++units_;
    memset(p, 0xFF, ss_);
    ++erases_[sector];
    return true;
  }

  uint32_t sectorSize() const override { return ss_; }
  uint32_t sectorCount() const override { return n_; }

  // Power cut after `budget` more units (bytes written / erases); -1: never.
  void armPowerCut(long budget, uint8_t tornMask = 0x00, EraseTear tear = EraseTear::Nothing, uint32_t tearParam = 0) {
    budget_ = budget;
    tornMask_ = tornMask;
    tear_ = tear;
    tearParam_ = tearParam;
  }
  void powerOn() {
    dead_ = false;
    budget_ = -1;
  }
  bool dead() const { return dead_; }
  void failNextWrites(int n) { failWrites_ = n; }

  long violations() const { return violations_; }
  uint64_t bytesWritten() const { return bytesWritten_; }
  // Budget units consumed so far (bytes written + erases).
  uint64_t units() const { return units_; }
  uint32_t eraseCount(uint32_t sector) const { return erases_[sector]; }
  std::vector<uint8_t>& mem() { return mem_; }
  const std::vector<uint8_t>& mem() const { return mem_; }

  bool save(const std::string& path) const {
    FILE* f = fopen(path.c_str(), "wb");
    if (!f) return false;
    const bool ok = fwrite(mem_.data(), 1, mem_.size(), f) == mem_.size();
    return fclose(f) == 0 && ok;
  }
  bool load(const std::string& path) {
    FILE* f = fopen(path.c_str(), "rb");
    if (!f) return false;
    const bool ok = fread(mem_.data(), 1, mem_.size(), f) == mem_.size();
    fclose(f);
    return ok;
  }

 private:
  bool inRange(uint32_t addr, size_t n) const { return static_cast<uint64_t>(addr) + n <= mem_.size(); }

  uint32_t ss_;
  uint32_t n_;
  std::vector<uint8_t> mem_;
  std::vector<uint32_t> erases_;
  long budget_ = -1;
  uint8_t tornMask_ = 0;
  EraseTear tear_ = EraseTear::Nothing;
  uint32_t tearParam_ = 0;
  bool dead_ = false;
  int failWrites_ = 0;
  long violations_ = 0;
  uint64_t bytesWritten_ = 0;
  uint64_t units_ = 0;
};

}  // namespace posko_test
