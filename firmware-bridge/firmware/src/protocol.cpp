#include "protocol.h"

#include <string.h>

namespace posko {

namespace {

// Appends to a caller buffer; remembers overflow; always leaves room for the NUL.
struct Writer {
  char* buf;
  size_t cap;
  size_t len = 0;
  bool ok = true;

  Writer(char* b, size_t c) : buf(b), cap(c) {
    if (cap == 0) ok = false;
  }
  void ch(char c) {
    if (ok && len + 1 < cap) buf[len++] = c;
    else ok = false;
  }
  void str(const char* s) {
    while (*s) ch(*s++);
  }
  void u64(uint64_t v) {
    char d[20];
    int n = 0;
    do {
      d[n++] = static_cast<char>('0' + v % 10);
      v /= 10;
    } while (v != 0);
    while (n > 0) ch(d[--n]);
  }
  void i64(int64_t v) {
    if (v < 0) {
      ch('-');
      u64(static_cast<uint64_t>(-(v + 1)) + 1);
    } else {
      u64(static_cast<uint64_t>(v));
    }
  }
  size_t finish() {
    if (cap > 0) buf[len < cap ? len : cap - 1] = '\0';
    if (!ok) {
      if (cap > 0) buf[0] = '\0';
      return 0;
    }
    return len;
  }
};

const char kHex[] = "0123456789abcdef";

void escapedByteU(Writer& w, uint8_t b) {
  w.str("\\u00");
  w.ch(kHex[b >> 4]);
  w.ch(kHex[b & 15]);
}

// Length of the well-formed UTF-8 sequence at s (RFC 3629: no overlongs, no surrogates,
// <= U+10FFFF), or 0 if s does not start one.
size_t utf8SeqLen(const uint8_t* s, size_t n) {
  const uint8_t b = s[0];
  auto cont = [&](size_t i, uint8_t lo, uint8_t hi) { return i < n && s[i] >= lo && s[i] <= hi; };
  if (b >= 0xC2 && b <= 0xDF) return cont(1, 0x80, 0xBF) ? 2 : 0;
  if (b >= 0xE0 && b <= 0xEF) {
    const uint8_t lo = b == 0xE0 ? 0xA0 : 0x80;
    const uint8_t hi = b == 0xED ? 0x9F : 0xBF;
    return cont(1, lo, hi) && cont(2, 0x80, 0xBF) ? 3 : 0;
  }
  if (b >= 0xF0 && b <= 0xF4) {
    const uint8_t lo = b == 0xF0 ? 0x90 : 0x80;
    const uint8_t hi = b == 0xF4 ? 0x8F : 0xBF;
    return cont(1, lo, hi) && cont(2, 0x80, 0xBF) && cont(3, 0x80, 0xBF) ? 4 : 0;
  }
  return 0;
}

void quote(Writer& w, const uint8_t* s, size_t n) {
  w.ch('"');
  size_t i = 0;
  while (i < n) {
    const uint8_t b = s[i];
    if (b < 0x80) {
      switch (b) {
        case '"': w.str("\\\""); break;
        case '\\': w.str("\\\\"); break;
        case '\b': w.str("\\b"); break;
        case '\f': w.str("\\f"); break;
        case '\n': w.str("\\n"); break;
        case '\r': w.str("\\r"); break;
        case '\t': w.str("\\t"); break;
        default:
          if (b < 0x20 || b == 0x7F) escapedByteU(w, b);
          else w.ch(static_cast<char>(b));
      }
      ++i;
      continue;
    }
    const size_t k = utf8SeqLen(s + i, n - i);
    if (k == 0) {
      escapedByteU(w, b);  // Latin-1
      ++i;
    } else {
      for (size_t j = 0; j < k; ++j) w.ch(static_cast<char>(s[i + j]));
      i += k;
    }
  }
  w.ch('"');
}

bool isUpperOrDigit(char c) { return (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'); }
bool isAlnum(char c) { return isUpperOrDigit(c) || (c >= 'a' && c <= 'z'); }

const char* const kActionNames[] = {"receive", "dispatch", "checkpoint", "distribute", "count",
                                    "damage",  "loss",     "return",     "expire"};
constexpr size_t kActionCount = sizeof kActionNames / sizeof kActionNames[0];

}  // namespace

// ---------------------------------------------------------------------------------------------

const char* actionName(Action a) {
  const size_t i = static_cast<size_t>(a);
  return i < kActionCount ? kActionNames[i] : nullptr;
}

bool actionFromName(const char* name, Action* out) {
  if (name == nullptr || *name == '\0') {
    *out = Action::None;
    return true;
  }
  for (size_t i = 0; i < kActionCount; ++i) {
    if (strcmp(name, kActionNames[i]) == 0) {
      *out = static_cast<Action>(i);
      return true;
    }
  }
  return false;
}

bool validPostId(const char* s) {
  if (s == nullptr || !isUpperOrDigit(s[0])) return false;
  size_t n = 1;
  for (; s[n] != '\0'; ++n)
    if (n > 15 || !(isUpperOrDigit(s[n]) || s[n] == '-')) return false;
  return true;
}

bool validDeviceId(const char* s) {
  if (s == nullptr || !isAlnum(s[0])) return false;
  size_t n = 1;
  for (; s[n] != '\0'; ++n)
    if (n > 63 || !(isAlnum(s[n]) || s[n] == '_' || s[n] == '.' || s[n] == '-')) return false;
  return true;
}

size_t buildTopic(char* out, size_t cap, const char* post, TopicKind kind, const char* device) {
  Writer w(out, cap);
  if (!validPostId(post) || !validDeviceId(device)) {
    w.ok = false;
    return w.finish();
  }
  w.str("posko/");
  w.str(post);
  w.str(kind == TopicKind::Scan ? "/scan/" : kind == TopicKind::Ack ? "/ack/" : "/status/");
  w.str(device);
  return w.finish();
}

size_t jsonQuote(char* out, size_t cap, const uint8_t* s, size_t n) {
  Writer w(out, cap);
  quote(w, s, n);
  return w.finish();
}

size_t buildScanPayload(char* out, size_t cap, uint64_t seq, const uint8_t* code, size_t len, Action action) {
  Writer w(out, cap);
  const char* name = actionName(action);
  if (len == 0 || len > kMaxCodeLen || seq > kMaxSeq || (name == nullptr && action != Action::None)) {
    w.ok = false;
    return w.finish();
  }
  w.str("{\"seq\":");
  w.u64(seq);
  w.str(",\"code\":");
  quote(w, code, len);
  if (name != nullptr) {
    w.str(",\"action\":\"");
    w.str(name);
    w.ch('"');
  }
  w.ch('}');
  return w.finish();
}

size_t buildStatusPayload(char* out, size_t cap, const StatusInfo& st) {
  Writer w(out, cap);
  w.str(st.online ? "{\"online\":true" : "{\"online\":false");
  if (st.fw != nullptr) {
    const size_t n = strlen(st.fw);
    if (n > 64) w.ok = false;
    w.str(",\"fw\":");
    quote(w, reinterpret_cast<const uint8_t*>(st.fw), n);
  }
  if (st.battery >= 0) {
    w.str(",\"battery\":");
    w.u64(static_cast<uint64_t>(st.battery > 100 ? 100 : st.battery));
  }
  if (st.hasRssi) {
    w.str(",\"rssi\":");
    w.i64(st.rssi);
  }
  if (st.buffered >= 0) {
    w.str(",\"buffered\":");
    w.u64(static_cast<uint64_t>(st.buffered));
  }
  w.ch('}');
  return w.finish();
}

// ---------------------------------------------------------------------------------------------
// Ack parser: recursive descent over the bytes, depth-bounded, no allocation.

namespace {

class AckParser {
 public:
  AckParser(const uint8_t* p, size_t n, Ack* out) : p_(p), end_(p + n), out_(out) {}

  AckParseError run() {
    ws();
    if (p_ >= end_) return AckParseError::Syntax;
    if (*p_ != '{') {
      if (!value(0)) return err_;
      ws();
      return p_ == end_ ? AckParseError::NotObject : AckParseError::Syntax;
    }
    if (!topObject()) return err_;
    ws();
    if (p_ != end_) return AckParseError::Syntax;
    if (!haveStatus_) return AckParseError::MissingStatus;
    return AckParseError::None;
  }

 private:
  enum class Key : uint8_t { Other, Seq, Status, Error, Code };

  bool fail(AckParseError e) {
    if (err_ == AckParseError::None) err_ = e;
    return false;
  }
  void ws() {
    while (p_ < end_ && (*p_ == ' ' || *p_ == '\t' || *p_ == '\n' || *p_ == '\r')) ++p_;
  }
  bool expect(char c) {
    ws();
    if (p_ < end_ && *p_ == static_cast<uint8_t>(c)) {
      ++p_;
      return true;
    }
    return fail(AckParseError::Syntax);
  }

  static int hexVal(uint8_t c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  }
  bool hex4(uint32_t* v) {
    if (end_ - p_ < 4) return fail(AckParseError::Syntax);
    uint32_t r = 0;
    for (int i = 0; i < 4; ++i) {
      const int h = hexVal(p_[i]);
      if (h < 0) return fail(AckParseError::Syntax);
      r = (r << 4) | static_cast<uint32_t>(h);
    }
    p_ += 4;
    *v = r;
    return true;
  }

  // Decoded bytes go to out (if any), truncated to cap - 1, NUL-terminated.
  struct Sink {
    char* out;
    size_t cap;
    size_t len;
    bool truncated;
    void put(uint8_t b) {
      if (out == nullptr) return;
      if (len + 1 < cap) out[len++] = static_cast<char>(b);
      else truncated = true;
    }
    void cp(uint32_t c) {
      if (c < 0x80) {
        put(static_cast<uint8_t>(c));
      } else if (c < 0x800) {
        put(static_cast<uint8_t>(0xC0 | (c >> 6)));
        put(static_cast<uint8_t>(0x80 | (c & 0x3F)));
      } else if (c < 0x10000) {
        put(static_cast<uint8_t>(0xE0 | (c >> 12)));
        put(static_cast<uint8_t>(0x80 | ((c >> 6) & 0x3F)));
        put(static_cast<uint8_t>(0x80 | (c & 0x3F)));
      } else {
        put(static_cast<uint8_t>(0xF0 | (c >> 18)));
        put(static_cast<uint8_t>(0x80 | ((c >> 12) & 0x3F)));
        put(static_cast<uint8_t>(0x80 | ((c >> 6) & 0x3F)));
        put(static_cast<uint8_t>(0x80 | (c & 0x3F)));
      }
    }
  };

  // A JSON string (opening quote at p_).
  bool string(Sink* sink) {
    Sink none{nullptr, 0, 0, false};
    Sink& s = sink ? *sink : none;
    if (s.out && s.cap > 0) s.out[0] = '\0';
    if (p_ >= end_ || *p_ != '"') return fail(AckParseError::Syntax);
    ++p_;
    while (p_ < end_) {
      const uint8_t c = *p_++;
      if (c == '"') {
        if (s.out && s.cap > 0) s.out[s.len] = '\0';
        return true;
      }
      if (c < 0x20) return fail(AckParseError::Syntax);
      if (c != '\\') {
        s.put(c);
        continue;
      }
      if (p_ >= end_) break;
      const uint8_t e = *p_++;
      switch (e) {
        case '"': s.put('"'); break;
        case '\\': s.put('\\'); break;
        case '/': s.put('/'); break;
        case 'b': s.put('\b'); break;
        case 'f': s.put('\f'); break;
        case 'n': s.put('\n'); break;
        case 'r': s.put('\r'); break;
        case 't': s.put('\t'); break;
        case 'u': {
          uint32_t u;
          if (!hex4(&u)) return false;
          if (u >= 0xD800 && u <= 0xDBFF && end_ - p_ >= 6 && p_[0] == '\\' && p_[1] == 'u') {
            const uint8_t* save = p_;
            p_ += 2;
            uint32_t lo;
            if (!hex4(&lo)) return false;
            if (lo >= 0xDC00 && lo <= 0xDFFF) {
              s.cp(0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00));
              break;
            }
            p_ = save;  // not a pair: the high surrogate alone, then the next escape as is
          }
          s.cp(u >= 0xD800 && u <= 0xDFFF ? 0xFFFD : u);
          break;
        }
        default: return fail(AckParseError::Syntax);
      }
    }
    return fail(AckParseError::Syntax);  // unterminated
  }

  // A JSON number. *isUInt: plain non-negative integer (no sign, fraction or exponent) that fits
  // kMaxSeq, value in *v.
  bool number(bool* isUInt, uint64_t* v) {
    *isUInt = true;
    *v = 0;
    if (p_ < end_ && *p_ == '-') {
      *isUInt = false;
      ++p_;
    }
    if (p_ >= end_ || *p_ < '0' || *p_ > '9') return fail(AckParseError::Syntax);
    if (*p_ == '0') {
      ++p_;
    } else {
      while (p_ < end_ && *p_ >= '0' && *p_ <= '9') {
        const uint64_t d = static_cast<uint64_t>(*p_ - '0');
        if (*v > (kMaxSeq - d) / 10) *isUInt = false;  // too big: keep scanning, not a seq
        else *v = *v * 10 + d;
        ++p_;
      }
    }
    if (p_ < end_ && *p_ == '.') {
      *isUInt = false;
      ++p_;
      if (p_ >= end_ || *p_ < '0' || *p_ > '9') return fail(AckParseError::Syntax);
      while (p_ < end_ && *p_ >= '0' && *p_ <= '9') ++p_;
    }
    if (p_ < end_ && (*p_ == 'e' || *p_ == 'E')) {
      *isUInt = false;
      ++p_;
      if (p_ < end_ && (*p_ == '+' || *p_ == '-')) ++p_;
      if (p_ >= end_ || *p_ < '0' || *p_ > '9') return fail(AckParseError::Syntax);
      while (p_ < end_ && *p_ >= '0' && *p_ <= '9') ++p_;
    }
    return true;
  }

  bool literal(const char* lit) {
    const size_t n = strlen(lit);
    if (static_cast<size_t>(end_ - p_) < n || memcmp(p_, lit, n) != 0) return fail(AckParseError::Syntax);
    p_ += n;
    return true;
  }

  // Any JSON value, skipped (validated). depth = nesting of the enclosing containers.
  bool value(int depth) {
    ws();
    if (p_ >= end_) return fail(AckParseError::Syntax);
    switch (*p_) {
      case '{': return container(depth, '}', true);
      case '[': return container(depth, ']', false);
      case '"': return string(nullptr);
      case 't': return literal("true");
      case 'f': return literal("false");
      case 'n': return literal("null");
      default: {
        bool u;
        uint64_t v;
        return number(&u, &v);
      }
    }
  }

  bool container(int depth, char close, bool isObject) {
    if (depth + 1 > kMaxAckDepth) return fail(AckParseError::TooDeep);
    ++p_;
    ws();
    if (p_ < end_ && *p_ == static_cast<uint8_t>(close)) {
      ++p_;
      return true;
    }
    for (;;) {
      if (isObject) {
        ws();
        if (!string(nullptr) || !expect(':')) return false;
      }
      if (!value(depth + 1)) return false;
      ws();
      if (p_ >= end_) return fail(AckParseError::Syntax);
      if (*p_ == ',') {
        ++p_;
        continue;
      }
      if (*p_ == static_cast<uint8_t>(close)) {
        ++p_;
        return true;
      }
      return fail(AckParseError::Syntax);
    }
  }

  Key key(bool inError) {
    char k[8];
    Sink s{k, sizeof k, 0, false};
    if (!string(&s)) return Key::Other;
    if (s.truncated) return Key::Other;
    if (inError) return strcmp(k, "code") == 0 ? Key::Code : Key::Other;
    if (strcmp(k, "seq") == 0) return Key::Seq;
    if (strcmp(k, "status") == 0) return Key::Status;
    if (strcmp(k, "error") == 0) return Key::Error;
    return Key::Other;
  }

  // The members of an object (opening brace at p_). inError: the "error" object (depth 1).
  bool members(int depth, bool inError) {
    ++p_;
    ws();
    if (p_ < end_ && *p_ == '}') {
      ++p_;
      return true;
    }
    for (;;) {
      ws();
      const Key k = key(inError);
      if (err_ != AckParseError::None) return false;
      if (!expect(':')) return false;
      ws();
      if (p_ >= end_) return fail(AckParseError::Syntax);
      bool ok;
      switch (k) {
        case Key::Seq: ok = seqValue(); break;
        case Key::Status: ok = statusValue(); break;
        case Key::Error:
          if (*p_ == '{') {
            if (depth + 2 > kMaxAckDepth) return fail(AckParseError::TooDeep);
            ok = members(depth + 1, true);
          } else {
            ok = value(depth + 1);  // a non-object error carries no code
          }
          break;
        case Key::Code:
          if (*p_ == '"') {
            Sink s{out_->errorCode, sizeof out_->errorCode, 0, false};
            ok = string(&s);
            out_->hasErrorCode = ok;
            out_->errorCodeTruncated = s.truncated;
          } else {
            ok = value(depth + 1);
          }
          break;
        default: ok = value(depth + 1);
      }
      if (!ok) return false;
      ws();
      if (p_ >= end_) return fail(AckParseError::Syntax);
      if (*p_ == ',') {
        ++p_;
        continue;
      }
      if (*p_ == '}') {
        ++p_;
        return true;
      }
      return fail(AckParseError::Syntax);
    }
  }

  bool topObject() { return members(0, false); }

  bool seqValue() {
    if (*p_ == 'n') {
      if (!literal("null")) return false;
      out_->hasSeq = false;
      return true;
    }
    if (*p_ != '-' && (*p_ < '0' || *p_ > '9')) {
      // a string, object… : check it is JSON at all first, so syntax errors win
      if (!value(1)) return false;
      return fail(AckParseError::BadSeq);
    }
    bool u;
    uint64_t v;
    if (!number(&u, &v)) return false;
    if (!u) return fail(AckParseError::BadSeq);
    out_->hasSeq = true;
    out_->seq = v;
    return true;
  }

  bool statusValue() {
    if (*p_ != '"') {
      if (!value(1)) return false;
      return fail(AckParseError::BadStatus);
    }
    char st[12];
    Sink s{st, sizeof st, 0, false};
    if (!string(&s)) return false;
    haveStatus_ = true;
    if (!s.truncated && strcmp(st, "accepted") == 0) out_->status = AckStatus::Accepted;
    else if (!s.truncated && strcmp(st, "duplicate") == 0) out_->status = AckStatus::Duplicate;
    else if (!s.truncated && strcmp(st, "rejected") == 0) out_->status = AckStatus::Rejected;
    else return fail(AckParseError::BadStatus);
    return true;
  }

  const uint8_t* p_;
  const uint8_t* end_;
  Ack* out_;
  AckParseError err_ = AckParseError::None;
  bool haveStatus_ = false;
};

}  // namespace

const char* ackParseErrorName(AckParseError e) {
  switch (e) {
    case AckParseError::None: return "none";
    case AckParseError::TooLarge: return "too-large";
    case AckParseError::Syntax: return "syntax";
    case AckParseError::TooDeep: return "too-deep";
    case AckParseError::NotObject: return "not-object";
    case AckParseError::MissingStatus: return "missing-status";
    case AckParseError::BadStatus: return "bad-status";
    case AckParseError::BadSeq: return "bad-seq";
  }
  return "?";
}

const char* ackStatusName(AckStatus s) {
  switch (s) {
    case AckStatus::Accepted: return "accepted";
    case AckStatus::Duplicate: return "duplicate";
    case AckStatus::Rejected: return "rejected";
  }
  return "?";
}

AckParseError parseAck(const uint8_t* json, size_t n, Ack* out) {
  memset(out, 0, sizeof *out);
  if (n > kMaxAckPayload) return AckParseError::TooLarge;
  if (json == nullptr) return AckParseError::Syntax;
  Ack tmp;
  memset(&tmp, 0, sizeof tmp);
  AckParser parser(json, n, &tmp);
  const AckParseError e = parser.run();
  if (e == AckParseError::None) *out = tmp;
  return e;
}

// ---------------------------------------------------------------------------------------------

Feedback feedbackFor(Signal s) {
  switch (s) {
    case Signal::Accepted: return Feedback{1, 80, 0, Led::Green, 600};
    case Signal::Duplicate: return Feedback{2, 80, 90, Led::Green, 600};
    case Signal::Rejected: return Feedback{1, 800, 0, Led::Red, 1500};
    case Signal::Retrying: return Feedback{0, 0, 0, Led::Amber, 600};
    case Signal::Stored: return Feedback{1, 25, 0, Led::Amber, 400};
    case Signal::BufferFull: return Feedback{3, 400, 150, Led::Red, 2500};
    case Signal::BadScan: return Feedback{1, 800, 0, Led::Red, 1000};
    case Signal::None: break;
  }
  return Feedback{0, 0, 0, Led::Off, 0};
}

bool isRetryableErrorCode(const char* code) {
  return code != nullptr && (strcmp(code, "STORAGE_FULL") == 0 || strcmp(code, "STORAGE_UNAVAILABLE") == 0);
}

AckDecision decideAck(const Ack& ack) {
  switch (ack.status) {
    case AckStatus::Accepted: return AckDecision{ack.hasSeq, Signal::Accepted};
    case AckStatus::Duplicate: return AckDecision{ack.hasSeq, Signal::Duplicate};
    case AckStatus::Rejected:
      if (ack.hasErrorCode && !ack.errorCodeTruncated && isRetryableErrorCode(ack.errorCode))
        return AckDecision{false, Signal::Retrying};
      return AckDecision{ack.hasSeq, Signal::Rejected};
  }
  return AckDecision{false, Signal::None};
}

// ---------------------------------------------------------------------------------------------

Backoff::Backoff(RandomFn rnd, void* ctx, uint32_t baseMs, uint32_t capMs)
    : rnd_(rnd), ctx_(ctx), base_(baseMs), cap_(capMs < baseMs ? baseMs : capMs) {}

uint32_t Backoff::nominal() const {
  uint64_t d = base_;
  for (uint32_t i = 0; i < attempt_ && d < cap_; ++i) d *= 2;
  return d > cap_ ? cap_ : static_cast<uint32_t>(d);
}

uint32_t Backoff::next() {
  const uint32_t d = nominal();
  if (attempt_ < 0xFFFFFFFFu) ++attempt_;
  const uint32_t spread = d / 4;
  const uint32_t r = rnd_ ? rnd_(ctx_) : 0;
  return d - (spread == 0 ? 0 : r % (spread + 1));
}

SendScheduler::SendScheduler(RandomFn rnd, void* ctx, uint32_t ackTimeoutMs, size_t window)
    : backoff_(rnd, ctx), ackTimeoutMs_(ackTimeoutMs), window_(window == 0 ? 1 : window), timeoutMs_(ackTimeoutMs) {}

void SendScheduler::onConnected(uint32_t now) {
  (void)now;
  connected_ = true;
  cursor_ = 0;  // everything pending goes out again, oldest first
  armed_ = false;
}

void SendScheduler::onDisconnected() {
  connected_ = false;
  armed_ = false;
  cursor_ = 0;
}

bool SendScheduler::next(const PendingView& pending, uint32_t now, uint64_t* seq) {
  if (!connected_) return false;
  size_t outstanding = pending.countPendingBefore(cursor_);
  if (outstanding == 0) {
    armed_ = false;
  } else if (armed_ && static_cast<int32_t>(now - deadline_) >= 0) {
    // No ack in time: start again from the oldest unacked scan, waiting longer next time.
    ++resendRounds_;
    const uint32_t b = backoff_.next();
    timeoutMs_ = b > ackTimeoutMs_ ? b : ackTimeoutMs_;
    cursor_ = 0;
    armed_ = false;
    outstanding = 0;
  }
  if (outstanding >= window_) return false;
  return pending.firstPendingAtOrAfter(cursor_, seq);
}

void SendScheduler::onPublished(uint64_t seq, uint32_t now) {
  if (seq + 1 > cursor_) cursor_ = seq + 1;
  if (!armed_) {
    armed_ = true;
    deadline_ = now + timeoutMs_;
  }
}

void SendScheduler::onAckRemoved(uint32_t now) {
  backoff_.reset();
  timeoutMs_ = ackTimeoutMs_;
  if (armed_) deadline_ = now + timeoutMs_;
}

}  // namespace posko
