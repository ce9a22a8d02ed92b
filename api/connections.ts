// TLS and credentials of the services on the command line: the flags of each service and their
// environment fallbacks, read into each client's options. Passwords come from files or the
// environment, never from a flag's value (it would show in `ps`); a password in a URL works but is
// hidden from the process title (hideSecretsInProcessTitle).
import type { Command } from 'commander';
import type { KafkaConfig } from 'kafkajs';
import { readCaFile, readSecretFile, TidemarkError, withoutPassword } from '../definitions/index.js';
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

/** The CA, user and password flags of Redis or ClickHouse: `--<flag>-ca`, `--<flag>-user`, `--<flag>-password-file`. */
function connectionFlags(command: Command, service: string, flag: string, env: string, tlsUrl: string): Command {
  return command
    .option(`--${flag}-ca <file>`, `PEM CA certificates to trust for a ${tlsUrl} URL (default: $${env}_CA, else the system CAs)`)
    .option(`--${flag}-user <name>`, `${service} user (default: $${env}_USER, else the URL's user)`)
    .option(`--${flag}-password-file <file>`, `file holding the ${service} user's password (default: $${env}_PASSWORD_FILE; $${env}_PASSWORD; else the URL's password)`);
}

/** The CA, user and password of Redis or ClickHouse: a flag, else its environment variable; files read. */
function connectionOf(service: string, flag: string, env: string, given: { ca?: string; user?: string; passwordFile?: string }, vars: Env): { ca?: Buffer; username?: string; password?: string } {
  const caFile = given.ca ?? vars[`${env}_CA`];
  const username = given.user ?? vars[`${env}_USER`];
  const passwordFile = given.passwordFile ?? vars[`${env}_PASSWORD_FILE`];
  const password = passwordFile !== undefined ? readSecretFile(passwordFile, `the ${service} password (--${flag}-password-file)`) : vars[`${env}_PASSWORD`];
  return {
    ...(caFile !== undefined ? { ca: readCaFile(caFile, `the ${service} CA certificates (--${flag}-ca)`) } : {}),
    ...(username !== undefined ? { username } : {}),
    ...(password !== undefined ? { password } : {}),
  };
}

export function redisConnectionFlags(command: Command): Command {
  return connectionFlags(command, 'Redis', 'redis', 'REDIS', 'rediss://');
}

export function redisConnectionOf(flags: RedisConnectionFlags, env: Env = process.env): RedisConnectionOptions {
  return connectionOf('Redis', 'redis', 'REDIS', { ca: flags.redisCa, user: flags.redisUser, passwordFile: flags.redisPasswordFile }, env);
}

export function clickhouseConnectionFlags(command: Command): Command {
  return connectionFlags(command, 'ClickHouse', 'clickhouse', 'CLICKHOUSE', 'https://');
}

export function clickhouseConnectionOf(flags: ClickHouseConnectionFlags, env: Env = process.env): ClickHouseConnectionOptions {
  return connectionOf('ClickHouse', 'clickhouse', 'CLICKHOUSE', { ca: flags.clickhouseCa, user: flags.clickhouseUser, passwordFile: flags.clickhousePasswordFile }, env);
}

export interface ClickHouseShardFlags {
  clickhouseShards?: string;
  clickhouseCluster?: string;
}

/** `--clickhouse-shards` and `--clickhouse-cluster`: a sharded offline store (offline/shards.ts). */
export function clickhouseShardFlags(command: Command): Command {
  return command
    .option('--clickhouse-shards <urls>', 'a sharded offline store: the HTTP(S) URLs of its ClickHouse shards, comma-separated, in shard order (keep the order: rows are placed by xxHash64(entity key) % shard count) (default: $CLICKHOUSE_SHARDS)')
    .option('--clickhouse-cluster <name>', "with --clickhouse-shards: the ClickHouse cluster they form, when the servers run Keeper: DDL goes once, ON CLUSTER, instead of to each shard (default: $CLICKHOUSE_CLUSTER)");
}

/** The shard URLs and cluster name, from the flags or the environment; a cluster without shards, or shards with --clickhouse-url, is an error. */
export function clickhouseShardsOf(flags: ClickHouseShardFlags & { clickhouseUrl?: string }, env: Env = process.env): { clickhouseShards?: string[]; clickhouseCluster?: string } {
  const list = (flags.clickhouseShards ?? env.CLICKHOUSE_SHARDS ?? '').split(',').map((u) => u.trim()).filter(Boolean);
  const cluster = flags.clickhouseCluster ?? env.CLICKHOUSE_CLUSTER;
  if (list.length === 0) {
    if (cluster) throw new TidemarkError('TM_SERVICE_CONFIG', `--clickhouse-cluster ${cluster} needs --clickhouse-shards (the HTTP URL of each shard, in shard order)`, { cluster });
    return {};
  }
  if (flags.clickhouseShards !== undefined && flags.clickhouseUrl) {
    throw new TidemarkError('TM_SERVICE_CONFIG', 'give --clickhouse-url (one server) or --clickhouse-shards (a sharded store), not both', { url: withoutPassword(flags.clickhouseUrl) });
  }
  if (new Set(list).size !== list.length) throw new TidemarkError('TM_SERVICE_CONFIG', `--clickhouse-shards names a shard twice: ${list.map(withoutPassword).join(', ')}`, { shards: list.map(withoutPassword) });
  return { clickhouseShards: list, ...(cluster ? { clickhouseCluster: cluster } : {}) };
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
