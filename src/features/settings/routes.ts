/**
 * /api/settings: the tenant's single settings row (core_settings: time zone, currency, feature flags),
 * read by editors and up, written by admins (a viewer has no business with them). /api/me/preferences:
 * the caller's own preferences in this tenant (core_tenant_users.preferences), any member.
 *
 * Values are checked against what the platform knows (Intl's lists of IANA zones and ISO 4217
 * currencies), so a client can't store a zone that later breaks date formatting. Writes are audited.
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { eq, sql } from 'drizzle-orm'
import { uuidv7 } from 'uuidv7'
import { type Settings, settings, tenantUsers } from '../../../drizzle/tenant/schema.js'
import { audit } from '../../core/lib/audit.js'
import { badRequest, notFound } from '../../core/lib/errors.js'
import { errorResponses } from '../../core/lib/schemas.js'
import type { TenantDb } from '../../core/tenancy/types.js'
import { KEY, PreferencesSchema, SettingsSchema, UpdatePreferencesBody, UpdateSettingsBody } from './schemas.js'

const TIME_ZONES = new Set(Intl.supportedValuesOf('timeZone'))
const CURRENCIES = new Set(Intl.supportedValuesOf('currency').map((c) => c.toLowerCase()))
const guarded = errorResponses(400, 401, 403, 404, 409, 503)

const toJson = (s: Settings) => ({
  timezone: s.timezone,
  currency: s.currency,
  featureFlags: s.featureFlags,
  updatedAt: s.updatedAt.toISOString(),
})

/** The row seedOwner creates; made here for a tenant that predates it. */
async function current(db: TenantDb): Promise<Settings> {
  const [row] = await db.select().from(settings).limit(1)
  if (row) return row
  await db.execute(sql`insert into core_settings (id) select ${uuidv7()} where not exists (select 1 from core_settings)`)
  return (await db.select().from(settings).limit(1))[0]!
}

/** 400 INVALID_KEY for a flag or preference name that isn't a short identifier. */
function assertKeys(what: string, values: Record<string, unknown>) {
  const bad = Object.keys(values).find((key) => !KEY.test(key))
  if (bad !== undefined)
    throw badRequest('INVALID_KEY', `${what} names are lowercase identifiers (${KEY.source}); "${bad.slice(0, 64)}" is not one`)
}

/** `patch` merged into `into`; a null value removes its key. */
function merged<T>(into: Record<string, T>, patch: Record<string, T | null>): Record<string, T> {
  const out = { ...into }
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) delete out[key]
    else out[key] = value
  }
  return out
}

export const settingsRoutes: FastifyPluginAsyncTypebox = async (fastify) => {
  fastify.get(
    '/',
    {
      config: { access: { minRole: 'editor' } },
      schema: { tags: ['settings'], summary: 'The tenant’s settings (editors and up)', response: { 200: SettingsSchema, ...guarded } },
    },
    async (req) => toJson(await current(req.tenantDb)),
  )

  fastify.patch(
    '/',
    {
      config: { access: { minRole: 'admin' } },
      schema: {
        tags: ['settings'],
        summary: 'Change the tenant’s settings (admins): time zone, currency, feature flags (merged; null removes one)',
        body: UpdateSettingsBody,
        response: { 200: SettingsSchema, ...guarded },
      },
    },
    async (req) => {
      const { timezone, currency, featureFlags } = req.body
      if (timezone !== undefined && !TIME_ZONES.has(timezone))
        throw badRequest('INVALID_TIMEZONE', `"${timezone}" is not an IANA time zone`)
      if (featureFlags) assertKeys('Feature flag', featureFlags)
      const code = currency?.toLowerCase()
      if (code !== undefined && !CURRENCIES.has(code)) throw badRequest('INVALID_CURRENCY', `"${currency}" is not an ISO 4217 currency`)
      const row = await req.tenantDb.transaction(async (tx) => {
        // Locked: two admins merging flags at once both keep their change.
        const [now] = await tx.select().from(settings).limit(1).for('update')
        const base = now ?? (await current(tx as unknown as TenantDb))
        const [updated] = await tx
          .update(settings)
          .set({
            ...(timezone !== undefined ? { timezone } : {}),
            ...(code !== undefined ? { currency: code } : {}),
            ...(featureFlags ? { featureFlags: merged(base.featureFlags, featureFlags) } : {}),
            updatedAt: new Date(),
          })
          .where(eq(settings.id, base.id))
          .returning()
        return updated!
      })
      await audit(
        fastify.host.db,
        { action: 'settings.updated', actorUserId: req.user!.id, tenantId: req.tenant!.id, metadata: { changed: Object.keys(req.body) } },
        req,
      )
      return toJson(row)
    },
  )
}

export const preferencesRoutes: FastifyPluginAsyncTypebox = async (fastify) => {
  const missing = () => notFound('TENANT_USER_NOT_FOUND', 'You have no user record in this tenant')

  fastify.get(
    '/',
    {
      config: { access: { minRole: 'viewer' } },
      schema: { tags: ['settings'], summary: 'My preferences in this tenant', response: { 200: PreferencesSchema, ...guarded } },
    },
    async (req) => {
      const [row] = await req.tenantDb
        .select({ preferences: tenantUsers.preferences })
        .from(tenantUsers)
        .where(eq(tenantUsers.globalUserId, req.user!.id))
      if (!row) throw missing()
      return { preferences: row.preferences as Record<string, boolean | number | string> }
    },
  )

  fastify.patch(
    '/',
    {
      config: { access: { minRole: 'viewer' } },
      schema: {
        tags: ['settings'],
        summary: 'Change my preferences in this tenant (merged; null removes one)',
        body: UpdatePreferencesBody,
        response: { 200: PreferencesSchema, ...guarded },
      },
    },
    async (req) => {
      assertKeys('Preference', req.body.preferences)
      const preferences = await req.tenantDb.transaction(async (tx) => {
        const [row] = await tx.select().from(tenantUsers).where(eq(tenantUsers.globalUserId, req.user!.id)).for('update')
        if (!row) throw missing()
        const next = merged(row.preferences as Record<string, boolean | number | string>, req.body.preferences)
        await tx.update(tenantUsers).set({ preferences: next, updatedAt: new Date() }).where(eq(tenantUsers.id, row.id))
        return next
      })
      return { preferences }
    },
  )
}
