// Dump a monitor replay's results from a data dir, to compare two runs byte for byte:
//   node scripts/monitor-replay-dump.mjs <data dir> <output prefix>
// writes <prefix>.metrics.tsv (every tm_monitor_metrics column but evaluated_at, after FINAL,
// sorted) and <prefix>.alerts.tsv (the latest version of every alert, notification and watermark
// in tm_monitor_alerts, sorted), then prints their row counts. Compare with cmp or diff.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Session } from 'chdb';

const [dir, out] = process.argv.slice(2);
if (!dir || !out) {
  console.error('usage: node scripts/monitor-replay-dump.mjs <data dir> <output prefix>');
  process.exit(2);
}
const session = new Session(join(dir, 'chdb'));
try {
  const metrics = session.query(
    `SELECT monitor, version, metric, feature, slice, window_ms, toUnixTimestamp64Milli(window_end), value, n_ref, n_cur, ks, ks_error_bound, p_value, q_value, drift, detail
     FROM tm_monitor_metrics FINAL ORDER BY monitor, metric, feature, slice, window_ms, window_end`,
    'TSV',
  );
  const alerts = session.query(
    `SELECT kind, id, argMax(status, version), argMax(starts_at_ms, version), argMax(pending, version), argMax(body, version)
     FROM tm_monitor_alerts GROUP BY kind, id ORDER BY kind, id`,
    'TSV',
  );
  writeFileSync(`${out}.metrics.tsv`, metrics);
  writeFileSync(`${out}.alerts.tsv`, alerts);
  const lines = (text) => text.split('\n').length - 1;
  console.log(`${out}: ${lines(metrics)} metric rows, ${lines(alerts)} alert rows`);
} finally {
  session.close();
}
