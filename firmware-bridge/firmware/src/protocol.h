// posko node: the device side of the posko MQTT protocol (firmware-bridge/PROTOCOL.md).
//
//  - topics `posko/<post>/{scan,ack,status}/<device>`
//  - the scan payload `{"seq":N,"code":"...","action":"..."}` with exact JSON string escaping
//  - the status payload and the last will
//  - a small, allocation-free, strict parser for the gateway's ack
//  - what an ack means for the buffered scan (remove / keep and retry) and for the volunteer
//    (beeps, LED)
//  - the retry timing: resend unacked scans after 10 s, exponential back-off 1 s -> 60 s with
//    jitter from an injected random source
//
// Every builder writes into a caller buffer, NUL-terminates it, and returns the length, or 0 when
// the input is invalid or the buffer is too small (no payload is ever empty).
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "posko_limits.h"
#include "ring_buffer.h"

namespace posko {

// ---------------------------------------------------------------------------------------------
// Actions (PROTOCOL.md "Scan payload"). Stored as one byte in the flash record.

enum class Action : uint8_t {
  Receive = 0,
  Dispatch,  // the gateway requires "to" for a dispatch, which this node does not send
  Checkpoint,
  Distribute,
  Count,
  Damage,
  Loss,
  Return,
  Expire,
  None = 0xFF,  // omit "action": the gateway uses the device's default action
};

// The wire name ("receive"…), or nullptr for None / unknown values.
const char* actionName(Action a);
// "" or nullptr -> None. False for an unknown name.
bool actionFromName(const char* name, Action* out);

// ---------------------------------------------------------------------------------------------
// Ids and topics

// ^[A-Z0-9][A-Z0-9-]{0,15}$ (POST_ID_RE in src/domain/ids.ts)
bool validPostId(const char* s);
// ^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$ (DEVICE_ID_RE)
bool validDeviceId(const char* s);

enum class TopicKind : uint8_t { Scan, Ack, Status };

// posko/<post>/<scan|ack|status>/<device>; 0 if an id is invalid or cap too small.
size_t buildTopic(char* out, size_t cap, const char* post, TopicKind kind, const char* device);

// ---------------------------------------------------------------------------------------------
// JSON

// Writes `s` as a quoted JSON string. Escapes " and \, every byte < 0x20 (\b \f \n \r \t or
// \u00XX, so GS 0x1D becomes \u001d) and DEL as \u007f. Well-formed UTF-8 passes through
// unchanged; a byte that is not part of well-formed UTF-8 is taken as Latin-1 and written as
// \u00XX (the gateway would otherwise see U+FFFD). 0 if cap is too small.
size_t jsonQuote(char* out, size_t cap, const uint8_t* s, size_t n);

// {"seq":N,"code":"...","action":"..."} ("action" omitted for Action::None). 0 if the code is
// empty or longer than kMaxCodeLen, seq > kMaxSeq, or cap too small (kMaxScanPayload always fits).
size_t buildScanPayload(char* out, size_t cap, uint64_t seq, const uint8_t* code, size_t len, Action action);

struct StatusInfo {
  bool online = true;
  const char* fw = nullptr;  // omitted when null; at most 64 bytes
  int battery = -1;          // 0..100, omitted when < 0
  bool hasRssi = false;
  int rssi = 0;
  long buffered = -1;  // omitted when < 0
};

// {"online":true,"fw":"...","battery":81,"rssi":-67,"buffered":0}
size_t buildStatusPayload(char* out, size_t cap, const StatusInfo& st);

// The last will: {"online":false}
constexpr const char* kLastWill = "{\"online\":false}";

// ---------------------------------------------------------------------------------------------
// Ack

enum class AckStatus : uint8_t { Accepted, Duplicate, Rejected };

struct Ack {
  bool hasSeq;  // false when the gateway sent "seq": null (or no seq)
  uint64_t seq;
  AckStatus status;
  bool hasErrorCode;
  bool errorCodeTruncated;
  char errorCode[48];  // error.code, NUL-terminated (truncated if longer)
};

enum class AckParseError : uint8_t {
  None = 0,
  TooLarge,       // more than kMaxAckPayload bytes
  Syntax,         // not JSON (malformed or truncated)
  TooDeep,        // nesting deeper than kMaxAckDepth
  NotObject,      // valid JSON but not an object
  MissingStatus,  // no "status"
  BadStatus,      // "status" not accepted/duplicate/rejected
  BadSeq,         // "seq" neither null nor an integer in [0, 2^53-1]
};

constexpr int kMaxAckDepth = 16;

const char* ackParseErrorName(AckParseError e);
const char* ackStatusName(AckStatus s);

// Parses an ack payload (not NUL-terminated; exactly n bytes). Unknown fields ("event",
// "parcel", "error.message"…) are checked for syntax and skipped. Never allocates, never reads
// past n, recursion bounded by kMaxAckDepth. On error *out is left zeroed.
AckParseError parseAck(const uint8_t* json, size_t n, Ack* out);

// ---------------------------------------------------------------------------------------------
// Feedback

enum class Led : uint8_t { Off, Green, Red, Amber };

// A beep pattern and an LED colour, played by the sketch without blocking.
struct Feedback {
  uint8_t beeps;
  uint16_t beepMs;
  uint16_t gapMs;
  Led led;
  uint16_t ledMs;
};

enum class Signal : uint8_t {
  None,
  Accepted,    // one short beep, green
  Duplicate,   // two short beeps, green
  Rejected,    // one long beep, red (final: the label or the data is wrong)
  Retrying,    // gateway storage full/unavailable: kept, resent later; no beep, amber
  Stored,      // buffered, not acked yet (offline): one tick, amber
  BufferFull,  // the offline buffer is full, the scan was refused: three long beeps, red
  BadScan,     // unreadable / too long code from the scanner: one long beep, red
};

Feedback feedbackFor(Signal s);

// STORAGE_FULL and STORAGE_UNAVAILABLE: the gateway could not store the scan, keep it and retry.
bool isRetryableErrorCode(const char* code);

struct AckDecision {
  bool removeFromBuffer;  // accepted, duplicate, or a final rejection
  Signal signal;
};

// What to do with the buffered scan named by the ack (if it has a seq) and what to show.
AckDecision decideAck(const Ack& ack);

// ---------------------------------------------------------------------------------------------
// Retry timing

// An injected random source (esp_random() on the device, a seeded PRNG in the tests).
using RandomFn = uint32_t (*)(void* ctx);

// Exponential back-off: 1 s, 2 s, 4 s … capped at 60 s, each with jitter: the delay is drawn in
// [3/4 d, d] so devices that lost the gateway together do not all come back together.
class Backoff {
 public:
  Backoff(RandomFn rnd, void* ctx, uint32_t baseMs = 1000, uint32_t capMs = 60000);
  // The delay before the next attempt (and counts the attempt).
  uint32_t next();
  // The un-jittered delay the next call to next() is based on.
  uint32_t nominal() const;
  void reset() { attempt_ = 0; }
  uint32_t attempts() const { return attempt_; }

