/**
 * One isolated world per test file: a host database cloned from the migrated template, a unique tenant
 * database prefix and a unique Redis prefix. `cleanup()` drops every database and key it made.
 */
import { migrationInfo } from '../../src/core/db/migrations.js'
import { connect, withDatabase } from '../../src/core/db/connect.js'
import { type Config, loadConfig } from '../../src/core/config.js'
import { ADMIN_URL, APP_ROLE, APP_URL, REDIS_URL, hostTemplateName, sharedUrl, uniqueName } from './env.js'
import { Redis } from 'ioredis'
import type { ScratchPostgres } from './scratch-services.js'
import { CLUSTER_VARS, dropClusterKeys, ensureRedisCluster } from './redis-cluster.js'

/**
 * TEST_REDIS_CLUSTER=1 (or TEST_REDIS=cluster; `npm run test:redis-cluster -- test/api`): every test world on the
 * local Redis Cluster (.ci/redis-cluster) instead of the Redis on 6379, to run (part of) the suite on a cluster.
 * A test that reads Redis with a client of its own builds it with `newRedisClient(env.config)` (a cluster client
 * then); a test that passes REDIS_URL (a scratch Redis of its own) keeps it. cleanup() drops the world's keys
 * from every master (one SCAN per node: a cluster client's SCAN reaches one node only).
 */
const ON_CLUSTER = process.env.TEST_REDIS_CLUSTER === '1' || process.env.TEST_REDIS === 'cluster'
let clusterUp: Promise<void> | undefined
const clusterReady = () =>
  (clusterUp ??= ensureRedisCluster().then((why) => {
    if (why) throw new Error(`TEST_REDIS_CLUSTER=1: ${why}`)
  }))

export interface TestEnv {
  name: string
  hostUrl: string
  /** Environment variables for loadConfig (or a child process). */
  vars: Record<string, string>
  config: Config
  /** A config with extra variables layered on top. */
  configWith(extra: Record<string, string>): Config
  cleanup(): Promise<void>
}

/**
 * Fault tests point the world at a scratch cluster and Redis of their own (test/helpers/scratch-services.ts)
 * instead of the shared ones; the caller destroys those, so cleanup() then has nothing to drop.
 */
export interface ScratchTarget {
  postgres: Pick<ScratchPostgres, 'appUrl' | 'createHostDatabase'>
  redisUrl: string
}

export async function createTestEnv(extra: Record<string, string> = {}, scratch?: ScratchTarget): Promise<TestEnv> {
  if (ON_CLUSTER && !scratch) await clusterReady()
  const name = uniqueName('tkt')
  const hostDb = `${name}_host`
  let hostUrl: string
  if (scratch) {
    hostUrl = await scratch.postgres.createHostDatabase(hostDb)
  } else {
    const admin = connect(ADMIN_URL, { max: 1 })
    try {
      await admin.unsafe(`create database ${hostDb} template ${hostTemplateName(migrationInfo('host').hash)} owner ${APP_ROLE}`)
    } finally {
      await admin.end()
    }
    hostUrl = withDatabase(APP_URL, hostDb)
  }
  const vars: Record<string, string> = {
    NODE_ENV: 'test',
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent',
    DATABASE_URL: hostUrl,
    TENANT_DATABASE_URL: scratch?.postgres.appUrl ?? APP_URL,
    TENANT_DB_PREFIX: name,
    REDIS_URL: scratch?.redisUrl ?? REDIS_URL,
    // (A test that names a Redis of its own, a scratch server, keeps it.)
    ...(ON_CLUSTER && !scratch && !extra.REDIS_URL ? CLUSTER_VARS : {}),
    REDIS_PREFIX: name,
    AUTO_MIGRATE: 'false',
    // Most tests sign up and then use the tenant at once, with no worker running: provision inside the
    // request so the tenant is active when signup answers. Queue-mode tests pass PROVISION_INLINE=false
    // and start a worker (src/worker.ts startWorkers) in the test process.
    PROVISION_INLINE: 'true',
    // The outage bounds (1 s Redis commands, 1.5 s connects) are for production; on a test machine shared by
    // several suites a slow moment must not turn into a 503. Fault tests (test/faults) set them back.
    REDIS_COMMAND_TIMEOUT_MS: '10000',
    DB_CONNECT_TIMEOUT_MS: '10000',
    // Load shedding off: on a machine running several suites (and Chromium) at once the event loop can lag a
    // second, and a 503 "overloaded" is not what those tests are about. test/observability/under-pressure.test.ts
    // sets its thresholds itself.
    PRESSURE_MAX_EVENT_LOOP_DELAY_MS: '0',
    PRESSURE_MAX_HEAP_USED_PCT: '0',
    ...extra,
  }
  // 'auto': this world's own shared database (dropped with the world), reached as the shared data role.
  if (vars.SHARED_DATABASE_URL === 'auto') vars.SHARED_DATABASE_URL = sharedUrl(name)
  const configWith = (more: Record<string, string>) => loadConfig({ ...vars, ...more })
  return {
    name,
    hostUrl,
    vars,
    config: configWith({}),
    configWith,
    cleanup: () => (scratch ? Promise.resolve() : ON_CLUSTER ? dropTestWorld(name).then(() => dropClusterKeys(name)) : dropTestWorld(name)),
  }
}

/** Drop every database and Redis key whose name starts with the test world's name. */
export async function dropTestWorld(name: string): Promise<void> {
  const admin = connect(ADMIN_URL, { max: 1 })
  try {
    const dbs = await admin<{ datname: string }[]>`select datname from pg_database where datname like ${`${name}%`}`
    for (const { datname } of dbs) {
      await admin.unsafe(`update pg_database set datistemplate = false where datname = '${datname}'`)
      await admin.unsafe(`drop database if exists "${datname}" with (force)`)
    }
  } finally {
    await admin.end()
  }
  const redis = new Redis(REDIS_URL)
  try {
    let cursor = '0'
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${name}*`, 'COUNT', 1000)
      cursor = next
      if (keys.length) await redis.del(...keys)
    } while (cursor !== '0')
  } finally {
    redis.disconnect()
  }
}

export { withDatabase }
