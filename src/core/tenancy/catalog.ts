/**
 * The read side of the tenant catalog: core_tenants rows with their URLs decrypted (and a database tenant's
 * pooler: its own row's, else its server's, servers.ts throughPooler), cached per process
 * with a TTL, one query per cold key however many requests ask at once (single-flight), and dropped in
 * every process when any process calls invalidate() (Redis pub/sub on `channel`, src/core/lib/invalidated-cache.ts).
 */
import { randomUUID } from 'node:crypto'
import { and, eq, gt, isNull, sql } from 'drizzle-orm'
import type { Redis } from 'ioredis'
import type { Logger } from 'pino'
import { dbServers, tenantSlugAliases, tenants } from '../../../drizzle/host/schema.js'
import type { HostDatabase } from '../db/host.js'
import { DecryptionError, decrypt, type KeyRing } from '../lib/crypto.js'
import { createInvalidatedCache, createInvalidationBus, type InvalidationBus } from '../lib/invalidated-cache.js'
import { throughPooler } from './servers.js'
import type { Catalog, InvalidationHint, TenantRecord } from './types.js'
import { isUuid } from '../lib/uuid.js'

/** The pub/sub channel every process of one deployment listens on. */
export const catalogChannel = (redisPrefix: string) => `${redisPrefix}:catalog`

export interface CatalogDeps {
  host: HostDatabase
  /** Makes the catalog's own invalidation bus when `bus` is omitted. */
  redis: Redis
  /** The process' invalidation bus (one subscriber connection); when omitted the catalog makes (and closes) its own. */
  bus?: InvalidationBus
  keys: readonly KeyRing[]
  /** Seconds an entry stays cached; 0 disables caching (single-flight still applies). */
  ttlS: number
  channel: string
  /** Cache bound in records (default 10,000). */
  maxEntries?: number
  logger?: Pick<Logger, 'warn' | 'error'>
  /**
   * Called when another process invalidates a tenant: the app closes that tenant's pool so a
   * migration or suspension done elsewhere (CLI, worker) leaves no pool planned on the old state.
   */
  onRemoteInvalidate?: (tenantId: string, hint: InvalidationHint) => void
  /** Called once per query sent to the host database (metrics, tests). */
  onQuery?: (by: 'id' | 'slug', key: string) => void
}

export interface CatalogStats {
  hits: number
  misses: number
  /** Queries sent to the host database (misses minus those that joined an in-flight query). */
  queries: number
  /** Records cached (each appears once, though cached under both its id and its slug). */
  size: number
  inflight: number
  /** Invalidations received from other processes. */
  remoteInvalidations: number
  publishFailures: number
}

export interface CatalogHandle extends Catalog {
  /** Resolves once subscribed to the invalidation channel; rejects when Redis refuses. */
  ready: Promise<void>
  /** `get` from the cache alone (the request plane's synchronous path): undefined when not cached, call `get`. */
  peek(idOrSlug: string): TenantRecord | undefined
  /** Drop this process' cached records of the tenants on a server (its pooler changed: their URLs are derived from it). */
  dropServer(server: string): void
  stats(): CatalogStats
}

const columns = {
  id: tenants.id,
  slug: tenants.slug,
  name: tenants.name,
  status: tenants.status,
  planTier: tenants.planTier,
  isolation: tenants.isolation,
  server: tenants.server,
  dbName: tenants.dbName,
  dbUrlEncrypted: tenants.dbUrlEncrypted,
  poolerUrlEncrypted: tenants.poolerUrlEncrypted,
  serverPoolerUrlEncrypted: dbServers.poolerUrlEncrypted,
  maxConnections: tenants.maxConnections,
  migrationVersion: tenants.migrationVersion,
  migrationStatus: tenants.migrationStatus,
  movingSince: tenants.movingSince,
}

