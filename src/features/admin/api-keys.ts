/**
 * Platform API keys: a platform administrator's credential for scripts on /admin/api, the admin
 * counterpart of tenant API keys (src/core/identity/api-keys.ts). A key is `tka_<live|test>_<32 random
 * bytes, base64url>`, shown once; the host DB keeps its SHA-256 and a display prefix (core_admin_api_keys).
 *
 * The two kinds never stand in for each other: the tenant guard only accepts the `tk_` shape (so a
 * `tka_` key on /api is 401 INVALID_API_KEY before any lookup) and `authenticate` here only the `tka_` one.
 *
 * A key acts as its creator, and only while the creator may use /admin: every use reads the key and its
 * creator from the host DB (no cache: /admin is rarely called, and a revocation, a revoked platform admin,
 * a disabled account or a password reset must stop it at once in every process).
 */
import { createHash, randomBytes } from 'node:crypto'
import { desc, eq, isNull, lt, and, sql } from 'drizzle-orm'
import { type AdminApiKey, adminApiKeys, type User, users } from '../../../drizzle/host/schema.js'
import type { Config } from '../../core/config.js'
import type { HostDb } from '../../core/db/host.js'
import { apiKeyEnv } from '../../core/identity/api-keys.js'
import { isPlatformAdmin } from '../../core/identity/platform-admins.js'
import { iso } from '../../core/lib/dates.js'
import { forbidden, unauthorized } from '../../core/lib/errors.js'

const SECRET_CHARS = 43
const PREFIX_CHARS = 8
const BEARER = /^Bearer +(\S+) *$/i

export interface AdminApiKeyView {
  id: string
  name: string
  prefix: string
  createdBy: string
  lastUsedAt: string | null
  expiresAt: string | null
  revokedAt: string | null
  createdAt: string
}

const toView = (k: AdminApiKey): AdminApiKeyView => ({
  id: k.id,
  name: k.name,
  prefix: k.prefix,
  createdBy: k.createdBy,
  lastUsedAt: iso(k.lastUsedAt),
  expiresAt: iso(k.expiresAt),
  revokedAt: iso(k.revokedAt),
  createdAt: k.createdAt.toISOString(),
})

const hash = (secret: string) => createHash('sha256').update(secret).digest('hex')

export const invalidAdminApiKey = () =>
  unauthorized('INVALID_API_KEY', 'Only a live platform API key (tka_…) is accepted on /admin/api: this one is malformed, unknown, revoked or expired')

export function createAdminApiKeys(db: HostDb, env: Config['env'], bootstrapEmails: readonly string[]) {
  const keyEnv = apiKeyEnv(env)
  const head = `tka_${keyEnv}_`
  const shape = new RegExp(`^${head}[A-Za-z0-9_-]{${SECRET_CHARS}}$`)

  return {
    /**
     * The key and creator an `Authorization` header names: 401 INVALID_API_KEY unless it is a live `tka_` key
     * of this deployment (a tenant key included), 403 PLATFORM_ADMIN_REQUIRED once its creator is no admin.
     * Writes last_used_at on every use (each use is audited anyway).
     */
    async authenticate(header: string): Promise<{ key: AdminApiKeyView; user: User }> {
      const secret = BEARER.exec(header)?.[1]
      if (!secret || !shape.test(secret)) throw invalidAdminApiKey()
      const [row] = await db
        .select({ key: adminApiKeys, user: users })
        .from(adminApiKeys)
        .innerJoin(users, eq(users.id, adminApiKeys.createdBy))
        .where(eq(adminApiKeys.keyHash, hash(secret)))
      if (!row) throw invalidAdminApiKey()
      const { key, user } = row
      const voidedByCreator = user.deletedAt !== null || user.disabledAt !== null || (user.sessionsValidAfter !== null && key.createdAt < user.sessionsValidAfter)
      if (key.revokedAt || (key.expiresAt && key.expiresAt.getTime() <= Date.now()) || voidedByCreator) throw invalidAdminApiKey()
      if (!isPlatformAdmin(user, bootstrapEmails)) throw forbidden('PLATFORM_ADMIN_REQUIRED', 'Platform administrators only')
      await db.update(adminApiKeys).set({ lastUsedAt: sql`now()` }).where(eq(adminApiKeys.id, key.id))
      return { key: toView(key), user }
    },

    /** Create a key; the secret is in the result and nowhere else, ever. */
    async create(values: { createdBy: string; name: string; expiresInDays?: number | undefined }) {
      const secret = `${head}${randomBytes(32).toString('base64url')}`
      const [row] = await db
        .insert(adminApiKeys)
        .values({
          createdBy: values.createdBy,
          name: values.name,
          prefix: secret.slice(0, head.length + PREFIX_CHARS),
          keyHash: hash(secret),
          expiresAt: values.expiresInDays ? sql`now() + make_interval(days => ${values.expiresInDays})` : null,
        })
        .returning()
      return { key: toView(row!), secret }
    },

    /** Every platform key (whoever created it), newest first, `limit` at a time before `cursor` (UUIDv7 ids). */
    async list({ limit, cursor }: { limit: number; cursor?: string | undefined }) {
      const rows = await db
        .select()
        .from(adminApiKeys)
        .where(cursor ? lt(adminApiKeys.id, cursor) : undefined)
        .orderBy(desc(adminApiKeys.id))
        .limit(limit + 1)
      const page = rows.slice(0, limit)
      return { items: page.map(toView), nextCursor: rows.length > limit ? page.at(-1)!.id : null }
    },

    /** Revoke: `revoked` false when it already was (nothing to audit); undefined when there is no such key. */
    async revoke(id: string): Promise<{ key: AdminApiKeyView; revoked: boolean } | undefined> {
      const [row] = await db
        .update(adminApiKeys)
        .set({ revokedAt: sql`now()` })
        .where(and(eq(adminApiKeys.id, id), isNull(adminApiKeys.revokedAt)))
        .returning()
      if (row) return { key: toView(row), revoked: true }
      const [existing] = await db.select().from(adminApiKeys).where(eq(adminApiKeys.id, id))
      return existing && { key: toView(existing), revoked: false }
    },
  }
}

export type AdminApiKeys = ReturnType<typeof createAdminApiKeys>
