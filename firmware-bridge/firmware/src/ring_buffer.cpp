#include "ring_buffer.h"

#include <string.h>

#include "crc32.h"

namespace posko {

namespace {

void put16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v);
  p[1] = static_cast<uint8_t>(v >> 8);
}
void put32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
void put64(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
uint16_t get16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
uint32_t get32(const uint8_t* p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}
uint64_t get64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}
bool allErased(const uint8_t* p, size_t n) {
  for (size_t i = 0; i < n; ++i)
    if (p[i] != 0xFF) return false;
  return true;
}
uint32_t align4(uint32_t n) { return (n + 3u) & ~3u; }

constexpr uint8_t kPendingState = 0xFF;

// CRC of a record: header bytes 1..15 (not the state byte) then the code.
uint32_t recordCrc(const uint8_t* hdr, const uint8_t* code, size_t len) {
  uint32_t c = crc32Update(0, hdr + 1, 15);
  return crc32Update(c, code, len);
}

}  // namespace

const char* rbStatusName(RbStatus s) {
  switch (s) {
    case RbStatus::Ok: return "ok";
    case RbStatus::Full: return "full";
    case RbStatus::NotFound: return "not-found";
    case RbStatus::TooLong: return "too-long";
    case RbStatus::Empty: return "empty";
    case RbStatus::IoError: return "io-error";
    case RbStatus::Corrupt: return "corrupt";
    case RbStatus::NotMounted: return "not-mounted";
    case RbStatus::BadGeometry: return "bad-geometry";
    case RbStatus::SeqExhausted: return "seq-exhausted";
  }
  return "?";
}

RingBuffer::RingBuffer(FlashStore& flash) : flash_(flash) {}

bool RingBuffer::isBlankFrom(uint32_t sector, uint32_t off) const {
  uint8_t chunk[64];
  const uint32_t base = sector * sectorSize_;
  while (off < sectorSize_) {
    uint32_t n = sectorSize_ - off;
    if (n > sizeof chunk) n = sizeof chunk;
    if (!flash_.read(base + off, chunk, n)) return false;
    if (!allErased(chunk, n)) return false;
    off += n;
  }
  return true;
}

RbStatus RingBuffer::begin(uint64_t seqFloor) {
  mounted_ = false;
  head_ = -1;
  maxGen_ = 0;
  pendingCount_ = 0;
  info_ = RbRecoveryInfo{};
  sectorSize_ = flash_.sectorSize();
  sectorCount_ = flash_.sectorCount();
  // A sector must hold its header and at least one largest record; two sectors at least, so a
  // full one can be retired while the other keeps the seq counter.
  if (sectorSize_ % 4 != 0 || sectorSize_ < kSectorHeaderSize + align4(kRecordHeaderSize + kMaxCodeLen) ||
      sectorCount_ < 2 || sectorCount_ > kMaxSectors || sectorSize_ > 0x10000u ||
      static_cast<uint64_t>(sectorSize_) * sectorCount_ > 0xFFFFFFFFull)
    return RbStatus::BadGeometry;

  uint64_t maxBase = 0;
  for (uint32_t s = 0; s < sectorCount_; ++s) {
    Sector& sec = sectors_[s];
    sec = Sector{};
    uint8_t h[kSectorHeaderSize];
    if (!flash_.read(s * sectorSize_, h, sizeof h)) return RbStatus::IoError;
    if (allErased(h, sizeof h)) {
      sec.state = isBlankFrom(s, kSectorHeaderSize) ? kBlank : kGarbage;
    } else if (get32(h) == kMagic && get32(h + 16) == crc32(h, 16) && get32(h + 4) != 0) {
      sec.state = kActive;
      sec.gen = get32(h + 4);
      sec.base = get64(h + 8);
      sec.writeOff = sectorSize_;
      if (sec.gen > maxGen_) {
        maxGen_ = sec.gen;
        head_ = static_cast<int32_t>(s);
      }
      if (sec.base > maxBase) maxBase = sec.base;
    } else {
      sec.state = kGarbage;  // torn header, retired, or foreign data: erase before use
    }
    if (sec.state == kActive) ++info_.activeSectors;
    else if (sec.state == kGarbage) ++info_.garbageSectors;
    else ++info_.blankSectors;
  }

  uint64_t maxSeq = 0;
  bool anySeq = false;
  for (uint32_t s = 0; s < sectorCount_; ++s)
    if (sectors_[s].state == kActive) scanSector(s, &maxSeq, &anySeq);

  uint64_t next = seqFloor;
  if (maxBase > next) next = maxBase;
  if (anySeq && maxSeq + 1 > next) next = maxSeq + 1;
  // The newest sector ends in a torn record: it was being written with seq == next, and some of
  // it may be on flash. Skip that seq for good (a new sector opened later records the bumped
  // value in its header, so the skip survives the torn sector being erased).
  if (info_.headTorn) ++next;
  nextSeq_ = next;
  mounted_ = true;
  return RbStatus::Ok;
}

