/**
 * Prometheus metrics of one gateway (a registry per gateway, so several gateways can run in one
 * process in tests). prom-client is the maintained standard and brings process metrics (RSS,
 * event-loop lag) that matter on a Raspberry Pi.
 */
import client from 'prom-client';

/** The metrics a gateway records. */
export interface Metrics {
  registry: client.Registry;
  scans: client.Counter<'result'>;
  httpRequests: client.Counter<'method' | 'route' | 'status'>;
  httpDuration: client.Histogram<'route'>;
  folded: client.Counter;
  mqttMessages: client.Counter<'kind' | 'result'>;
  mqttRefused: client.Counter<'reason'>;
  foldErrors: client.Counter;
  syncExchanges: client.Counter<'result'>;
  syncEvents: client.Counter;
  syncRefused: client.Counter<'code'>;
}

/** Creates a gateway's metrics. `gauges` are read at scrape time. */
export function createMetrics(gauges: { pendingFold: () => number; events: () => number; parcels: () => number }): Metrics {
  const registry = new client.Registry();
  client.collectDefaultMetrics({ register: registry, prefix: 'posko_' });
  const scans = new client.Counter({ name: 'posko_scans_total', help: 'Scans by result (created, duplicate, rejected)', labelNames: ['result'], registers: [registry] });
  const httpRequests = new client.Counter({ name: 'posko_http_requests_total', help: 'HTTP requests', labelNames: ['method', 'route', 'status'], registers: [registry] });
  const httpDuration = new client.Histogram({
    name: 'posko_http_request_duration_seconds', help: 'HTTP request duration', labelNames: ['route'], registers: [registry],
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
  });
  const folded = new client.Counter({ name: 'posko_folded_events_total', help: 'Events folded into ledger documents', registers: [registry] });
  const foldErrors = new client.Counter({ name: 'posko_fold_errors_total', help: 'Failed folds (retried)', registers: [registry] });
  new client.Gauge({ name: 'posko_fold_pending', help: 'Events committed but not yet folded into documents', registers: [registry], collect() { this.set(gauges.pendingFold()); } });
  new client.Gauge({ name: 'posko_events', help: 'Events in the journal', registers: [registry], collect() { this.set(gauges.events()); } });
  new client.Gauge({ name: 'posko_parcels', help: 'Parcels known', registers: [registry], collect() { this.set(gauges.parcels()); } });
  const mqttMessages = new client.Counter({ name: 'posko_mqtt_messages_total', help: 'Device MQTT messages by kind (scan, status) and result', labelNames: ['kind', 'result'], registers: [registry] });
  const mqttRefused = new client.Counter({ name: 'posko_mqtt_refused_total', help: 'Refused MQTT connections, publishes and subscriptions, by reason', labelNames: ['reason'], registers: [registry] });
  const syncExchanges = new client.Counter({ name: 'posko_sync_exchanges_total', help: 'Syncs started by this gateway, by result (complete, partial, or the error code)', labelNames: ['result'], registers: [registry] });
  const syncEvents = new client.Counter({ name: 'posko_sync_events_total', help: 'Events merged from peers into the views', registers: [registry] });
  const syncRefused = new client.Counter({ name: 'posko_sync_refused_total', help: 'Document chunks refused from peers, by code', labelNames: ['code'], registers: [registry] });
  return { registry, scans, httpRequests, httpDuration, folded, foldErrors, mqttMessages, mqttRefused, syncExchanges, syncEvents, syncRefused };
}