export function createCatalog(deps: CatalogDeps): CatalogHandle {
  const { host, redis, keys, ttlS, channel, logger } = deps
  const instance = randomUUID()

  // Prepared once: postgres.js sends it as a named statement, one round trip per lookup (STACK.md §0).
  const lookup = (column: typeof tenants.id | typeof tenants.slug, name: string) =>
    host.db
      .select(columns)
      .from(tenants)
      .leftJoin(dbServers, eq(dbServers.name, tenants.server))
      .where(and(eq(column, sql.placeholder('key')), isNull(tenants.deletedAt)))
      .limit(1)
      .prepare(name)
  const byId = lookup(tenants.id, 'tk_catalog_tenant_by_id')
  const bySlug = lookup(tenants.slug, 'tk_catalog_tenant_by_slug')
  // A renamed tenant's former slug, while its alias lasts (asked only when no tenant has the slug).
  const byAlias = host.db
    .select(columns)
    .from(tenants)
    .leftJoin(dbServers, eq(dbServers.name, tenants.server))
    .innerJoin(tenantSlugAliases, eq(tenantSlugAliases.tenantId, tenants.id))
    .where(and(eq(tenantSlugAliases.slug, sql.placeholder('key')), gt(tenantSlugAliases.expiresAt, sql`now()`), isNull(tenants.deletedAt)))
    .limit(1)
    .prepare('tk_catalog_tenant_by_alias')

  const counts = { hits: 0, misses: 0, queries: 0, remoteInvalidations: 0, publishFailures: 0 }
  let closed = false

  function toRecord(row: Awaited<ReturnType<typeof byId.execute>>[number]): TenantRecord {
    const open = (column: string, sealed: string) => {
      try {
        return decrypt(sealed, keys)
      } catch (err) {
        // Name the tenant and column: a wrong ENCRYPTION_KEYS is an operator error that must be obvious.
        throw new DecryptionError(`tenant "${row.slug}" (${row.id}): cannot decrypt ${column}: ${(err as Error).message}`, { cause: err })
      }
    }
    const dbUrl = open('db_url_encrypted', row.dbUrlEncrypted)
    // A server's pooler serves its database tenants; a shared database is one pool per process already.
    const poolerUrl = row.poolerUrlEncrypted
      ? open('pooler_url_encrypted', row.poolerUrlEncrypted)
      : row.serverPoolerUrlEncrypted && row.isolation === 'database'
        ? throughPooler(dbUrl, open(`server ${row.server}'s pooler_url_encrypted`, row.serverPoolerUrlEncrypted))
        : undefined
    return {
      id: row.id,
      slug: row.slug,
      name: row.name,
      status: row.status,
      planTier: row.planTier,
      isolation: row.isolation,
      server: row.server,
      dbName: row.dbName,
      dbUrl,
      poolerUrl,
      maxConnections: row.maxConnections ?? undefined,
      migrationVersion: row.migrationVersion ?? undefined,
      migrationStatus: row.migrationStatus,
      moving: row.movingSince !== null,
    }
  }

  async function load(key: string): Promise<TenantRecord | undefined> {
    const by = key.startsWith('i:') ? 'id' : 'slug'
    const value = key.slice(2)
    counts.queries++
    deps.onQuery?.(by, value)
    const [row] = await (by === 'id' ? byId : bySlug).execute({ key: value })
    if (row) return toRecord(row)
    if (by === 'id') return undefined
    const [aliased] = await byAlias.execute({ key: value })
    return aliased ? toRecord(aliased) : undefined
  }

  // Keys are `i:<uuid>` and `s:<slug>`; both point at the same record object. Unknown slugs are not
  // cached (load answers undefined): a tenant created a moment later must be found at once.
  const cache = createInvalidatedCache<string, TenantRecord>({
    bus: deps.bus ?? createInvalidationBus(redis, logger, 'catalog subscriber'),
    ownsBus: !deps.bus,
    channel,
    max: 2 * (deps.maxEntries ?? 10_000),
    ttlMs: ttlS * 1000,
    load,
    keysOf: (record) => [`i:${record.id}`, `s:${record.slug}`],
    onMessage(message) {
      let payload: { id?: unknown; from?: unknown; moving?: unknown }
      try {
        payload = message.startsWith('{') ? JSON.parse(message) : { id: message }
      } catch {
        logger?.warn({ channel, message }, 'catalog: ignoring malformed invalidation')
        return
      }
      if (payload.from === instance || typeof payload.id !== 'string') return
      counts.remoteInvalidations++
      drop(payload.id)
      deps.onRemoteInvalidate?.(payload.id, payload.moving === true ? { moving: true } : {})
    },
  })
  const ready = cache.ready
  ready.catch((err) => logger?.error({ err, channel }, 'catalog: cannot subscribe to invalidations'))

  function drop(tenantId: string): void {
    const id = tenantId.toLowerCase()
    // Both keys of the record, and a slug entry whose id entry was evicted (invalidations are rare).
    cache.dropWhere((record) => record.id === id)
  }

  const keyOf = (idOrSlug: string) => (isUuid(idOrSlug) ? `i:${idOrSlug.toLowerCase()}` : `s:${idOrSlug}`)

  return {
    ready,
    get(idOrSlug) {
      if (closed) return Promise.reject(new Error('catalog is closed'))
      const key = keyOf(idOrSlug)
      const cached = cache.get(key)
      if (cached) {
        counts.hits++
        return Promise.resolve(cached)
      }
      counts.misses++
      return cache.load(key)
    },
    dropServer(server) {
      cache.dropWhere((record) => record.server === server)
    },
    peek(idOrSlug) {
      if (closed) return undefined
      const cached = cache.get(keyOf(idOrSlug))
      if (cached) counts.hits++
      return cached
    },
    async invalidate(tenantId, hint) {
      drop(tenantId)
      try {
        await cache.publish(JSON.stringify({ id: tenantId.toLowerCase(), from: instance, ...(hint?.moving ? { moving: true } : {}) }))
      } catch (err) {
        // The write already happened; other processes catch up when their entry expires (ttlS).
        counts.publishFailures++
        logger?.error({ err, tenantId, channel }, 'catalog: invalidation not published; other processes serve the old entry until TTL')
      }
    },
    stats() {
      const records = new Set<TenantRecord>()
      for (const value of cache.values()) records.add(value)
      return { ...counts, size: records.size, inflight: cache.inflight }
    },
    async close() {
      if (closed) return
      closed = true
      await cache.close()
    },
  }
}
