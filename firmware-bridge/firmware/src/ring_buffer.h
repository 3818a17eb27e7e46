// posko node: the offline buffer of scans, a ring of flash sectors.
//
// Every scan is written here with its seq *before* it is published (PROTOCOL.md, "Delivery,
// buffering and retry"), and stays until the gateway's ack for that seq arrives. The buffer
// survives power cuts at any instant: recovery (begin()) rebuilds the pending list from flash,
// never resurrects an acked scan, never loses a scan whose push() returned Ok, and never hands
// out a seq that may already exist on flash.
//
// Flash semantics assumed (NOR flash, e.g. the ESP32's SPI flash): erase sets a whole sector to
// 0xFF; a write can only turn bits 1 -> 0; a byte may be written again to clear more bits. A
// power cut may tear a write (a prefix of the bytes programmed, the last one partially) or an
// erase (any subset of the bytes back to 0xFF).
//
// Layout (little endian, see README.md "Flash layout"):
//
//   sector header, 20 bytes, at offset 0 of every sector in use
//     0  u32 magic  'PSK1' (0x314B5350); written 0x00000000 to retire a sector before erasing it
//     4  u32 gen    generation: 1 for the first sector ever opened, +1 for every sector opened
//     8  u64 base   the next seq at the time the sector was opened (keeps the counter when every
//                   older sector has been erased)
//     16 u32 crc    CRC-32 of bytes 0..15
//
//   record, from offset 20, 4-byte aligned, appended in seq order
//     0  u8  state  0xFF pending; 0x00 acked (written without erase; any cleared bit = acked)
//     1  u8  marker 0xA5
//     2  u8  action the scan's action (0xFF: none, the device's default at the gateway)
//     3  u8  0xFF   reserved
//     4  u16 len    code length, 1..512
//     6  u16 ~len
//     8  u64 seq
//     16 u32 crc    CRC-32 of bytes 1..15 and the code (the state byte is not covered)
//     20 code[len], then 0xFF padding to a multiple of 4
//
// No heap: the pending index and the per-sector table are fixed arrays sized at compile time
// (POSKO_RB_MAX_SECTORS, POSKO_RB_MAX_PENDING).
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "posko_limits.h"

#ifndef POSKO_RB_MAX_SECTORS
#define POSKO_RB_MAX_SECTORS 64
#endif
#ifndef POSKO_RB_MAX_PENDING
#define POSKO_RB_MAX_PENDING 1024
#endif

namespace posko {

// The flash the buffer lives in: an ESP32 partition on the device, a RAM fake in the host tests.
// Addresses are relative to the start of the area; sectors are numbered 0..sectorCount()-1.
struct FlashStore {
  virtual ~FlashStore() = default;
  virtual bool read(uint32_t addr, void* buf, size_t n) = 0;
  // Programs bytes: each bit can only go 1 -> 0 (the result is old & new).
  virtual bool write(uint32_t addr, const void* buf, size_t n) = 0;
  // Sets every byte of the sector to 0xFF.
  virtual bool erase(uint32_t sector) = 0;
  virtual uint32_t sectorSize() const = 0;
  virtual uint32_t sectorCount() const = 0;
};

// The pending scans in seq order, as the send scheduler sees them (implemented by RingBuffer).
struct PendingView {
  virtual ~PendingView() = default;
  // The smallest pending seq >= from.
  virtual bool firstPendingAtOrAfter(uint64_t from, uint64_t* seq) const = 0;
  // How many pending seqs are < seq.
  virtual size_t countPendingBefore(uint64_t seq) const = 0;
};

enum class RbStatus : uint8_t {
  Ok = 0,
  Full,         // no room: every sector holds unacked scans (or the pending index is full)
  NotFound,     // no pending scan with that seq
  TooLong,      // code longer than kMaxCodeLen
  Empty,        // zero-length code
  IoError,      // the flash refused a read/write/erase
  Corrupt,      // a pending record no longer passes its CRC
  NotMounted,   // begin() not called or failed
  BadGeometry,  // sector size/count unusable
  SeqExhausted, // the next seq would exceed kMaxSeq
};

const char* rbStatusName(RbStatus s);

// What recovery found, for logs and tests.
struct RbRecoveryInfo {
  uint32_t activeSectors;   // sectors with a valid header
  uint32_t garbageSectors;  // invalid header, retired or torn: erased before reuse
  uint32_t blankSectors;
  uint32_t records;         // valid records (pending + acked)
  uint32_t tornTails;       // sectors whose append area ends in garbage (closed for appends)
  uint32_t corruptRecords;  // records with an intact header but a bad CRC (torn or rotted): skipped
  uint32_t droppedPending;  // pending records that did not fit the RAM index (stay on flash)
  bool headTorn;            // the newest sector holds a torn record: the next seq is skipped
};

class RingBuffer : public PendingView {
 public:
  static constexpr uint32_t kSectorHeaderSize = 20;
  static constexpr uint32_t kRecordHeaderSize = 20;
  static constexpr uint32_t kMagic = 0x314B5350u;  // "PSK1"
  static constexpr uint8_t kMarker = 0xA5;
  static constexpr uint8_t kNoAction = 0xFF;
  static constexpr size_t kMaxSectors = POSKO_RB_MAX_SECTORS;
  static constexpr size_t kMaxPending = POSKO_RB_MAX_PENDING;

