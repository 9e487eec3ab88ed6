import { randomBytes } from 'node:crypto'
import { eq } from 'drizzle-orm'
import type { Redis } from 'ioredis'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { tenants } from '../../drizzle/host/schema.js'
import { withDatabase } from '../../src/core/db/connect.js'
import { createHostDatabase, type HostDatabase } from '../../src/core/db/host.js'
import { DecryptionError, encrypt } from '../../src/core/lib/crypto.js'
import { type CatalogDeps, type CatalogHandle, catalogChannel, createCatalog } from '../../src/core/tenancy/catalog.js'
import { APP_URL } from '../helpers/env.js'
import { newRedisClient } from '../../src/core/lib/redis.js'
import { createTestEnv, type TestEnv } from '../helpers/test-env.js'
import { waitFor } from '../helpers/wait-for.js'

let env: TestEnv
let host: HostDatabase
let redis: Redis
const catalogs: CatalogHandle[] = []
const queries: string[] = []

beforeAll(async () => {
  env = await createTestEnv()
  host = createHostDatabase(env.hostUrl, 4)
  redis = newRedisClient(env.config)
})
afterEach(async () => {
  await Promise.all(catalogs.splice(0).map((c) => c.close()))
  queries.length = 0
})
afterAll(async () => {
  redis?.disconnect()
  await host?.close()
  await env?.cleanup()
})

let seq = 0
async function insertTenant(opts: { pooler?: boolean; maxConnections?: number } = {}) {
  const keys = env.config.encryptionKeys
  const n = seq++
  const slug = `acme-${n}-${randomBytes(2).toString('hex')}`
  const dbName = `${env.name}_c${n}`
  const dbUrl = withDatabase(APP_URL, dbName)
  const poolerUrl = opts.pooler ? 'postgres://tenantkit_app:tenantkit_app@pooler.internal:6432/' + dbName : undefined
  const [row] = await host.db
    .insert(tenants)
    .values({
      slug,
      name: `Acme ${n}`,
      status: 'active',
      dbName,
      dbUrlEncrypted: encrypt(dbUrl, keys),
      poolerUrlEncrypted: poolerUrl ? encrypt(poolerUrl, keys) : null,
      maxConnections: opts.maxConnections ?? null,
      migrationVersion: '0000_init',
      migrationStatus: 'current',
    })
    .returning()
  return { ...row!, dbUrl, poolerUrl }
}

function catalog(overrides: Partial<CatalogDeps> = {}, label = 'a'): CatalogHandle {
  const c = createCatalog({
    host,
    redis,
    keys: env.config.encryptionKeys,
    ttlS: 60,
    channel: catalogChannel(env.name),
    onQuery: (by, key) => queries.push(`${label}:${by}:${key}`),
    ...overrides,
  })
  catalogs.push(c)
  return c
}

