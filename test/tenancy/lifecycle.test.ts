import { and, eq } from 'drizzle-orm'
import { pino } from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { auditLogs, memberships, tenants, users } from '../../drizzle/host/schema.js'
import { createServices, type Services } from '../../src/services.js'
import { KIT_LIFECYCLE } from '../../src/features/index.js'
import { createTestEnv, type TestEnv } from '../helpers/test-env.js'

let env: TestEnv
let services: Services

beforeAll(async () => {
  env = await createTestEnv()
  services = createServices(env.config, pino({ level: 'silent' }))
})
afterAll(async () => {
  await services?.close()
  await env?.cleanup()
})

const databaseExists = async (dbName: string) => (await services.host.sql`select 1 from pg_database where datname = ${dbName}`).length === 1

const connectionsTo = async (dbName: string) =>
  (await services.host.sql`select count(*)::int as n from pg_stat_activity where datname = ${dbName}`)[0]?.n as number

async function auditActions(tenantId: string): Promise<string[]> {
  const rows = await services.host.db.select().from(auditLogs).where(eq(auditLogs.tenantId, tenantId)).orderBy(auditLogs.createdAt)
  return rows.map((r) => r.action)
}

/** Open the tenant's pool through the catalog and the pool manager, as a request would. */
async function touch(slug: string): Promise<number> {
  const record = await services.catalog.get(slug)
  if (!record) throw new Error(`no tenant ${slug}`)
  return services.pools.withTenant(record, async (db) => {
    const rows = await db.$client`select count(*)::int as n from core_settings`
    return rows[0]?.n as number
  })
}

