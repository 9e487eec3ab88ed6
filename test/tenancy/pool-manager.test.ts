import { sql } from 'drizzle-orm'
import { uuidv7 } from 'uuidv7'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { connect, type Sql, withDatabase } from '../../src/core/db/connect.js'
import { AppError } from '../../src/core/lib/errors.js'
import { createPoolManager, type PoolManagerDeps, type PoolTarget } from '../../src/core/tenancy/pool-manager.js'
import type { PoolManager } from '../../src/core/tenancy/types.js'
import { ADMIN_URL, APP_ROLE, APP_URL } from '../helpers/env.js'
import { createTestEnv, type TestEnv } from '../helpers/test-env.js'
import { waitFor } from '../helpers/wait-for.js'

const TENANTS = 12
let env: TestEnv
let admin: Sql
let tenants: (PoolTarget & { dbName: string })[]
const managers: PoolManager[] = []

beforeAll(async () => {
  env = await createTestEnv()
  admin = connect(ADMIN_URL, { max: 2 })
  tenants = []
  for (let i = 0; i < TENANTS; i++) {
    const dbName = `${env.name}_t${i}`
    await admin.unsafe(`create database ${dbName} owner ${APP_ROLE}`)
    tenants.push({ id: uuidv7(), dbName, dbUrl: withDatabase(APP_URL, dbName), poolerUrl: undefined, maxConnections: undefined })
  }
})

afterEach(async () => {
  await Promise.all(managers.splice(0).map((m) => m.close()))
})

afterAll(async () => {
  await admin?.end()
  await env?.cleanup()
})

const t = (i: number) => tenants[i]!

function manager(overrides: Partial<PoolManagerDeps> = {}): PoolManager {
  const m = createPoolManager({
    maxPerTenant: 2,
    maxTenants: 50,
    idleTimeoutS: 60,
    connectionBudget: 6,
    acquireTimeoutMs: 5_000,
    ...overrides,
  })
  managers.push(m)
  return m
}

/** Server-side truth: connections Postgres holds for each of this file's tenant databases. */
async function serverConnections(): Promise<Map<string, number>> {
  const rows = await admin<{ datname: string; n: number }[]>`
    select datname, count(*)::int as n from pg_stat_activity where datname like ${`${env.name}\\_t%`} group by datname`
  return new Map(rows.map((r) => [r.datname, r.n]))
}
const totalConnections = async () => [...(await serverConnections()).values()].reduce((a, b) => a + b, 0)
const connectionsTo = async (i: number) => (await serverConnections()).get(t(i).dbName) ?? 0

const until = (check: () => Promise<boolean> | boolean, message?: string) => waitFor(check, { message })

const currentDb = (m: PoolManager, tenant: PoolTarget) =>
  m.withTenant(tenant, async (db) => (await db.execute<{ db: string }>(sql`select current_database() as db`))[0]!.db)

