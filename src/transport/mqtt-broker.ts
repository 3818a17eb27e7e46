/**
 * The embedded MQTT broker (aedes), so `npm start` alone serves devices. It authenticates devices
 * (username: device id, password: its token), lets each publish only to its own scan and status
 * topics and subscribe only to its own ack topic, and records a QoS 1 scan before the PUBACK: the
 * PUBACK is sent when our authorisation hook calls back, which is after the commit.
 */
import { Aedes, type AuthenticateError, type Client } from 'aedes';
import { createServer, type Server } from 'node:net';
import type { AddressInfo } from 'node:net';
import { deviceTopics, parseDeviceTopic } from '../domain/device-protocol.ts';
import type { DeviceMessages } from '../ingest/device-messages.ts';
import type { Logger } from '../log.ts';
import type { Store } from '../store/store.ts';

/** What the broker needs. */
export interface BrokerDeps {
  post: string;
  store: Store;
  messages: DeviceMessages;
  log: Logger;
  /** Counts refused connections and publishes, by reason. */
  refused: (reason: string) => void;
}

const deviceOf = new WeakMap<Client, string>();

function authError(message: string, returnCode: number): AuthenticateError {
  return Object.assign(new Error(message), { returnCode }) as AuthenticateError;
}

/** An MQTT broker listening on a TCP port, wired to ingest. */
export class EmbeddedBroker {
  private broker: Aedes | undefined;
  private server: Server | undefined;

  constructor(private readonly deps: BrokerDeps) {}

  /** Starts listening; resolves with the bound port. Rejects (EADDRINUSE…) without side effects. */
  async start(host: string, port: number): Promise<number> {
    const { post, store, messages, log, refused } = this.deps;
    const broker = await Aedes.createBroker({
      maxClientsIdLength: 128,
      drainTimeout: 10_000,
      heartbeatInterval: 3_600_000,
      authenticate: (client, username, password, done) => {
        const device = username && password ? store.devices.byToken(password.toString('utf8')) : undefined;
        if (!device || device.id !== username) {
          refused('bad-credentials');
          log.info('mqtt connection refused', { clientId: client.id, username });
          return done(authError('bad username or password', 4), false);
        }
        deviceOf.set(client, device.id);
        done(null, true);
      },
      authorizePublish: (client, packet, done) => {
        const topic = parseDeviceTopic(packet.topic);
        // A last will published after its client is gone: only status topics of this post.
        const device = client ? deviceOf.get(client) : topic?.device;
        if (!topic || !device || topic.post !== post || topic.device !== device || topic.kind === 'ack') {
          refused('forbidden-topic');
          log.info('mqtt publish refused', { device, topic: packet.topic });
          return done(new Error(`not allowed to publish to ${packet.topic}`));
        }
        if (topic.kind === 'status') {
          messages.status(device, packet.payload as Buffer);
          return done(null);
        }
        messages.scan(device, packet.payload as Buffer).then(
          ({ ack, retry }) => {
            broker.publish({ cmd: 'publish', topic: deviceTopics(post, device).ack, payload: Buffer.from(JSON.stringify(ack)), qos: 1, retain: false, dup: false }, () => {});
            // Not stored (disk full…): no PUBACK; dropping the connection makes the device resend.
            done(retry ? new Error(ack.error?.message ?? 'not stored') : null);
          },
          (e: unknown) => {
            log.error('mqtt scan failed', { device, error: (e as Error).message });
            done(new Error('internal error'));
          },
        );
      },
      authorizeSubscribe: (client, sub, done) => {
        const device = deviceOf.get(client);
        if (device && sub.topic === deviceTopics(post, device).ack) return done(null, sub);
        refused('forbidden-subscribe');
        done(null, null); // SUBACK 128: refused, the connection stays
      },
    });
    broker.on('clientError', (client, err) => log.debug('mqtt client error', { clientId: client.id, error: err.message }));
    broker.on('connectionError', (client, err) => log.debug('mqtt connection error', { clientId: client.id, error: err.message }));
    // No Nagle: the ack message right after a PUBACK must not wait for the device's delayed ACK
    // (measured: ack p50 44 ms with Nagle, 3 ms without).
    const server = createServer({ noDelay: true }, broker.handle);
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, host, () => { server.off('error', reject); resolve(); });
      });
    } catch (e) {
      await new Promise<void>((r) => broker.close(() => r()));
      throw e;
    }
    this.broker = broker;
    this.server = server;
    return (server.address() as AddressInfo).port;
  }

  /** Stops accepting connections and closes the broker. */
  async stop(): Promise<void> {
    const { server, broker } = this;
    this.server = undefined;
    this.broker = undefined;
    // The broker first: it closes the device connections the server would otherwise wait for.
    if (broker) await new Promise<void>((r) => broker.close(() => r()));
    if (server) await new Promise<void>((r) => server.close(() => r()));
  }
}
