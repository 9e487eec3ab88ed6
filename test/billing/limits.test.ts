/**
 * Plan limits where the resource is created (403 LIMIT_REACHED with limit and resource) and api_access
 * for API keys (creating one, and every request made with one). Plans here are tiny on purpose.
 */
import { beforeAll, describe, expect, it } from 'vitest'
import { createInvitationsRepository } from '../../src/features/members/invitations/repository.js'
import { type PlanSeed, seedPlans } from '../../src/features/billing/plans.js'
import { platformAdmin, ua } from '../admin/helpers.js'
import { type Member, newMember, tenantWith } from '../helpers/tenant-fixtures.js'
import { useApp } from '../helpers/use-app.js'

const ctx = useApp()
const plan = (key: string, tierLevel: number, features: string[], limits: PlanSeed['limits']): PlanSeed => ({
  key,
  name: key,
  amountMonthly: 0,
  amountYearly: 0,
  currency: 'usd',
  trialDays: 0,
  features,
  limits,
  tierLevel,
  sortOrder: tierLevel,
})
let ops: Member

beforeAll(async () => {
  await seedPlans(ctx.app.host.db, [
    plan('free', 0, ['projects', 'members', 'api_access'], { members: 5, projects: 2, apiKeys: 1 }),
    plan('nokeys', 1, ['projects', 'members'], { members: null, projects: null, apiKeys: null }),
  ])
  ops = await platformAdmin(ctx.app)
})

const limitReached = (limit: number, resource: string) => ({ statusCode: 403, code: 'LIMIT_REACHED', limit, resource, plan: 'free' })
const comp = (tenantId: string, planKey: string | null) => ops.c.post(`/admin/api/tenants/${tenantId}/plan`, { planKey }, ua)

describe('plan limits', () => {
  it('projects: POST /api/projects past the plan’s projects', async () => {
    const t = await tenantWith(ctx.app)
    for (const name of ['one', 'two']) expect((await t.as(t.editor).post('/projects', { name })).statusCode).toBe(201)
    const refused = await t.as(t.editor).post('/projects', { name: 'three' })
    expect(refused.statusCode).toBe(403)
    expect(refused.json()).toMatchObject(limitReached(2, 'projects'))
    // A comp without that limit lifts it at once.
    expect((await comp(t.id, 'nokeys')).statusCode).toBe(200)
    expect((await t.as(t.editor).post('/projects', { name: 'three' })).statusCode).toBe(201)
  })

  it('API keys: live keys count (a revoked one frees its place)', async () => {
    const t = await tenantWith(ctx.app, { verified: true })
    const first = await t.as(t.admin).post('/api-keys', { name: 'ci', role: 'viewer' })
    expect(first.statusCode).toBe(201)
    const refused = await t.as(t.admin).post('/api-keys', { name: 'cd', role: 'viewer' })
    expect(refused.statusCode).toBe(403)
    expect(refused.json()).toMatchObject(limitReached(1, 'apiKeys'))
    expect((await t.as(t.admin).delete(`/api-keys/${first.json().id}`)).statusCode).toBe(204)
    expect((await t.as(t.admin).post('/api-keys', { name: 'cd', role: 'viewer' })).statusCode).toBe(201)
  })

  it('members: inviting counts members and open invitations; accepting counts members', async () => {
    const t = await tenantWith(ctx.app, { verified: true }) // owner, admin, editor, viewer: 4 of 5
    const invite = (email: string) => t.as(t.admin).post('/invitations', { email, role: 'member' })
    expect((await invite('fifth@example.com')).statusCode).toBe(201)
    const refused = await invite('sixth@example.com')
    expect(refused.statusCode).toBe(403)
    expect(refused.json()).toMatchObject(limitReached(5, 'members'))

    // Invitations made before (here: behind the route's back) cannot take a seat that is gone.
    const repo = createInvitationsRepository(ctx.app.host.db)
    const late = await newMember(ctx.app, 'late', { verified: true, signIn: true })
    const early = await newMember(ctx.app, 'early', { verified: true, signIn: true })
    const tokens = []
    for (const who of [early, late]) tokens.push((await repo.create({ tenantId: t.id, email: who.email, role: 'member', localRole: 'viewer', invitedBy: null })).token)
    expect((await early.c.post(`/invitations/${tokens[0]}/accept`)).statusCode).toBe(200)
    const full = await late.c.post(`/invitations/${tokens[1]}/accept`)
    expect(full.statusCode).toBe(403)
    expect(full.json()).toMatchObject(limitReached(5, 'members'))
    const [open] = await ctx.app.host.sql`select accepted_at from core_invitations where email = ${late.email}`
    expect(open!.accepted_at).toBeNull() // still open: it works once a seat is free
  })
})

describe('api_access', () => {
  it('a plan without it refuses creating keys and every request made with one; regaining it brings the keys back', async () => {
    const t = await tenantWith(ctx.app, { verified: true })
    const key = (await t.as(t.admin).post('/api-keys', { name: 'ci', role: 'viewer' })).json().secret as string
    const withKey = () => ctx.app.inject({ method: 'GET', url: '/api/projects', headers: { authorization: `Bearer ${key}` } })
    expect((await withKey()).statusCode).toBe(200)

    expect((await comp(t.id, 'nokeys')).statusCode).toBe(200)
    const refused = await withKey()
    expect(refused.statusCode).toBe(403)
    expect(refused.json()).toMatchObject({ code: 'FEATURE_NOT_IN_PLAN', feature: 'api_access', plan: 'nokeys' })
    const create = await t.as(t.admin).post('/api-keys', { name: 'cd', role: 'viewer' })
    expect(create.statusCode).toBe(403)
    expect(create.json()).toMatchObject({ code: 'FEATURE_NOT_IN_PLAN', feature: 'api_access' })
    // People keep working: only keys need the feature.
    expect((await t.as(t.viewer).get('/projects')).statusCode).toBe(200)

    expect((await comp(t.id, null)).statusCode).toBe(200)
    expect((await withKey()).statusCode).toBe(200)
  })
})