describe('tenant lifecycle', () => {
  it('is one map of events to ordered steps', () => {
    expect(KIT_LIFECYCLE.events.created.steps).toEqual(['createDatabase', 'migrate', 'seedOwner', 'sendWelcomeEmail', 'activate'])
    expect(KIT_LIFECYCLE.events.hardDeleted.steps).toEqual(['cancelBilling', 'evictPools', 'dropDatabase', 'deleteCatalogRow'])
    // Restoring a soft delete restarts no billing (cancelBilling has no counterpart).
    expect(KIT_LIFECYCLE.events.restored).toMatchObject({ from: ['deleted'], done: ['active'], steps: ['markRestored'] })
  })

  it('suspends (closing pools) and resumes; the catalog cache follows every change', async () => {
    const t = await services.provisioner.provision({ slug: 'sleepy', name: 'Sleepy' })
    expect(await touch('sleepy')).toBe(1)
    expect(services.pools.stats().openPools).toBeGreaterThanOrEqual(1)
    expect((await services.catalog.get('sleepy'))?.status).toBe('active') // now cached

    expect(await services.provisioner.run('suspended', 'sleepy')).toBe('done')
    expect((await services.catalog.get('sleepy'))?.status).toBe('suspended')
    expect(services.pools.stats().openPools).toBe(0)
    // Done is done: a second suspend succeeds without writing anything (no second audit entry).
    const suspendedAt = (await services.provisioner.writes.get('sleepy')).updatedAt
    expect(await services.provisioner.run('suspended', 'sleepy')).toBe('already_done')
    expect((await services.provisioner.writes.get('sleepy')).updatedAt).toEqual(suspendedAt)

    expect(await services.provisioner.run('resumed', t.id)).toBe('done')
    expect((await services.catalog.get('sleepy'))?.status).toBe('active')
    expect(await services.provisioner.run('resumed', 'sleepy')).toBe('already_done')
    expect(await auditActions(t.id)).toEqual(['tenant.created', 'tenant.provisioned', 'tenant.suspended', 'tenant.resumed'])
    // A suspended tenant is past provisioning too: re-running a provisioning step there changes nothing.
    await services.provisioner.run('suspended', 'sleepy')
    expect(await services.provisioner.steps.activate(t.id)).toEqual({ outcome: 'already_done', status: 'suspended' })
    expect((await services.provisioner.describe('sleepy')).status).toBe('suspended')
    await services.provisioner.run('resumed', 'sleepy')
  })

  it('soft delete hides the tenant from the catalog and keeps its database', async () => {
    const t = await services.provisioner.provision({ slug: 'gone-soft', name: 'Soft' })
    await touch('gone-soft')
    await services.provisioner.run('softDeleted', 'gone-soft')
    expect(await services.catalog.get('gone-soft')).toBeUndefined()
    expect(await services.catalog.get(t.id)).toBeUndefined()
    const [row] = await services.host.db.select().from(tenants).where(eq(tenants.id, t.id))
    expect(row?.status).toBe('deleted')
    expect(row?.deletedAt).toBeInstanceOf(Date)
    expect(await databaseExists(t.dbName)).toBe(true)
    expect(services.pools.stats().openPools).toBe(0)
    await expect(services.provisioner.run('resumed', 'gone-soft')).rejects.toMatchObject({ code: 'INVALID_TRANSITION' })
    expect(await services.provisioner.run('softDeleted', 'gone-soft')).toBe('already_done')
    // A deleted tenant is not provisioned again by a leftover step job: a 409 the job treats as final.
    await expect(services.provisioner.steps.createDatabase(t.id)).rejects.toMatchObject({ statusCode: 409, code: 'INVALID_TRANSITION' })

    // A soft-deleted tenant can still be hard deleted.
    await services.provisioner.run('hardDeleted', 'gone-soft')
    expect(await databaseExists(t.dbName)).toBe(false)
    expect(await auditActions(t.id)).toEqual(['tenant.created', 'tenant.provisioned', 'tenant.deleted', 'tenant.hard_deleted'])
  })

  it('hard delete evicts pools, drops the database and removes the catalog row with its memberships', async () => {
    const [owner] = await services.host.db.insert(users).values({ email: 'owner@example.com' }).returning()
    const t = await services.provisioner.provision({ slug: 'gone-hard', name: 'Hard', ownerUserId: owner!.id })
    await touch('gone-hard')
    expect(await connectionsTo(t.dbName)).toBeGreaterThanOrEqual(1)

    await services.provisioner.run('hardDeleted', 'gone-hard', { actorUserId: owner!.id })
    expect(services.pools.stats().openPools).toBe(0)
    expect(await databaseExists(t.dbName)).toBe(false)
    expect(await services.provisioner.writes.find(t.id)).toBeUndefined()
    expect(await services.catalog.get('gone-hard')).toBeUndefined()
    expect(await services.host.db.select().from(memberships).where(eq(memberships.tenantId, t.id))).toEqual([])
    const [entry] = await services.host.db
      .select()
      .from(auditLogs)
      .where(and(eq(auditLogs.action, 'tenant.hard_deleted'), eq(auditLogs.tenantId, t.id)))
    expect(entry).toMatchObject({ tenantId: t.id, actorUserId: owner!.id, targetType: 'tenant', targetId: t.id })

    await expect(services.provisioner.run('hardDeleted', 'gone-hard')).rejects.toMatchObject({ statusCode: 404, code: 'TENANT_NOT_FOUND' })
    // The slug is free again.
    expect((await services.provisioner.provision({ slug: 'gone-hard', name: 'Again' })).status).toBe('active')
  })

  it('hard delete cleans up a failed provisioning whose database may not exist', async () => {
    await services.host.db.insert(tenants).values({
      slug: 'never-created',
      name: 'Never',
      status: 'failed',
      dbName: `${env.name}_never_created`,
      dbUrlEncrypted: 'v1.x.x.x.x',
      provisionStep: 'createDatabase',
      provisionError: 'createDatabase: boom',
    })
    await services.provisioner.run('hardDeleted', 'never-created')
    expect(await services.provisioner.writes.find('never-created')).toBeUndefined()
  })
})
