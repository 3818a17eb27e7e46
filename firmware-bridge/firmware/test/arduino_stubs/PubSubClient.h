// See Arduino.h in this folder: the PubSubClient 2.8 methods the sketch uses, declarations only.
#pragma once
#include <functional>

#include "WiFi.h"

#define MQTT_CALLBACK_SIGNATURE std::function<void(char*, uint8_t*, unsigned int)> callback

class PubSubClient {
 public:
  explicit PubSubClient(Client& client);
  PubSubClient& setServer(const char* domain, uint16_t port);
  PubSubClient& setCallback(MQTT_CALLBACK_SIGNATURE);
  PubSubClient& setKeepAlive(uint16_t keepAlive);
  PubSubClient& setSocketTimeout(uint16_t timeout);
  bool setBufferSize(uint16_t size);
  bool connect(const char* id, const char* user, const char* pass, const char* willTopic, uint8_t willQos, bool willRetain,
               const char* willMessage, bool cleanSession);
  bool publish(const char* topic, const uint8_t* payload, unsigned int plength, bool retained);
  bool subscribe(const char* topic, uint8_t qos);
  bool loop();
  bool connected();
  int state();
};
