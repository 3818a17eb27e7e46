#include "scanner_uart.h"

#include <string.h>

namespace posko {

ScannerAssembler::ScannerAssembler(uint32_t interByteTimeoutMs, bool timeoutEndsCode)
    : timeoutMs_(interByteTimeoutMs), timeoutEndsCode_(timeoutEndsCode) {}

void ScannerAssembler::reset() {
  curLen_ = 0;
  outLen_ = 0;
  overflow_ = false;
}

// A code in progress whose next byte is late: drop it, or (timeoutEndsCode) complete it.
ScannerAssembler::Event ScannerAssembler::expire(uint32_t nowMs) {
  if (curLen_ == 0 && !overflow_) return Event::None;
  if (static_cast<int32_t>(nowMs - lastByteMs_) < static_cast<int32_t>(timeoutMs_)) return Event::None;
  Event e = Event::None;
  if (overflow_) {
    e = Event::None;  // already reported
  } else if (timeoutEndsCode_) {
    memcpy(out_, cur_, curLen_);
    outLen_ = curLen_;
    e = Event::Code;
  } else {
    e = Event::Timeout;
  }
  curLen_ = 0;
  overflow_ = false;
  return e;
}

ScannerAssembler::Event ScannerAssembler::feed(uint8_t b, uint32_t nowMs) {
  const Event expired = expire(nowMs);
  lastByteMs_ = nowMs;
  if (b == '\r' || b == '\n') {
    const bool wasOverflow = overflow_;
    overflow_ = false;
    const size_t n = curLen_;
    curLen_ = 0;
    if (wasOverflow || n == 0) return expired;  // the second half of CRLF, a blank line…
    // expired is None here: a timed-out partial leaves curLen_ == 0.
    memcpy(out_, cur_, n);
    outLen_ = n;
    return Event::Code;
  }
  if (overflow_) return expired;
  if (curLen_ >= kMaxCodeLen) {
    overflow_ = true;
    curLen_ = 0;
    return Event::Overflow;
  }
  cur_[curLen_++] = b;
  return expired;
}

ScannerAssembler::Event ScannerAssembler::poll(uint32_t nowMs) { return expire(nowMs); }

const char* scannerEventName(ScannerAssembler::Event e) {
  switch (e) {
    case ScannerAssembler::Event::None: return "none";
    case ScannerAssembler::Event::Code: return "code";
    case ScannerAssembler::Event::Overflow: return "overflow";
    case ScannerAssembler::Event::Timeout: return "timeout";
  }
  return "?";
}

}  // namespace posko
