/**
 * Memory of one process holding a large fleet (issue 14, Benchmarks), two parts in one run:
 *
 * 1. Catalog: BENCH_CACHED_TENANTS (default 10,000) catalog rows (shared tenants, written straight into
 *    core_tenants: no tenant data is needed to cache a row) are all read through the kit's catalog
 *    (createCatalog, as services build it: the cache is bounded at 10,000 tenants) and kept cached.
 *    Heap used and RSS after a full GC, before and after. Goal: < 10 KB per cached tenant.
 * 2. Pools: BENCH_POOLS (default 1,000) tenants' pools opened one after another, each serving one query,
 *    through a pool manager with a small budget (POOL_CONNECTION_BUDGET 10, POOL_MAX_TENANTS 5, one
 *    connection each), so eviction keeps closing the least recently used ones. The tenants' ids map onto
 *    BENCH_POOL_DBS (default 10) real databases: a pool is per tenant id, so each is a pool and a
 *    connection of its own. Heap after a full GC at checkpoints and after the manager closes: pools
 *    closed by eviction must free their memory (heap back near the baseline, not growing per pool opened).
 *
 *   npm run bench:memory     (node --expose-gc --import tsx bench/memory.ts)
 *
 * Runs in its own test world and drops everything it made.
 *
 * Measured 2026-12-03 (2 cores shared with other helpers, load average 10.6 → 12.9):
 *   catalog: 10,000 cached; heap 14.1 → 20.6 MB = 0.66 KB per cached tenant, RSS 129.3 → 140.5 MB = 1.15 KB (goal < 10 KB)
 *   pools: 1,000 tenants over 10 databases, budget 10, LRU of 5: heap with 1 pool open 15.8 MB; after 100 / 250 / 500 /
 *          1,000 opened (5 open each time) +0.5 / +0.6 / +0.7 / +0.8 MB; after the manager closed 15.0 MB (−0.7 MB);
 *          RSS flat at 133 MB throughout. Evicted pools free their memory (what stays is < 1 KB per pool ever
 *          opened, within GC noise); 35 pools/s opened on that machine.
 */
import { randomBytes } from 'node:crypto'
import { loadavg } from 'node:os'
import { setTimeout as sleep } from 'node:timers/promises'
import { pino } from 'pino'
import { uuidv7 } from 'uuidv7'
import { tenants } from '../drizzle/host/schema.js'
import { connect, withDatabase } from '../src/core/db/connect.js'
import { createHostDatabase } from '../src/core/db/host.js'
import { encrypt } from '../src/core/lib/crypto.js'
import { createInvalidationBus } from '../src/core/lib/invalidated-cache.js'
import { catalogChannel, createCatalog } from '../src/core/tenancy/catalog.js'
import { createPoolManager, type PoolTarget } from '../src/core/tenancy/pool-manager.js'
import setup from '../test/global-setup.js'
import { SHARED } from '../test/helpers/env.js'
import { createTestEnv } from '../test/helpers/test-env.js'
import { Redis } from 'ioredis'
import { ADMIN_URL, APP_URL, createTenantDatabases, dropAll, ensureAppRole } from './lib/tenant-dbs.js'

const CACHED = Number(process.env.BENCH_CACHED_TENANTS ?? 10_000)
const POOLS = Number(process.env.BENCH_POOLS ?? 1000)
const POOL_DBS = Number(process.env.BENCH_POOL_DBS ?? 10)

const gc = (globalThis as { gc?: () => void }).gc
if (!gc) throw new Error('run with node --expose-gc (npm run bench:memory)')
const line = (label: string, value: string | number) => console.log(`${label}: ${value}`)
const load = () =>
  loadavg()
    .map((x) => x.toFixed(2))
    .join(' ')
