/**
 * API keys: a tenant's credential for scripts and integrations, the other way into /api beside a
 * session (LESSONS #8). A key is `tk_<live|test>_<32 random bytes, base64url>`, shown once at
 * creation; the host DB keeps only its SHA-256 (the secret is 256 random bits, so a fast hash is
 * enough, and argon2 would cost every request) and a short display prefix.
 *
 * Authentication (`authenticate(header)`, on every API-key request) costs one SHA-256 and an LRU
 * lookup: rows are cached per process for at most `ttlMs` (30 s), read by a prepared statement on a
 * miss. Revocation drops the entry at once in this process and, through Redis pub/sub on `channel`,
 * in every other one; the TTL bounds the damage of a missed message (the cache is also cleared when
 * the subscriber reconnects). Expiry is checked on every use, against the cached row. A key created
 * before its creator's sessions_valid_after is void like a revoked one (`invalidateCreator` drops the
 * creator's cached keys everywhere when that cutoff moves).
 * `last_used_at` is written at most once a minute per key (the UPDATE's own WHERE also holds across processes).
 *
 * Whether the key's creator may still act in the tenant, and as what, is the tenant guard's business
 * (src/core/plugins/tenancy.ts): this module only says which key, tenant, role and user a header names.
 */
import { hash, randomBytes } from 'node:crypto'
import { and, desc, eq, isNull, lt, or, sql } from 'drizzle-orm'
import type { Redis } from 'ioredis'
import { type ApiKey, type ApiKeyRole, apiKeys, users } from '../../../drizzle/host/schema.js'
import type { Config } from '../config.js'
import type { HostDb } from '../db/host.js'
import { iso } from '../lib/dates.js'
import { unauthorized } from '../lib/errors.js'
import { createInvalidatedCache, createInvalidationBus, type InvalidationBus } from '../lib/invalidated-cache.js'
import type { PublicUser } from './users.js'

/** `live` keys in production, `test` keys elsewhere: a key pasted into the wrong deployment fails before any lookup. */
export const apiKeyEnv = (env: Config['env']): 'live' | 'test' => (env === 'production' ? 'live' : 'test')

/** 32 bytes of base64url are 43 characters. */
const SECRET_CHARS = 43
const PREFIX_CHARS = 8
const BEARER = /^Bearer +(\S+) *$/i

// One-shot crypto.hash: a third of createHash().update().digest()'s cost, on every API-key request (issue 14).
export const hashApiKey = (secret: string): string => hash('sha256', secret, 'hex')

export function generateApiKey(env: 'live' | 'test'): { secret: string; prefix: string; hash: string } {
  const secret = `tk_${env}_${randomBytes(32).toString('base64url')}`
  return { secret, prefix: secret.slice(0, `tk_${env}_`.length + PREFIX_CHARS), hash: hashApiKey(secret) }
}

export const invalidApiKey = () => unauthorized('INVALID_API_KEY', 'The API key is malformed, unknown, revoked or expired')

/** What a key is, as lists show it: never the secret nor its hash. */
export interface ApiKeyView {
  id: string
  name: string
  prefix: string
  role: ApiKeyRole
  createdBy: string
  lastUsedAt: string | null
  expiresAt: string | null
  revokedAt: string | null
  createdAt: string
}

/** Who a valid key speaks for: its tenant, its maximum role and its creator (the acting user). */
export interface ApiKeyIdentity {
  id: string
  tenantId: string
  role: ApiKeyRole
  user: PublicUser
}

export interface ApiKeysDeps {
  db: HostDb
  /** Makes the module's own invalidation bus when `bus` is omitted. */
  redis: Redis
  /** The process' invalidation bus (one subscriber connection); when omitted one is made (and closed) here. */
  bus?: InvalidationBus
  channel: string
  env: Config['env']
  /** How long a key row stays cached (default and maximum 30 s). */
  ttlMs?: number
  /** Minimum interval between last_used_at writes for one key (default 60 s). */
  touchEveryMs?: number
  onError?: (err: unknown, what: string) => void
}

interface CachedKey {
  identity: ApiKeyIdentity
  expiresAt: number | null
  revoked: boolean
  /** When last_used_at was last written (ms since epoch), or 0. */
  touchedAt: number
}

