// posko node: an ESP32 Wi-Fi barcode scanner for a posko gateway (firmware-bridge/PROTOCOL.md).
//
//   UART barcode module (GM65…) --> ScannerAssembler --> RingBuffer (flash, seq) --> MQTT publish
//   gateway ack --> parseAck --> decideAck --> RingBuffer::ack + beep/LED
//
// Board: any ESP32 (esp32dev). Libraries: PubSubClient 2.8+ (knolleary), and the portable core in
// ../src (library "posko-node-core", see README.md for Arduino IDE / arduino-cli / PlatformIO).
// Edit config.h first. Partition table: partitions.csv in this folder.
//
// NOT compiled on the posko CI (no ESP32 toolchain there); the portable core it calls is compiled
// and tested on the host: test/integration/firmware-host.test.ts.
#include <Arduino.h>
#include <PubSubClient.h>
#include <WiFi.h>
#include <esp_partition.h>
#include <esp_system.h>

#include "config.h"
#include "protocol.h"
#include "ring_buffer.h"
#include "scanner_uart.h"

using namespace posko;

#define POSKO_FW "posko-node 1.0.0"

namespace {

// ---------------------------------------------------------------------------------------------
// The scan buffer's flash: a data partition through esp_partition_* (NOR semantics: a write only
// clears bits, which is what RingBuffer relies on to mark a record acked without an erase). The
// partition must not be encrypted (encrypted writes cannot be re-programmed bit by bit).

class PartitionFlash : public FlashStore {
 public:
  bool begin() {
    part_ = esp_partition_find_first(static_cast<esp_partition_type_t>(POSKO_PARTITION_TYPE),
                                     static_cast<esp_partition_subtype_t>(POSKO_PARTITION_SUBTYPE), POSKO_PARTITION_LABEL);
    return part_ != nullptr && !part_->encrypted && part_->size >= 2 * kSector;
  }
  bool read(uint32_t addr, void* buf, size_t n) override { return esp_partition_read(part_, addr, buf, n) == ESP_OK; }
  bool write(uint32_t addr, const void* buf, size_t n) override { return esp_partition_write(part_, addr, buf, n) == ESP_OK; }
  bool erase(uint32_t sector) override { return esp_partition_erase_range(part_, sector * kSector, kSector) == ESP_OK; }
  uint32_t sectorSize() const override { return kSector; }
  uint32_t sectorCount() const override {
    const uint32_t n = part_ ? part_->size / kSector : 0;
    return n > RingBuffer::kMaxSectors ? static_cast<uint32_t>(RingBuffer::kMaxSectors) : n;
  }

 private:
  static constexpr uint32_t kSector = 4096;  // SPI flash erase unit
  const esp_partition_t* part_ = nullptr;
};

// ---------------------------------------------------------------------------------------------
// Beeps and LEDs without blocking loop().

class FeedbackPlayer {
 public:
  void begin() {
    pinMode(POSKO_BUZZER_PIN, OUTPUT);
    pinMode(POSKO_LED_GREEN_PIN, OUTPUT);
    pinMode(POSKO_LED_RED_PIN, OUTPUT);
    off();
  }
  void play(const Feedback& f, uint32_t now) {
    fb_ = f;
    start_ = now;
    active_ = f.beeps > 0 || f.led != Led::Off;
    setLed(f.led);
  }
  void update(uint32_t now) {
    if (!active_) return;
    const uint32_t t = now - start_;
    const uint32_t period = static_cast<uint32_t>(fb_.beepMs) + fb_.gapMs;
    const bool beeping = fb_.beeps > 0 && period > 0 && t < period * fb_.beeps && (t % period) < fb_.beepMs;
    digitalWrite(POSKO_BUZZER_PIN, beeping ? HIGH : LOW);
    const uint32_t soundEnd = period * fb_.beeps;
    if (t >= fb_.ledMs && t >= soundEnd) {
      off();
      active_ = false;
    }
  }
  // A steady red blink while the node cannot work at all (no buffer, bad configuration).
  void fatal(uint32_t now) {
    digitalWrite(POSKO_LED_RED_PIN, (now / 250) % 2 ? HIGH : LOW);
    digitalWrite(POSKO_LED_GREEN_PIN, LOW);
  }

