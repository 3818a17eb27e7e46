// See Arduino.h in this folder: declarations only, for a syntax check of the sketch.
#pragma once
#include "Arduino.h"

typedef enum { WL_IDLE_STATUS = 0, WL_CONNECTED = 3, WL_DISCONNECTED = 6 } wl_status_t;
typedef enum { WIFI_OFF = 0, WIFI_STA = 1 } wifi_mode_t;

class Client {};
class WiFiClient : public Client {};

class WiFiClass {
 public:
  bool mode(wifi_mode_t m);
  bool setSleep(bool enabled);
  bool setAutoReconnect(bool autoReconnect);
  wl_status_t begin(const char* ssid, const char* passphrase = nullptr);
  wl_status_t status();
  int8_t RSSI();
};
extern WiFiClass WiFi;