const toView = (k: ApiKey): ApiKeyView => ({
  id: k.id,
  name: k.name,
  prefix: k.prefix,
  role: k.role,
  createdBy: k.createdBy,
  lastUsedAt: iso(k.lastUsedAt),
  expiresAt: iso(k.expiresAt),
  revokedAt: iso(k.revokedAt),
  createdAt: k.createdAt.toISOString(),
})

export function createApiKeys({ db, redis, bus, channel, env, ttlMs = 30_000, touchEveryMs = 60_000, onError }: ApiKeysDeps) {
  const keyEnv = apiKeyEnv(env)
  const shape = new RegExp(`^tk_${keyEnv}_[A-Za-z0-9_-]{${SECRET_CHARS}}$`)

  // Prepared: one round trip on a cache miss (STACK.md §0). The creator comes along for req.user.
  const byHash = db
    .select({
      id: apiKeys.id,
      tenantId: apiKeys.tenantId,
      role: apiKeys.role,
      expiresAt: apiKeys.expiresAt,
      revokedAt: apiKeys.revokedAt,
      lastUsedAt: apiKeys.lastUsedAt,
      keyCreatedAt: apiKeys.createdAt,
      creatorValidAfter: users.sessionsValidAfter,
      userId: users.id,
      email: users.email,
      name: users.name,
      emailVerifiedAt: users.emailVerifiedAt,
      userCreatedAt: users.createdAt,
    })
    .from(apiKeys)
    .innerJoin(users, eq(users.id, apiKeys.createdBy))
    .where(eq(apiKeys.keyHash, sql.placeholder('hash')))
    .prepare('tk_api_keys_by_hash')
  const touch = db
    .update(apiKeys)
    .set({ lastUsedAt: sql`now()` })
    .where(
      and(
        eq(apiKeys.id, sql.placeholder('id')),
        or(isNull(apiKeys.lastUsedAt), lt(apiKeys.lastUsedAt, sql`now() - make_interval(secs => ${sql.placeholder('everyS')})`)),
      ),
    )
    .prepare('tk_api_keys_touch')

  async function load(hash: string): Promise<CachedKey | undefined> {
    const [row] = await byHash.execute({ hash })
    if (!row) return undefined // unknown hashes are not cached: guessing must not fill the cache
    return {
      identity: {
        id: row.id,
        tenantId: row.tenantId,
        role: row.role,
        user: {
          id: row.userId,
          email: row.email,
          name: row.name,
          emailVerified: row.emailVerifiedAt !== null,
          createdAt: row.userCreatedAt.toISOString(),
        },
      },
      expiresAt: row.expiresAt?.getTime() ?? null,
      revoked: row.revokedAt !== null || (row.creatorValidAfter !== null && row.keyCreatedAt < row.creatorValidAfter),
      touchedAt: row.lastUsedAt?.getTime() ?? 0,
    }
  }

  const CREATOR = 'user:' // message prefix: every key of this creator (key ids are bare UUIDs)
  const drop = (keyId: string) => cache.dropWhere((entry) => entry.identity.id === keyId)
  const dropCreator = (userId: string) => cache.dropWhere((entry) => entry.identity.user.id === userId)
  // Keyed by the secret's SHA-256. A reconnect clears it: revocations may have been missed.
  const cache = createInvalidatedCache<string, CachedKey>({
    bus: bus ?? createInvalidationBus(redis, onError, 'api-keys subscriber'),
    ownsBus: !bus,
    channel,
    max: 20_000,
    ttlMs: Math.min(ttlMs, 30_000),
    load,
    onMessage(keyId) {
      if (keyId.startsWith(CREATOR)) dropCreator(keyId.slice(CREATOR.length))
      else drop(keyId)
    },
  })
  const ready = cache.ready

  function use(key: CachedKey | undefined, now: number): ApiKeyIdentity | Promise<ApiKeyIdentity> {
    if (!key || key.revoked || (key.expiresAt !== null && key.expiresAt <= now)) throw invalidApiKey()
    if (now - key.touchedAt < touchEveryMs) return key.identity
    key.touchedAt = now
    return touch.execute({ id: key.identity.id, everyS: touchEveryMs / 1000 }).then(
      () => key.identity,
      (err) => {
        onError?.(err, 'api-keys last_used_at') // bookkeeping must not fail the request
        return key.identity
      },
    )
  }

  /**
   * `authenticate` without a promise when it can: the identity at once on a cache hit (no last_used_at
   * write due), a promise on a miss or when the write is due; throws 401 INVALID_API_KEY synchronously
   * for a malformed key, or a revoked or expired one it already holds.
   */
  function check(header: string): ApiKeyIdentity | Promise<ApiKeyIdentity> {
    const secret = BEARER.exec(header)?.[1]
    if (!secret || !shape.test(secret)) throw invalidApiKey()
    const digest = hashApiKey(secret)
    const key = cache.get(digest)
    return key ? use(key, Date.now()) : cache.load(digest).then((loaded) => use(loaded, Date.now()))
  }

  return {
    ready,
    env: keyEnv,

    /**
     * The key an `Authorization` header carries, or 401 INVALID_API_KEY: not `Bearer <key>`, not a key
     * of this deployment's shape, unknown, revoked or expired.
     */
    async authenticate(header: string): Promise<ApiKeyIdentity> {
      return check(header)
    },

    /**
     * `authenticate` without a promise when it can: the identity at once on a cache hit (no last_used_at
     * write due), a promise on a miss or when the write is due; throws 401 INVALID_API_KEY synchronously
     * for a bad, revoked or expired key it already knows.
     */
    check,

    /** Create a key; the secret is in the result and nowhere else, ever. */
    async create(values: { tenantId: string; createdBy: string; name: string; role: ApiKeyRole; expiresInDays?: number | undefined }) {
      const { secret, prefix, hash } = generateApiKey(keyEnv)
      const [row] = await db
        .insert(apiKeys)
        .values({
          tenantId: values.tenantId,
          createdBy: values.createdBy,
          name: values.name,
          role: values.role,
          prefix,
          keyHash: hash,
          expiresAt: values.expiresInDays ? sql`now() + make_interval(days => ${values.expiresInDays})` : null,
        })
        .returning()
      return { key: toView(row!), secret }
    },

    /** A tenant's keys, newest first, `limit` at a time before `cursor` (ids are UUIDv7). */
    async list(tenantId: string, { limit, cursor }: { limit: number; cursor?: string | undefined }) {
      const rows = await db
        .select()
        .from(apiKeys)
        .where(and(eq(apiKeys.tenantId, tenantId), cursor ? lt(apiKeys.id, cursor) : undefined))
        .orderBy(desc(apiKeys.id))
        .limit(limit + 1)
      const page = rows.slice(0, limit)
      return { items: page.map(toView), nextCursor: rows.length > limit ? page.at(-1)!.id : null }
    },

    /**
     * Revoke a key of this tenant. `revoked` is false when it already was (nothing changes, nothing to
     * audit); undefined when the tenant has no such key.
     */
    async revoke(tenantId: string, keyId: string): Promise<{ key: ApiKeyView; revoked: boolean } | undefined> {
      const where = and(eq(apiKeys.id, keyId), eq(apiKeys.tenantId, tenantId))
      const [row] = await db
        .update(apiKeys)
        .set({ revokedAt: sql`now()` })
        .where(and(where, isNull(apiKeys.revokedAt)))
        .returning()
      if (row) {
        drop(row.id)
        await cache.publish(row.id)
        return { key: toView(row), revoked: true }
      }
      const [existing] = await db.select().from(apiKeys).where(where)
      return existing && { key: toView(existing), revoked: false }
    },

    /** Forget cached rows of one key here and in every process (after any change to a key row). */
    async invalidate(keyId: string) {
      drop(keyId)
      await cache.publish(keyId)
    },

    /** Forget cached keys created by this user, here and in every process (after their sessions_valid_after moved). */
    async invalidateCreator(userId: string) {
      dropCreator(userId)
      await cache.publish(`${CREATOR}${userId}`)
    },

    async close() {
      await ready.catch(() => {})
      await cache.close()
    },
  }
}

export type ApiKeys = ReturnType<typeof createApiKeys>