 private:
  void setLed(Led l) {
    digitalWrite(POSKO_LED_GREEN_PIN, l == Led::Green || l == Led::Amber ? HIGH : LOW);
    digitalWrite(POSKO_LED_RED_PIN, l == Led::Red || l == Led::Amber ? HIGH : LOW);
  }
  void off() {
    digitalWrite(POSKO_BUZZER_PIN, LOW);
    setLed(Led::Off);
  }
  Feedback fb_{};
  uint32_t start_ = 0;
  bool active_ = false;
};

uint32_t hardwareRandom(void*) { return esp_random(); }

// ---------------------------------------------------------------------------------------------
// State. Everything is static: the ring buffer's RAM index (~17 KiB) must not live on the stack.

PartitionFlash g_flash;
RingBuffer g_buffer(g_flash);
ScannerAssembler g_scanner(POSKO_SCANNER_TIMEOUT_MS, POSKO_SCANNER_TIMEOUT_ENDS_CODE != 0);
SendScheduler g_sender(hardwareRandom, nullptr);
Backoff g_reconnect(hardwareRandom, nullptr);
FeedbackPlayer g_player;
WiFiClient g_net;
PubSubClient g_mqtt(g_net);

char g_scanTopic[96];
char g_ackTopic[96];
char g_statusTopic[96];
char g_clientId[80];
char g_payload[kMaxScanPayload];
Action g_action = Action::None;

const char* g_fatal = nullptr;  // why the node cannot take scans at all
bool g_wasConnected = false;
uint32_t g_nextConnectAt = 0;
uint32_t g_nextStatusAt = 0;
int g_lastBattery = -1;
uint32_t g_lastActivityMs = 0;
uint32_t g_nextMaintainAt = 0;

// The latest scan, for the volunteer: its ack beeps; acks of older scans (sent again after being
// offline) are shown on the LED only, so they do not mix with the scan in hand.
bool g_haveLastScan = false;
uint64_t g_lastScanSeq = 0;
uint32_t g_lastScanMs = 0;
bool g_lastScanAnswered = true;
bool g_lastScanStoredShown = true;

constexpr uint32_t kFreshAckMs = 5000;        // an ack this soon after the scan beeps
constexpr uint32_t kStoredHintMs = 1500;      // no ack by then: "stored, will be sent"
constexpr uint32_t kStatusEveryMs = 5UL * 60UL * 1000UL;
constexpr uint32_t kMaintainEveryMs = 30000;  // pre-erase an all-acked sector when idle

void logLine(const char* what, const char* detail = "") {
  Serial.printf("[posko %lu] %s %s\n", static_cast<unsigned long>(millis()), what, detail);
}

// ---------------------------------------------------------------------------------------------

int batteryPercent() {
#if POSKO_BATTERY_PIN >= 0
  const float mv = analogReadMilliVolts(POSKO_BATTERY_PIN) * POSKO_BATTERY_DIVIDER;
  const float pct = (mv - POSKO_BATTERY_EMPTY_MV) * 100.0f / (POSKO_BATTERY_FULL_MV - POSKO_BATTERY_EMPTY_MV);
  return pct < 0 ? 0 : pct > 100 ? 100 : static_cast<int>(pct + 0.5f);
#else
  return -1;
#endif
}

void publishStatus(uint32_t now) {
  char buf[160];
  StatusInfo st;
  st.online = true;
  st.fw = POSKO_FW;
  st.battery = batteryPercent();
  st.hasRssi = true;
  st.rssi = WiFi.RSSI();
  st.buffered = static_cast<long>(g_buffer.pendingCount());
  const size_t n = buildStatusPayload(buf, sizeof buf, st);
  if (n > 0) g_mqtt.publish(g_statusTopic, reinterpret_cast<const uint8_t*>(buf), n, true);  // retained
  g_lastBattery = st.battery;
  g_nextStatusAt = now + kStatusEveryMs;
}

// An ack from the gateway (PubSubClient calls this from g_mqtt.loop()). No publishing in here:
// PubSubClient's buffer still holds this payload.
void onMessage(char* topic, uint8_t* payload, unsigned int length) {
  const uint32_t now = millis();
  if (strcmp(topic, g_ackTopic) != 0) return;
  Ack ack;
  const AckParseError err = parseAck(payload, length, &ack);
  if (err != AckParseError::None) {
    logLine("unreadable ack:", ackParseErrorName(err));
    return;
  }
  const AckDecision d = decideAck(ack);
  if (d.removeFromBuffer && ack.hasSeq) {
    const RbStatus st = g_buffer.ack(ack.seq);
    if (st == RbStatus::Ok) g_sender.onAckRemoved(now);
    else if (st != RbStatus::NotFound) logLine("cannot mark acked:", rbStatusName(st));  // NotFound: a late duplicate ack
  }
  if (ack.status == AckStatus::Rejected) logLine("rejected:", ack.hasErrorCode ? ack.errorCode : "(no code)");
  const bool latest = ack.hasSeq && g_haveLastScan && ack.seq == g_lastScanSeq && now - g_lastScanMs < kFreshAckMs;
  if (latest && !g_lastScanAnswered) {
    g_lastScanAnswered = true;
    g_player.play(feedbackFor(d.signal), now);
  } else if (d.signal == Signal::Rejected) {
    Feedback red = feedbackFor(Signal::Rejected);
    red.beeps = 0;  // an older scan was refused: red LED, no sound; the log has the error code
    g_player.play(red, now);
  }
}

bool connectMqtt(uint32_t now) {
  logLine("connecting to", POSKO_GATEWAY_HOST);
  // Username = device id, password = token; last will retained QoS 1; clean session = false so
  // acks published while the node was away are delivered when it returns.
  if (!g_mqtt.connect(g_clientId, POSKO_DEVICE_ID, POSKO_DEVICE_TOKEN, g_statusTopic, 1, true, kLastWill, false)) {
    char why[16];
    snprintf(why, sizeof why, "state %d", g_mqtt.state());  // 4/5: wrong device id or token
    logLine("mqtt connect failed:", why);
    return false;
  }
  if (!g_mqtt.subscribe(g_ackTopic, 1)) logLine("subscribe failed", g_ackTopic);
  publishStatus(now);
  g_sender.onConnected(now);  // everything pending goes out again, oldest first
  logLine("connected, pending scans:", String(static_cast<unsigned long>(g_buffer.pendingCount())).c_str());
  return true;
}

void keepConnected(uint32_t now) {
  const bool up = WiFi.status() == WL_CONNECTED && g_mqtt.connected();
  if (g_wasConnected && !up) {
    logLine("connection lost");
    g_sender.onDisconnected();
    g_nextConnectAt = now + g_reconnect.next();
  }
  g_wasConnected = up;
  if (up || WiFi.status() != WL_CONNECTED) return;  // Wi-Fi reconnects by itself (setAutoReconnect)
  if (static_cast<int32_t>(now - g_nextConnectAt) < 0) return;
  if (connectMqtt(now)) {
    g_reconnect.reset();
    g_wasConnected = true;
  } else {
    g_nextConnectAt = millis() + g_reconnect.next();  // 1 s, 2 s, 4 s … 60 s, jittered
  }
}

// Publishes what the scheduler says is due: pending scans in seq order, 8 unacked at most,
// everything again after 10 s without an ack (then backing off).
void sendPending(uint32_t now) {
  uint64_t seq;
  for (int i = 0; i < 4 && g_sender.next(g_buffer, now, &seq); ++i) {
    uint8_t code[kMaxCodeLen];
    size_t len = 0;
    uint8_t action = RingBuffer::kNoAction;
    const RbStatus st = g_buffer.read(seq, code, sizeof code, &len, &action);
    if (st == RbStatus::Corrupt) {
      logLine("dropping an unreadable buffered scan (flash damage)");
      g_buffer.ack(seq);
      continue;
    }
    if (st != RbStatus::Ok) {
      logLine("buffer read failed:", rbStatusName(st));
      return;
    }
    const size_t n = buildScanPayload(g_payload, sizeof g_payload, seq, code, len, static_cast<Action>(action));
    if (n == 0) {  // cannot happen: push() validated the code; never send a broken payload
      g_buffer.ack(seq);
      continue;
    }
    // PubSubClient publishes at QoS 0; delivery is ensured by the gateway's ack (PROTOCOL.md).
    if (!g_mqtt.publish(g_scanTopic, reinterpret_cast<const uint8_t*>(g_payload), n, false)) return;
    g_sender.onPublished(seq, now);
  }
}

void onCode(const uint8_t* code, size_t len, uint32_t now) {
  g_lastActivityMs = now;
  uint64_t seq = 0;
  // Written to flash with its seq BEFORE it is published.
  const RbStatus st = g_buffer.push(code, len, static_cast<uint8_t>(g_action), &seq);
  switch (st) {
    case RbStatus::Ok:
      g_haveLastScan = true;
      g_lastScanSeq = seq;
      g_lastScanMs = now;
      g_lastScanAnswered = false;
      g_lastScanStoredShown = false;
      if (g_mqtt.connected()) sendPending(now);  // right away, for a quick beep
      break;
    case RbStatus::Full:
      logLine("buffer full: scan refused");  // never overwrite unacked scans
      g_player.play(feedbackFor(Signal::BufferFull), now);
      break;
    default:
      logLine("cannot store scan:", rbStatusName(st));
      g_player.play(feedbackFor(Signal::BadScan), now);
  }
}

void readScanner(uint32_t now) {
  auto handle = [now](ScannerAssembler::Event e) {
    if (e == ScannerAssembler::Event::Code) onCode(g_scanner.code(), g_scanner.length(), now);
    else if (e == ScannerAssembler::Event::Overflow || e == ScannerAssembler::Event::Timeout) {
      logLine("bad read from the scanner:", scannerEventName(e));
      g_player.play(feedbackFor(Signal::BadScan), now);
    }
  };
  int budget = 1024;  // bytes per loop(), so MQTT keeps being served during a burst
  while (budget-- > 0 && Serial2.available() > 0) handle(g_scanner.feed(static_cast<uint8_t>(Serial2.read()), now));
  handle(g_scanner.poll(now));
}

void fatalConfig(const char* why) {
  g_fatal = why;
  logLine("FATAL:", why);
}

}  // namespace

