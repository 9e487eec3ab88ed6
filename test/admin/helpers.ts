/** People and rows for the admin API tests: a platform admin, a plain user, audit entries, bare catalog rows. */
import { and, eq } from 'drizzle-orm'
import type { FastifyInstance } from 'fastify'
import { uuidv7 } from 'uuidv7'
import { auditLogs, tenants, users } from '../../drizzle/host/schema.js'
import { type Member, newMember } from '../helpers/tenant-fixtures.js'

export const UA = 'admin-console-test/1.0'
export const ua = { 'user-agent': UA }

/** A signed-in user granted platform admin (is_platform_admin, as `users grant-admin` does). */
export async function platformAdmin(app: FastifyInstance, label = 'ops'): Promise<Member> {
  const m = await newMember(app, label)
  await app.host.db.update(users).set({ isPlatformAdmin: true }).where(eq(users.id, m.id))
  await m.signIn()
  return m
}

export const auditRows = (app: FastifyInstance, action: string, targetId?: string) =>
  app.host.db
    .select()
    .from(auditLogs)
    .where(and(eq(auditLogs.action, action), targetId ? eq(auditLogs.targetId, targetId) : undefined))

/**
 * Catalog rows with no database behind them: enough for suspend and resume (which only write the catalog
 * and close pools), far cheaper than provisioning hundreds of tenants.
 */
export async function bareTenants(app: FastifyInstance, n: number, opts: { prefix: string; planTier: string }): Promise<string[]> {
  const rows = Array.from({ length: n }, (_, i) => {
    const id = uuidv7()
    return {
      id,
      slug: `${opts.prefix}-${i}`,
      name: `${opts.prefix} ${i}`,
      planTier: opts.planTier,
      status: 'active' as const,
      dbName: `bare_${id.replaceAll('-', '')}`,
      dbUrlEncrypted: 'v1.x.x.x.x',
      migrationStatus: 'current' as const,
    }
  })
  await app.host.db.insert(tenants).values(rows)
  return rows.map((r) => r.id)
}
