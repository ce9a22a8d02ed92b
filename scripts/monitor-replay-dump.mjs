// Dump a chDB dir's monitor metric rows (excluding evaluated_at) and alert state, sorted, to stdout as TSV.
import { Session } from 'chdb';
const [dir, out] = process.argv.slice(2);
const s = new Session(dir + '/chdb');
const q = (sql) => s.query(sql, 'TSV');
const metrics = q(`SELECT monitor, version, metric, feature, slice, window_ms, toUnixTimestamp64Milli(window_end), value, n_ref, n_cur, ks, ks_error_bound, p_value, q_value, drift, detail FROM tm_monitor_metrics FINAL ORDER BY monitor, metric, feature, slice, window_ms, window_end`);
const alerts = q(`SELECT kind, id, argMax(status, version), argMax(starts_at_ms, version), argMax(pending, version), argMax(body, version) FROM tm_monitor_alerts GROUP BY kind, id ORDER BY kind, id`);
const fs = await import('node:fs');
fs.writeFileSync(out + '.metrics.tsv', metrics);
fs.writeFileSync(out + '.alerts.tsv', alerts);
console.log(out, metrics.split('\n').length - 1, 'metric rows', alerts.split('\n').length - 1, 'alert rows');
s.close();
