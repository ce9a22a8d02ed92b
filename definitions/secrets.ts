// Credentials and TLS files of the services (Redis, ClickHouse, Kafka): reading them, and keeping
// passwords out of every message, log line and process title. Every layer connects to a service,
// so this lives in the lowest one.
import { readFileSync } from 'node:fs';
import { TidemarkError } from './errors.js';

/**
 * A URL with the password of its user info (and any `password=` query parameter) replaced by
 * `***`, for printing. Works on URLs `new URL` refuses too (`redis-cluster://u:p@h1:1,h2:2`).
 */
export function withoutPassword(url: string): string {
  // The user info ends at the last @ before the path: a password may hold an unescaped @.
  let out = url.replace(/^([a-z][a-z0-9+.-]*:\/\/)([^/?#]*)@/i, (_all, scheme: string, userinfo: string) => {
    const colon = userinfo.indexOf(':');
    return colon < 0 ? `${scheme}${userinfo}@` : `${scheme}${userinfo.slice(0, colon)}:***@`;
  });
  out = out.replace(/([?&]password=)[^&#]*/gi, '$1***');
  return out;
}

/** `text` with every occurrence of each secret (a password given in a file, say) replaced by `***`. */
export function withoutSecrets(text: string, secrets: readonly (string | undefined)[]): string {
  let out = text;
  for (const s of secrets) if (s !== undefined && s.length > 0) out = out.split(s).join('***');
  return out;
}

/**
 * A password from a file (its trailing newline dropped, as `echo secret > file` leaves one), or a
 * coded error naming the file and what it was for, never its content.
 */
export function readSecretFile(path: string, what: string): string {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new TidemarkError('TM_SERVICE_CONFIG', `cannot read ${what} from ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { file: path, what });
  }
  const secret = text.replace(/\r?\n$/, '');
  if (secret.length === 0) throw new TidemarkError('TM_SERVICE_CONFIG', `${what} file ${path} is empty`, { file: path, what });
  return secret;
}

/** A PEM file of CA certificates (for TLS to a service), or a coded error naming the file. */
export function readCaFile(path: string, what: string): Buffer {
  let pem: Buffer;
  try {
    pem = readFileSync(path);
  } catch (e) {
    throw new TidemarkError('TM_SERVICE_CONFIG', `cannot read ${what} from ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { file: path, what });
  }
  if (!pem.includes('-----BEGIN CERTIFICATE-----')) throw new TidemarkError('TM_SERVICE_CONFIG', `${what} file ${path} holds no PEM certificate (-----BEGIN CERTIFICATE-----)`, { file: path, what });
  return pem;
}

/** Whether a TLS failure is a certificate problem (vs. a refused or dropped connection). */
export function isTlsCertificateError(e: unknown): boolean {
  const code = (e as { code?: unknown } | null)?.code;
  const message = e instanceof Error ? e.message : String(e);
  return (
    (typeof code === 'string' && /^(?:UNABLE_TO_|SELF_SIGNED_|DEPTH_ZERO_|CERT_|ERR_TLS_CERT|ERR_SSL_|ERR_TLS_)/.test(code)) ||
    /self[- ]signed certificate|unable to (?:get|verify) (?:local issuer|the first) certificate|certificate (?:has expired|verify failed)|Hostname\/IP does not match|wrong version number|ssl3_get_record|tlsv1 alert|packet length too long/i.test(message)
  );
}