void RingBuffer::scanSector(uint32_t s, uint64_t* maxSeq, bool* anySeq) {
  Sector& sec = sectors_[s];
  const uint32_t base = s * sectorSize_;
  uint32_t off = kSectorHeaderSize;
  uint8_t code[kMaxCodeLen];
  for (;;) {
    if (off + kRecordHeaderSize > sectorSize_) {
      sec.writeOff = sectorSize_;  // full
      return;
    }
    uint8_t h[kRecordHeaderSize];
    if (!flash_.read(base + off, h, sizeof h)) break;
    if (allErased(h, sizeof h)) {
      if (isBlankFrom(s, off)) {
        sec.writeOff = off;  // free space from here
        return;
      }
      break;  // something after an erased header: not ours to append to
    }
    const uint16_t len = get16(h + 4);
    // marker, len and ~len intact: the header's first 8 bytes were written whole, so the
    // record's extent is known even if the rest is torn or has rotted.
    if (h[1] != kMarker || len == 0 || len > kMaxCodeLen || get16(h + 6) != static_cast<uint16_t>(~len) ||
        off + kRecordHeaderSize + len > sectorSize_)
      break;
    const uint32_t next = off + align4(kRecordHeaderSize + len);
    const uint64_t seq = get64(h + 8);
    if (!flash_.read(base + off + kRecordHeaderSize, code, len)) break;
    if (recordCrc(h, code, len) != get32(h + 16) || seq > kMaxSeq) {
      // Torn while being written (then it is the last one) or damaged later: skip it. Its seq
      // is unknown; in the newest sector that means it may be the next one: skip that too.
      ++info_.corruptRecords;
      if (static_cast<int32_t>(s) == head_) info_.headTorn = true;
      off = next;
      continue;
    }
    ++sec.records;
    ++info_.records;
    if (!*anySeq || seq > *maxSeq) *maxSeq = seq;
    *anySeq = true;
    if (h[0] == kPendingState) {
      if (pendingCount_ < kMaxPending) {
        insertPending(seq, base + off);
        ++sec.pending;
      } else {
        ++info_.droppedPending;
        ++sec.pending;  // keeps the sector from being reused: the scan stays on flash
      }
    }
    off = next;
  }
  // A torn or unreadable record: nothing valid can follow it (records are only appended, and a
  // sector with a torn tail is never appended to again). Close the sector.
  sec.writeOff = sectorSize_;
  ++info_.tornTails;
  if (static_cast<int32_t>(s) == head_) info_.headTorn = true;
}

