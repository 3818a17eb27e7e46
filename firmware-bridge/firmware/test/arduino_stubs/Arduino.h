// Host stand-ins for the few Arduino-ESP32 / ESP-IDF / PubSubClient declarations posko_node.ino
// uses, so the host test can type-check the sketch against the portable core's API
// (g++ -fsyntax-only). Declarations only: nothing here runs, and this is NOT an ESP32 build:
// the real signatures come from the ESP32 Arduino core and PubSubClient 2.8.
#pragma once
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HIGH 0x1
#define LOW 0x0
#define OUTPUT 0x03
#define SERIAL_8N1 0x800001c

uint32_t millis();
void delay(uint32_t ms);
void pinMode(uint8_t pin, uint8_t mode);
void digitalWrite(uint8_t pin, uint8_t val);
uint32_t analogReadMilliVolts(uint8_t pin);

class String {
 public:
  explicit String(unsigned long v);
  const char* c_str() const;
};

class HardwareSerial {
 public:
  size_t setRxBufferSize(size_t size);
  void begin(unsigned long baud, uint32_t config = SERIAL_8N1, int8_t rxPin = -1, int8_t txPin = -1);
  int available();
  int read();
  size_t printf(const char* format, ...) __attribute__((format(printf, 2, 3)));
};
extern HardwareSerial Serial;
extern HardwareSerial Serial2;
