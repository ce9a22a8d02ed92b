// `tidemark monitor`: evaluate a monitor on schedule (the clock is the wall clock), or replay it
// over history (`--replay --from --to`: the clock is event time), printing each evaluation and
// delivering alerts to Alertmanager-format webhooks, a Kafka topic and the log.
import { Command, InvalidArgumentError } from 'commander';
import { Partitioners, type KafkaConfig } from 'kafkajs';
import { compileOrThrow, formatDurationMs, loadDefinitions, parseTimeMs } from '../definitions/index.js';
import { createKafkaClient } from '../ingest/index.js';
import { AlertmanagerWebhookSink, KafkaAlertSink, LogAlertSink, MonitorRunner, type AlertSink, type EvaluationSummary } from '../monitor/index.js';
import { keepChdbMemory, latestEventTimeMs, OfflineStore } from '../offline/index.js';
import { clickhouseConnectionFlags, clickhouseConnectionOf, clickhouseShardFlags, clickhouseShardsOf, kafkaConnectionFlags, kafkaSecurityOf, type ClickHouseConnectionFlags, type ClickHouseShardFlags, type KafkaConnectionFlags } from './connections.js';

function timeOption(name: string) {
  return (text: string): number => {
    const ms = parseTimeMs(text);
    if (ms === null) throw new InvalidArgumentError(`${name} must be ISO-8601 UTC or epoch ms, got ${text}`);
    return ms;
  };
}

/** One line per evaluation, plus one per alert notification. */
export function formatEvaluation(s: EvaluationSummary): string[] {
  const day = new Date(s.windowEndMs).toISOString().replace(':00.000Z', 'Z').replace('T00:00Z', '');
  const bySlice = new Map<string, number>();
  for (const d of s.drifted) bySlice.set(d.slice, (bySlice.get(d.slice) ?? 0) + 1);
  const top = [...bySlice].sort((a, b) => b[1] - a[1]).slice(0, 4).map(([slice, n]) => `${slice} (${n})`);
  const lines = [`${day}  ${String(s.metrics).padStart(6)} metrics  ${String(s.drifted.length).padStart(4)} drifted${top.length ? `: ${top.join(', ')}` : ''}`];
  for (const n of s.notifications) {
    const l = n.labels;
    lines.push(`    ${n.status === 'firing' ? 'FIRING  ' : 'RESOLVED'} ${l.severity} ${l.slo}${l.feature ? ` ${l.feature}` : ''}${l.slice ? ` ${l.slice}` : ''}: ${n.annotations.summary ?? ''}`);
  }
  return lines;
}

export interface AlertSinkOptions {
  alertmanagerUrl?: string[];
  alertTopic?: string;
  kafkaBrokers?: string;
  /** kafkajs's TLS and SASL options for the alert producer. */
  kafkaSecurity?: Pick<KafkaConfig, 'ssl' | 'sasl'>;
  logAlerts?: boolean;
  externalUrl: string;
}

export async function alertSinksOf(opts: AlertSinkOptions): Promise<{ sinks: AlertSink[]; close(): Promise<void> }> {
  const sinks: AlertSink[] = [];
  for (const url of opts.alertmanagerUrl ?? []) sinks.push(new AlertmanagerWebhookSink({ url, externalURL: opts.externalUrl }));
  let close = async (): Promise<void> => {};
  if (opts.alertTopic) {
    if (!opts.kafkaBrokers) throw new InvalidArgumentError('--alert-topic needs --kafka-brokers (or $KAFKA_BROKERS)');
    const producer = createKafkaClient(opts.kafkaBrokers.split(','), 'tidemark-monitor', undefined, undefined, opts.kafkaSecurity).producer({ createPartitioner: Partitioners.DefaultPartitioner });
    await producer.connect();
    sinks.push(new KafkaAlertSink({ producer, topic: opts.alertTopic, externalURL: opts.externalUrl }));
    close = () => producer.disconnect();
  }
  if (opts.logAlerts !== false) sinks.push(new LogAlertSink());
  return { sinks, close };
}

/** The greatest of the numbers, null when there is none. */
function maxOrNull(values: readonly (number | null)[]): number | null {
  const numbers = values.filter((v): v is number => v !== null);
  return numbers.length > 0 ? Math.max(...numbers) : null;
}