// ---------------------------------------------------------------------------------------------

void setup() {
  Serial.begin(115200);
  g_player.begin();
  Serial2.setRxBufferSize(2048);  // before begin(): room for a few 512-byte codes while connect() blocks
  Serial2.begin(POSKO_SCANNER_BAUD, SERIAL_8N1, POSKO_SCANNER_RX_PIN, POSKO_SCANNER_TX_PIN);
  logLine(POSKO_FW, POSKO_DEVICE_ID);

  if (buildTopic(g_scanTopic, sizeof g_scanTopic, POSKO_POST, TopicKind::Scan, POSKO_DEVICE_ID) == 0 ||
      buildTopic(g_ackTopic, sizeof g_ackTopic, POSKO_POST, TopicKind::Ack, POSKO_DEVICE_ID) == 0 ||
      buildTopic(g_statusTopic, sizeof g_statusTopic, POSKO_POST, TopicKind::Status, POSKO_DEVICE_ID) == 0) {
    fatalConfig("POSKO_POST or POSKO_DEVICE_ID is not a valid id (config.h)");
    return;
  }
  snprintf(g_clientId, sizeof g_clientId, "posko-%s", POSKO_DEVICE_ID);
  if (!actionFromName(POSKO_ACTION, &g_action) || g_action == Action::Dispatch) {
    fatalConfig("POSKO_ACTION is not a supported action (config.h)");
    return;
  }
  if (strcmp(POSKO_DEVICE_TOKEN, "paste-the-mqttPassword-here") == 0) logLine("WARNING: config.h still has the template token");

  // The buffer first: without it no scan may be taken (scans are stored before they are sent).
  if (!g_flash.begin()) {
    fatalConfig("no '" POSKO_PARTITION_LABEL "' partition (flash with partitions.csv)");
    return;
  }
  const RbStatus st = g_buffer.begin(POSKO_SEQ_FLOOR);
  if (st != RbStatus::Ok) {
    fatalConfig(rbStatusName(st));
    return;
  }
  const RbRecoveryInfo& info = g_buffer.recoveryInfo();
  Serial.printf("[posko] buffer: %u pending, next seq %llu, %u records, %u torn/corrupt, %u sectors free\n",
                static_cast<unsigned>(g_buffer.pendingCount()), static_cast<unsigned long long>(g_buffer.nextSeq()),
                static_cast<unsigned>(info.records), static_cast<unsigned>(info.tornTails + info.corruptRecords),
                static_cast<unsigned>(g_buffer.reusableSectors()));

  WiFi.mode(WIFI_STA);
  WiFi.setSleep(false);  // modem sleep would delay acks by up to a DTIM interval
  WiFi.setAutoReconnect(true);
  WiFi.begin(POSKO_WIFI_SSID, POSKO_WIFI_PASSWORD);

  g_mqtt.setServer(POSKO_GATEWAY_HOST, POSKO_GATEWAY_PORT);
  g_mqtt.setCallback(onMessage);
  g_mqtt.setKeepAlive(30);
  g_mqtt.setSocketTimeout(5);      // connect() blocks at most this long
  g_mqtt.setBufferSize(8192);      // a scan payload is at most ~3.2 KiB; acks with long messages fit
  g_player.play(feedbackFor(Signal::Accepted), millis());  // "ready"
}

