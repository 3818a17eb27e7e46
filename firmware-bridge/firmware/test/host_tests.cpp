// Host tests of the posko node's portable core (no Arduino, no test framework).
//
//   cd firmware-bridge/firmware
//   g++ -std=c++17 -Wall -Wextra -Werror -O1 -fsanitize=address,undefined
//       -I src test/host_tests.cpp src/*.cpp -o host_tests      (one line)
//   ./host_tests                  run every test, print "N passed, M failed", exit 1 on failure
//   ./host_tests --emit-payloads  print the scan payloads the firmware builds, one per line
//   ./host_tests --emit-status    print status payloads and the last will, one per line
//   ./host_tests --parse-ack      read acks from stdin, one per line; print the parse, one JSON per line
//   ./host_tests --topics POST DEVICE   print the scan, ack and status topics
//
// test/integration/firmware-host.test.ts runs all of these against the gateway's own schemas.
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <algorithm>
#include <iostream>
#include <iterator>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "../src/crc32.h"
#include "../src/protocol.h"
#include "../src/ring_buffer.h"
#include "../src/scanner_uart.h"
#include "fake_flash.h"

using namespace posko;
using posko_test::FakeFlash;

// ---------------------------------------------------------------------------------------------
// A tiny test harness

namespace {

int g_checks = 0;
int g_checkFailures = 0;
bool g_current = true;
const char* g_testName = "";

void reportFailure(const char* file, int line, const std::string& what) {
  ++g_checkFailures;
  g_current = false;
  if (g_checkFailures <= 200) fprintf(stderr, "  FAIL %s (%s:%d): %s\n", g_testName, file, line, what.c_str());
}

std::string show(const std::string& s) {
  std::string r = "\"";
  for (unsigned char c : s) {
    if (c >= 0x20 && c < 0x7F && c != '"' && c != '\\') {
      r += static_cast<char>(c);
    } else {
      char b[8];
      snprintf(b, sizeof b, "\\x%02x", c);
      r += b;
    }
  }
  return r + "\"";
}
std::string show(const char* s) { return s ? show(std::string(s)) : std::string("(null)"); }
std::string show(bool v) { return v ? "true" : "false"; }
template <typename T>
std::string show(const T& v) {
  return std::to_string(v);
}
std::string show(RbStatus s) { return rbStatusName(s); }
std::string show(AckParseError e) { return ackParseErrorName(e); }
std::string show(AckStatus s) { return ackStatusName(s); }
std::string show(ScannerAssembler::Event e) { return scannerEventName(e); }
std::string show(Signal s) { return std::to_string(static_cast<int>(s)); }

}  // namespace

