/**
 * The gateway as a client of an external broker (Mosquitto on the Pi, `MQTT_URL`): a persistent
 * session (fixed client id, clean=false) subscribed at QoS 1 to this post's scan and status
 * topics, so scans published while the gateway is down wait in the broker. A scan is committed
 * before its PUBACK to the broker (mqtt.js sends it when `handleMessage` calls back); the device's
 * own guarantee is the ack message, sent after the commit. The broker's password and ACL files
 * (mosquitto-files.ts) make it refuse unknown devices and other devices' topics.
 */
import mqtt, { type MqttClient } from 'mqtt';
import { deviceTopics, parseDeviceTopic } from '../domain/device-protocol.ts';
import type { DeviceMessages } from '../ingest/device-messages.ts';
import type { Logger } from '../log.ts';

/** What the client needs. */
export interface ClientDeps {
  post: string;
  url: string;
  username: string;
  password: string;
  messages: DeviceMessages;
  log: Logger;
}

/** A connection to an external broker, wired to ingest. */
export class BrokerClient {
  private client: MqttClient | undefined;
  private connected = false;

  constructor(private readonly deps: ClientDeps) {}

  /** Whether the broker connection is up. */
  isConnected(): boolean {
    return this.connected;
  }

  /** Connects (and keeps reconnecting); resolves once the first connection is up or fails. */
  start(): Promise<void> {
    const { post, url, username, password, messages, log } = this.deps;
    const client = mqtt.connect(url, {
      clientId: `posko-gateway-${post}`,
      clean: false,
      username,
      password,
      reconnectPeriod: 2000,
      connectTimeout: 10_000,
      protocolVersion: 4,
    });
    this.client = client;
    client.handleMessage = (packet, done) => {
      const topic = parseDeviceTopic(packet.topic);
      const payload = Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload);
      if (!topic || topic.post !== post || topic.kind === 'ack') return done();
      if (topic.kind === 'status') {
        messages.status(topic.device, payload);
        return done();
      }
      messages.scan(topic.device, payload).then(
        ({ ack, retry }) => {
          client.publish(deviceTopics(post, topic.device).ack, JSON.stringify(ack), { qos: 1 });
          if (retry) {
            // Not stored: no PUBACK. Dropping the connection makes the broker redeliver later.
            log.warn('scan not stored; reconnecting so the broker redelivers', { device: topic.device });
            client.stream.destroy();
            return;
          }
          done();
        },
        (e: unknown) => {
          log.error('mqtt scan failed', { device: topic.device, error: (e as Error).message });
          client.stream.destroy();
        },
      );
    };
    client.on('connect', () => {
      this.connected = true;
      log.info('connected to MQTT broker', { url });
      client.subscribe([`posko/${post}/scan/+`, `posko/${post}/status/+`], { qos: 1 }, (err) => {
        if (err) log.error('MQTT subscribe failed', { error: err.message });
      });
    });
    client.on('close', () => { this.connected = false; });
    client.on('error', (e) => log.warn('MQTT broker connection error', { url, error: e.message }));
    return new Promise((resolve) => {
      client.once('connect', () => resolve());
      client.once('error', () => resolve());
      setTimeout(resolve, 10_000).unref();
    });
  }

  /** Disconnects (the broker keeps the session and queues scans meanwhile). */
  async stop(): Promise<void> {
    const c = this.client;
    this.client = undefined;
    if (c) await c.endAsync();
  }
}