const mb = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MB`
/** Heap used and RSS after full collections (a few, with turns of the event loop for finalizers and closed sockets). */
async function settled() {
  for (let i = 0; i < 4; i++) {
    gc!()
    await sleep(50)
  }
  const { heapUsed, rss } = process.memoryUsage()
  return { heapUsed, rss }
}

await setup()
const env = await createTestEnv({ ...SHARED })
const logger = pino({ level: 'silent' })
const prefix = `tkbench_mem${randomBytes(3).toString('hex')}`
try {
  line('load average at start', load())

  // 1. The catalog.
  const host = createHostDatabase(env.config.databaseUrl!, 4, env.config.pool)
  const redis = new Redis(env.config.redisUrl)
  const bus = createInvalidationBus(redis, logger)
  const url = env.config.sharedDatabaseUrl!
  const dbName = new URL(url).pathname.slice(1)
  const ids: string[] = []
  for (let start = 0; start < CACHED; start += 1000) {
    const rows = Array.from({ length: Math.min(1000, CACHED - start) }, (_, k) => {
      const id = uuidv7()
      ids.push(id)
      const i = start + k
      return {
        id,
        slug: `mem-${i}`,
        name: `Memory bench tenant ${i}`,
        isolation: 'shared' as const,
        status: 'active' as const,
        dbName,
        dbUrlEncrypted: encrypt(url, env.config.encryptionKeys),
        migrationStatus: 'current' as const,
      }
    })
    await host.db.insert(tenants).values(rows)
  }
  const catalog = createCatalog({ host, redis, bus, keys: env.config.encryptionKeys, ttlS: 3600, channel: catalogChannel(env.config.redisPrefix), logger })
  await catalog.ready
  await catalog.get(ids[0]!) // the prepared statements and the cache's own structures
  const before = await settled()
  let next = 0
  await Promise.all(
    Array.from({ length: 16 }, async () => {
      while (next < ids.length) await catalog.get(ids[next++]!)
    }),
  )
  const after = await settled()
  const size = catalog.stats().size
  line('catalog: tenants cached', `${size} of ${CACHED}`)
  line('catalog: heap used before / after', `${mb(before.heapUsed)} / ${mb(after.heapUsed)}`)
  line('catalog: RSS before / after', `${mb(before.rss)} / ${mb(after.rss)}`)
  line('catalog: heap per cached tenant (goal < 10 KB)', `${((after.heapUsed - before.heapUsed) / size / 1024).toFixed(2)} KB`)
  line('catalog: RSS per cached tenant (goal < 10 KB)', `${((after.rss - before.rss) / size / 1024).toFixed(2)} KB`)
  await catalog.close()
  await bus.close()
  redis.disconnect()
  await host.close()

  // 2. Pools opened over time, closed by eviction.
  const admin = connect(ADMIN_URL, { max: 2, applicationName: 'tenantkit-bench-admin' })
  try {
    await ensureAppRole(admin)
    await createTenantDatabases(admin, prefix, POOL_DBS)
  } finally {
    await admin.end()
  }
  const budget = Number(process.env.POOL_CONNECTION_BUDGET ?? 10)
  const pools = createPoolManager({
    maxPerTenant: 1,
    maxTenants: Number(process.env.POOL_MAX_TENANTS ?? 5),
    idleTimeoutS: 60,
    connectionBudget: budget,
    acquireTimeoutMs: 30_000,
    logger,
  })
  const targets: PoolTarget[] = Array.from({ length: POOLS }, (_, i) => ({
    id: uuidv7(),
    dbUrl: withDatabase(APP_URL, `${prefix}_t${i % POOL_DBS}`),
    poolerUrl: undefined,
    maxConnections: undefined,
  }))
  // One pool first, so the baseline includes the code paths and prepared state any pool needs.
  await pools.withTenant(targets[0]!, (db) => db.$client`select 1`)
  const base = await settled()
  line('pools: settings', `${POOLS} tenants over ${POOL_DBS} databases, budget ${budget} connections, ${pools.stats().budget} slots, LRU of ${process.env.POOL_MAX_TENANTS ?? 5}, 1 connection each`)
  line('pools: heap used / RSS with 1 pool open (baseline)', `${mb(base.heapUsed)} / ${mb(base.rss)}`)
  const t0 = performance.now()
  const checkpoints = new Set([100, 250, 500, POOLS].filter((n) => n <= POOLS))
  for (let i = 1; i < POOLS; i++) {
    await pools.withTenant(targets[i]!, (db) => db.$client`select 1`)
    if (checkpoints.has(i + 1)) {
      const m = await settled()
      const s = pools.stats()
      line(
        `pools: after ${i + 1} opened`,
        `heap ${mb(m.heapUsed)} (${m.heapUsed >= base.heapUsed ? '+' : ''}${mb(m.heapUsed - base.heapUsed)}), RSS ${mb(m.rss)}, ${s.openPools} open, ${s.openConnections} connections`,
      )
    }
  }
  line('pools: opening rate', `${(POOLS / ((performance.now() - t0) / 1000)).toFixed(0)} pools/s`)
  await pools.close()
  const closed = await settled()
  line('pools: heap used / RSS after the manager closed', `${mb(closed.heapUsed)} (${closed.heapUsed >= base.heapUsed ? '+' : ''}${mb(closed.heapUsed - base.heapUsed)}) / ${mb(closed.rss)}`)
  line('load average at end', load())
} finally {
  await dropAll(prefix)
  await env.cleanup()
}
