// Where alert state lives between monitor runs, so that a restart neither pages again for an
// alert already firing nor loses a notification not yet delivered. The offline store keeps it
// in ClickHouse (chDB by default) as an append-only log read back with argMax by version.
import { TidemarkError } from '../definitions/index.js';
import type { OfflineExecutor } from '../offline/executor.js';
import { isPending, type AlertNotification, type AlertState, type AlertStateChanges, type AlertStoreSnapshot } from './alerts.js';

export interface AlertStateStore {
  /** Every alert's latest state, the notifications still pending, and the SLO watermarks. */
  load(): Promise<AlertStoreSnapshot>;
  /** Write changes (later versions replace earlier ones by key). One save is all or nothing. */
  save(changes: AlertStateChanges): Promise<void>;
  /** One alert's latest state (null: never seen) and every notification it ever had, each at its latest version, oldest first. */
  history(fingerprint: string): Promise<AlertHistory>;
}

export interface AlertHistory {
  alert: AlertState | null;
  notifications: AlertNotification[];
}

/** Oldest first; a transition and the repeats at one instant keep their id order. */
function byCreation(a: AlertNotification, b: AlertNotification): number {
  return a.createdAtMs - b.createdAtMs || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
}

/** In-process store: survives dropping the alert objects, not the process (tests, embedded demos). */
export class MemoryAlertStateStore implements AlertStateStore {
  private readonly alerts = new Map<string, AlertState>();
  private readonly notifications = new Map<string, AlertNotification>();
  private readonly watermarks = new Map<string, number>();
  /** Number of saves that wrote something. */
  saves = 0;

  async load(): Promise<AlertStoreSnapshot> {
    return structuredClone({
      alerts: [...this.alerts.values()],
      notifications: [...this.notifications.values()].filter(isPending),
      watermarks: Object.fromEntries(this.watermarks),
    });
  }

  async save(changes: AlertStateChanges): Promise<void> {
    const copy = structuredClone(changes);
    for (const a of copy.alerts) this.alerts.set(a.fingerprint, a);
    for (const n of copy.notifications) this.notifications.set(n.id, n);
    for (const [k, v] of Object.entries(copy.watermarks)) this.watermarks.set(k, v);
    this.saves++;
  }

  async history(fingerprint: string): Promise<AlertHistory> {
    return structuredClone({
      alert: this.alerts.get(fingerprint) ?? null,
      notifications: [...this.notifications.values()].filter((n) => n.fingerprint === fingerprint).sort(byCreation),
    });
  }

  /** Every notification ever saved, delivered ones included (for tests and inspection). */
  allNotifications(): AlertNotification[] {
    return structuredClone([...this.notifications.values()]);
  }
}

export const ALERTS_TABLE = 'tm_monitor_alerts';

/**
 * One row per saved version of an alert, a notification or an SLO watermark. ReplacingMergeTree
 * lets ClickHouse drop superseded versions in the background; reads never rely on it (argMax by
 * version), so the result is the same before and after merges. A save is one INSERT, which
 * ClickHouse applies atomically (one block, one partition).
 */
export async function ensureAlertTable(executor: OfflineExecutor): Promise<void> {
  await executor.command(
    `CREATE TABLE IF NOT EXISTS ${ALERTS_TABLE} (
      kind LowCardinality(String),
      id String,
      version UInt64,
      fingerprint String,
      status String,
      starts_at_ms Int64,
      pending UInt8,
      body String,
      saved_at_ms Int64
    ) ENGINE = ReplacingMergeTree(version) ORDER BY (kind, id)`,
  );
}

type Kind = 'alert' | 'notification' | 'watermark';

interface AlertRow {
  kind: Kind;
  id: string;
  last_body: string;
}

function parseBody(row: AlertRow): unknown {
  try {
    return JSON.parse(row.last_body);
  } catch {
    throw new TidemarkError('TM_ALERT_STORE', `${ALERTS_TABLE}: the ${row.kind} ${row.id} is not valid JSON`, { table: ALERTS_TABLE, kind: row.kind, id: row.id });
  }
}

/**
 * Alert state in the offline store's ClickHouse (chDB or a server), table tm_monitor_alerts.
 * One monitor process writes a given store at a time (versions count up from what it finds).
 */
export class OfflineAlertStateStore implements AlertStateStore {
  private nextVersion = 1;

  private constructor(private readonly executor: OfflineExecutor) {}

  /** Create the table if needed and continue its version sequence. */
  static async open(executor: OfflineExecutor): Promise<OfflineAlertStateStore> {
    await ensureAlertTable(executor);
    const store = new OfflineAlertStateStore(executor);
    const [row] = await executor.rows<{ v: number | string }>(`SELECT max(version) AS v FROM ${ALERTS_TABLE}`);
    store.nextVersion = Number(row?.v ?? 0) + 1;
    return store;
  }

  async load(): Promise<AlertStoreSnapshot> {
    const rows = await this.executor.rows<AlertRow>(
      `SELECT kind, id, argMax(body, version) AS last_body, argMax(pending, version) AS last_pending
       FROM ${ALERTS_TABLE}
       GROUP BY kind, id
       HAVING kind != {notification:String} OR last_pending = 1
       ORDER BY kind, id`,
      { notification: 'notification' },
    );
    const snapshot: AlertStoreSnapshot = { alerts: [], notifications: [], watermarks: {} };
    for (const row of rows) {
      const body = parseBody(row);
      if (row.kind === 'alert') snapshot.alerts.push(body as AlertState);
      else if (row.kind === 'notification') snapshot.notifications.push(body as AlertNotification);
      else if (row.kind === 'watermark') snapshot.watermarks[row.id] = (body as { timeMs: number }).timeMs;
    }
    return snapshot;
  }

  async history(fingerprint: string): Promise<AlertHistory> {
    // The log keeps every version; the latest of each alert and notification is its state now.
    const rows = await this.executor.rows<AlertRow>(
      `SELECT kind, id, argMax(body, version) AS last_body FROM ${ALERTS_TABLE}
       WHERE fingerprint = {fingerprint:String} AND kind IN ('alert', 'notification')
       GROUP BY kind, id`,
      { fingerprint },
    );
    const out: AlertHistory = { alert: null, notifications: [] };
    for (const row of rows) {
      const body = parseBody(row);
      if (row.kind === 'alert') out.alert = body as AlertState;
      else out.notifications.push(body as AlertNotification);
    }
    out.notifications.sort(byCreation);
    return out;
  }

  async save(changes: AlertStateChanges): Promise<void> {
    const version = this.nextVersion++;
    const savedAtMs = Date.now();
    const rows: Record<string, unknown>[] = [];
    for (const a of changes.alerts) {
      rows.push({ kind: 'alert', id: a.fingerprint, version, fingerprint: a.fingerprint, status: a.status, starts_at_ms: a.startsAtMs, pending: 0, body: JSON.stringify(a), saved_at_ms: savedAtMs });
    }
    for (const n of changes.notifications) {
      rows.push({ kind: 'notification', id: n.id, version, fingerprint: n.fingerprint, status: n.status, starts_at_ms: n.startsAtMs, pending: isPending(n) ? 1 : 0, body: JSON.stringify(n), saved_at_ms: savedAtMs });
    }
    for (const [slo, timeMs] of Object.entries(changes.watermarks)) {
      rows.push({ kind: 'watermark', id: slo, version, fingerprint: '', status: '', starts_at_ms: timeMs, pending: 0, body: JSON.stringify({ timeMs }), saved_at_ms: savedAtMs });
    }
    await this.executor.insert(ALERTS_TABLE, rows);
  }
}