describe('pool manager', () => {
  it('fails closed when no tenant is given', async () => {
    const m = manager()
    await expect(m.acquire(undefined as never)).rejects.toThrow('tenant database requested without a tenant')
    await expect(m.acquire(null as never)).rejects.toThrow('without a tenant')
    await expect(m.withTenant({} as never, async () => 1)).rejects.toThrow('without a tenant')
    expect(m.stats().openPools).toBe(0)
  })

  it('opens one pool per tenant on first use and reuses it', async () => {
    const m = manager()
    expect(await currentDb(m, t(0))).toBe(t(0).dbName)
    expect(await currentDb(m, t(1))).toBe(t(1).dbName)
    expect(await currentDb(m, t(0))).toBe(t(0).dbName)
    expect(m.stats()).toMatchObject({ openPools: 2, reservedConnections: 4, waiters: 0, budget: 6 })
    expect(await connectionsTo(0)).toBe(1)
  })

  it('sizes a pool by the tenant max_connections and prefers the pooler URL', async () => {
    const m = manager({ maxPerTenant: 3 })
    const capped = { ...t(0), maxConnections: 1 }
    await Promise.all(Array.from({ length: 6 }, () => m.withTenant(capped, (db) => db.execute(sql`select pg_sleep(0.05)`))))
    expect(m.stats().reservedConnections).toBe(1)
    expect(await connectionsTo(0)).toBe(1)
    // Same tenant id, pooler URL now set (pointing at another database to make it observable): the old pool closes.
    const moved = { ...capped, poolerUrl: t(1).dbUrl }
    expect(await currentDb(m, moved)).toBe(t(1).dbName)
    // The old pool's backends leave pg_stat_activity and its end() resolves (it is counted until then) in either order.
    await until(async () => (await connectionsTo(0)) === 0 && m.stats().openPools === 1)
    expect(m.stats()).toMatchObject({ openPools: 1, reservedConnections: 1 })
  })

  it('closes the least-recently-used pool when maxTenants is reached', async () => {
    const m = manager({ maxTenants: 2 })
    await currentDb(m, t(0))
    await currentDb(m, t(1))
    await currentDb(m, t(0)) // t1 is now the least recently used
    await currentDb(m, t(2))
    await until(async () => (await connectionsTo(1)) === 0)
    const open = await serverConnections()
    expect(open.get(t(0).dbName)).toBe(1)
    expect(open.get(t(2).dbName)).toBe(1)
    await until(() => m.stats().openPools === 2) // end() resolves a moment after the server saw the close
  })

  it('closes idle pools to make room in the connection budget', async () => {
    const m = manager({ connectionBudget: 4 })
    await currentDb(m, t(0))
    await currentDb(m, t(1))
    expect(m.stats().reservedConnections).toBe(4)
    await currentDb(m, t(2)) // needs 2 slots: t0 (LRU, idle) must go first
    expect(m.stats()).toMatchObject({ openPools: 2, reservedConnections: 4 })
    expect(await connectionsTo(0)).toBe(0)
    expect(await connectionsTo(1)).toBe(1)
  })

  it('closes pools left idle past idleTimeoutS', async () => {
    const m = manager({ idleTimeoutS: 1 })
    await currentDb(m, t(0))
    const lease = await m.acquire(t(1)) // a held lease is never idle
    await lease.db.execute(sql`select 1`)
    expect(await totalConnections()).toBe(2)
    await until(async () => (await connectionsTo(0)) === 0, "Postgres to drop the idle pool's connection")
    // The server drops the connection a moment before postgres.js' end() resolves and the slots come back:
    // poll the manager's own bookkeeping too.
    await waitFor(
      () => {
        expect(m.stats()).toMatchObject({ openPools: 1, reservedConnections: 2 })
        return true
      },
      { message: 'the pool manager to count the idle pool closed' },
    )
    expect(await connectionsTo(1)).toBe(1)
    lease.release()
  })

  it('answers 503 POOL_EXHAUSTED when every lease stays held past acquireTimeoutMs', async () => {
    const m = manager({ connectionBudget: 2, acquireTimeoutMs: 300 })
    const held = await m.acquire(t(0))
    const err = await m.acquire(t(1)).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(AppError)
    expect(err).toMatchObject({ statusCode: 503, code: 'POOL_EXHAUSTED' })
    expect(m.stats().waiters).toBe(0)
    held.release()
    expect(await currentDb(m, t(1))).toBe(t(1).dbName) // t0 is idle now and gets evicted
  })

  it('a waiter whose caller gives up leaves the queue at once (499) and never gets a pool', async () => {
    const m = manager({ connectionBudget: 2, acquireTimeoutMs: 30_000 })
    const held = await m.acquire(t(0))
    const ac = new AbortController()
    const waiting = m.acquire(t(1), { signal: ac.signal }).catch((e: unknown) => e)
    await until(() => m.stats().waiters === 1)
    ac.abort()
    expect(await waiting).toMatchObject({ statusCode: 499, code: 'CLIENT_CLOSED_REQUEST' })
    expect(m.stats().waiters).toBe(0)
    held.release()
    expect(m.stats().leases).toBe(0)
    expect(await currentDb(m, t(2))).toBe(t(2).dbName) // the whole budget is free: t0 is evicted for t2
    // An already-aborted signal never queues.
    await expect(m.acquire(t(3), { signal: AbortSignal.abort() })).rejects.toMatchObject({ code: 'CLIENT_CLOSED_REQUEST' })
    expect(m.stats()).toMatchObject({ waiters: 0, leases: 0 })
  })

  it('a pool granted in the same turn its caller gave up goes straight back', async () => {
    const m = manager()
    await currentDb(m, t(0)) // open: the next acquire is granted synchronously
    const ac = new AbortController()
    const granted = m.acquire(t(0), { signal: ac.signal })
    ac.abort() // before the caller could see its lease
    await expect(granted).rejects.toMatchObject({ code: 'CLIENT_CLOSED_REQUEST' })
    expect(m.stats().leases).toBe(0)
  })

  it('is starved while waiters time out with no grant since, and recovers on the next grant or after the window', async () => {
    const m = manager({ connectionBudget: 2, acquireTimeoutMs: 100, starvedWindowMs: 400 })
    const held = await m.acquire(t(0))
    expect(m.stats().starved).toBe(false)
    await expect(m.acquire(t(1))).rejects.toMatchObject({ code: 'POOL_EXHAUSTED' })
    expect(m.stats().starved).toBe(true)
    await until(() => !m.stats().starved) // no timeout for a while: no longer starved
    await expect(m.acquire(t(1))).rejects.toMatchObject({ code: 'POOL_EXHAUSTED' })
    expect(m.stats().starved).toBe(true)
    held.release()
    await currentDb(m, t(1)) // a grant ends it at once
    expect(m.stats().starved).toBe(false)
  })

  it('serves waiters in order as soon as a lease is released', async () => {
    const m = manager({ connectionBudget: 2 })
    const held = await m.acquire(t(0))
    const order: number[] = []
    const second = m.withTenant(t(1), async () => order.push(1))
    const third = m.withTenant(t(2), async () => order.push(2))
    await until(() => m.stats().waiters === 2, 'both callers to be waiting')
    expect(order).toEqual([])
    held.release()
    await Promise.all([second, third])
    expect(order).toEqual([1, 2])
    expect(m.stats().waiters).toBe(0)
  })

  it('opens one-slot pools while other tenants wait, and grows a busy one back once there is room', async () => {
    const m = manager({ connectionBudget: 4, maxPerTenant: 2 })
    const held = [await m.acquire(t(0)), await m.acquire(t(1))] // two full pools: the budget is reserved
    expect(m.stats().reservedConnections).toBe(4)
    const waiting = [2, 3, 4].map((i) => m.acquire(t(i)))
    await until(() => m.stats().waiters === 3, 'three tenants to wait')
    for (const lease of held) lease.release()
    const leases = await Promise.all(waiting)
    // t2 and t3 opened while others waited (one slot each); t4, the last, got its full two.
    expect(m.stats()).toMatchObject({ openPools: 3, reservedConnections: 4, waiters: 0 })
    for (const lease of leases) lease.release()
    expect(await currentDb(m, t(2))).toBe(t(2).dbName)

    await m.evict(t(4).id) // room for a full pool again
    expect(m.stats().reservedConnections).toBe(2)
    const busy = await m.acquire(t(2)) // holds t2's only connection
    const second = await m.acquire(t(2)) // would queue behind it: a full pool replaces the small one
    expect(m.stats().reservedConnections).toBe(1 + 1 + 2) // t3, t2's small pool draining, t2's full pool
    await Promise.all([busy.db.execute(sql`select pg_sleep(0.05)`), second.db.execute(sql`select pg_sleep(0.05)`)])
    busy.release()
    second.release()
    await until(() => m.stats().reservedConnections === 3, "t2's small pool to close")
    expect(await connectionsTo(2)).toBeLessThanOrEqual(2)
  })

  it('evict waits for the leases, then really closes the connections; release is idempotent', async () => {
    const m = manager()
    const a = await m.acquire(t(3))
    const b = await m.acquire(t(3))
    await Promise.all([a.db.execute(sql`select pg_sleep(0.05)`), b.db.execute(sql`select pg_sleep(0.05)`)])
    expect(await connectionsTo(3)).toBe(2)
    a.release()
    a.release() // must not count as b's release
    let evicted = false
    const eviction = m.evict(t(3).id).then(() => {
      evicted = true
    })
    // Something that must NOT happen while b is held: watch for a while (a busy machine can only make this pass more easily).
    await new Promise((r) => setTimeout(r, 200))
    expect(evicted).toBe(false)
    expect(await connectionsTo(3)).toBe(2)
    b.release()
    await eviction
    await until(async () => (await connectionsTo(3)) === 0)
    expect(m.stats()).toMatchObject({ openPools: 0, reservedConnections: 0 })
    await m.evict(t(3).id) // nothing open: returns at once
  })

  it('returns the slots of a pool whose database is gone or unreachable', async () => {
    const m = manager({ connectionBudget: 2, acquireTimeoutMs: 500 })
    const missing = { id: uuidv7(), dbUrl: withDatabase(APP_URL, `${env.name}_missing`), poolerUrl: undefined, maxConnections: undefined }
    const err = await m.withTenant(missing, (db) => db.execute(sql`select 1`)).catch((e: unknown) => e)
    expect(JSON.stringify(err, Object.getOwnPropertyNames(err)) + String((err as Error).cause)).toMatch(/3D000|does not exist/)
    await until(() => m.stats().reservedConnections === 0)
    const refused = { ...t(4), poolerUrl: 'postgres://tenantkit_app:x@127.0.0.1:1/nothing' }
    await expect(m.withTenant(refused, (db) => db.execute(sql`select 1`))).rejects.toThrow()
    await until(() => m.stats().reservedConnections === 0)
    expect(m.stats().openPools).toBe(0)
    expect(await currentDb(m, t(4))).toBe(t(4).dbName)
  })

  it('never exceeds the budget with 3x more tenants than it under concurrent load', async () => {
    const budget = 6
    const m = manager({ connectionBudget: budget, maxPerTenant: 2, acquireTimeoutMs: 20_000 })
    let maxSeen = 0
    let maxReserved = 0
    let sampling = true
    const sampler = (async () => {
      while (sampling) {
        maxSeen = Math.max(maxSeen, await totalConnections())
        maxReserved = Math.max(maxReserved, m.stats().reservedConnections)
        await new Promise((r) => setTimeout(r, 5))
      }
    })()
    const errors: unknown[] = []
    let served = 0
    // 600 requests, 150 at a time, over 12 tenants (each pool holds 2 of 6 slots: only 3 fit at once).
    for (let wave = 0; wave < 4; wave++) {
      await Promise.all(
        Array.from({ length: 150 }, async (_, i) => {
          const tenant = t((i * 7 + wave) % TENANTS)
          try {
            const [row] = await m.withTenant(tenant, (db) =>
              db.execute<{ db: string }>(sql`select current_database() as db, pg_sleep(random() * 0.005)`),
            )
            if (row?.db !== tenant.dbName) throw new Error(`asked ${tenant.dbName}, answered from ${row?.db}`)
            served++
          } catch (err) {
            errors.push(err)
          }
        }),
      )
    }
    sampling = false
    await sampler
    expect(errors).toEqual([])
    expect(served).toBe(600)
    expect(maxReserved).toBeLessThanOrEqual(budget)
    expect(maxSeen).toBeGreaterThan(2) // the sampler did see the load
    expect(maxSeen).toBeLessThanOrEqual(budget)
    expect(m.stats().reservedConnections).toBeLessThanOrEqual(budget)
  })

  it('close() ends every pool and refuses new leases', async () => {
    const m = manager()
    await currentDb(m, t(5))
    await currentDb(m, t(6))
    await m.close()
    expect(await connectionsTo(5)).toBe(0)
    expect(await connectionsTo(6)).toBe(0)
    await expect(m.acquire(t(5))).rejects.toMatchObject({ statusCode: 503, code: 'POOL_CLOSED' })
  })
})