export function addMonitorCommand(program: Command): void {
  clickhouseShardFlags(clickhouseConnectionFlags(kafkaConnectionFlags(program
    .command('monitor')
    .description('evaluate a drift and quality monitor on schedule, or replay it over history with --replay --from --to')
    .requiredOption('--definitions <path>', 'definitions module')
    .option('--monitor <name>', 'which monitor (default: the only one)')
    .option('--replay', 'evaluate history with the clock driven by event time')
    .option('--from <time>', 'replay start (ISO-8601 UTC or epoch ms; default: the reference end)', timeOption('--from'))
    .option('--to <time>', 'replay end (default: the latest event)', timeOption('--to'))
    .option('--alertmanager-url <url...>', 'POST alerts in the Alertmanager webhook format (v4) to these URLs')
    .option('--alert-topic <topic>', 'also produce alerts to this Kafka topic')
    .option('--kafka-brokers <list>', 'Kafka for --alert-topic (default: $KAFKA_BROKERS)', process.env.KAFKA_BROKERS)
    .option('--no-log-alerts', 'do not print alerts as log lines')
    .option('--external-url <url>', 'base URL of the tidemark API, for dashboard links in alerts', 'http://localhost:8080')
    .option('--clickhouse-url <url>', 'ClickHouse server HTTP(S) URL (default: $CLICKHOUSE_URL, else chDB in --data-dir)', process.env.CLICKHOUSE_URL)
    .option('--data-dir <dir>', 'folder for chDB data', '.tidemark'))))
    .action(async (opts: ClickHouseConnectionFlags & ClickHouseShardFlags & KafkaConnectionFlags & { definitions: string; monitor?: string; replay?: boolean; from?: number; to?: number; alertmanagerUrl?: string[]; alertTopic?: string; kafkaBrokers?: string; logAlerts: boolean; externalUrl: string; clickhouseUrl?: string; dataDir: string }) => {
      const compiled = compileOrThrow((await loadDefinitions(opts.definitions)).module);
      const kafkaSecurity = opts.alertTopic ? kafkaSecurityOf(opts) : undefined;
      // --clickhouse-shards (or $CLICKHOUSE_SHARDS): every shard's samples, merged; results on the home shard.
      const sharded = clickhouseShardsOf(opts);
      // Evaluations run many queries a few seconds apart: chDB keeps its memory between them.
      keepChdbMemory();
      const store = sharded.clickhouseShards
        ? await OfflineStore.open(compiled, { ...sharded, clickhouse: clickhouseConnectionOf(opts) })
        : await OfflineStore.open(compiled, { ...(opts.clickhouseUrl ? { clickhouseUrl: opts.clickhouseUrl } : {}), dataDir: opts.dataDir, clickhouse: clickhouseConnectionOf(opts) });
      const { sinks, close } = await alertSinksOf({ ...opts, kafkaSecurity });
      try {
        const runner = await MonitorRunner.open(store.executor, compiled, opts.monitor, { sinks, externalURL: opts.externalUrl, log: (m) => console.log(m), shards: store.shards });
        const plan = runner.plan;
        const print = (s: EvaluationSummary): void => {
          for (const line of formatEvaluation(s)) console.log(line);
        };
        if (opts.replay) {
          const from = opts.from ?? plan.reference.toMs;
          const latest = store.shards ? maxOrNull(await store.shards.each((executor) => latestEventTimeMs(executor, plan.source))) : await latestEventTimeMs(store.executor, plan.source);
          const to = opts.to ?? (latest ?? from) + plan.intervalMs;
          console.log(`monitor ${plan.name}: replaying ${new Date(from).toISOString()} .. ${new Date(to).toISOString()} every ${formatDurationMs(plan.intervalMs)}, windows ${plan.windowsMs.map(formatDurationMs).join(', ')}`);
          const done = await runner.evaluate(from, to, print);
          if (done.length === 0) {
            const last = await runner.lastEvaluatedMs();
            console.log(`already evaluated up to ${last === null ? '-' : new Date(last).toISOString()} (table tm_monitor_metrics): nothing to do`);
          }
          const firing = runner.alerts.alerts().filter((a) => a.status === 'firing');
          console.log(`done: ${firing.length} alerts firing at the end of the replay`);
          return;
        }
        console.log(`monitor ${plan.name}: evaluating every ${formatDurationMs(plan.intervalMs)} (Ctrl-C to stop)`);
        let stopped = false;
        const stop = (): void => {
          stopped = true;
        };
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
        while (!stopped) {
          const now = Date.now();
          const T = Math.floor((now - plan.phaseMs) / plan.intervalMs) * plan.intervalMs + plan.phaseMs;
          const last = (await runner.lastEvaluatedMs()) ?? T - plan.intervalMs;
          if (T > last) await runner.evaluate(last, T, print);
          else await runner.deliverPending();
          const wait = Math.min(T + plan.intervalMs - Date.now(), 60_000);
          for (let waited = 0; waited < wait && !stopped; waited += 500) await new Promise((r) => setTimeout(r, 500));
        }
      } finally {
        await close();
        await store.close();
      }
    });
}