size_t RingBuffer::lowerBound(uint64_t seq) const {
  size_t lo = 0, hi = pendingCount_;
  while (lo < hi) {
    const size_t mid = lo + (hi - lo) / 2;
    if (pending_[mid].seq < seq) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

void RingBuffer::insertPending(uint64_t seq, uint32_t addr) {
  size_t i = lowerBound(seq);
  memmove(&pending_[i + 1], &pending_[i], (pendingCount_ - i) * sizeof(Pending));
  pending_[i].seq = seq;
  pending_[i].addr = addr;
  ++pendingCount_;
}

uint32_t RingBuffer::reusableSectors() const {
  uint32_t n = 0;
  for (uint32_t s = 0; s < sectorCount_; ++s) {
    if (static_cast<int32_t>(s) == head_) continue;
    const Sector& sec = sectors_[s];
    if (sec.state != kActive || sec.pending == 0) ++n;
  }
  return n;
}

// Starts a new newest sector: the first reusable one after the current head (round robin, so
// wear spreads). Retire (magic -> 0) before erase: a torn erase then can never bring back a
// sector of acked records as valid.
RbStatus RingBuffer::openSector() {
  const uint32_t start = head_ < 0 ? 0 : static_cast<uint32_t>(head_) + 1;
  for (uint32_t k = 0; k < sectorCount_; ++k) {
    const uint32_t s = (start + k) % sectorCount_;
    if (static_cast<int32_t>(s) == head_) continue;
    Sector& sec = sectors_[s];
    if (sec.state == kActive && sec.pending != 0) continue;
    if (sec.state == kActive) {
      const uint8_t zero[4] = {0, 0, 0, 0};
      if (!flash_.write(s * sectorSize_, zero, sizeof zero)) return RbStatus::IoError;
      sec.state = kGarbage;
    }
    if (sec.state == kGarbage) {
      if (!flash_.erase(s)) return RbStatus::IoError;
      sec.state = kBlank;
    }
    uint8_t h[kSectorHeaderSize];
    put32(h, kMagic);
    put32(h + 4, maxGen_ + 1);
    put64(h + 8, nextSeq_);
    put32(h + 16, crc32(h, 16));
    if (!flash_.write(s * sectorSize_, h, sizeof h)) {
      sec.state = kGarbage;
      return RbStatus::IoError;
    }
    sec = Sector{};
    sec.state = kActive;
    sec.gen = ++maxGen_;
    sec.base = nextSeq_;
    sec.writeOff = kSectorHeaderSize;
    head_ = static_cast<int32_t>(s);
    return RbStatus::Ok;
  }
  return RbStatus::Full;
}

RbStatus RingBuffer::push(const uint8_t* code, size_t len, uint8_t action, uint64_t* seq) {
  if (!mounted_) return RbStatus::NotMounted;
  if (len == 0) return RbStatus::Empty;
  if (len > kMaxCodeLen) return RbStatus::TooLong;
  if (nextSeq_ > kMaxSeq) return RbStatus::SeqExhausted;
  if (pendingCount_ >= kMaxPending) return RbStatus::Full;
  const uint32_t need = align4(kRecordHeaderSize + static_cast<uint32_t>(len));
  if (head_ < 0 || sectors_[head_].writeOff + need > sectorSize_) {
    const RbStatus st = openSector();
    if (st != RbStatus::Ok) return st;
  }
  Sector& sec = sectors_[head_];
  const uint32_t addr = static_cast<uint32_t>(head_) * sectorSize_ + sec.writeOff;
  uint8_t h[kRecordHeaderSize];
  h[0] = kPendingState;
  h[1] = kMarker;
  h[2] = action;
  h[3] = 0xFF;
  put16(h + 4, static_cast<uint16_t>(len));
  put16(h + 6, static_cast<uint16_t>(~len));
  put64(h + 8, nextSeq_);
  put32(h + 16, recordCrc(h, code, len));
  // Header first, then the code; the padding is left erased. If either write fails the record
  // may be partly on flash: close the sector and never use this seq again.
  if (!flash_.write(addr, h, sizeof h) || !flash_.write(addr + kRecordHeaderSize, code, len)) {
    sec.writeOff = sectorSize_;
    ++nextSeq_;
    return RbStatus::IoError;
  }
  *seq = nextSeq_++;
  lastRecordAddr_ = addr;
  sec.writeOff += need;
  ++sec.records;
  ++sec.pending;
  pending_[pendingCount_].seq = *seq;  // seqs only grow: appending keeps the order
  pending_[pendingCount_].addr = addr;
  ++pendingCount_;
  return RbStatus::Ok;
}

RbStatus RingBuffer::ack(uint64_t seq) {
  if (!mounted_) return RbStatus::NotMounted;
  const size_t i = lowerBound(seq);
  if (i >= pendingCount_ || pending_[i].seq != seq) return RbStatus::NotFound;
  const uint8_t acked = 0x00;
  if (!flash_.write(pending_[i].addr, &acked, 1)) return RbStatus::IoError;
  Sector& sec = sectors_[sectorOf(pending_[i].addr)];
  if (sec.pending > 0) --sec.pending;
  memmove(&pending_[i], &pending_[i + 1], (pendingCount_ - i - 1) * sizeof(Pending));
  --pendingCount_;
  return RbStatus::Ok;
}

RbStatus RingBuffer::read(uint64_t seq, uint8_t* code, size_t cap, size_t* len, uint8_t* action) const {
  if (!mounted_) return RbStatus::NotMounted;
  const size_t i = lowerBound(seq);
  if (i >= pendingCount_ || pending_[i].seq != seq) return RbStatus::NotFound;
  uint8_t h[kRecordHeaderSize];
  if (!flash_.read(pending_[i].addr, h, sizeof h)) return RbStatus::IoError;
  const uint16_t n = get16(h + 4);
  if (h[1] != kMarker || n == 0 || n > kMaxCodeLen || get64(h + 8) != seq) return RbStatus::Corrupt;
  if (n > cap) return RbStatus::TooLong;
  if (!flash_.read(pending_[i].addr + kRecordHeaderSize, code, n)) return RbStatus::IoError;
  if (recordCrc(h, code, n) != get32(h + 16)) return RbStatus::Corrupt;
  *len = n;
  if (action) *action = h[2];
  return RbStatus::Ok;
}

bool RingBuffer::maintain() {
  if (!mounted_) return false;
  for (uint32_t s = 0; s < sectorCount_; ++s) {
    if (static_cast<int32_t>(s) == head_) continue;
    Sector& sec = sectors_[s];
    if (sec.state == kBlank || (sec.state == kActive && sec.pending != 0)) continue;
    if (sec.state == kActive) {
      const uint8_t zero[4] = {0, 0, 0, 0};
      if (!flash_.write(s * sectorSize_, zero, sizeof zero)) return false;
      sec.state = kGarbage;
    }
    if (!flash_.erase(s)) return false;
    sec = Sector{};
    sec.state = kBlank;
    return true;
  }
  return false;
}

bool RingBuffer::pendingAt(size_t i, uint64_t* seq) const {
  if (i >= pendingCount_) return false;
  *seq = pending_[i].seq;
  return true;
}

bool RingBuffer::firstPendingAtOrAfter(uint64_t from, uint64_t* seq) const {
  const size_t i = lowerBound(from);
  if (i >= pendingCount_) return false;
  *seq = pending_[i].seq;
  return true;
}

size_t RingBuffer::countPendingBefore(uint64_t seq) const { return lowerBound(seq); }

}  // namespace posko