#define CHECK(cond)                                                   \
  do {                                                                \
    ++g_checks;                                                       \
    if (!(cond)) reportFailure(__FILE__, __LINE__, "CHECK(" #cond ")"); \
  } while (0)

#define CHECK_EQ(a, b)                                                                                  \
  do {                                                                                                  \
    ++g_checks;                                                                                         \
    const auto& va_ = (a);                                                                              \
    const auto& vb_ = (b);                                                                              \
    if (!(va_ == vb_)) reportFailure(__FILE__, __LINE__, #a " == " #b ": " + show(va_) + " vs " + show(vb_)); \
  } while (0)

// Stops the current test at the first failure of a precondition.
#define REQUIRE(cond)                                                   \
  do {                                                                  \
    ++g_checks;                                                         \
    if (!(cond)) {                                                      \
      reportFailure(__FILE__, __LINE__, "REQUIRE(" #cond ")");          \
      return;                                                           \
    }                                                                   \
  } while (0)

namespace {

struct TestCase {
  const char* name;
  void (*fn)();
};
std::vector<TestCase>& registry() {
  static std::vector<TestCase> r;
  return r;
}
struct Registrar {
  Registrar(const char* name, void (*fn)()) { registry().push_back({name, fn}); }
};

}  // namespace

#define TEST(name)                                  \
  static void test_##name();                        \
  static Registrar registrar_##name(#name, test_##name); \
  static void test_##name()

// ---------------------------------------------------------------------------------------------
// Helpers

namespace {

struct Rng {
  uint64_t s;
  explicit Rng(uint64_t seed) : s(seed ? seed : 0x9E3779B97F4A7C15ull) {}
  uint32_t next() {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return static_cast<uint32_t>(s >> 16);
  }
  uint32_t below(uint32_t n) { return n == 0 ? 0 : next() % n; }
  bool chance(uint32_t percent) { return below(100) < percent; }
  static uint32_t call(void* ctx) { return static_cast<Rng*>(ctx)->next(); }
};

uint32_t zeroRandom(void*) { return 0; }
uint32_t maxRandom(void*) { return 0xFFFFFFFFu; }

const uint8_t* bytes(const std::string& s) { return reinterpret_cast<const uint8_t*>(s.data()); }

std::string quoted(const std::string& s) {
  std::vector<char> out(s.size() * 6 + 3);
  const size_t n = jsonQuote(out.data(), out.size(), bytes(s), s.size());
  return std::string(out.data(), n);
}

std::string scanPayload(uint64_t seq, const std::string& code, Action a) {
  char out[kMaxScanPayload];
  const size_t n = buildScanPayload(out, sizeof out, seq, bytes(code), code.size(), a);
  return std::string(out, n);
}

// Parses from an exact-size heap copy, so AddressSanitizer catches any read past the end.
AckParseError parse(const std::string& json, Ack* ack) {
  std::unique_ptr<uint8_t[]> copy(new uint8_t[json.size() ? json.size() : 1]);
  memcpy(copy.get(), json.data(), json.size());
  return parseAck(copy.get(), json.size(), ack);
}

// What the ring buffer should hold.
struct Model {
  std::map<uint64_t, std::string> pending;
  std::set<uint64_t> acked;
  bool anyIssued = false;
  uint64_t maxIssued = 0;  // largest seq push() returned Ok for
  void pushed(uint64_t seq, const std::string& code) {
    pending[seq] = code;
    if (!anyIssued || seq > maxIssued) maxIssued = seq;
    anyIssued = true;
  }
  void ackd(uint64_t seq) {
    pending.erase(seq);
    acked.insert(seq);
  }
};

// The buffer's pending list equals the model's, in order, with the right bytes.
bool sameAsModel(const RingBuffer& rb, const Model& m, std::string* why) {
  if (rb.pendingCount() != m.pending.size()) {
    *why = "pending count " + std::to_string(rb.pendingCount()) + " != " + std::to_string(m.pending.size());
    return false;
  }
  size_t i = 0;
  for (const auto& kv : m.pending) {
    uint64_t seq = 0;
    if (!rb.pendingAt(i++, &seq) || seq != kv.first) {
      *why = "pending[" + std::to_string(i - 1) + "] = " + std::to_string(seq) + ", expected " + std::to_string(kv.first);
      return false;
    }
    uint8_t buf[kMaxCodeLen];
    size_t len = 0;
    uint8_t action = 0;
    const RbStatus st = rb.read(seq, buf, sizeof buf, &len, &action);
    if (st != RbStatus::Ok || std::string(reinterpret_cast<char*>(buf), len) != kv.second) {
      *why = "seq " + std::to_string(seq) + " reads back " + rbStatusName(st);
      return false;
    }
  }
  for (uint64_t a : m.acked) {
    uint64_t s = 0;
    if (rb.firstPendingAtOrAfter(a, &s) && s == a) {
      *why = "acked seq " + std::to_string(a) + " is pending again";
      return false;
    }
  }
  return true;
}

#define CHECK_MODEL(rb, m)                                        \
  do {                                                            \
    std::string why_;                                             \
    ++g_checks;                                                   \
    if (!sameAsModel((rb), (m), &why_)) reportFailure(__FILE__, __LINE__, "model: " + why_); \
  } while (0)

std::unique_ptr<RingBuffer> mount(FakeFlash& f, uint64_t floor = 0) {
  std::unique_ptr<RingBuffer> rb(new RingBuffer(f));
  const RbStatus st = rb->begin(floor);
  if (st != RbStatus::Ok) reportFailure(__FILE__, __LINE__, std::string("mount: ") + rbStatusName(st));
  return rb;
}

std::string codeOf(uint64_t k, size_t len) {
  std::string s = "C" + std::to_string(k) + "-";
  while (s.size() < len) s += static_cast<char>('a' + (k + s.size()) % 26);
  s.resize(len);
  return s;
}

bool anyNotErased(const std::vector<uint8_t>& mem, uint32_t addr, size_t n) {
  for (size_t i = 0; i < n; ++i)
    if (mem[addr + i] != 0xFF) return true;
  return false;
}

}  // namespace

// =============================================================================================
// CRC, JSON escaping, payloads, topics

TEST(crc32_known_vectors) {
  CHECK_EQ(crc32("123456789", 9), 0xCBF43926u);
  CHECK_EQ(crc32("", 0), 0u);
  const uint32_t part = crc32Update(crc32("1234", 4), "56789", 5);
  CHECK_EQ(part, 0xCBF43926u);
}

TEST(json_escaping) {
  CHECK_EQ(quoted("ABC-123"), std::string("\"ABC-123\""));
  CHECK_EQ(quoted(""), std::string("\"\""));
  CHECK_EQ(quoted("a\"b\\c/d"), std::string("\"a\\\"b\\\\c/d\""));
  CHECK_EQ(quoted("\b\f\n\r\t"), std::string("\"\\b\\f\\n\\r\\t\""));
  // GS (FNC1 in GS1 barcodes) and the other control characters as \u00XX.
  CHECK_EQ(quoted("]C1010614141234567890\x1d" "10ABC"), std::string("\"]C1010614141234567890\\u001d10ABC\""));
  CHECK_EQ(quoted(std::string("\x00\x01\x1f\x7f", 4)), std::string("\"\\u0000\\u0001\\u001f\\u007f\""));
  // Well-formed UTF-8 passes through unchanged.
  CHECK_EQ(quoted("Beras \xc3\xa9 \xe2\x82\xac \xf0\x9f\x93\xa6"), std::string("\"Beras \xc3\xa9 \xe2\x82\xac \xf0\x9f\x93\xa6\""));
  CHECK_EQ(quoted("\xef\xbf\xbf\xf4\x8f\xbf\xbf\xed\x9f\xbf"), std::string("\"\xef\xbf\xbf\xf4\x8f\xbf\xbf\xed\x9f\xbf\""));
  // Anything else is taken as Latin-1: a lone byte, an overlong form, a surrogate, a truncated
  // sequence, a code point above U+10FFFF.
  CHECK_EQ(quoted("caf\xe9"), std::string("\"caf\\u00e9\""));
  CHECK_EQ(quoted("\xc0\x80"), std::string("\"\\u00c0\\u0080\""));
  CHECK_EQ(quoted("\xed\xa0\x80"), std::string("\"\\u00ed\\u00a0\\u0080\""));
  CHECK_EQ(quoted("x\xe2\x82"), std::string("\"x\\u00e2\\u0082\""));
  CHECK_EQ(quoted("\xf4\x90\x80\x80"), std::string("\"\\u00f4\\u0090\\u0080\\u0080\""));
  CHECK_EQ(quoted("\xff\xfe"), std::string("\"\\u00ff\\u00fe\""));
  // Too small a buffer: 0 and an empty string, never a cut-off payload.
  char small[6];
  CHECK_EQ(jsonQuote(small, sizeof small, bytes("abcd"), 4), static_cast<size_t>(0));
  CHECK_EQ(small[0], '\0');
  CHECK_EQ(jsonQuote(small, sizeof small, bytes("abc"), 3), static_cast<size_t>(5));
  CHECK_EQ(std::string(small), std::string("\"abc\""));
  CHECK_EQ(jsonQuote(small, 0, bytes("a"), 1), static_cast<size_t>(0));
}

TEST(scan_payloads) {
  CHECK_EQ(scanPayload(1042, "]C100106141412345678908", Action::Receive),
           std::string("{\"seq\":1042,\"code\":\"]C100106141412345678908\",\"action\":\"receive\"}"));
  CHECK_EQ(scanPayload(0, "PSK1:DEMO:1", Action::None), std::string("{\"seq\":0,\"code\":\"PSK1:DEMO:1\"}"));
  CHECK_EQ(scanPayload(kMaxSeq, "x", Action::Expire), std::string("{\"seq\":9007199254740991,\"code\":\"x\",\"action\":\"expire\"}"));
  CHECK_EQ(scanPayload(kMaxSeq + 1, "x", Action::None), std::string());
  CHECK_EQ(scanPayload(1, "", Action::None), std::string());
  CHECK_EQ(scanPayload(1, std::string(kMaxCodeLen + 1, 'a'), Action::None), std::string());
  CHECK_EQ(scanPayload(1, "x", static_cast<Action>(42)), std::string());
  // The worst case fits kMaxScanPayload: 512 control characters, the largest seq, the longest action.
  const std::string worst = scanPayload(kMaxSeq, std::string(kMaxCodeLen, '\x1d'), Action::Distribute);
  CHECK(!worst.empty());
  CHECK(worst.size() < kMaxScanPayload);
  CHECK(worst.size() < 16 * 1024);
  // Actions round trip by name.
  for (int i = 0; i <= 8; ++i) {
    const Action a = static_cast<Action>(i);
    Action back = Action::None;
    CHECK(actionName(a) != nullptr);
    CHECK(actionFromName(actionName(a), &back));
    CHECK(back == a);
  }
  Action a = Action::Receive;
  CHECK(actionFromName("", &a) && a == Action::None);
  CHECK(!actionFromName("void", &a));
  CHECK(!actionFromName("Receive", &a));
  CHECK(actionName(Action::None) == nullptr);
}

TEST(topics_and_ids) {
  char t[128];
  CHECK(buildTopic(t, sizeof t, "KKR-KBG", TopicKind::Scan, "Gudang-pintu-1") > 0);
  CHECK_EQ(std::string(t), std::string("posko/KKR-KBG/scan/Gudang-pintu-1"));
  buildTopic(t, sizeof t, "KKR-KBG", TopicKind::Ack, "node_7.b");
  CHECK_EQ(std::string(t), std::string("posko/KKR-KBG/ack/node_7.b"));
  buildTopic(t, sizeof t, "DEMO", TopicKind::Status, "n1");
  CHECK_EQ(std::string(t), std::string("posko/DEMO/status/n1"));
  CHECK(validPostId("A"));
  CHECK(validPostId("0123456789ABCDEF"));
  CHECK(!validPostId("0123456789ABCDEFG"));
  CHECK(!validPostId("kkr"));
  CHECK(!validPostId("-KKR"));
  CHECK(!validPostId(""));
  CHECK(!validPostId(nullptr));
  CHECK(validDeviceId("a"));
  CHECK(validDeviceId(std::string(64, 'x').c_str()));
  CHECK(!validDeviceId(std::string(65, 'x').c_str()));
  CHECK(!validDeviceId("_x"));
  CHECK(!validDeviceId("a/b"));
  CHECK(!validDeviceId("a+"));
  CHECK(!validDeviceId("a#"));
  CHECK(!validDeviceId("a b"));
  CHECK_EQ(buildTopic(t, sizeof t, "KKR", TopicKind::Scan, "a/b"), static_cast<size_t>(0));
  CHECK_EQ(buildTopic(t, sizeof t, "kkr", TopicKind::Scan, "ab"), static_cast<size_t>(0));
  CHECK_EQ(buildTopic(t, 10, "KKR", TopicKind::Scan, "ab"), static_cast<size_t>(0));
}

TEST(status_payloads) {
  char out[256];
  StatusInfo st;
  st.fw = "posko-node 1.0.0";
  st.battery = 81;
  st.hasRssi = true;
  st.rssi = -67;
  st.buffered = 0;
  CHECK(buildStatusPayload(out, sizeof out, st) > 0);
  CHECK_EQ(std::string(out), std::string("{\"online\":true,\"fw\":\"posko-node 1.0.0\",\"battery\":81,\"rssi\":-67,\"buffered\":0}"));
  StatusInfo bare;
  buildStatusPayload(out, sizeof out, bare);
  CHECK_EQ(std::string(out), std::string("{\"online\":true}"));
  bare.online = false;
  buildStatusPayload(out, sizeof out, bare);
  CHECK_EQ(std::string(out), std::string(kLastWill));
  StatusInfo longFw;
  const std::string fw(65, 'f');
  longFw.fw = fw.c_str();
  CHECK_EQ(buildStatusPayload(out, sizeof out, longFw), static_cast<size_t>(0));
  StatusInfo clamp;
  clamp.battery = 140;
  buildStatusPayload(out, sizeof out, clamp);
  CHECK_EQ(std::string(out), std::string("{\"online\":true,\"battery\":100}"));
}

// =============================================================================================
// Ack parsing

TEST(ack_valid) {
  Ack a;
  CHECK_EQ(parse("{\"seq\":1042,\"status\":\"accepted\",\"event\":\"6f1c2a\",\"parcel\":{\"id\":\"sscc:106141412345678908\","
                 "\"status\":\"in_store\",\"qty\":25,\"location\":\"KKR-KBG\",\"item\":null}}",
                 &a),
           AckParseError::None);
  CHECK(a.hasSeq);
  CHECK_EQ(a.seq, static_cast<uint64_t>(1042));
  CHECK_EQ(a.status, AckStatus::Accepted);  // the parcel's "status" does not override the ack's
  CHECK(!a.hasErrorCode);

  CHECK_EQ(parse("{\"seq\":1043,\"status\":\"duplicate\",\"event\":\"x\"}", &a), AckParseError::None);
  CHECK_EQ(a.status, AckStatus::Duplicate);

  CHECK_EQ(parse("{\"seq\":1044,\"status\":\"rejected\",\"error\":{\"code\":\"GS1_CHECK_DIGIT\",\"message\":\"AI (01): check digit \\u2026\"}}", &a),
           AckParseError::None);
  CHECK_EQ(a.status, AckStatus::Rejected);
  CHECK(a.hasErrorCode);
  CHECK_EQ(std::string(a.errorCode), std::string("GS1_CHECK_DIGIT"));

  // Key order, whitespace, escapes in the code, seq null, a message before the code.
  CHECK_EQ(parse(" \r\n{ \"error\" : { \"message\" : \"disk \\\"full\\\"\", \"code\" : \"STORAGE_\\u0046ULL\" } ,\n"
                 "\t\"status\" : \"rejected\" , \"seq\" : null } \n",
                 &a),
           AckParseError::None);
  CHECK(!a.hasSeq);
  CHECK_EQ(std::string(a.errorCode), std::string("STORAGE_FULL"));

  // The largest seq the gateway can send; 0; a long message; numbers of every JSON form elsewhere.
  CHECK_EQ(parse("{\"seq\":9007199254740991,\"status\":\"accepted\"}", &a), AckParseError::None);
  CHECK_EQ(a.seq, kMaxSeq);
  CHECK_EQ(parse("{\"seq\":0,\"status\":\"accepted\"}", &a), AckParseError::None);
  CHECK(a.hasSeq && a.seq == 0);
  const std::string msg(10000, 'm');
  CHECK_EQ(parse("{\"seq\":5,\"status\":\"rejected\",\"error\":{\"code\":\"VALIDATION\",\"message\":\"" + msg + "\"}}", &a),
           AckParseError::None);
  CHECK_EQ(std::string(a.errorCode), std::string("VALIDATION"));
  CHECK_EQ(parse("{\"x\":[-0.5e-3,1E+9,0,-7,true,false,null,{},[],\"\\/\\b\\f\\n\\r\\t\\ud83d\\udce6\"],\"seq\":7,\"status\":\"accepted\"}", &a),
           AckParseError::None);
  CHECK_EQ(a.seq, static_cast<uint64_t>(7));
  // No seq at all counts as null (future gateways); duplicate keys: the last one wins (as JSON.parse).
  CHECK_EQ(parse("{\"status\":\"duplicate\"}", &a), AckParseError::None);
  CHECK(!a.hasSeq);
  CHECK_EQ(parse("{\"seq\":1,\"seq\":2,\"status\":\"rejected\",\"status\":\"accepted\"}", &a), AckParseError::None);
  CHECK_EQ(a.seq, static_cast<uint64_t>(2));
  CHECK_EQ(a.status, AckStatus::Accepted);
  // A long error code is truncated and flagged (so it can never look like STORAGE_FULL).
  CHECK_EQ(parse("{\"seq\":1,\"status\":\"rejected\",\"error\":{\"code\":\"STORAGE_FULL" + std::string(60, 'X') + "\"}}", &a),
           AckParseError::None);
  CHECK(a.errorCodeTruncated);
  CHECK_EQ(strlen(a.errorCode), sizeof a.errorCode - 1);
  CHECK(decideAck(a).removeFromBuffer);  // a final rejection, not the retryable STORAGE_FULL
  // Lone surrogates decode to U+FFFD instead of failing.
  CHECK_EQ(parse("{\"seq\":1,\"status\":\"rejected\",\"error\":{\"code\":\"A\\ud800B\\udc00\"}}", &a), AckParseError::None);
  CHECK_EQ(std::string(a.errorCode), std::string("A\xef\xbf\xbd" "B\xef\xbf\xbd"));
  CHECK_EQ(parse("{\"seq\":1,\"status\":\"rejected\",\"error\":{\"code\":\"\\ud83d\\udce6\"}}", &a), AckParseError::None);
  CHECK_EQ(std::string(a.errorCode), std::string("\xf0\x9f\x93\xa6"));
  // error present but not an object: no code.
  CHECK_EQ(parse("{\"seq\":1,\"status\":\"rejected\",\"error\":\"boom\"}", &a), AckParseError::None);
  CHECK(!a.hasErrorCode);
}

TEST(ack_malformed) {
  Ack a;
  struct Case {
    const char* json;
    AckParseError want;
  };
  const Case cases[] = {
      {"", AckParseError::Syntax},
      {"   ", AckParseError::Syntax},
      {"null", AckParseError::NotObject},
      {"[]", AckParseError::NotObject},
      {"\"accepted\"", AckParseError::NotObject},
      {"42", AckParseError::NotObject},
      {"{", AckParseError::Syntax},
      {"{}", AckParseError::MissingStatus},
      {"{\"seq\":1}", AckParseError::MissingStatus},
      {"{\"seq\":1,\"status\":\"ok\"}", AckParseError::BadStatus},
      {"{\"seq\":1,\"status\":\"ACCEPTED\"}", AckParseError::BadStatus},
      {"{\"seq\":1,\"status\":\"acceptedxxxxxxxxx\"}", AckParseError::BadStatus},
      {"{\"seq\":1,\"status\":1}", AckParseError::BadStatus},
      {"{\"seq\":1,\"status\":null}", AckParseError::BadStatus},
      {"{\"seq\":-1,\"status\":\"accepted\"}", AckParseError::BadSeq},
      {"{\"seq\":1.5,\"status\":\"accepted\"}", AckParseError::BadSeq},
      {"{\"seq\":1e3,\"status\":\"accepted\"}", AckParseError::BadSeq},
      {"{\"seq\":\"12\",\"status\":\"accepted\"}", AckParseError::BadSeq},
      {"{\"seq\":true,\"status\":\"accepted\"}", AckParseError::BadSeq},
      {"{\"seq\":9007199254740992,\"status\":\"accepted\"}", AckParseError::BadSeq},
      {"{\"seq\":99999999999999999999999999,\"status\":\"accepted\"}", AckParseError::BadSeq},
      {"{\"seq\":01,\"status\":\"accepted\"}", AckParseError::Syntax},
      {"{\"seq\":1,\"status\":\"accepted\"} x", AckParseError::Syntax},
      {"{\"seq\":1,\"status\":\"accepted\"}{}", AckParseError::Syntax},
      {"{\"seq\":1,\"status\":\"accepted\",}", AckParseError::Syntax},
      {"{'seq':1,'status':'accepted'}", AckParseError::Syntax},
      {"{\"seq\":1 \"status\":\"accepted\"}", AckParseError::Syntax},
      {"{\"seq\" 1,\"status\":\"accepted\"}", AckParseError::Syntax},
      {"{seq:1,status:\"accepted\"}", AckParseError::Syntax},
      {"{\"seq\":NaN,\"status\":\"accepted\"}", AckParseError::Syntax},
      {"{\"seq\":1,\"status\":\"acc\nepted\"}", AckParseError::Syntax},
      {"{\"seq\":1,\"status\":\"accepted\\x\"}", AckParseError::Syntax},
      {"{\"seq\":1,\"status\":\"accepted\\u12G4\"}", AckParseError::Syntax},
      {"{\"seq\":1,\"status\":\"accepted\",\"x\":tru}", AckParseError::Syntax},
      {"{\"seq\":1,\"status\":\"accepted\",\"x\":[1,]}", AckParseError::Syntax},
      {"{\"seq\":1,\"status\":\"accepted\",\"x\":-}", AckParseError::Syntax},
      {"{\"seq\":1,\"status\":\"accepted\",\"x\":1.}", AckParseError::Syntax},
      {"{\"seq\":1,\"status\":\"accepted\",\"x\":1e}", AckParseError::Syntax},
      {"{\"seq\":1,\"status\":\"accepted\",\"x\":\"unterminated}", AckParseError::Syntax},
      {"{\"seq\":1,\"status\":\"rejected\",\"error\":{\"code\":\"X\"}", AckParseError::Syntax},
  };
  for (const Case& c : cases) {
    const AckParseError got = parse(c.json, &a);
    if (got != c.want)
      reportFailure(__FILE__, __LINE__, std::string("parse ") + show(c.json) + ": " + ackParseErrorName(got) + " vs " + ackParseErrorName(c.want));
    ++g_checks;
    CHECK(!a.hasSeq && !a.hasErrorCode);  // left zeroed
  }
  // A NUL inside the buffer is not the end of the JSON.
  CHECK_EQ(parse(std::string("{\"seq\":1,\"status\":\"accepted\"}\0", 31), &a), AckParseError::Syntax);
  CHECK_EQ(parseAck(nullptr, 0, &a), AckParseError::Syntax);
}

TEST(ack_truncated_at_every_byte) {
  const std::string full =
      "{\"seq\":1044,\"status\":\"rejected\",\"error\":{\"code\":\"GS1_CHECK_DIGIT\",\"message\":\"AI (01) \\u2026 \\ud83d\\udce6\"},"
      "\"parcel\":{\"id\":\"sscc:1\",\"qty\":2.5e1,\"location\":null,\"ok\":true,\"list\":[1,[2,{}]]}}";
  Ack a;
  REQUIRE(parse(full, &a) == AckParseError::None);
  for (size_t n = 0; n < full.size(); ++n) {
    const AckParseError e = parse(full.substr(0, n), &a);
    if (e == AckParseError::None) reportFailure(__FILE__, __LINE__, "prefix of " + std::to_string(n) + " bytes accepted");
    ++g_checks;
  }
}

TEST(ack_huge_and_deep) {
  Ack a;
  // Over the size limit: refused before looking at it.
  std::string huge = "{\"seq\":1,\"status\":\"accepted\",\"pad\":\"" + std::string(kMaxAckPayload, 'p') + "\"}";
  CHECK_EQ(parse(huge, &a), AckParseError::TooLarge);
  // Just under the limit: parsed.
  std::string big = "{\"seq\":1,\"status\":\"accepted\",\"pad\":\"";
  big += std::string(kMaxAckPayload - big.size() - 2, 'p') + "\"}";
  CHECK_EQ(big.size(), kMaxAckPayload);
  CHECK_EQ(parse(big, &a), AckParseError::None);
  // Nesting: kMaxAckDepth levels are fine, one more is refused (no stack overflow on 10^5 '[').
  auto nested = [](int levels) {
    std::string s = "{\"seq\":1,\"status\":\"accepted\",\"x\":";
    for (int i = 1; i < levels; ++i) s += "[";
    s += "0";
    for (int i = 1; i < levels; ++i) s += "]";
    return s + "}";
  };
  CHECK_EQ(parse(nested(kMaxAckDepth), &a), AckParseError::None);
  CHECK_EQ(parse(nested(kMaxAckDepth + 1), &a), AckParseError::TooDeep);
  CHECK_EQ(parse(std::string(100000, '['), &a), AckParseError::TooLarge);
  CHECK_EQ(parse(std::string(kMaxAckPayload, '['), &a), AckParseError::TooDeep);
  CHECK_EQ(parse("{\"error\":" + std::string(15, '[') + std::string(15, ']') + ",\"status\":\"accepted\"}", &a), AckParseError::None);
  CHECK_EQ(parse("{\"a\":{\"b\":{\"c\":{\"d\":{\"e\":{\"f\":{\"g\":{\"h\":{\"i\":{\"j\":{\"k\":{\"l\":{\"m\":{\"n\":{\"o\":{\"p\":{}}}}}}}}}}}}}}}},\"status\":\"accepted\"}", &a),
           AckParseError::TooDeep);
}

TEST(ack_fuzz_never_crashes) {
  // Random mutations of real acks: whatever the verdict, no crash, no read past the end
  // (AddressSanitizer), and anything accepted has a valid status.
  const std::string seeds[] = {
      "{\"seq\":1042,\"status\":\"accepted\",\"event\":\"6f1c\",\"parcel\":{\"id\":\"sscc:1\",\"status\":\"in_store\",\"qty\":25,\"location\":\"KKR-KBG\",\"item\":\"BERAS\"}}",
      "{\"seq\":null,\"status\":\"rejected\",\"error\":{\"code\":\"BAD_JSON\",\"message\":\"the scan is not valid JSON: \\\"x\\\" \\u00e9\"}}",
      "{\"seq\":3,\"status\":\"duplicate\",\"event\":\"e\",\"parcel\":{\"id\":\"code:x\",\"status\":\"gone\",\"qty\":0,\"location\":null,\"item\":null}}",
  };
  const char alphabet[] = "{}[]\":,\\u0123456789eE+-.truefalsn \t\n\x1d\x00\xff";
  Rng rng(12345);
  Ack a;
  int accepted = 0;
  for (int iter = 0; iter < 30000; ++iter) {
    std::string s = seeds[iter % 3];
    const int edits = 1 + static_cast<int>(rng.below(4));
    for (int e = 0; e < edits; ++e) {
      const size_t pos = rng.below(static_cast<uint32_t>(s.size() + 1));
      const char c = alphabet[rng.below(sizeof alphabet - 1)];
      switch (rng.below(3)) {
        case 0: if (pos < s.size()) s[pos] = c; break;
        case 1: s.insert(pos, 1, c); break;
        default: if (pos < s.size()) s.erase(pos, 1 + rng.below(8)); break;
      }
    }
    const AckParseError err = parse(s, &a);
    if (err == AckParseError::None) {
      ++accepted;
      CHECK(a.status == AckStatus::Accepted || a.status == AckStatus::Duplicate || a.status == AckStatus::Rejected);
      CHECK(!a.hasSeq || a.seq <= kMaxSeq);
      CHECK(strlen(a.errorCode) < sizeof a.errorCode);
    }
  }
  CHECK(accepted > 100);  // the mutations are not all fatal: the accepting paths are exercised too
}

TEST(ack_decisions_and_feedback) {
  Ack a;
  REQUIRE(parse("{\"seq\":1,\"status\":\"accepted\"}", &a) == AckParseError::None);
  AckDecision d = decideAck(a);
  CHECK(d.removeFromBuffer);
  CHECK_EQ(d.signal, Signal::Accepted);
  REQUIRE(parse("{\"seq\":1,\"status\":\"duplicate\"}", &a) == AckParseError::None);
  d = decideAck(a);
  CHECK(d.removeFromBuffer);
  CHECK_EQ(d.signal, Signal::Duplicate);
  for (const char* code : {"GS1_CHECK_DIGIT", "EAN_CHECK_DIGIT", "VALIDATION", "BAD_JSON", "PAYLOAD_TOO_LARGE", "UNAUTHENTICATED"}) {
    REQUIRE(parse(std::string("{\"seq\":1,\"status\":\"rejected\",\"error\":{\"code\":\"") + code + "\",\"message\":\"m\"}}", &a) ==
            AckParseError::None);
    d = decideAck(a);
    CHECK(d.removeFromBuffer);  // final: the label or the data is wrong
    CHECK_EQ(d.signal, Signal::Rejected);
  }
  for (const char* code : {"STORAGE_FULL", "STORAGE_UNAVAILABLE"}) {
    REQUIRE(parse(std::string("{\"seq\":1,\"status\":\"rejected\",\"error\":{\"code\":\"") + code + "\",\"message\":\"m\"}}", &a) ==
            AckParseError::None);
    d = decideAck(a);
    CHECK(!d.removeFromBuffer);  // keep and retry
    CHECK_EQ(d.signal, Signal::Retrying);
  }
  REQUIRE(parse("{\"seq\":1,\"status\":\"rejected\"}", &a) == AckParseError::None);
  CHECK(decideAck(a).removeFromBuffer);
  REQUIRE(parse("{\"seq\":null,\"status\":\"rejected\",\"error\":{\"code\":\"BAD_JSON\",\"message\":\"m\"}}", &a) == AckParseError::None);
  CHECK(!decideAck(a).removeFromBuffer);  // no seq: nothing to remove
  CHECK_EQ(decideAck(a).signal, Signal::Rejected);
  CHECK(!isRetryableErrorCode(nullptr));
  CHECK(!isRetryableErrorCode("storage_full"));

  // accepted = 1 short beep + green; duplicate = 2 short beeps + green; rejected = long beep + red.
  const Feedback acc = feedbackFor(Signal::Accepted), dup = feedbackFor(Signal::Duplicate), rej = feedbackFor(Signal::Rejected);
  CHECK(acc.beeps == 1 && acc.beepMs <= 150 && acc.led == Led::Green);
  CHECK(dup.beeps == 2 && dup.beepMs <= 150 && dup.gapMs > 0 && dup.led == Led::Green);
  CHECK(rej.beeps == 1 && rej.beepMs >= 500 && rej.led == Led::Red);
  const Feedback full = feedbackFor(Signal::BufferFull);
  CHECK(full.led == Led::Red && full.beeps >= 2);  // distinct from any ack
  CHECK(feedbackFor(Signal::Retrying).beeps == 0);
  CHECK(feedbackFor(Signal::None).beeps == 0 && feedbackFor(Signal::None).led == Led::Off);
}

// =============================================================================================
// Retry timing

TEST(backoff_schedule) {
  Backoff b(zeroRandom, nullptr);
  const uint32_t want[] = {1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000, 60000};
  for (uint32_t w : want) CHECK_EQ(b.next(), w);
  b.reset();
  CHECK_EQ(b.next(), 1000u);
  // Jitter: always within [3/4 d, d], never above the cap.
  Backoff j(maxRandom, nullptr);
  for (uint32_t w : want) {
    const uint32_t d = j.next();
    CHECK(d >= w - w / 4 && d <= w);
  }
  Rng rng(7);
  std::set<uint32_t> seen;
  for (int dev = 0; dev < 50; ++dev) {
    Backoff r(Rng::call, &rng);
    uint32_t prevNominal = 0;
    for (int i = 0; i < 12; ++i) {
      const uint32_t nominal = r.nominal();
      const uint32_t d = r.next();
      CHECK(d >= nominal - nominal / 4 && d <= nominal && d <= 60000);
      CHECK(nominal >= prevNominal);
      prevNominal = nominal;
      if (i == 6) seen.insert(d);
    }
  }
  CHECK(seen.size() > 25);  // 50 devices at the 7th attempt: spread out, not in lock step
  // Huge attempt counts do not overflow.
  Backoff o(zeroRandom, nullptr);
  for (int i = 0; i < 100; ++i) o.next();
  CHECK_EQ(o.next(), 60000u);
}

namespace {
// A pending list for the scheduler tests.
struct FakePending : PendingView {
  std::set<uint64_t> seqs;
  bool firstPendingAtOrAfter(uint64_t from, uint64_t* seq) const override {
    auto it = seqs.lower_bound(from);
    if (it == seqs.end()) return false;
    *seq = *it;
    return true;
  }
  size_t countPendingBefore(uint64_t seq) const override {
    return static_cast<size_t>(std::distance(seqs.begin(), seqs.lower_bound(seq)));
  }
};

std::vector<uint64_t> drain(SendScheduler& s, const FakePending& p, uint32_t now) {
  std::vector<uint64_t> out;
  uint64_t seq;
  while (out.size() < 1000 && s.next(p, now, &seq)) {
    out.push_back(seq);
    s.onPublished(seq, now);
  }
  return out;
}
}  // namespace

TEST(send_scheduler_order_window_and_resend) {
  FakePending p;
  for (uint64_t s = 10; s < 30; ++s) p.seqs.insert(s);
  SendScheduler s(zeroRandom, nullptr, 10000, 8);
  uint64_t seq;
  CHECK(!s.next(p, 0, &seq));  // not connected: nothing
  s.onConnected(1000);
  // Oldest first, at most 8 unacked.
  CHECK(drain(s, p, 1000) == std::vector<uint64_t>({10, 11, 12, 13, 14, 15, 16, 17}));
  // Acks for 10 and 11: two more go out.
  p.seqs.erase(10);
  p.seqs.erase(11);
  s.onAckRemoved(2000);
  CHECK(drain(s, p, 2000) == std::vector<uint64_t>({18, 19}));
  // No ack for 10 s after the last progress: nothing before the deadline, then a resend from the oldest.
  CHECK(drain(s, p, 11999).empty());
  CHECK(drain(s, p, 12000) == std::vector<uint64_t>({12, 13, 14, 15, 16, 17, 18, 19}));
  CHECK_EQ(s.resendRounds(), 1u);
  // Disconnect: nothing; reconnect: everything pending again, oldest first.
  s.onDisconnected();
  CHECK(drain(s, p, 13000).empty());
  s.onConnected(14000);
  CHECK(drain(s, p, 14000) == std::vector<uint64_t>({12, 13, 14, 15, 16, 17, 18, 19}));
  // A new scan while 8 are unacked waits for room.
  p.seqs.insert(30);
  CHECK(drain(s, p, 14500).empty());
  for (uint64_t q = 12; q < 20; ++q) p.seqs.erase(q);
  s.onAckRemoved(15000);
  CHECK(drain(s, p, 15000) == std::vector<uint64_t>({20, 21, 22, 23, 24, 25, 26, 27}));
}

TEST(send_scheduler_backoff_when_acks_never_come) {
  // STORAGE_FULL rejections (or silence): the scan stays; the first resend comes after the 10 s
  // ack timeout, the next ones after max(10 s, back-off 1, 2, 4, 8, 16, 32, 60 s):
  // 10, 10, 10, 10, 10, 16, 32, 60, 60 s. Any progress resets it.
  FakePending p;
  p.seqs.insert(5);
  SendScheduler s(zeroRandom, nullptr);
  s.onConnected(0);
  uint32_t now = 0;
  CHECK(drain(s, p, now) == std::vector<uint64_t>({5}));
  const uint32_t gaps[] = {10000, 10000, 10000, 10000, 10000, 16000, 32000, 60000, 60000};
  for (uint32_t gap : gaps) {
    CHECK(drain(s, p, now + gap - 1).empty());
    now += gap;
    CHECK(drain(s, p, now) == std::vector<uint64_t>({5}));
  }
  s.onAckRemoved(now);
  CHECK_EQ(s.currentTimeoutMs(), 10000u);
  p.seqs.insert(6);
  p.seqs.erase(5);
  CHECK(drain(s, p, now) == std::vector<uint64_t>({6}));
  CHECK(drain(s, p, now + 9999).empty());
  CHECK(drain(s, p, now + 10000) == std::vector<uint64_t>({6}));
  // millis() wrap-around: deadlines across the wrap.
  SendScheduler w(zeroRandom, nullptr);
  w.onConnected(0xFFFFF000u);
  CHECK(drain(w, p, 0xFFFFF000u) == std::vector<uint64_t>({6}));
  CHECK(drain(w, p, 0xFFFFF000u + 9999u).empty());
  CHECK(drain(w, p, 0xFFFFF000u + 10000u) == std::vector<uint64_t>({6}));
}

// =============================================================================================
// Ring buffer

TEST(ring_push_ack_read_recover) {
  FakeFlash f(1024, 4);
  auto rb = mount(f);
  CHECK_EQ(rb->nextSeq(), static_cast<uint64_t>(0));
  CHECK_EQ(rb->pendingCount(), static_cast<size_t>(0));
  CHECK_EQ(rb->recoveryInfo().blankSectors, 4u);
  Model m;
  for (uint64_t k = 0; k < 20; ++k) {
    const std::string code = codeOf(k, 1 + (k * 37) % 120);
    uint64_t seq = 99;
    REQUIRE(rb->push(bytes(code), code.size(), static_cast<uint8_t>(k % 9), &seq) == RbStatus::Ok);
    CHECK_EQ(seq, k);
    m.pushed(seq, code);
  }
  CHECK_MODEL(*rb, m);
  uint8_t buf[kMaxCodeLen];
  size_t len;
  uint8_t action;
  CHECK_EQ(rb->read(4, buf, sizeof buf, &len, &action), RbStatus::Ok);
  CHECK_EQ(action, static_cast<uint8_t>(4));
  CHECK_EQ(rb->read(4, buf, 3, &len, &action), RbStatus::TooLong);
  for (uint64_t s : {0ull, 3ull, 4ull, 19ull, 7ull}) {
    CHECK_EQ(rb->ack(s), RbStatus::Ok);
    m.ackd(s);
  }
  CHECK_EQ(rb->ack(3), RbStatus::NotFound);
  CHECK_EQ(rb->ack(1000), RbStatus::NotFound);
  CHECK_EQ(rb->read(3, buf, sizeof buf, &len, &action), RbStatus::NotFound);
  CHECK_MODEL(*rb, m);
  uint64_t s = 0;
  CHECK(rb->firstPendingAtOrAfter(3, &s) && s == 5);
  CHECK_EQ(rb->countPendingBefore(7), static_cast<size_t>(4));  // 1, 2, 5, 6

  // Reboot: the same pending list, the same next seq.
  auto rb2 = mount(f);
  CHECK_MODEL(*rb2, m);
  CHECK_EQ(rb2->nextSeq(), static_cast<uint64_t>(20));
  CHECK_EQ(rb2->recoveryInfo().records, 20u);
  CHECK_EQ(rb2->recoveryInfo().tornTails, 0u);
  // File-backed flash: saved to a file, loaded into another fake (a reboot "elsewhere").
  const char* tmp = getenv("TMPDIR");
  const std::string path = std::string(tmp && *tmp ? tmp : "/tmp") + "/posko-fake-flash-" + std::to_string(getpid()) + ".bin";
  REQUIRE(f.save(path));
  FakeFlash copy(1024, 4);
  REQUIRE(copy.load(path));
  remove(path.c_str());
  auto fromFile = mount(copy);
  CHECK_MODEL(*fromFile, m);
  CHECK_EQ(fromFile->nextSeq(), static_cast<uint64_t>(20));
  // Appends continue after recovery.
  const std::string code = "after-reboot";
  CHECK_EQ(rb2->push(bytes(code), code.size(), RingBuffer::kNoAction, &s), RbStatus::Ok);
  CHECK_EQ(s, static_cast<uint64_t>(20));
  m.pushed(s, code);
  auto rb3 = mount(f);
  CHECK_MODEL(*rb3, m);
  // Refused input.
  CHECK_EQ(rb3->push(bytes(code), 0, 0, &s), RbStatus::Empty);
  const std::string tooLong(kMaxCodeLen + 1, 'x');
  CHECK_EQ(rb3->push(bytes(tooLong), tooLong.size(), 0, &s), RbStatus::TooLong);
  const std::string longest(kMaxCodeLen, '\x1d');
  CHECK_EQ(rb3->push(bytes(longest), longest.size(), 0, &s), RbStatus::Ok);
  m.pushed(s, longest);
  CHECK_MODEL(*rb3, m);
  CHECK_EQ(f.violations(), 0L);  // never asked the flash to raise a bit
  RingBuffer unmounted(f);
  CHECK_EQ(unmounted.push(bytes(code), code.size(), 0, &s), RbStatus::NotMounted);
}

TEST(ring_full_buffer_refuses_and_never_overwrites) {
  FakeFlash f(1024, 4);  // 8 records of 100 bytes per sector
  auto rb = mount(f);
  Model m;
  uint64_t seq = 0;
  RbStatus st = RbStatus::Ok;
  uint64_t k = 0;
  for (; k < 100; ++k) {
    const std::string code = codeOf(k, 100);
    st = rb->push(bytes(code), code.size(), 0, &seq);
    if (st != RbStatus::Ok) break;
    m.pushed(seq, code);
  }
  CHECK_EQ(st, RbStatus::Full);  // a distinct signal
  CHECK_EQ(k, static_cast<uint64_t>(32));
  CHECK_EQ(rb->reusableSectors(), 0u);
  CHECK_MODEL(*rb, m);
  const uint64_t nextBefore = rb->nextSeq();
  const std::string another = codeOf(999, 100);
  // Still full; no seq consumed by a refusal.
  CHECK_EQ(rb->push(bytes(another), another.size(), 0, &seq), RbStatus::Full);
  CHECK_EQ(rb->nextSeq(), nextBefore);
  // Acks scattered over sectors free none of them: still full, nothing overwritten.
  for (uint64_t s : {1ull, 9ull, 17ull, 25ull}) {
    CHECK_EQ(rb->ack(s), RbStatus::Ok);
    m.ackd(s);
  }
  CHECK_EQ(rb->push(bytes(another), another.size(), 0, &seq), RbStatus::Full);
  CHECK_MODEL(*rb, m);
  // After a reboot too.
  auto again = mount(f);
  CHECK_EQ(again->push(bytes(another), another.size(), 0, &seq), RbStatus::Full);
  CHECK_MODEL(*again, m);
  // Acking every record of the oldest sector makes it reusable: erased, reused.
  for (uint64_t s = 0; s < 8; ++s) {
    if (m.pending.count(s)) {
      CHECK_EQ(again->ack(s), RbStatus::Ok);
      m.ackd(s);
    }
  }
  CHECK_EQ(again->reusableSectors(), 1u);
  const uint32_t erasesBefore = f.eraseCount(0);
  const std::string code = codeOf(1000, 100);
  CHECK_EQ(again->push(bytes(code), code.size(), 0, &seq), RbStatus::Ok);
  CHECK_EQ(seq, nextBefore);
  m.pushed(seq, code);
  CHECK_EQ(f.eraseCount(0), erasesBefore + 1);
  CHECK_MODEL(*again, m);
  auto third = mount(f);
  CHECK_MODEL(*third, m);
  CHECK_EQ(third->nextSeq(), nextBefore + 1);
  CHECK_EQ(f.violations(), 0L);
}

TEST(ring_pending_index_full) {
  FakeFlash f(4096, 64);  // room for far more records than the RAM index holds
  auto rb = mount(f);
  uint64_t seq = 0;
  size_t n = 0;
  RbStatus st = RbStatus::Ok;
  while (n < 5000 && (st = rb->push(bytes("A"), 1, 0, &seq)) == RbStatus::Ok) ++n;
  CHECK_EQ(st, RbStatus::Full);
  CHECK_EQ(n, RingBuffer::kMaxPending);
  CHECK_EQ(rb->ack(0), RbStatus::Ok);
  CHECK_EQ(rb->push(bytes("B"), 1, 0, &seq), RbStatus::Ok);
  auto again = mount(f);
  CHECK_EQ(again->pendingCount(), RingBuffer::kMaxPending);
  CHECK_EQ(again->recoveryInfo().droppedPending, 0u);
}

TEST(ring_sector_reuse_long_run_with_reboots) {
  FakeFlash f(1024, 4);
  auto rb = mount(f);
  Model m;
  Rng rng(99);
  uint64_t lastSeq = 0;
  bool any = false;
  int fulls = 0, reboots = 0, maintained = 0;
  for (int step = 0; step < 20000; ++step) {
    const uint32_t r = rng.below(100);
    if (r < 45) {
      const std::string code = codeOf(static_cast<uint64_t>(step), 1 + rng.below(rng.chance(10) ? 512 : 60));
      uint64_t seq = 0;
      const RbStatus st = rb->push(bytes(code), code.size(), static_cast<uint8_t>(rng.below(9)), &seq);
      if (st == RbStatus::Full) {
        ++fulls;
        continue;
      }
      REQUIRE(st == RbStatus::Ok);
      if (any) CHECK(seq > lastSeq);
      lastSeq = seq;
      any = true;
      m.pushed(seq, code);
    } else if (r < 90) {
      if (m.pending.empty()) continue;
      // Mostly the oldest (acks come in order), sometimes any.
      auto it = m.pending.begin();
      if (rng.chance(30)) std::advance(it, rng.below(static_cast<uint32_t>(m.pending.size())));
      const uint64_t seq = it->first;
      REQUIRE(rb->ack(seq) == RbStatus::Ok);
      m.ackd(seq);
    } else if (r < 93) {
      if (rb->maintain()) ++maintained;
    } else if (r < 95) {
      rb = mount(f);
      ++reboots;
      CHECK_MODEL(*rb, m);
      if (any) CHECK(rb->nextSeq() > lastSeq);
    }
  }
  CHECK_MODEL(*rb, m);
  CHECK(fulls > 0);
  CHECK(reboots > 100);
  CHECK(maintained > 0);
  CHECK_EQ(f.violations(), 0L);
  // Wear spreads over the sectors.
  uint32_t lo = 0xFFFFFFFFu, hi = 0;
  for (uint32_t s = 0; s < 4; ++s) {
    lo = std::min(lo, f.eraseCount(s));
    hi = std::max(hi, f.eraseCount(s));
  }
  CHECK(lo > 50);
  CHECK(hi - lo <= hi / 4 + 2);
}

TEST(ring_seq_survives_when_everything_is_acked_and_erased) {
  FakeFlash f(1024, 3);
  Model m;
  {
    auto rb = mount(f);
    for (int k = 0; k < 50; ++k) {
      uint64_t seq;
      const std::string code = codeOf(static_cast<uint64_t>(k), 100);
      REQUIRE(rb->push(bytes(code), code.size(), 0, &seq) == RbStatus::Ok);
      REQUIRE(rb->ack(seq) == RbStatus::Ok);
    }
    while (rb->maintain()) {
    }
    CHECK_EQ(rb->nextSeq(), static_cast<uint64_t>(50));
  }
  // Only the newest sector is left with data; the counter is still there.
  auto rb = mount(f);
  CHECK_EQ(rb->nextSeq(), static_cast<uint64_t>(50));
  CHECK_EQ(rb->pendingCount(), static_cast<size_t>(0));
  CHECK_EQ(rb->recoveryInfo().activeSectors, 1u);
  // A sector opened and then left empty still carries the counter (its header's base seq): the
  // power goes between the new sector's header and its first record, then the old sector, all
  // acked, is reclaimed. Only the empty sector is left to say where the counter was.
  FakeFlash g(1024, 2);
  {
    auto a = mount(g);
    uint64_t seq;
    for (int k = 0; k < 8; ++k) {
      REQUIRE(a->push(bytes(codeOf(k, 100)), 100, 0, &seq) == RbStatus::Ok);
      REQUIRE(a->ack(seq) == RbStatus::Ok);
    }
    g.armPowerCut(RingBuffer::kSectorHeaderSize);  // sector 1 is blank: header, then the record
    CHECK(a->push(bytes(codeOf(8, 100)), 100, 0, &seq) != RbStatus::Ok);
    g.powerOn();
  }
  {
    auto a = mount(g);
    CHECK_EQ(a->recoveryInfo().activeSectors, 2u);
    CHECK_EQ(a->nextSeq(), static_cast<uint64_t>(8));
    CHECK(a->maintain());  // erases sector 0
  }
  auto b = mount(g);
  CHECK_EQ(b->recoveryInfo().activeSectors, 1u);
  CHECK_EQ(b->recoveryInfo().records, 0u);
  CHECK_EQ(b->nextSeq(), static_cast<uint64_t>(8));
  // A seq floor (set after a wiped partition) lifts the counter, never lowers it.
  FakeFlash wiped(1024, 2);
  CHECK_EQ(mount(wiped, 5000)->nextSeq(), static_cast<uint64_t>(5000));
  CHECK_EQ(mount(g, 3)->nextSeq(), static_cast<uint64_t>(8));
}

TEST(ring_recovers_from_garbage_and_bad_geometry) {
  FakeFlash f(1024, 4);
  Rng rng(5);
  for (auto& b : f.mem()) b = static_cast<uint8_t>(rng.next());
  auto rb = mount(f);
  CHECK_EQ(rb->pendingCount(), static_cast<size_t>(0));
  CHECK_EQ(rb->recoveryInfo().garbageSectors, 4u);
  uint64_t seq;
  Model m;
  for (int k = 0; k < 20; ++k) {
    REQUIRE(rb->push(bytes(codeOf(k, 90)), 90, 0, &seq) == RbStatus::Ok);
    m.pushed(seq, codeOf(k, 90));
  }
  auto again = mount(f);
  CHECK_MODEL(*again, m);
  CHECK_EQ(f.violations(), 0L);

  // Stray programmed bytes in the free area (a write that landed out of order, a glitch): the
  // sector is not appended to any more (writing over them would corrupt the new record).
  FakeFlash h(1024, 2);
  Model hm;
  {
    auto a = mount(h);
    REQUIRE(a->push(bytes("first"), 5, 0, &seq) == RbStatus::Ok);
    hm.pushed(seq, "first");
  }
  h.mem()[20 + 28 + 30] = 0x00;  // 30 bytes past the end of the only record
  {
    auto a = mount(h);
    CHECK_MODEL(*a, hm);
    CHECK_EQ(a->recoveryInfo().tornTails, 1u);
    REQUIRE(a->push(bytes(codeOf(1, 80)), 80, 0, &seq) == RbStatus::Ok);
    hm.pushed(seq, codeOf(1, 80));
  }
  auto ha = mount(h);
  CHECK_MODEL(*ha, hm);
  CHECK_EQ(h.violations(), 0L);

  FakeFlash tiny(256, 4), one(4096, 1), odd(1026, 4), many(1024, RingBuffer::kMaxSectors + 1);
  for (FakeFlash* bad : {&tiny, &one, &odd, &many}) {
    RingBuffer r(*bad);
    CHECK_EQ(r.begin(), RbStatus::BadGeometry);
    CHECK(!r.mounted());
  }
}

TEST(ring_detects_rot_and_skips_only_the_bad_record) {
  FakeFlash f(1024, 4);
  auto rb = mount(f);
  Model m;
  uint64_t seq;
  for (int k = 0; k < 6; ++k) {
    REQUIRE(rb->push(bytes(codeOf(k, 50)), 50, 0, &seq) == RbStatus::Ok);
    m.pushed(seq, codeOf(k, 50));
  }
  // Rot one bit in the code of seq 2 (record 3 in sector 0: 20 + 2*72 + 20 + 5).
  const uint32_t addr = 20 + 2 * 72 + 20 + 5;
  f.mem()[addr] ^= 0x04;
  uint8_t buf[kMaxCodeLen];
  size_t len;
  CHECK_EQ(rb->read(2, buf, sizeof buf, &len, nullptr), RbStatus::Corrupt);
  // The sketch drops an unreadable scan (ack) rather than sending garbage.
  auto again = mount(f);
  m.pending.erase(2);
  CHECK_MODEL(*again, m);  // the records after it are still there
  CHECK_EQ(again->recoveryInfo().corruptRecords, 1u);
  CHECK(again->nextSeq() >= 6);
}

TEST(ring_write_failure_closes_sector_and_skips_seq) {
  FakeFlash f(1024, 4);
  auto rb = mount(f);
  Model m;
  uint64_t seq;
  REQUIRE(rb->push(bytes("one"), 3, 0, &seq) == RbStatus::Ok);
  m.pushed(seq, "one");
  f.failNextWrites(1);
  CHECK_EQ(rb->push(bytes("two"), 3, 0, &seq), RbStatus::IoError);
  CHECK_EQ(rb->push(bytes("three"), 5, 0, &seq), RbStatus::Ok);
  CHECK_EQ(seq, static_cast<uint64_t>(2));  // 1 may be half on flash: never used
  m.pushed(seq, "three");
  CHECK_MODEL(*rb, m);
  auto again = mount(f);
  CHECK_MODEL(*again, m);
  CHECK_EQ(again->nextSeq(), static_cast<uint64_t>(3));
}

// ---------------------------------------------------------------------------------------------
// Power cuts

namespace {

enum class Scenario { AppendInHead, OpenNewSector };

// Brings a flash into the scenario's state through the public API; returns the live buffer.
std::unique_ptr<RingBuffer> prepare(FakeFlash& f, Model& m, Scenario sc) {
  auto rb = mount(f);
  uint64_t seq;
  if (sc == Scenario::AppendInHead) {
    for (int k = 0; k < 3; ++k) {
      const std::string code = codeOf(static_cast<uint64_t>(k), 10 + 40 * static_cast<size_t>(k));
      rb->push(bytes(code), code.size(), 0, &seq);
      m.pushed(seq, code);
    }
    rb->ack(1);
    m.ackd(1);
  } else {
    // 3 sectors full (8 x 100-byte records each); the first one all acked, plus a few others.
    for (int k = 0; k < 24; ++k) {
      const std::string code = codeOf(static_cast<uint64_t>(k), 100);
      rb->push(bytes(code), code.size(), 0, &seq);
      m.pushed(seq, code);
    }
    for (uint64_t s : {0ull, 1ull, 2ull, 3ull, 4ull, 5ull, 6ull, 7ull, 9ull, 23ull}) {
      rb->ack(s);
      m.ackd(s);
    }
  }
  return rb;
}

// After a reboot: more work, another reboot, everything still consistent.
void keepGoing(FakeFlash& f, Model& m, std::unique_ptr<RingBuffer>& rb) {
  uint64_t seq;
  for (int k = 0; k < 30; ++k) {
    const std::string code = codeOf(5000 + static_cast<uint64_t>(k), 1 + static_cast<size_t>(k) * 7);
    if (!m.pending.empty() && k % 2 == 0) {
      const uint64_t oldest = m.pending.begin()->first;
      if (rb->ack(oldest) != RbStatus::Ok) reportFailure(__FILE__, __LINE__, "ack after recovery");
      m.ackd(oldest);
    }
    const RbStatus st = rb->push(bytes(code), code.size(), 0, &seq);
    if (st == RbStatus::Ok) {
      if (m.anyIssued && seq <= m.maxIssued) reportFailure(__FILE__, __LINE__, "seq went backwards after recovery");
      m.pushed(seq, code);
    } else if (st != RbStatus::Full) {
      reportFailure(__FILE__, __LINE__, std::string("push after recovery: ") + rbStatusName(st));
    }
  }
  rb = mount(f);
  CHECK_MODEL(*rb, m);
}

}  // namespace

TEST(power_cut_at_every_byte_of_a_push) {
  const uint8_t masks[] = {0x00, 0xFF, 0x5A, 0x81};
  const FakeFlash::EraseTear tears[] = {FakeFlash::EraseTear::Nothing, FakeFlash::EraseTear::Prefix,
                                        FakeFlash::EraseTear::Suffix, FakeFlash::EraseTear::Random};
  int cuts = 0, touchedCuts = 0;
  for (Scenario sc : {Scenario::AppendInHead, Scenario::OpenNewSector}) {
    const std::string code = sc == Scenario::AppendInHead ? codeOf(777, 45) : codeOf(777, 100);
    // Dry run: how many budget units the push takes, and where its record goes.
    uint64_t units = 0, unitsBeforeRecord = 0, dryAddr = 0, drySeq = 0;
    {
      FakeFlash dry(1024, 3);
      Model dm;
      auto rb = prepare(dry, dm, sc);
      const uint64_t before = dry.units();
      uint64_t seq;
      if (rb->push(bytes(code), code.size(), 3, &seq) != RbStatus::Ok) {
        reportFailure(__FILE__, __LINE__, "dry run push");
        return;
      }
      units = dry.units() - before;
      unitsBeforeRecord = units - (RingBuffer::kRecordHeaderSize + code.size());
      dryAddr = rb->lastRecordAddr();
      drySeq = seq;
    }
    CHECK(units > 0);
    if (sc == Scenario::OpenNewSector) CHECK(unitsBeforeRecord == 4 + 1 + RingBuffer::kSectorHeaderSize);  // retire, erase, header
    for (uint64_t budget = 0; budget <= units; ++budget) {
      for (size_t mi = 0; mi < sizeof masks; ++mi) {
        for (size_t ti = 0; ti < 4; ++ti) {
          if (ti > 0 && !(sc == Scenario::OpenNewSector && budget == 4)) continue;  // tear kinds matter for the erase only
          FakeFlash f(1024, 3);
          Model m;
          auto rb = prepare(f, m, sc);
          const uint64_t expectSeq = rb->nextSeq();
          CHECK_EQ(expectSeq, drySeq);
          f.armPowerCut(static_cast<long>(budget), masks[mi], tears[ti], 37u * static_cast<uint32_t>(budget) + 300u * static_cast<uint32_t>(ti));
          uint64_t seq = 0;
          const RbStatus st = rb->push(bytes(code), code.size(), 3, &seq);
          if (budget < units) {
            CHECK(st != RbStatus::Ok);
            CHECK(f.dead());
          } else {
            CHECK_EQ(st, RbStatus::Ok);  // the cut comes right after the push returned
            m.pushed(seq, code);
          }
          f.powerOn();
          ++cuts;
          const bool touched = st != RbStatus::Ok && budget >= unitsBeforeRecord &&
                               anyNotErased(f.mem(), static_cast<uint32_t>(dryAddr), RingBuffer::kRecordHeaderSize + code.size());
          if (touched) ++touchedCuts;
          rb = mount(f);
          // The cut came after the last byte that mattered (the torn byte got its final value):
          // the record is whole on flash, so it is a pending scan like any other and will be
          // sent (at least once; the volunteer may scan again, under a new seq).
          uint64_t first = 0;
          if (st != RbStatus::Ok && rb->firstPendingAtOrAfter(expectSeq, &first) && first == expectSeq) {
            CHECK(budget + 1 >= units);
            m.pushed(expectSeq, code);  // CHECK_MODEL then checks its bytes
          }
          // Nothing pushed before is lost, nothing acked comes back.
          CHECK_MODEL(*rb, m);
          // The counter never goes back: never below what was handed out, and past the torn
          // record's seq as soon as any of it reached the flash.
          CHECK(rb->nextSeq() >= expectSeq);
          if (st == RbStatus::Ok) CHECK(rb->nextSeq() > seq);
          if (touched && rb->nextSeq() <= expectSeq)
            reportFailure(__FILE__, __LINE__, "seq " + std::to_string(expectSeq) + " reusable after a torn write, budget " + std::to_string(budget));
          CHECK_EQ(f.violations(), 0L);
          keepGoing(f, m, rb);
        }
      }
    }
  }
  CHECK(cuts > 500);
  CHECK(touchedCuts > 100);
}

TEST(power_cut_while_acking) {
  const uint8_t masks[] = {0x00, 0x01, 0x80, 0xFF};
  for (uint8_t mask : masks) {
    FakeFlash f(1024, 3);
    Model m;
    auto rb = prepare(f, m, Scenario::AppendInHead);
    f.armPowerCut(0, mask);
    CHECK_EQ(rb->ack(2), RbStatus::IoError);
    f.powerOn();
    rb = mount(f);
    // Either still pending (nothing programmed: it is sent again, the gateway says duplicate) or
    // acked (any bit programmed). The other records are untouched.
    if (mask != 0x00) m.ackd(2);
    CHECK_MODEL(*rb, m);
    CHECK_EQ(rb->nextSeq(), static_cast<uint64_t>(3));
  }
}

TEST(power_cut_while_reclaiming_a_sector) {
  const FakeFlash::EraseTear tears[] = {FakeFlash::EraseTear::Nothing, FakeFlash::EraseTear::Prefix,
                                        FakeFlash::EraseTear::Suffix, FakeFlash::EraseTear::Random};
  const uint32_t params[] = {0, 1, 3, 4, 7, 19, 20, 21, 120, 500, 1023, 1024};
  int runs = 0;
  for (uint64_t budget = 0; budget <= 5; ++budget) {  // 4 bytes of retire, then the erase
    for (const uint8_t mask : {0x00, 0xFF, 0x3C}) {
      for (FakeFlash::EraseTear tear : tears) {
        for (uint32_t param : params) {
          FakeFlash f(1024, 3);
          Model m;
          auto rb = prepare(f, m, Scenario::OpenNewSector);
          // Ack the rest of sector 1 too: a reclaimable sector full of acked records, the very
          // case where a half-erased sector could bring acked scans back.
          for (uint64_t s = 8; s < 16; ++s)
            if (m.pending.count(s)) {
              rb->ack(s);
              m.ackd(s);
            }
          const uint64_t next = rb->nextSeq();
          f.armPowerCut(static_cast<long>(budget), mask, tear, param);
          const bool erased = rb->maintain();
          CHECK_EQ(erased, budget == 5);
          f.powerOn();
          rb = mount(f);
          CHECK_MODEL(*rb, m);
          CHECK_EQ(rb->nextSeq(), next);
          CHECK_EQ(f.violations(), 0L);
          keepGoing(f, m, rb);
          ++runs;
        }
      }
    }
  }
  CHECK(runs > 400);
}

TEST(power_cuts_at_random_points_of_a_long_run) {
  Rng rng(2024);
  FakeFlash f(1024, 4);
  auto rb = mount(f);
  Model m;
  int cuts = 0;
  for (int round = 0; round < 3000; ++round) {
    if (rng.chance(20)) f.armPowerCut(static_cast<long>(rng.below(400)), static_cast<uint8_t>(rng.next()),
                                      static_cast<FakeFlash::EraseTear>(rng.below(4)), rng.next());
    for (int op = 0; op < 10 && !f.dead(); ++op) {
      const uint32_t r = rng.below(100);
      uint64_t seq;
      if (r < 50) {
        const std::string code = codeOf(static_cast<uint64_t>(round * 10 + op), 1 + rng.below(200));
        const RbStatus st = rb->push(bytes(code), code.size(), 0, &seq);
        if (st == RbStatus::Ok) {
          if (m.anyIssued && seq <= m.maxIssued) reportFailure(__FILE__, __LINE__, "seq reused");
          m.pushed(seq, code);
        }
      } else if (r < 95) {
        if (m.pending.empty()) continue;
        const uint64_t s = m.pending.begin()->first;
        const RbStatus st = rb->ack(s);
        // A torn ack may or may not have landed: ask the flash after the reboot.
        if (st == RbStatus::Ok) m.ackd(s);
        else if (f.dead()) {
          f.powerOn();
          auto probe = mount(f);
          uint64_t first;
          if (!(probe->firstPendingAtOrAfter(s, &first) && first == s)) m.ackd(s);
          rb = std::move(probe);
          ++cuts;
          continue;
        }
      } else {
        rb->maintain();
      }
    }
    if (f.dead() || rng.chance(5)) {
      if (f.dead()) ++cuts;
      f.powerOn();
      rb = mount(f);
      CHECK_MODEL(*rb, m);
      if (m.anyIssued) CHECK(rb->nextSeq() > m.maxIssued);
    }
    f.armPowerCut(-1);
  }
  CHECK(cuts > 100);
  CHECK_EQ(f.violations(), 0L);
}

// =============================================================================================
// UART assembly

namespace {
struct Collected {
  std::vector<std::string> codes;
  int overflows = 0, timeouts = 0;
  void take(ScannerAssembler& a, ScannerAssembler::Event e) {
    if (e == ScannerAssembler::Event::Code) codes.emplace_back(reinterpret_cast<const char*>(a.code()), a.length());
    if (e == ScannerAssembler::Event::Overflow) ++overflows;
    if (e == ScannerAssembler::Event::Timeout) ++timeouts;
  }
  void feed(ScannerAssembler& a, const std::string& s, uint32_t& now, uint32_t stepMs = 1) {
    for (unsigned char c : s) {
      take(a, a.feed(c, now));
      now += stepMs;
    }
  }
};
}  // namespace

TEST(uart_terminators) {
  ScannerAssembler a;
  Collected c;
  uint32_t now = 1000;
  c.feed(a, "ABC\r", now);
  c.feed(a, "DEF\n", now);
  c.feed(a, "GHI\r\n", now);
  c.feed(a, "JKL\n\r", now);
  c.feed(a, "\r\n\r\n\n\n", now);  // blank lines: nothing
  c.feed(a, "]C1010614141234567890\x1d" "10LOT7\r", now);
  c.feed(a, std::string("\x00\x01\xff\xc3\xa9Q\r", 7), now);
  CHECK(c.codes == std::vector<std::string>({"ABC", "DEF", "GHI", "JKL", "]C1010614141234567890\x1d" "10LOT7",
                                              std::string("\x00\x01\xff\xc3\xa9Q", 6)}));
  CHECK_EQ(c.overflows + c.timeouts, 0);
  CHECK_EQ(a.poll(now + 100000), ScannerAssembler::Event::None);  // idle: nothing to time out
}

TEST(uart_max_length_and_overflow) {
  ScannerAssembler a;
  Collected c;
  uint32_t now = 0;
  c.feed(a, std::string(kMaxCodeLen, '7') + "\r", now);
  REQUIRE(c.codes.size() == 1);
  CHECK_EQ(c.codes[0].size(), kMaxCodeLen);
  // One byte too many: the whole code is dropped, reported once, the next one is fine.
  c.feed(a, std::string(kMaxCodeLen + 300, '8') + "\r\n", now);
  CHECK_EQ(c.overflows, 1);
  CHECK_EQ(c.codes.size(), static_cast<size_t>(1));
  c.feed(a, "OK1\r", now);
  CHECK_EQ(c.codes.back(), std::string("OK1"));
  // An overflowing code that then stops (no terminator) is forgotten at the timeout, silently.
  c.feed(a, std::string(kMaxCodeLen + 1, '9'), now);
  CHECK_EQ(c.overflows, 2);
  now += 1000;
  c.take(a, a.poll(now));
  CHECK_EQ(c.timeouts, 0);
  c.feed(a, "OK2\r", now);
  CHECK_EQ(c.codes.back(), std::string("OK2"));
}

TEST(uart_inter_byte_timeout) {
  // Default: a code that stops arriving is dropped (a lost byte must not become a wrong barcode).
  ScannerAssembler a(100);
  Collected c;
  uint32_t now = 5000;
  c.feed(a, "PART", now, 10);
  CHECK_EQ(a.partialLength(), static_cast<size_t>(4));
  CHECK_EQ(a.poll(now + 50), ScannerAssembler::Event::None);
  c.take(a, a.poll(now + 200));
  CHECK_EQ(c.timeouts, 1);
  CHECK_EQ(a.partialLength(), static_cast<size_t>(0));
  // A late byte after a stall: the stale part is dropped, the new code starts with that byte.
  now += 1000;
  c.feed(a, "OLD", now, 10);
  now += 500;
  c.feed(a, "NEW\r", now, 10);
  CHECK_EQ(c.timeouts, 2);
  CHECK(c.codes == std::vector<std::string>({"NEW"}));
  // Slow but steady bytes (just under the timeout) are one code.
  c.feed(a, "SLOW\r", now, 99);
  CHECK_EQ(c.codes.back(), std::string("SLOW"));
  // millis() wrap-around in the middle of a code.
  uint32_t w = 0xFFFFFFF0u;
  c.feed(a, "WRAP\r", w, 20);
  CHECK_EQ(c.codes.back(), std::string("WRAP"));
  w = 0xFFFFFFF0u;
  c.feed(a, "LOST", w, 1);
  c.take(a, a.poll(0x00000080u));  // 0x90 ms later, across the wrap
  CHECK_EQ(c.timeouts, 3);

  // Modules without a suffix: the timeout ends the code (poll or the next byte).
  ScannerAssembler t(50, true);
  Collected d;
  uint32_t n = 0;
  d.feed(t, "0123456789", n, 2);
  d.take(t, t.poll(n + 10));
  CHECK(d.codes.empty());
  d.take(t, t.poll(n + 60));
  CHECK(d.codes == std::vector<std::string>({"0123456789"}));
  n += 1000;
  d.feed(t, "AAA", n, 2);
  n += 100;
  d.feed(t, "BBB", n, 2);  // the first B completes AAA
  CHECK(d.codes == std::vector<std::string>({"0123456789", "AAA"}));
  d.feed(t, "\r", n, 2);
  CHECK(d.codes.back() == "BBB");
  CHECK_EQ(d.timeouts, 0);
}

// =============================================================================================
// The whole node on the host: scanner -> buffer -> scheduler -> lossy gateway -> acks, with power
// cuts, dropped messages, disconnects and STORAGE_FULL periods. Every scan the buffer accepted
// reaches the gateway, and no seq ever names two different codes.

TEST(node_simulation_end_to_end) {
  Rng rng(4242);
  FakeFlash f(1024, 4);
  auto rb = mount(f);
  ScannerAssembler uart;
  SendScheduler sched(Rng::call, &rng);
  Backoff reconnect(Rng::call, &rng);
  std::map<uint64_t, std::string> gateway;  // seq -> code, as recorded
  std::map<uint64_t, std::string> promised;  // push() returned Ok
  struct InFlight {
    uint32_t at;
    std::string json;
  };
  std::vector<InFlight> acks;
  bool connected = false, reuse = false;
  uint32_t now = 0, reconnectAt = 0, storageFullUntil = 0;
  int scans = 0, powerCuts = 0, published = 0, fulls = 0;
  std::vector<std::string> volunteerQueue;  // codes to (re)scan
  auto reboot = [&]() {
    f.powerOn();
    rb = mount(f);
    uart.reset();
    sched.onDisconnected();
    connected = false;
    acks.clear();
    reconnectAt = now + 1000;
    ++powerCuts;
  };
  const uint32_t endScanning = 3600u * 1000u;
  for (; now < endScanning + 600u * 1000u; now += 50) {
    const bool scanning = now < endScanning;
    if (scanning && rng.chance(2)) volunteerQueue.push_back("SIM-" + std::to_string(scans++) + (rng.chance(20) ? "\x1d" "10LOT" : ""));
    if (scanning && rng.chance(1)) f.armPowerCut(static_cast<long>(rng.below(300)), static_cast<uint8_t>(rng.next()),
                                                 static_cast<FakeFlash::EraseTear>(rng.below(4)), rng.next());
    if (scanning && rng.chance(1) && connected) {
      connected = false;
      sched.onDisconnected();
      reconnectAt = now + reconnect.next();
    }
    if (scanning && rng.chance(1)) storageFullUntil = now + rng.below(30000);
    // The scanner module sends one queued code.
    if (!volunteerQueue.empty()) {
      const std::string code = volunteerQueue.front();
      volunteerQueue.erase(volunteerQueue.begin());
      for (unsigned char ch : code + "\r\n") {
        if (uart.feed(ch, now) != ScannerAssembler::Event::Code) continue;
        const std::string got(reinterpret_cast<const char*>(uart.code()), uart.length());
        uint64_t seq;
        const RbStatus st = rb->push(uart.code(), uart.length(), static_cast<uint8_t>(Action::Receive), &seq);
        if (st == RbStatus::Ok) promised[seq] = got;
        else {
          if (st == RbStatus::Full) ++fulls;
          volunteerQueue.push_back(got);  // the volunteer hears the error and scans again later
        }
      }
    }
    if (f.dead()) {
      reboot();
      continue;
    }
    // Reconnect with back-off.
    if (!connected && static_cast<int32_t>(now - reconnectAt) >= 0) {
      if (rng.chance(70)) {
        connected = true;
        reconnect.reset();
        sched.onConnected(now);
      } else {
        reconnectAt = now + reconnect.next();
      }
    }
    // Publish what the scheduler says; the gateway records and acks (some messages are lost).
    uint64_t seq;
    int burst = 0;
    while (connected && burst++ < 4 && sched.next(*rb, now, &seq)) {
      uint8_t code[kMaxCodeLen];
      size_t len = 0;
      uint8_t action = 0;
      const RbStatus st = rb->read(seq, code, sizeof code, &len, &action);
      if (st != RbStatus::Ok) {
        if (f.dead()) break;
        reportFailure(__FILE__, __LINE__, std::string("read pending: ") + rbStatusName(st));
        break;
      }
      char payload[kMaxScanPayload];
      if (buildScanPayload(payload, sizeof payload, seq, code, len, static_cast<Action>(action)) == 0) {
        reportFailure(__FILE__, __LINE__, "payload");
        break;
      }
      sched.onPublished(seq, now);
      ++published;
      if (rng.chance(10)) continue;  // lost on the way
      const std::string c(reinterpret_cast<const char*>(code), len);
      std::string ack;
      if (static_cast<int32_t>(now - storageFullUntil) < 0) {
        ack = "{\"seq\":" + std::to_string(seq) + ",\"status\":\"rejected\",\"error\":{\"code\":\"STORAGE_FULL\",\"message\":\"disk full\"}}";
      } else {
        auto it = gateway.find(seq);
        if (it != gateway.end() && it->second != c) reuse = true;
        const bool dup = it != gateway.end();
        gateway[seq] = c;
        ack = "{\"seq\":" + std::to_string(seq) + ",\"status\":\"" + (dup ? "duplicate" : "accepted") + "\",\"event\":\"e\"}";
      }
      if (!rng.chance(10)) acks.push_back({now + 20 + rng.below(3000), ack});
    }
    if (f.dead()) {
      reboot();
      continue;
    }
    // Acks arrive (only while connected; clean session = false would queue them, we just drop).
    for (size_t i = 0; i < acks.size();) {
      if (static_cast<int32_t>(now - acks[i].at) < 0) {
        ++i;
        continue;
      }
      const std::string json = acks[i].json;
      acks.erase(acks.begin() + static_cast<long>(i));
      if (!connected) continue;
      Ack a;
      if (parseAck(bytes(json), json.size(), &a) != AckParseError::None) {
        reportFailure(__FILE__, __LINE__, "ack parse");
        continue;
      }
      const AckDecision d = decideAck(a);
      if (d.removeFromBuffer && a.hasSeq && rb->ack(a.seq) == RbStatus::Ok) sched.onAckRemoved(now);
      if (f.dead()) break;
    }
    if (f.dead()) {
      reboot();
      continue;
    }
    if (rng.chance(5)) rb->maintain();
    if (f.dead()) reboot();
  }
  CHECK(!reuse);
  CHECK_EQ(rb->pendingCount(), static_cast<size_t>(0));
  CHECK(volunteerQueue.empty());
  size_t missing = 0;
  for (const auto& kv : promised) {
    auto it = gateway.find(kv.first);
    if (it == gateway.end() || it->second != kv.second) ++missing;
  }
  CHECK_EQ(missing, static_cast<size_t>(0));
  CHECK(promised.size() > 1000);
  CHECK(powerCuts > 50);
  CHECK(published > static_cast<int>(promised.size()));  // retries happened
  CHECK_EQ(f.violations(), 0L);
  // Every code the volunteer scanned was recorded under at least one seq.
  std::set<std::string> recorded;
  for (const auto& kv : gateway) recorded.insert(kv.second);
  size_t lost = 0;
  for (int k = 0; k < scans; ++k) {
    const std::string base = "SIM-" + std::to_string(k);
    if (!recorded.count(base) && !recorded.count(base + "\x1d" "10LOT")) ++lost;
  }
  CHECK_EQ(lost, static_cast<size_t>(0));
  printf("     simulated hour: %d scans, %zu stored, %d publishes, %d power cuts, %d refused pushes (buffer full, scanned again later)\n", scans,
         promised.size(), published, powerCuts, fulls);
}

// =============================================================================================
// Modes for the TypeScript test

namespace {

// Scan payloads covering the escaping rules; firmware-host.test.ts checks each against the
// gateway's DeviceScanSchema, and the first ones against their expected code strings.
int emitPayloads() {
  struct P {
    uint64_t seq;
    std::string code;
    Action action;
  };
  std::string allBytes;
  for (int b = 1; b < 256; ++b)
    if (b != '\r' && b != '\n') allBytes += static_cast<char>(b);
  // Keep in step with EXPECTED_CODES in test/integration/firmware-host.test.ts.
  const std::vector<P> ps = {
      {0, "]C101095060001343521725123110ABC123\x1d" "21SN0001", Action::Receive},   // GS1 with GS (FNC1)
      {1, "say \"hi\" \\ back/slash", Action::Receive},                            // quotes, backslash
      {2, std::string("CTL\x00\x01\x08\x09\x0a\x0c\x0d\x1f\x7f", 12), Action::Count}, // control characters
      {3, "Beras \xc3\xa9 \xe2\x82\xac \xf0\x9f\x93\xa6", Action::Distribute},      // UTF-8 passes through
      {4, "caf\xe9", Action::None},                                                 // a Latin-1 byte
      {1042, "]C100106141412345678908", Action::Checkpoint},                        // SSCC with AIM id
      {kMaxSeq, std::string(kMaxCodeLen, '\x1d'), Action::Expire},                  // the largest payload
      {7, std::string(kMaxCodeLen, 'Z'), Action::Damage},
      {8, "PSK1:DEMO:1", Action::Loss},
      {9, "PSK1:DEMO:2", Action::Return},
      {10, allBytes, Action::None},                                                 // every byte but CR, LF
      {11, "PSK1:DEMO:3", Action::Dispatch},  // valid for the schema; the gateway wants "to" for a dispatch
  };
  for (const P& p : ps) {
    char out[kMaxScanPayload];
    if (buildScanPayload(out, sizeof out, p.seq, bytes(p.code), p.code.size(), p.action) == 0) return 2;
    printf("%s\n", out);
  }
  return 0;
}

int emitStatus() {
  char out[256];
  StatusInfo a;
  a.fw = "posko-node 1.0.0";
  a.battery = 81;
  a.hasRssi = true;
  a.rssi = -67;
  a.buffered = 3;
  StatusInfo b;
  b.hasRssi = true;
  b.rssi = -90;
  b.buffered = 0;
  for (const StatusInfo& s : {a, b}) {
    if (buildStatusPayload(out, sizeof out, s) == 0) return 2;
    printf("%s\n", out);
  }
  printf("%s\n", kLastWill);
  return 0;
}

// One ack per stdin line -> one JSON line:
//   {"ok":true,"seq":1042|null,"status":"accepted","errorCode":"X"|null,"remove":true,"signal":"accepted"}
//   {"ok":false,"error":"syntax"}
int parseAckLines() {
  std::string line;
  const char* signals[] = {"none", "accepted", "duplicate", "rejected", "retrying", "stored", "buffer-full", "bad-scan"};
  while (std::getline(std::cin, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    Ack a;
    const AckParseError e = parseAck(bytes(line), line.size(), &a);
    if (e != AckParseError::None) {
      printf("{\"ok\":false,\"error\":\"%s\"}\n", ackParseErrorName(e));
      continue;
    }
    const AckDecision d = decideAck(a);
    std::string seq = a.hasSeq ? std::to_string(a.seq) : "null";
    std::string code = "null";
    if (a.hasErrorCode) {
      char q[sizeof a.errorCode * 6 + 3];
      jsonQuote(q, sizeof q, reinterpret_cast<const uint8_t*>(a.errorCode), strlen(a.errorCode));
      code = q;
    }
    printf("{\"ok\":true,\"seq\":%s,\"status\":\"%s\",\"errorCode\":%s,\"remove\":%s,\"signal\":\"%s\"}\n", seq.c_str(),
           ackStatusName(a.status), code.c_str(), d.removeFromBuffer ? "true" : "false", signals[static_cast<int>(d.signal)]);
  }
  return 0;
}

int printTopics(const char* post, const char* device) {
  char t[160];
  for (TopicKind k : {TopicKind::Scan, TopicKind::Ack, TopicKind::Status}) {
    if (buildTopic(t, sizeof t, post, k, device) == 0) {
      printf("invalid\n");
      return 1;
    }
    printf("%s\n", t);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 2 && strcmp(argv[1], "--emit-payloads") == 0) return emitPayloads();
  if (argc >= 2 && strcmp(argv[1], "--emit-status") == 0) return emitStatus();
  if (argc >= 2 && strcmp(argv[1], "--parse-ack") == 0) return parseAckLines();
  if (argc >= 4 && strcmp(argv[1], "--topics") == 0) return printTopics(argv[2], argv[3]);
  if (argc >= 2 && argv[1][0] == '-') {
    fprintf(stderr, "usage: %s [--emit-payloads | --emit-status | --parse-ack | --topics POST DEVICE]\n", argv[0]);
    return 2;
  }
  const char* only = argc >= 2 ? argv[1] : nullptr;  // run the tests whose name contains this
  int passed = 0, failed = 0;
  for (const TestCase& t : registry()) {
    if (only && !strstr(t.name, only)) continue;
    g_current = true;
    g_testName = t.name;
    t.fn();
    if (g_current) {
      ++passed;
      printf("ok   %s\n", t.name);
    } else {
      ++failed;
      printf("FAIL %s\n", t.name);
    }
    fflush(stdout);
  }
  printf("%d checks, %d failed checks\n", g_checks, g_checkFailures);
  printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 && passed > 0 ? 0 : 1;
}
