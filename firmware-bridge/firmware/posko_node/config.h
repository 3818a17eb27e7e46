// posko node configuration: a TEMPLATE. Edit before flashing; do not commit real passwords or
// device tokens (keep your edited copy out of version control).
//
// The device id and token come from the gateway:
//   posko devices add "Gudang pintu 1" --json      -> "mqttUsername", "mqttPassword"
#pragma once

// --- Wi-Fi of the post's LAN -------------------------------------------------------------------
#define POSKO_WIFI_SSID "posko-lan"
#define POSKO_WIFI_PASSWORD "change-me"

// --- The gateway (embedded MQTT broker, or the post's Mosquitto) ---------------------------------
#define POSKO_GATEWAY_HOST "192.168.4.1"  // IP address or host name
#define POSKO_GATEWAY_PORT 1883
#define POSKO_POST "KKR-KBG"             // the post id: A-Z, 0-9, -; 1..16 chars
#define POSKO_DEVICE_ID "Gudang-pintu-1"  // mqttUsername
#define POSKO_DEVICE_TOKEN "paste-the-mqttPassword-here"

// The action sent with every scan: "" = the device's default action at the gateway
// (posko devices add --action). Otherwise one of receive, checkpoint, distribute, count, damage,
// loss, return, expire. ("dispatch" needs a destination, which this node does not send.)
#define POSKO_ACTION ""

// The first seq to use when the buffer partition is blank. Leave 0 for a new device. If the
// partition of a device that was already used gets wiped (reflash with "erase all flash"), set it
// above the last seq the gateway saw from this device, or register the device again under a new
// id: otherwise new scans would be taken as duplicates of old ones.
#define POSKO_SEQ_FLOOR 0

// --- Barcode module on UART2 (GM65, MH-ET Live scanner…) -----------------------------------------
#define POSKO_SCANNER_RX_PIN 16  // ESP32 RX2 <- module TX
#define POSKO_SCANNER_TX_PIN 17  // ESP32 TX2 -> module RX
#define POSKO_SCANNER_BAUD 9600
// A code whose next byte is this late is dropped (a lost byte must not become a wrong barcode).
#define POSKO_SCANNER_TIMEOUT_MS 100
// 1 for modules configured without a CR/LF suffix: the timeout then ends the code instead.
#define POSKO_SCANNER_TIMEOUT_ENDS_CODE 0

// --- Feedback -----------------------------------------------------------------------------------
#define POSKO_BUZZER_PIN 25     // active buzzer through an NPN transistor; HIGH = sound
#define POSKO_LED_GREEN_PIN 26  // through 220-330 ohm
#define POSKO_LED_RED_PIN 27

// --- Optional battery sense (ADC1 pin via a divider; -1: none, "battery" is not reported) ----------
#define POSKO_BATTERY_PIN -1
#define POSKO_BATTERY_EMPTY_MV 3300  // at the battery, after undoing the divider
#define POSKO_BATTERY_FULL_MV 4150
#define POSKO_BATTERY_DIVIDER 2.0f   // battery voltage / pin voltage

// --- Offline buffer -----------------------------------------------------------------------------
// The data partition that holds the scan ring (partitions.csv: type 0x40, subtype 0x00).
#define POSKO_PARTITION_LABEL "poskobuf"
#define POSKO_PARTITION_TYPE 0x40
#define POSKO_PARTITION_SUBTYPE 0x00