  explicit RingBuffer(FlashStore& flash);

  // Mounts: scans every sector, validates headers and records, rebuilds the pending list and the
  // next seq (never below seqFloor: set it above any seq this device ever used when the flash
  // was wiped, e.g. after reflashing with "erase all").
  RbStatus begin(uint64_t seqFloor = 0);

  // Appends a scan with the next seq (returned in *seq). Full when no sector can take it; the
  // unacked scans are never overwritten.
  RbStatus push(const uint8_t* code, size_t len, uint8_t action, uint64_t* seq);

  // Marks the scan acked (one byte written 0xFF -> 0x00) and drops it from the pending list.
  RbStatus ack(uint64_t seq);

  // Reads a pending scan back (CRC checked). cap must be >= kMaxCodeLen to be safe.
  RbStatus read(uint64_t seq, uint8_t* code, size_t cap, size_t* len, uint8_t* action) const;

  // Idle-time housekeeping: retires and erases one sector whose records are all acked (never the
  // newest one), so the next push that needs a sector does not wait for an erase. True if it
  // erased one.
  bool maintain();

  bool mounted() const { return mounted_; }
  uint64_t nextSeq() const { return nextSeq_; }
  size_t pendingCount() const { return pendingCount_; }
  // The i-th pending seq in seq order (0 = oldest).
  bool pendingAt(size_t i, uint64_t* seq) const;
  // Sectors that could take new records now (blank, garbage, or all acked and not the newest).
  uint32_t reusableSectors() const;
  const RbRecoveryInfo& recoveryInfo() const { return info_; }
  // Flash address of the record the last successful push() wrote (diagnostics, tests).
  uint32_t lastRecordAddr() const { return lastRecordAddr_; }

  bool firstPendingAtOrAfter(uint64_t from, uint64_t* seq) const override;
  size_t countPendingBefore(uint64_t seq) const override;

 private:
  enum SectorState : uint8_t { kBlank = 0, kGarbage = 1, kActive = 2 };
  struct Sector {
    uint32_t gen;
    uint64_t base;
    uint32_t writeOff;  // where the next record goes; sectorSize when closed (full or torn)
    uint16_t records;
    uint16_t pending;
    uint8_t state;
  };
  struct Pending {
    uint64_t seq;
    uint32_t addr;
  };

  bool isBlankFrom(uint32_t sector, uint32_t off) const;
  void scanSector(uint32_t s, uint64_t* maxSeq, bool* anySeq);
  RbStatus openSector();
  size_t lowerBound(uint64_t seq) const;
  void insertPending(uint64_t seq, uint32_t addr);  // recovery only; keeps seq order
  uint32_t sectorOf(uint32_t addr) const { return addr / sectorSize_; }

  FlashStore& flash_;
  uint32_t sectorSize_ = 0;
  uint32_t sectorCount_ = 0;
  bool mounted_ = false;
  int32_t head_ = -1;  // the sector with the highest gen, where records are appended
  uint32_t maxGen_ = 0;
  uint64_t nextSeq_ = 0;
  size_t pendingCount_ = 0;
  uint32_t lastRecordAddr_ = 0;
  RbRecoveryInfo info_{};
  Sector sectors_[kMaxSectors];
  Pending pending_[kMaxPending];
};

}  // namespace posko
