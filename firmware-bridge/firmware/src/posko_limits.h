// posko node: limits shared by the portable core (see firmware-bridge/PROTOCOL.md and
// src/domain/device-protocol.ts on the gateway side).
#pragma once

#include <stddef.h>
#include <stdint.h>

namespace posko {

// A barcode holds at most 512 bytes (the gateway allows 512 UTF-16 units; one byte never turns
// into more than one unit, so 512 bytes always fit).
constexpr size_t kMaxCodeLen = 512;

// The gateway reads seq as a JSON number: an integer in [0, 2^53 - 1] (Number.MAX_SAFE_INTEGER).
constexpr uint64_t kMaxSeq = 9007199254740991ULL;

// Largest scan payload this firmware builds: every code byte escaped as \u00XX (6 chars) plus
// the seq, the action and the punctuation. Far below the gateway's 16 KiB limit.
constexpr size_t kMaxScanPayload = 3200;

// Largest ack the parser looks at (the gateway's acks are a few hundred bytes).
constexpr size_t kMaxAckPayload = 16 * 1024;

}  // namespace posko