describe('catalog', () => {
  it('finds a tenant by id or slug with its URLs decrypted, and caches both keys', async () => {
    const row = await insertTenant({ pooler: true, maxConnections: 3 })
    const c = catalog()
    const bySlug = await c.get(row.slug)
    expect(bySlug).toEqual({
      id: row.id,
      slug: row.slug,
      name: row.name,
      status: 'active',
      planTier: 'free',
      isolation: 'database',
      server: 'default',
      dbName: row.dbName,
      dbUrl: row.dbUrl,
      poolerUrl: row.poolerUrl,
      maxConnections: 3,
      migrationVersion: '0000_init',
      migrationStatus: 'current',
      moving: false,
    })
    expect(await c.get(row.id)).toBe(bySlug)
    expect(await c.get(row.id.toUpperCase())).toBe(bySlug)
    expect(queries).toEqual([`a:slug:${row.slug}`])
    expect(c.stats()).toMatchObject({ hits: 2, misses: 1, queries: 1, size: 1 })
  })

  it('answers undefined for unknown and soft-deleted tenants', async () => {
    const row = await insertTenant()
    const c = catalog()
    expect(await c.get('no-such-tenant')).toBeUndefined()
    expect(await c.get('01900000-0000-7000-8000-000000000000')).toBeUndefined()
    expect((await c.get(row.slug))?.poolerUrl).toBeUndefined()
    await host.db.update(tenants).set({ deletedAt: new Date() }).where(eq(tenants.id, row.id))
    await c.invalidate(row.id)
    expect(await c.get(row.slug)).toBeUndefined()
    expect(await c.get(row.id)).toBeUndefined()
  })

  it('expires entries after ttlS', async () => {
    const row = await insertTenant()
    const c = catalog({ ttlS: 1 })
    const cachedAt = Date.now()
    await c.get(row.slug)
    await c.get(row.slug)
    expect(queries).toHaveLength(1)
    // Poll for the expiry (reads before it are hits and query nothing), then check it came no sooner than the TTL.
    await waitFor(async () => (await c.get(row.slug)) && queries.length === 2, { message: 'the cached entry to expire' })
    expect(Date.now() - cachedAt).toBeGreaterThanOrEqual(1_000)
    expect(queries).toHaveLength(2)
  })

  it('sends one query for many concurrent misses of the same tenant', async () => {
    const row = await insertTenant()
    const c = catalog()
    const results = await Promise.all(Array.from({ length: 100 }, () => c.get(row.slug)))
    expect(new Set(results).size).toBe(1)
    expect(results[0]?.id).toBe(row.id)
    expect(queries).toEqual([`a:slug:${row.slug}`])
    expect(c.stats()).toMatchObject({ misses: 100, queries: 1 })
  })

  it('does not cache a row read before an invalidation that raced it', async () => {
    const row = await insertTenant()
    const c = catalog()
    const loading = c.get(row.slug) // query in flight
    await c.invalidate(row.id)
    await loading
    await c.get(row.slug)
    expect(queries).toHaveLength(2)
  })

  it('invalidation reaches another app instance through Redis pub/sub', async () => {
    const row = await insertTenant()
    // Two "app instances": separate catalogs, each with its own subscriber connection.
    const a = catalog({}, 'a')
    const b = catalog({}, 'b')
    await Promise.all([a.ready, b.ready])
    await a.get(row.slug)
    await b.get(row.slug)
    await b.get(row.id)

    await host.db.update(tenants).set({ name: 'Renamed' }).where(eq(tenants.id, row.id))
    expect((await b.get(row.slug))?.name).toBe(row.name) // cached: the write alone is not seen

    await a.invalidate(row.id)
    expect((await a.get(row.id))?.name).toBe('Renamed')
    await waitFor(() => b.stats().remoteInvalidations === 1, { message: 'the invalidation to reach the other catalog' })
    expect((await b.get(row.id))?.name).toBe('Renamed')
    expect((await b.get(row.slug))?.name).toBe('Renamed')
    expect(queries.filter((q) => q.startsWith('b:'))).toEqual([`b:slug:${row.slug}`, `b:id:${row.id}`])
    expect(a.stats().remoteInvalidations).toBe(0) // its own message is not applied twice
  })

  it('fails with a clear error when the encryption key is wrong, and caches nothing', async () => {
    const row = await insertTenant()
    const c = catalog({ keys: [{ id: env.config.encryptionKeys[0]!.id, key: randomBytes(32) }] })
    const err = await c.get(row.slug).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(DecryptionError)
    expect((err as Error).message).toContain(`tenant "${row.slug}"`)
    expect((err as Error).message).toContain('cannot decrypt db_url_encrypted')
    expect((err as Error).message).not.toContain(row.dbUrl)
    await expect(c.get(row.slug)).rejects.toThrow(DecryptionError)
    expect(queries).toHaveLength(2)
    expect(c.stats().size).toBe(0)
  })

  it('caches nothing with ttlS 0 but still collapses concurrent misses', async () => {
    const row = await insertTenant()
    const c = catalog({ ttlS: 0 })
    await Promise.all([c.get(row.slug), c.get(row.slug)])
    await c.get(row.slug)
    expect(queries).toHaveLength(2)
  })

  it('uses prepared statements for the lookups', async () => {
    const row = await insertTenant()
    const other = await insertTenant()
    // One connection, so the statements we look for live in the session we ask.
    const single = createHostDatabase(env.hostUrl, 1)
    try {
      const c = catalog({ host: single })
      await c.get(row.slug)
      await c.get(other.id)
      // drizzle sends ad-hoc queries unprepared; only .prepare()d ones show up here.
      const rows = await single.sql<{ statement: string }[]>`
        select statement from pg_prepared_statements where statement not like '%pg_prepared_statements%'`
      expect(rows.filter((r) => r.statement.includes('"core_tenants"'))).toHaveLength(2)
    } finally {
      await single.close()
    }
  })
})
