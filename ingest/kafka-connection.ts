// TLS and SASL of the Kafka clients (materializer, push producer, offline sink, alert producer): the
// settings a user gives (flags or environment, read by api/connections.ts) turned into kafkajs's
// own `ssl` and `sasl` options. Tested as a function: librdkafka's mock cluster, the tests' broker,
// speaks neither TLS nor SASL.
import type { KafkaConfig, SASLOptions } from 'kafkajs';
import { readCaFile, readSecretFile, TidemarkError } from '../definitions/index.js';

export const KAFKA_SASL_MECHANISMS = ['plain', 'scram-sha-256', 'scram-sha-512'] as const;
export type KafkaSaslMechanism = (typeof KAFKA_SASL_MECHANISMS)[number];

/** What a user says about Kafka's TLS and SASL; files are read by kafkaSecurityConfig. */
export interface KafkaSecuritySettings {
  /** TLS to the brokers (implied by caFile). */
  ssl?: boolean;
  /** PEM CA certificates trusted for the brokers' certificates (default: Node's CAs). */
  caFile?: string;
  saslMechanism?: string;
  username?: string;
  /** A file holding the SASL password (wins over `password`). */
  passwordFile?: string;
  /** The SASL password itself (from the environment, never a flag). */
  password?: string;
}

/** kafkajs's `ssl` and `sasl` for the settings; a missing file or an incomplete SASL setting is TM_SERVICE_CONFIG. */
export function kafkaSecurityConfig(settings: KafkaSecuritySettings): Pick<KafkaConfig, 'ssl' | 'sasl'> {
  const config: Pick<KafkaConfig, 'ssl' | 'sasl'> = {};
  if (settings.caFile !== undefined) config.ssl = { ca: [readCaFile(settings.caFile, 'the Kafka CA certificates (--kafka-ca)')] };
  else if (settings.ssl === true) config.ssl = true;
  const mechanism = settings.saslMechanism?.toLowerCase();
  if (mechanism === undefined) {
    if (settings.username !== undefined || settings.passwordFile !== undefined) {
      throw new TidemarkError('TM_SERVICE_CONFIG', `a Kafka username or password file was given without --kafka-sasl-mechanism (one of ${KAFKA_SASL_MECHANISMS.join(', ')})`, { setting: 'kafka-sasl-mechanism' });
    }
    return config;
  }
  if (!(KAFKA_SASL_MECHANISMS as readonly string[]).includes(mechanism)) {
    throw new TidemarkError('TM_SERVICE_CONFIG', `--kafka-sasl-mechanism must be one of ${KAFKA_SASL_MECHANISMS.join(', ')}, got ${settings.saslMechanism}`, { setting: 'kafka-sasl-mechanism', value: settings.saslMechanism });
  }
  if (settings.username === undefined || settings.username.length === 0) {
    throw new TidemarkError('TM_SERVICE_CONFIG', `Kafka SASL ${mechanism} needs a user: --kafka-username or KAFKA_USERNAME`, { setting: 'kafka-username' });
  }
  const password = settings.passwordFile !== undefined ? readSecretFile(settings.passwordFile, 'the Kafka SASL password (--kafka-password-file)') : settings.password;
  if (password === undefined || password.length === 0) {
    throw new TidemarkError('TM_SERVICE_CONFIG', `Kafka SASL ${mechanism} needs a password: --kafka-password-file <file>, KAFKA_PASSWORD_FILE or KAFKA_PASSWORD`, { setting: 'kafka-password-file' });
  }
  config.sasl = { mechanism: mechanism as KafkaSaslMechanism, username: settings.username, password } as SASLOptions;
  return config;
}

/** A one-line description of the security of a Kafka connection, for start-up lines (no secret). */
export function describeKafkaSecurity(config: Pick<KafkaConfig, 'ssl' | 'sasl'>): string {
  const tls = config.ssl ? (typeof config.ssl === 'object' && config.ssl.ca ? 'TLS (own CA)' : 'TLS') : 'plaintext';
  const sasl = config.sasl && 'username' in config.sasl ? `, SASL ${config.sasl.mechanism} as ${config.sasl.username}` : '';
  return `${tls}${sasl}`;
}
