/**
 * GET /api/audit-logs: a tenant's own audit entries for its admins (never another tenant's), cursor pages,
 * and the JSON lines export gated by the plan's audit_log_export feature (403 FEATURE_NOT_IN_PLAN).
 */
import { beforeAll, describe, expect, it } from 'vitest'
import { auditLogs } from '../../drizzle/host/schema.js'
import { type PlanSeed, seedPlans } from '../../src/features/billing/plans.js'
import { platformAdmin, ua } from '../admin/helpers.js'
import { type Member, type TenantFixture, tenantWith } from '../helpers/tenant-fixtures.js'
import { useApp } from '../helpers/use-app.js'

const ctx = useApp()
const plan = (key: string, tierLevel: number, features: string[]): PlanSeed => ({
  key,
  name: key,
  amountMonthly: 0,
  amountYearly: 0,
  currency: 'usd',
  trialDays: 0,
  features,
  limits: {},
  tierLevel,
  sortOrder: tierLevel,
})
let ops: Member
let t: TenantFixture
let other: TenantFixture

beforeAll(async () => {
  await seedPlans(ctx.app.host.db, [plan('free', 0, ['projects', 'members']), plan('ent', 2, ['projects', 'members', 'audit_log_export'])])
  ops = await platformAdmin(ctx.app)
  t = await tenantWith(ctx.app)
  other = await tenantWith(ctx.app)
  const row = (tenantId: string, action: string, n: number) => ({ tenantId, action, actorUserId: t.owner.id, metadata: { n } })
  await ctx.app.host.db
    .insert(auditLogs)
    .values([row(t.id, 'project.note', 1), row(t.id, 'project.note', 2), row(t.id, 'member.note', 3), row(other.id, 'project.note', 99)])
})

const comp = (tenantId: string, planKey: string | null) => ops.c.post(`/admin/api/tenants/${tenantId}/plan`, { planKey }, ua)
type Entry = { action: string; metadata: { n?: number } }

describe('GET /api/audit-logs', () => {
  it('pages the tenant’s own entries newest first, filtered by action prefix; never another tenant’s', async () => {
    const first = await t.as(t.admin).get('/audit-logs?action=project.&limit=1')
    expect(first.statusCode, first.body).toBe(200)
    expect(first.json().items.map((e: Entry) => e.metadata.n)).toEqual([2])
    const second = (await t.as(t.admin).get(`/audit-logs?action=project.&limit=1&cursor=${first.json().nextCursor}`)).json()
    expect(second.items.map((e: Entry) => e.metadata.n)).toEqual([1])
    expect(second.nextCursor).toBeNull()
    const all = (await t.as(t.owner).get('/audit-logs?limit=200')).json().items as Entry[]
    expect(all.some((e) => e.metadata.n === 3)).toBe(true)
    expect(all.some((e) => e.metadata.n === 99)).toBe(false)
  })

  it('members below admin get 403; bad input 400', async () => {
    for (const who of [t.editor, t.viewer]) {
      const res = await t.as(who).get('/audit-logs')
      expect(res.statusCode).toBe(403)
      expect(res.json()).toMatchObject({ code: 'INSUFFICIENT_ROLE' })
    }
    for (const q of ['limit=0', 'cursor=x', 'format=xml', 'other=1', 'since=2026-02-01T00:00:00Z&until=2026-01-01T00:00:00Z']) {
      const res = await t.as(t.admin).get(`/audit-logs?${q}`)
      expect(res.statusCode, q).toBe(400)
    }
  })

  it('?format=jsonl needs the plan’s audit_log_export (403 FEATURE_NOT_IN_PLAN), then streams every entry and is audited', async () => {
    const refused = await t.as(t.admin).get('/audit-logs?format=jsonl')
    expect(refused.statusCode).toBe(403)
    expect(refused.json()).toMatchObject({ code: 'FEATURE_NOT_IN_PLAN', feature: 'audit_log_export', plan: 'free' })
    // Gated before validation: a refused caller learns nothing from a 400.
    expect((await t.as(t.admin).get('/audit-logs?format=jsonl&limit=0')).statusCode).toBe(403)

    expect((await comp(t.id, 'ent')).statusCode).toBe(200)
    const res = await t.as(t.admin).get('/audit-logs?format=jsonl&action=project.')
    expect(res.statusCode, res.body).toBe(200)
    expect(res.headers['content-type']).toMatch(/^application\/x-ndjson/)
    const lines = res.body.trim().split('\n').map((l) => JSON.parse(l) as Entry)
    expect(lines.map((e) => e.metadata.n)).toEqual([2, 1])
    const exported = (await t.as(t.admin).get('/audit-logs?action=audit_log.exported')).json().items
    expect(exported).toHaveLength(1)
    expect(exported[0]).toMatchObject({ actorUserId: t.admin.id })
  })
})
