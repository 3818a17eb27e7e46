/**
 * Gateway configuration: defaults, overridden by `POSKO_*` environment variables, overridden by
 * command-line flags; validated with zod. A bad value stops start-up with a message naming the
 * setting and how to set it.
 */
import { resolve } from 'node:path';
import { z } from 'zod';
import { PoskoError } from '../domain/errors.ts';
import { POST_ID_RE } from '../domain/ids.ts';

const port = z.coerce.number().int().min(0).max(65535);

/** The settings, their defaults and rules. */
export const ConfigSchema = z.strictObject({
  dataDir: z.string().min(1).default('./data').transform((p) => resolve(p)),
  httpPort: port.default(8080),
  httpHost: z.string().min(1).default('0.0.0.0'),
  postId: z.string().regex(POST_ID_RE, 'use 1-16 of A-Z, 0-9 and -, e.g. KKR-KBG').default('DEMO'),
  role: z.enum(['post', 'hq']).default('post'),
  adminToken: z.string().min(16, 'at least 16 characters').optional(),
  foldIntervalMs: z.coerce.number().int().min(100).max(3_600_000).default(3000),
  maxBodyBytes: z.coerce.number().int().min(1024).max(64 * 1024 * 1024).default(4 * 1024 * 1024),
  syncIntervalMs: z.coerce.number().int().min(200).max(86_400_000).default(30_000),
  syncMessageBytes: z.coerce.number().int().min(16 * 1024).max(32 * 1024 * 1024).default(2 * 1024 * 1024),
  logLevel: z.enum(['debug', 'info', 'warn', 'error', 'silent']).default('info'),
  /** Port of the embedded MQTT broker; unset: 1883, and a busy 1883 only warns (another broker runs). */
  mqttPort: port.optional(),
  mqttHost: z.string().min(1).default('0.0.0.0'),
  /** An external broker (`mqtt://host:1883`): the gateway connects to it instead of embedding one. */
  mqttUrl: z.string().regex(/^mqtts?:\/\/[^\s]+$/, 'an mqtt:// or mqtts:// URL').optional(),
  mqttUsername: z.string().min(1).optional(),
  mqttPassword: z.string().min(1).optional(),
});
export type Config = z.infer<typeof ConfigSchema>;
export type ConfigInput = z.input<typeof ConfigSchema>;

/** Each setting's flag and environment variable, for messages and parsing. */
export const SETTINGS: Record<keyof Config, { flag: string; env: string; alias?: string }> = {
  dataDir: { flag: '--data-dir', env: 'POSKO_DATA_DIR' },
  httpPort: { flag: '--http-port', env: 'POSKO_HTTP_PORT' },
  httpHost: { flag: '--http-host', env: 'POSKO_HTTP_HOST' },
  postId: { flag: '--post-id', env: 'POSKO_POST_ID' },
  role: { flag: '--role', env: 'POSKO_ROLE' },
  adminToken: { flag: '--admin-token', env: 'POSKO_ADMIN_TOKEN' },
  foldIntervalMs: { flag: '--fold-interval-ms', env: 'POSKO_FOLD_INTERVAL_MS' },
  maxBodyBytes: { flag: '--max-body-bytes', env: 'POSKO_MAX_BODY_BYTES' },
  syncIntervalMs: { flag: '--sync-interval-ms', env: 'POSKO_SYNC_INTERVAL_MS' },
  syncMessageBytes: { flag: '--sync-message-bytes', env: 'POSKO_SYNC_MESSAGE_BYTES' },
  logLevel: { flag: '--log-level', env: 'POSKO_LOG_LEVEL' },
  mqttPort: { flag: '--mqtt-port', env: 'POSKO_MQTT_PORT' },
  mqttHost: { flag: '--mqtt-host', env: 'POSKO_MQTT_HOST' },
  mqttUrl: { flag: '--mqtt-url', env: 'POSKO_MQTT_URL', alias: 'MQTT_URL' },
  mqttUsername: { flag: '--mqtt-username', env: 'POSKO_MQTT_USERNAME' },
  mqttPassword: { flag: '--mqtt-password', env: 'POSKO_MQTT_PASSWORD' },
};

/** The embedded broker's port when none is set. */
export const DEFAULT_MQTT_PORT = 1883;

/**
 * Builds the configuration from the environment and flags (flags win). Throws a VALIDATION
 * PoskoError naming every bad setting with its flag and variable.
 */
export function loadConfig(env: Record<string, string | undefined>, flags: Partial<Record<keyof Config, string>>): Config {
  const input: Record<string, string> = {};
  for (const [key, s] of Object.entries(SETTINGS) as [keyof Config, { env: string; alias?: string }][]) {
    const v = flags[key] ?? env[s.env] ?? (s.alias ? env[s.alias] : undefined);
    if (v !== undefined && v !== '') input[key] = v;
  }
  const r = ConfigSchema.safeParse(input);
  if (r.success) return r.data;
  const lines = r.error.issues.map((i) => {
    const key = String(i.path[0]) as keyof Config;
    const s = SETTINGS[key];
    return `  ${key} (${s ? `${s.flag} or ${s.env}` : key}) = ${JSON.stringify(input[key])}: ${i.message}`;
  });
  throw new PoskoError('VALIDATION', `invalid configuration:\n${lines.join('\n')}`);
}