void loop() {
  const uint32_t now = millis();
  if (g_fatal != nullptr) {
    g_player.fatal(now);
    while (Serial2.available() > 0) Serial2.read();  // scans are refused, not queued
    delay(10);
    return;
  }
  readScanner(now);
  keepConnected(now);
  if (g_mqtt.connected()) {
    g_mqtt.loop();  // acks -> onMessage
    sendPending(now);
    const int battery = POSKO_BATTERY_PIN >= 0 ? batteryPercent() : -1;
    if (static_cast<int32_t>(now - g_nextStatusAt) >= 0 || (battery >= 0 && abs(battery - g_lastBattery) >= 5)) publishStatus(now);
  }
  // No ack for the latest scan yet (offline, or the gateway is slow): say "stored".
  if (g_haveLastScan && !g_lastScanAnswered && !g_lastScanStoredShown && now - g_lastScanMs >= kStoredHintMs) {
    g_lastScanStoredShown = true;
    g_player.play(feedbackFor(Signal::Stored), now);
  }
  // Idle: erase one all-acked sector ahead of time (~50 ms), so a scan never waits for it.
  if (now - g_lastActivityMs > 5000 && static_cast<int32_t>(now - g_nextMaintainAt) >= 0) {
    g_buffer.maintain();
    g_nextMaintainAt = now + kMaintainEveryMs;
  }
  g_player.update(now);
  delay(1);
}
