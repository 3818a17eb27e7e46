// posko node: turns the byte stream of a UART barcode module (GM65, MH-ET Live…) into codes.
//
//  - a code ends at CR or LF; CRLF (and LFCR) give one code: empty codes are ignored
//  - every other byte is part of the code, GS (0x1D, FNC1) and AIM prefixes (]C1…) included
//  - an inter-byte timeout (injected millis(), wrap-around safe): a code that stops arriving is
//    discarded (a byte was lost: sending a truncated barcode would record the wrong parcel), or,
//    for modules configured without a suffix, ends the code (timeoutEndsCode)
//  - at most kMaxCodeLen (512) bytes: a longer code is dropped whole (Overflow reported once)
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "posko_limits.h"

namespace posko {

class ScannerAssembler {
 public:
  enum class Event : uint8_t {
    None,      // nothing complete yet
    Code,      // code()/length() hold a complete code until the next feed()/poll()
    Overflow,  // the code in progress exceeded kMaxCodeLen: dropped
    Timeout,   // a partial code timed out and was dropped
  };

  explicit ScannerAssembler(uint32_t interByteTimeoutMs = 100, bool timeoutEndsCode = false);

  // One byte from the UART, received at nowMs.
  Event feed(uint8_t b, uint32_t nowMs);
  // Call regularly (each loop()): reports a code that timed out.
  Event poll(uint32_t nowMs);
  void reset();

  const uint8_t* code() const { return out_; }
  size_t length() const { return outLen_; }
  // Bytes of a code in progress.
  size_t partialLength() const { return curLen_; }

 private:
  Event expire(uint32_t nowMs);

  uint32_t timeoutMs_;
  bool timeoutEndsCode_;
  uint32_t lastByteMs_ = 0;
  bool overflow_ = false;
  size_t curLen_ = 0;
  size_t outLen_ = 0;
  uint8_t cur_[kMaxCodeLen];
  uint8_t out_[kMaxCodeLen];
};

const char* scannerEventName(ScannerAssembler::Event e);

}  // namespace posko
