// TLS and credentials of the services on the command line: the flags of each service and their
// environment fallbacks, read into each client's options. Passwords come from files or the
// environment, never from a flag's value (it would show in `ps`); a password in a URL works but is
// hidden from the process title (hideSecretsInProcessTitle).
import type { Command } from 'commander';
import type { KafkaConfig } from 'kafkajs';
import { readCaFile, readSecretFile, withoutPassword } from '../definitions/index.js';
import { KAFKA_SASL_MECHANISMS, kafkaSecurityConfig } from '../ingest/index.js';
import type { RedisConnectionOptions } from '../online/index.js';
import type { ClickHouseConnectionOptions } from '../offline/index.js';

type Env = Record<string, string | undefined>;

export interface RedisConnectionFlags {
  redisCa?: string;
  redisUser?: string;
  redisPasswordFile?: string;
}

export interface ClickHouseConnectionFlags {
  clickhouseCa?: string;
  clickhouseUser?: string;
  clickhousePasswordFile?: string;
}

export interface KafkaConnectionFlags {
  kafkaSsl?: boolean;
  kafkaCa?: string;
  kafkaSaslMechanism?: string;
  kafkaUsername?: string;
  kafkaPasswordFile?: string;
}

// Environment fallbacks are read when the command runs, not as commander defaults: a default is
// printed by --help, and a password must not be.

export function redisConnectionFlags(command: Command): Command {
  return command
    .option('--redis-ca <file>', 'PEM CA certificates to trust for a rediss:// URL (default: $REDIS_CA, else the system CAs)')
    .option('--redis-user <name>', 'Redis ACL user (default: $REDIS_USER, else the URL\'s user)')
    .option('--redis-password-file <file>', "file holding the Redis user's password (default: $REDIS_PASSWORD_FILE; $REDIS_PASSWORD; else the URL's password)");
}

export function redisConnectionOf(flags: RedisConnectionFlags, env: Env = process.env): RedisConnectionOptions {
  const caFile = flags.redisCa ?? env.REDIS_CA;
  const username = flags.redisUser ?? env.REDIS_USER;
  const passwordFile = flags.redisPasswordFile ?? env.REDIS_PASSWORD_FILE;
  const password = passwordFile !== undefined ? readSecretFile(passwordFile, 'the Redis password (--redis-password-file)') : env.REDIS_PASSWORD;
  return {
    ...(caFile !== undefined ? { ca: readCaFile(caFile, 'the Redis CA certificates (--redis-ca)') } : {}),
    ...(username !== undefined ? { username } : {}),
    ...(password !== undefined ? { password } : {}),
  };
}

export function clickhouseConnectionFlags(command: Command): Command {
  return command
    .option('--clickhouse-ca <file>', 'PEM CA certificates to trust for an https:// ClickHouse URL (default: $CLICKHOUSE_CA, else the system CAs)')
    .option('--clickhouse-user <name>', 'ClickHouse user (default: $CLICKHOUSE_USER, else the URL\'s user, else default)')
    .option('--clickhouse-password-file <file>', "file holding the ClickHouse user's password (default: $CLICKHOUSE_PASSWORD_FILE; $CLICKHOUSE_PASSWORD; else the URL's password)");
}

export function clickhouseConnectionOf(flags: ClickHouseConnectionFlags, env: Env = process.env): ClickHouseConnectionOptions {
  const caFile = flags.clickhouseCa ?? env.CLICKHOUSE_CA;
  const username = flags.clickhouseUser ?? env.CLICKHOUSE_USER;
  const passwordFile = flags.clickhousePasswordFile ?? env.CLICKHOUSE_PASSWORD_FILE;
  const password = passwordFile !== undefined ? readSecretFile(passwordFile, 'the ClickHouse password (--clickhouse-password-file)') : env.CLICKHOUSE_PASSWORD;
  return {
    ...(caFile !== undefined ? { ca: readCaFile(caFile, 'the ClickHouse CA certificates (--clickhouse-ca)') } : {}),
    ...(username !== undefined ? { username } : {}),
    ...(password !== undefined ? { password } : {}),
  };
}

export function kafkaConnectionFlags(command: Command): Command {
  return command
    .option('--kafka-ssl', 'TLS to the Kafka brokers (default: $KAFKA_SSL=1; implied by --kafka-ca)')
    .option('--kafka-ca <file>', 'PEM CA certificates to trust for the brokers (default: $KAFKA_CA, else the system CAs)')
    .option('--kafka-sasl-mechanism <mechanism>', `SASL authentication: ${KAFKA_SASL_MECHANISMS.join(', ')} (default: $KAFKA_SASL_MECHANISM, else none)`)
    .option('--kafka-username <name>', 'SASL user (default: $KAFKA_USERNAME)')
    .option('--kafka-password-file <file>', "file holding the SASL user's password (default: $KAFKA_PASSWORD_FILE; $KAFKA_PASSWORD)");
}

/** kafkajs's `ssl` and `sasl` for the flags, with their environment fallbacks. */
export function kafkaSecurityOf(flags: KafkaConnectionFlags, env: Env = process.env): Pick<KafkaConfig, 'ssl' | 'sasl'> {
  return kafkaSecurityConfig({
    ssl: flags.kafkaSsl === true || env.KAFKA_SSL === '1' || env.KAFKA_SSL === 'true',
    caFile: flags.kafkaCa ?? env.KAFKA_CA,
    saslMechanism: flags.kafkaSaslMechanism ?? env.KAFKA_SASL_MECHANISM,
    username: flags.kafkaUsername ?? env.KAFKA_USERNAME,
    passwordFile: flags.kafkaPasswordFile ?? env.KAFKA_PASSWORD_FILE,
    password: env.KAFKA_PASSWORD,
  });
}

/**
 * Show `ps` and /proc/<pid>/cmdline the command line with the passwords of its URLs replaced (on
 * Linux, setting process.title overwrites the argument memory those read). Only when a URL in it
 * holds a password, so other command lines stay as they were typed.
 */
export function hideSecretsInProcessTitle(argv: readonly string[]): void {
  const shown = argv.map((arg) => {
    const flag = /^--[^=]+=/.exec(arg)?.[0] ?? '';
    return flag + withoutPassword(arg.slice(flag.length));
  });
  if (shown.every((a, i) => a === argv[i])) return;
  process.title = shown.join(' ');
}

/**
 * `--help` prints each option's default, and the URL defaults come from the environment
 * (REDIS_URL, CLICKHOUSE_URL): print them without their passwords.
 */
export function hideSecretsInHelp(program: Command): void {
  for (const command of [program, ...program.commands]) {
    for (const option of command.options) {
      if (typeof option.defaultValue === 'string' && withoutPassword(option.defaultValue) !== option.defaultValue) {
        option.defaultValueDescription = JSON.stringify(withoutPassword(option.defaultValue));
      }
    }
  }
}
