/**
 * Memberships: who may enter which tenant, and as what. The per-request check (`find`) is a prepared
 * statement behind a short-TTL cache that every membership write invalidates, across processes through Redis pub/sub (src/core/lib/invalidated-cache.ts).
 */
import { and, eq, isNull, sql } from 'drizzle-orm'
import type { Redis } from 'ioredis'
import { createInvalidatedCache, createInvalidationBus, type InvalidationBus } from '../lib/invalidated-cache.js'
import type { RedisErrorLogger } from '../lib/redis.js'
import { apiKeys, type Membership, type MembershipRole, memberships, tenants } from '../../../drizzle/host/schema.js'
import type { HostDb } from '../db/host.js'
import { PG, conflict, forbidden, pgCode } from '../lib/errors.js'

export interface MembershipView {
  tenantId: string
  slug: string
  name: string
  role: MembershipRole
  status: Membership['status']
  tenantStatus: string
}

export interface MembershipDeps {
  db: HostDb
  /** Makes the module's own invalidation bus when `bus` is omitted. */
  redis: Redis
  /** The process' invalidation bus (one subscriber connection); when omitted one is made (and closed) here. */
  bus?: InvalidationBus
  channel: string
  ttlMs?: number
  /** Subscriber errors (Redis down) are logged here, one line per 10 s. */
  logger?: RedisErrorLogger
}

const NONE = Symbol('none')

export function createMemberships({ db, redis, bus, channel, ttlMs = 30_000, logger }: MembershipDeps) {
  const key = (userId: string, tenantId: string) => `${userId}:${tenantId}`
  // Other caches keyed by (user, tenant) — the tenant-local role and grants — follow these invalidations.
  const listeners: ((key: string | undefined, tenantId: string | undefined) => void)[] = []
  const notify = (k: string | undefined, tenantId: string | undefined) => {
    for (const fn of listeners) fn(k, tenantId)
  }

  const findStmt = db
    .select()
    .from(memberships)
    .where(and(eq(memberships.userId, sql.placeholder('userId')), eq(memberships.tenantId, sql.placeholder('tenantId'))))
    .prepare('memberships_find')

  // Absence is cached too (NONE): a non-member probing a tenant costs no query per request.
  const cache = createInvalidatedCache<string, Membership | typeof NONE>({
    bus: bus ?? createInvalidationBus(redis, logger, 'memberships subscriber'),
    ownsBus: !bus,
    channel,
    max: 50_000,
    ttlMs,
    async load(k) {
      const sep = k.indexOf(':')
      const [row] = await findStmt.execute({ userId: k.slice(0, sep), tenantId: k.slice(sep + 1) })
      return row ?? NONE
    },
    onMessage(message) {
      const [kind, id] = message.split('|')
      if (kind === 'm' && id) {
        cache.drop(id)
        notify(id, undefined)
      }
    },
    // After a reconnect, invalidations may have been missed: the cache was cleared, so must the others be.
    onReconnect: () => notify(undefined, undefined),
  })
  const ready = cache.ready

  async function invalidate(userId: string, tenantId: string) {
    cache.drop(key(userId, tenantId))
    notify(key(userId, tenantId), tenantId)
    await cache.publish(`m|${key(userId, tenantId)}`)
  }

  return {
    ready,

    /** `find` from the cache alone: the row, null when cached as absent, undefined when not cached (call `find`). */
    peek(userId: string, tenantId: string): Membership | null | undefined {
      const hit = cache.get(key(userId, tenantId))
      return hit === NONE ? null : hit
    },

    /** The membership row, cached briefly. Only active memberships grant access; callers check status. */
    async find(userId: string, tenantId: string): Promise<Membership | undefined> {
      const k = key(userId, tenantId)
      const hit = cache.get(k) ?? (await cache.load(k))
      return hit === NONE ? undefined : hit
    },

    async listForUser(userId: string): Promise<MembershipView[]> {
      return db
        .select({
          tenantId: tenants.id,
          slug: tenants.slug,
          name: tenants.name,
          role: memberships.role,
          status: memberships.status,
          tenantStatus: tenants.status,
        })
        .from(memberships)
        .innerJoin(tenants, eq(tenants.id, memberships.tenantId))
        .where(and(eq(memberships.userId, userId), isNull(tenants.deletedAt)))
        .orderBy(tenants.createdAt)
    },

    async add(userId: string, tenantId: string, role: MembershipRole) {
      try {
        const [row] = await db.insert(memberships).values({ userId, tenantId, role }).returning()
        await invalidate(userId, tenantId)
        return row!
      } catch (err) {
        if (pgCode(err) === PG.uniqueViolation) throw conflict('ALREADY_MEMBER', 'This user is already a member of the tenant')
        throw err
      }
    },

    /**
     * Change a member's role. The last owner can't be demoted: checked under a row lock on the
     * tenant's owner rows so two concurrent demotions can't both pass.
     */
    async setRole(userId: string, tenantId: string, role: MembershipRole) {
      await db.transaction(async (tx) => {
        await guardLastOwner(tx as unknown as HostDb, userId, tenantId, role !== 'owner')
        await tx
          .update(memberships)
          .set({ role })
          .where(and(eq(memberships.userId, userId), eq(memberships.tenantId, tenantId)))
      })
      await invalidate(userId, tenantId)
    },

    /**
     * Remove a member (403 LAST_OWNER for the last owner). The API keys they created in this tenant are
     * revoked in the same transaction, for good: re-adding the member later brings none back. Returns
     * the ids of the keys revoked now (callers drop them from the key caches).
     */
    async remove(userId: string, tenantId: string): Promise<{ revokedKeyIds: string[] }> {
      const revoked = await db.transaction(async (tx) => {
        await guardLastOwner(tx as unknown as HostDb, userId, tenantId, true)
        await tx.delete(memberships).where(and(eq(memberships.userId, userId), eq(memberships.tenantId, tenantId)))
        return tx
          .update(apiKeys)
          .set({ revokedAt: sql`now()` })
          .where(and(eq(apiKeys.tenantId, tenantId), eq(apiKeys.createdBy, userId), isNull(apiKeys.revokedAt)))
          .returning({ id: apiKeys.id })
      })
      await invalidate(userId, tenantId)
      return { revokedKeyIds: revoked.map((k) => k.id) }
    },

    /** Drop the cached membership (and everything keyed on it) here and in every other process. Call after any change to a member's role, status or grants. */
    invalidate,
    /** `key` is "userId:tenantId" for one member, undefined for a whole tenant; both undefined: everything. */
    onInvalidate(listener: (key: string | undefined, tenantId: string | undefined) => void) {
      listeners.push(listener)
    },
    key,

    async close() {
      await ready.catch(() => {})
      await cache.close()
    },
  }
}

async function guardLastOwner(tx: HostDb, userId: string, tenantId: string, losingOwnership: boolean) {
  if (!losingOwnership) return
  const owners = await tx
    .select({ userId: memberships.userId })
    .from(memberships)
    .where(and(eq(memberships.tenantId, tenantId), eq(memberships.role, 'owner'), eq(memberships.status, 'active')))
    .for('update')
  if (owners.length === 1 && owners[0]!.userId === userId) {
    throw forbidden('LAST_OWNER', 'The last owner of a tenant cannot be demoted or removed')
  }
}

export type Memberships = ReturnType<typeof createMemberships>
