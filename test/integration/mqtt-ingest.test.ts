/**
 * The MQTT ingest contract against the embedded broker and against a real Mosquitto using the
 * password and ACL files posko writes.
 */
import { mqttIngestContract } from '../contract/mqtt-ingest.contract.ts';
import { embeddedEnv, hasMosquitto, mosquittoEnv } from '../helpers/mqtt.ts';

mqttIngestContract('embedded broker', embeddedEnv);
mqttIngestContract('Mosquitto', mosquittoEnv, { skip: !hasMosquitto() });