 private:
  RandomFn rnd_;
  void* ctx_;
  uint32_t base_;
  uint32_t cap_;
  uint32_t attempt_ = 0;
};

// Decides which buffered scan to publish and when, on one connection:
//  - after connecting, every pending scan counts as unsent and goes out in seq order, at most
//    `window` unacked at a time;
//  - when no ack arrives for kAckTimeoutMs (10 s) while scans are unacked, it starts again from
//    the oldest pending scan (same seq); while acks keep failing to arrive (silence, or
//    STORAGE_FULL rejections), the next waits are max(10 s, back-off 1 s, 2 s, 4 s … 60 s with
//    jitter): 10, 10, 10, 10, 10, 16, 32, 60, 60 s…; any ack removing a scan resets it.
// Times are millis() values; wrap-around is handled.
class SendScheduler {
 public:
  static constexpr uint32_t kAckTimeoutMs = 10000;

  SendScheduler(RandomFn rnd, void* ctx, uint32_t ackTimeoutMs = kAckTimeoutMs, size_t window = 8);

  void onConnected(uint32_t now);
  void onDisconnected();
  // The seq to publish now, if any.
  bool next(const PendingView& pending, uint32_t now, uint64_t* seq);
  // Call after publishing `seq` (from next()).
  void onPublished(uint64_t seq, uint32_t now);
  // Call when an ack removed a scan from the buffer.
  void onAckRemoved(uint32_t now);

  bool connected() const { return connected_; }
  uint32_t resendRounds() const { return resendRounds_; }
  uint32_t currentTimeoutMs() const { return timeoutMs_; }

 private:
  Backoff backoff_;
  uint32_t ackTimeoutMs_;
  size_t window_;
  bool connected_ = false;
  uint64_t cursor_ = 0;  // pending scans with seq < cursor_ were published on this round
  bool armed_ = false;
  uint32_t deadline_ = 0;
  uint32_t timeoutMs_;
  uint32_t resendRounds_ = 0;
};

}  // namespace posko
