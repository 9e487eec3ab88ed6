/**
 * The plan's storageMb limit, checked when a project is created: a tenant with its own database is measured
 * by pg_database_size, a shared-isolation tenant by the size of its own rows (another tenant's rows in the
 * same shared database don't count). 403 LIMIT_REACHED with limit, resource and usedMb; a plan without the
 * limit lifts it at once.
 */
import { randomBytes } from 'node:crypto'
import { beforeAll, describe, expect, it } from 'vitest'
import { projects } from '../../drizzle/tenant/schema.js'
import { type PlanSeed, seedPlans } from '../../src/features/billing/plans.js'
import { platformAdmin, ua } from '../admin/helpers.js'
import { SHARED } from '../helpers/env.js'
import { type Member, newMember, tenantApi, tenantWith } from '../helpers/tenant-fixtures.js'
import { useApp } from '../helpers/use-app.js'

const ctx = useApp({ ...SHARED, TENANT_ISOLATION: 'database' })
const plan = (key: string, tierLevel: number, storageMb: number | null): PlanSeed => ({
  key,
  name: key,
  amountMonthly: 0,
  amountYearly: 0,
  currency: 'usd',
  trialDays: 0,
  features: ['projects', 'members'],
  limits: { storageMb },
  tierLevel,
  sortOrder: tierLevel,
})
let ops: Member

beforeAll(async () => {
  await seedPlans(ctx.app.host.db, [plan('free', 0, 1), plan('roomy', 1, null)])
  ops = await platformAdmin(ctx.app)
})

const comp = (tenantId: string, planKey: string | null) => ops.c.post(`/admin/api/tenants/${tenantId}/plan`, { planKey }, ua)

async function sharedTenant(label: string) {
  const owner = await newMember(ctx.app, label)
  const tenant = await ctx.app.services.provisioner.provision({ slug: `${label}-${process.pid}`, name: label, ownerUserId: owner.id, isolation: 'shared' })
  expect(tenant.isolation).toBe('shared')
  await owner.signIn()
  return { id: tenant.id, api: tenantApi(owner, tenant.slug) }
}

describe('storageMb', () => {
  it('own database: pg_database_size past the limit refuses new projects; a plan without it allows them', async () => {
    const t = await tenantWith(ctx.app) // a fresh tenant database is ~8 MB: past 1 MB
    const refused = await t.as(t.editor).post('/projects', { name: 'one' })
    expect(refused.statusCode).toBe(403)
    expect(refused.json()).toMatchObject({ statusCode: 403, code: 'LIMIT_REACHED', limit: 1, resource: 'storageMb', plan: 'free' })
    expect(refused.json().usedMb).toBeGreaterThan(1)
    // An import too, before its upload is stored.
    const imported = await t.editor.c.request({
      method: 'POST',
      url: '/api/projects/import',
      headers: { 'x-tenant-id': t.slug, 'content-type': 'application/x-ndjson' },
      payload: '{"name":"from a file"}\n',
    })
    expect(imported.statusCode).toBe(403)
    expect(imported.json()).toMatchObject({ code: 'LIMIT_REACHED', resource: 'storageMb' })
    expect((await comp(t.id, 'roomy')).statusCode).toBe(200)
    expect((await t.as(t.editor).post('/projects', { name: 'one' })).statusCode).toBe(201)
  })

  it('shared isolation: only the tenant’s own rows count', async () => {
    const big = await sharedTenant('storage-big')
    const small = await sharedTenant('storage-small')
    // 1.5 MB of incompressible text in one row of the big tenant, written through its own (RLS-scoped) handle.
    const record = await ctx.app.services.catalog.get(big.id)
    await ctx.app.services.pools.withTenant(record!, (db) =>
      db.insert(projects).values({ name: 'bulky', description: randomBytes(1_200_000).toString('base64') }),
    )
    const refused = await big.api.post('/projects', { name: 'more' })
    expect(refused.statusCode).toBe(403)
    expect(refused.json()).toMatchObject({ code: 'LIMIT_REACHED', limit: 1, resource: 'storageMb' })
    expect(refused.json().usedMb).toBeGreaterThanOrEqual(1)
    // Same shared database, its own rows only: far under the limit.
    expect((await small.api.post('/projects', { name: 'tiny' })).statusCode).toBe(201)
  })
})
