// See Arduino.h in this folder: declarations only.
#pragma once
#include <stdint.h>
uint32_t esp_random(void);
