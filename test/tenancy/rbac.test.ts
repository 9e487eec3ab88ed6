/**
 * RBAC over HTTP: the minimum role of each route, per-user grants and denials, role changes taking
 * effect on the very next request (membership cache invalidated), the last-owner rule, and that a
 * member can't raise their own role by anything they send. Members are managed through /api/members;
 * they join by invitation (test/helpers/members.ts here; the flow itself: test/api/invitations.test.ts).
 */
import type { LightMyRequestResponse } from 'fastify'
import { randomBytes } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { joinTenant, markVerified } from '../helpers/members.js'
import { type Member, newMember, tenantWith } from '../helpers/tenant-fixtures.js'
import { useApp } from '../helpers/use-app.js'

// Dropping the file's many tenant databases takes a while on a loaded machine.
const ctx = useApp({}, { closeTimeoutMs: 180_000 })

const tag = () => randomBytes(3).toString('hex')

/** A global user with a logged-in client. */
const actor = (label: string) => newMember(ctx.app, label, { signIn: true })

/** A tenant owned by a fresh owner, plus members who joined (by invitation) with each role, and a 'seed' project. */
async function team() {
  const slug = `rbac-${tag()}`
  const t = await tenantWith(ctx.app, { slug, name: `RBAC ${slug}`, signIn: 'before-joining', project: 'seed' })
  /** Ownership the only way there is: offered by the owner, accepted by the admin (both verified). */
  const makeOwner = async (a: Member) => {
    await markVerified(ctx.app, t.owner.id)
    await markVerified(ctx.app, a.id)
    const offer = await t.as(t.owner).post(`/members/${a.id}/ownership-offer`)
    expect(offer.statusCode, offer.body).toBe(201)
    const accepted = await t.as(a).post(`/ownership-offers/${offer.json().id}/accept`)
    expect(accepted.statusCode, accepted.body).toBe(200)
  }
  return { ...t, api: t.as, makeOwner, projectId: t.projectId! }
}

const expectError = (res: LightMyRequestResponse, status: number, code: string) => {
  expect(res.statusCode, res.body).toBe(status)
  expect(res.json()).toMatchObject({ statusCode: status, code })
}

describe('route minimum roles', () => {
  it('viewer reads but cannot create, update or delete', async () => {
    const t = await team()
    const v = t.api(t.viewer)
    expect((await v.get('/projects')).statusCode).toBe(200)
    expect((await v.get(`/projects/${t.projectId}`)).statusCode).toBe(200)
    expect((await v.get('/tenant')).json()).toMatchObject({ role: 'viewer', membershipRole: 'member' })
    expectError(await v.post('/projects', { name: 'nope' }), 403, 'INSUFFICIENT_ROLE')
    expectError(await v.patch(`/projects/${t.projectId}`, { name: 'nope' }), 403, 'INSUFFICIENT_ROLE')
    expectError(await v.delete(`/projects/${t.projectId}`), 403, 'INSUFFICIENT_ROLE')
    expect((await v.get(`/projects/${t.projectId}`)).json().name).toBe('seed')
  })

  it('editor creates and updates but cannot delete; admin deletes', async () => {
    const t = await team()
    const e = t.api(t.editor)
    const created = await e.post('/projects', { name: 'by editor' })
    expect(created.statusCode).toBe(201)
    expect(created.json().createdBy).toBe(t.editor.id)
    const id = created.json().id
    expect((await e.patch(`/projects/${id}`, { status: 'archived' })).json()).toMatchObject({ status: 'archived' })
    expectError(await e.delete(`/projects/${id}`), 403, 'INSUFFICIENT_ROLE')
    expect((await t.api(t.admin).get('/tenant')).json()).toMatchObject({ role: 'admin', membershipRole: 'admin' })
    expect((await t.api(t.admin).delete(`/projects/${id}`)).statusCode).toBe(204)
    expectError(await e.get(`/projects/${id}`), 404, 'PROJECT_NOT_FOUND')
  })

  it('an owner is always admin, whatever their local role and even with a denial', async () => {
    const t = await team()
    const o = t.api(t.owner)
    // Demote the owner's tenant-local role and deny them deletes: neither applies to an owner.
    expect((await o.patch(`/members/${t.owner.id}`, { localRole: 'viewer' })).json()).toMatchObject({
      role: 'owner',
      localRole: 'viewer',
      effectiveRole: 'admin',
    })
    expect((await o.put(`/members/${t.owner.id}/permissions`, { resource: 'projects', action: 'delete', granted: false })).statusCode).toBe(
      200,
    )
    expect((await o.get('/tenant')).json()).toMatchObject({ role: 'admin', membershipRole: 'owner' })
    expect((await o.delete(`/projects/${t.projectId}`)).statusCode).toBe(204)
  })
})

describe('per-user permissions', () => {
  it('a grant lets a viewer edit; removing it restores the role default', async () => {
    const t = await team()
    const v = t.api(t.viewer)
    expectError(await v.post('/projects', { name: 'x' }), 403, 'INSUFFICIENT_ROLE')
    const grant = await t.api(t.admin).put(`/members/${t.viewer.id}/permissions`, { resource: 'projects', action: 'edit', granted: true })
    expect(grant.json()).toEqual({ userId: t.viewer.id, resource: 'projects', action: 'edit', granted: true })
    expect((await v.post('/projects', { name: 'granted' })).statusCode).toBe(201)
    expect((await v.patch(`/projects/${t.projectId}`, { description: 'by viewer' })).statusCode).toBe(200)
    // The grant is for edit only: delete still needs admin.
    expectError(await v.delete(`/projects/${t.projectId}`), 403, 'INSUFFICIENT_ROLE')
    const listed = (await v.get('/members')).json().items.find((m: { userId: string }) => m.userId === t.viewer.id)
    expect(listed).toMatchObject({
      localRole: 'viewer',
      effectiveRole: 'viewer',
      permissions: [{ resource: 'projects', action: 'edit', granted: true }],
    })

    expect((await t.api(t.admin).delete(`/members/${t.viewer.id}/permissions/projects/edit`)).statusCode).toBe(204)
    expectError(await v.post('/projects', { name: 'x' }), 403, 'INSUFFICIENT_ROLE')
    expectError(await t.api(t.admin).delete(`/members/${t.viewer.id}/permissions/projects/edit`), 404, 'PERMISSION_NOT_FOUND')
  })

  it('an explicit denial blocks an editor from what their role allows', async () => {
    const t = await team()
    const e = t.api(t.editor)
    expect(
      (await t.api(t.owner).put(`/members/${t.editor.id}/permissions`, { resource: 'projects', action: 'edit', granted: false }))
        .statusCode,
    ).toBe(200)
    expectError(await e.post('/projects', { name: 'x' }), 403, 'INSUFFICIENT_ROLE')
    expectError(await e.patch(`/projects/${t.projectId}`, { name: 'x' }), 403, 'INSUFFICIENT_ROLE')
    expect((await e.get('/projects')).statusCode).toBe(200)
    // Flip it to a grant in place (one row per resource × action).
    expect(
      (await t.api(t.owner).put(`/members/${t.editor.id}/permissions`, { resource: 'projects', action: 'edit', granted: true })).statusCode,
    ).toBe(200)
    expect((await e.post('/projects', { name: 'allowed again' })).statusCode).toBe(201)
    const rows = await ctx.app.tenancy.pools.withTenant(
      (await ctx.app.tenancy.catalog.get(t.tenant.id))!,
      (db) =>
        db.$client`select p.granted from core_permissions p join core_tenant_users u on u.id = p.tenant_user_id where u.global_user_id = ${t.editor.id}`,
    )
    expect(rows).toEqual([{ granted: true }])
  })
})

describe('role changes', () => {
  it('take effect on the next request (membership cache invalidated)', async () => {
    const t = await team()
    const v = t.api(t.viewer)
    const a = t.api(t.admin)
    // Warm the caches with the old role first.
    expectError(await v.post('/projects', { name: 'x' }), 403, 'INSUFFICIENT_ROLE')

    expect((await a.patch(`/members/${t.viewer.id}`, { localRole: 'editor' })).json()).toMatchObject({
      localRole: 'editor',
      effectiveRole: 'editor',
    })
    expect((await v.post('/projects', { name: 'now an editor' })).statusCode).toBe(201)
    expectError(await v.delete(`/projects/${t.projectId}`), 403, 'INSUFFICIENT_ROLE')

    expect((await a.patch(`/members/${t.viewer.id}`, { role: 'admin' })).json()).toMatchObject({ role: 'admin', effectiveRole: 'admin' })
    expect((await v.get('/tenant')).json()).toMatchObject({ role: 'admin', membershipRole: 'admin' })
    expect((await v.get('/members')).statusCode).toBe(200)

    expect((await a.patch(`/members/${t.viewer.id}`, { role: 'member', localRole: 'viewer' })).json()).toMatchObject({
      role: 'member',
      effectiveRole: 'viewer',
    })
    expectError(await v.post('/projects', { name: 'x' }), 403, 'INSUFFICIENT_ROLE')

    // Removal: the very next request no longer finds the tenant.
    expect((await a.delete(`/members/${t.viewer.id}`)).statusCode).toBe(204)
    expectError(await v.get('/projects'), 404, 'TENANT_NOT_FOUND')
    expectError(await v.get('/tenant'), 404, 'TENANT_NOT_FOUND')
  })

  it('writes the audit log for every membership change', async () => {
    const t = await team()
    await t.api(t.admin).patch(`/members/${t.viewer.id}`, { localRole: 'editor' })
    await t.api(t.admin).put(`/members/${t.viewer.id}/permissions`, { resource: 'projects', action: 'delete', granted: true })
    await t.api(t.admin).delete(`/members/${t.viewer.id}/permissions/projects/delete`)
    await t.api(t.admin).delete(`/members/${t.viewer.id}`)
    await t.api(t.editor).delete(`/members/${t.editor.id}`)
    const rows = await ctx.app.host.sql<{ action: string; actor_user_id: string; target_id: string; ip: string | null }[]>`
      select action, actor_user_id, target_id, ip from sys_audit_logs where tenant_id = ${t.tenant.id} and action like 'member.%' order by created_at, id`
    expect(rows.map((r) => [r.action, r.actor_user_id, r.target_id])).toEqual([
      // (Joining is audited as invitation.accepted: test/api/invitations.test.ts.)
      ['member.updated', t.admin.id, t.viewer.id],
      ['member.permission_set', t.admin.id, t.viewer.id],
      ['member.permission_removed', t.admin.id, t.viewer.id],
      ['member.removed', t.admin.id, t.viewer.id],
      ['member.left', t.editor.id, t.editor.id],
    ])
    expect(rows.every((r) => r.ip)).toBe(true)
  })
})

describe('owners', () => {
  it('the last owner can be neither demoted nor removed', async () => {
    const t = await team()
    const o = t.api(t.owner)
    expectError(await o.patch(`/members/${t.owner.id}`, { role: 'admin' }), 403, 'LAST_OWNER')
    expectError(await o.patch(`/members/${t.owner.id}`, { role: 'member', localRole: 'viewer' }), 403, 'LAST_OWNER')
    expectError(await o.delete(`/members/${t.owner.id}`), 403, 'LAST_OWNER')
    // The refused change rolled back both halves: still owner, local role untouched.
    const me = (await o.get('/members')).json().items.find((m: { userId: string }) => m.userId === t.owner.id)
    expect(me).toMatchObject({ role: 'owner', localRole: 'admin' })
    expect((await o.get('/tenant')).json()).toMatchObject({ membershipRole: 'owner' })
  })

  it('only an owner offers or revokes ownership, never by PATCH; with two owners one may step down', async () => {
    const t = await team()
    const a = t.api(t.admin)
    expectError(await a.patch(`/members/${t.owner.id}`, { role: 'admin' }), 403, 'INSUFFICIENT_ROLE')
    expectError(await a.delete(`/members/${t.owner.id}`), 403, 'INSUFFICIENT_ROLE')
    expectError(await a.patch(`/members/${t.editor.id}`, { role: 'owner' }), 403, 'INSUFFICIENT_ROLE')
    expectError(await t.api(t.owner).patch(`/members/${t.admin.id}`, { role: 'owner' }), 403, 'OWNERSHIP_NEEDS_ACCEPTANCE')

    await t.makeOwner(t.admin)
    // The admin was told by email (the email.send job; its record is written in batches, so poll).
    const offerMails = () =>
      ctx.app.host
        .sql`select payload from sys_jobs where job_type = 'email.send' and payload->>'template' = 'ownership_offer' and payload->>'to' = ${t.admin.email}`
    await expect.poll(async () => (await offerMails()).length, { timeout: 10_000 }).toBe(1)
    expect((await offerMails())[0]!.payload.variables).toMatchObject({
      tenant_name: t.tenant.name,
      offer_url: expect.stringContaining('/ownership-offers/'),
    })
    expect((await a.get('/tenant')).json()).toMatchObject({ membershipRole: 'owner' })
    expect((await t.api(t.owner).patch(`/members/${t.owner.id}`, { role: 'admin' })).json()).toMatchObject({ role: 'admin' })
    // Now the promoted admin is the last owner.
    expectError(await a.delete(`/members/${t.admin.id}`), 403, 'LAST_OWNER')
    expectError(await t.api(t.owner).patch(`/members/${t.admin.id}`, { role: 'member' }), 403, 'INSUFFICIENT_ROLE')
    expect((await a.get('/tenant')).json()).toMatchObject({ membershipRole: 'owner' })
  })
})

describe('owners, concurrently', () => {
  it('two owners demoting each other (or themselves) at once: exactly one succeeds, one owner remains', async () => {
    for (const mode of ['each other', 'themselves'] as const) {
      const t = await team()
      await t.makeOwner(t.admin)
      const [x, y] = [t.owner, t.admin]
      const results = await Promise.all([
        t.api(x).patch(`/members/${mode === 'each other' ? y.id : x.id}`, { role: 'admin' }),
        t.api(y).patch(`/members/${mode === 'each other' ? x.id : y.id}`, { role: 'admin' }),
      ])
      const codes = results.map((r) => r.statusCode).sort()
      expect(codes, results.map((r) => r.body).join(' | ')).toEqual([200, 403])
      expect(results.find((r) => r.statusCode === 403)!.json()).toMatchObject({
        code: expect.stringMatching(/^(LAST_OWNER|INSUFFICIENT_ROLE)$/),
      })
      const owners = await ctx.app.host.sql`select user_id from core_memberships where tenant_id = ${t.tenant.id} and role = 'owner'`
      expect(owners, mode).toHaveLength(1)
    }
  })
})

describe('no self-escalation', () => {
  it('ignores roles the client claims and refuses members changing their own role', async () => {
    const t = await team()
    const v = t.api(t.viewer)
    const claims = { 'x-role': 'admin', 'x-user-role': 'owner', 'x-tenant-role': 'admin', 'x-membership-role': 'owner' }
    expectError(await v.post('/projects', { name: 'x' }, claims), 403, 'INSUFFICIENT_ROLE')
    expectError(await v.delete(`/projects/${t.projectId}`), 403, 'INSUFFICIENT_ROLE')
    expect((await v.get('/tenant', claims)).json()).toMatchObject({ role: 'viewer', membershipRole: 'member' })
    // Authorization runs before validation, so the viewer learns nothing about the body's shape...
    expectError(await v.post('/projects', { name: 'x', role: 'admin' }), 403, 'INSUFFICIENT_ROLE')
    // ...and for someone allowed to write, role fields in bodies are unknown fields, not instructions.
    expectError(await t.api(t.editor).post('/projects', { name: 'x', role: 'admin' }), 400, 'VALIDATION_ERROR')
    expectError(await v.patch(`/members/${t.viewer.id}`, { localRole: 'admin' }), 403, 'INSUFFICIENT_ROLE')
    expectError(await v.patch(`/members/${t.viewer.id}`, { role: 'owner' }), 403, 'INSUFFICIENT_ROLE')
    expectError(
      await v.put(`/members/${t.viewer.id}/permissions`, { resource: 'projects', action: 'edit', granted: true }),
      403,
      'INSUFFICIENT_ROLE',
    )
    expectError(await v.post('/members', { email: t.viewer.email, role: 'admin' }), 403, 'INSUFFICIENT_ROLE')
    // An editor can't either, nor can they remove someone else.
    expectError(await t.api(t.editor).patch(`/members/${t.editor.id}`, { localRole: 'admin' }), 403, 'INSUFFICIENT_ROLE')
    expectError(await t.api(t.editor).delete(`/members/${t.viewer.id}`), 403, 'INSUFFICIENT_ROLE')
    // An admin can't make themself owner.
    expectError(await t.api(t.admin).patch(`/members/${t.admin.id}`, { role: 'owner' }), 403, 'INSUFFICIENT_ROLE')

    const roles = Object.fromEntries(
      (await v.get('/members'))
        .json()
        .items.map((m: { userId: string; role: string; effectiveRole: string }) => [m.userId, [m.role, m.effectiveRole]]),
    )
    expect(roles).toEqual({
      [t.owner.id]: ['owner', 'admin'],
      [t.admin.id]: ['admin', 'admin'],
      [t.editor.id]: ['member', 'editor'],
      [t.viewer.id]: ['member', 'viewer'],
    })
  })
})

describe('/api/members', () => {
  it('lists members with both halves, paginated', async () => {
    const t = await team()
    const page1 = await t.api(t.viewer).get('/members?limit=3')
    expect(page1.statusCode).toBe(200)
    const { items, nextCursor } = page1.json()
    expect(items.map((m: { userId: string }) => m.userId)).toEqual([t.owner.id, t.admin.id, t.editor.id])
    expect(items[2]).toEqual({
      userId: t.editor.id,
      email: t.editor.email,
      name: 'editor',
      role: 'member',
      status: 'active',
      localRole: 'editor',
      effectiveRole: 'editor',
      permissions: [],
      joinedAt: expect.any(String),
    })
    const page2 = (await t.api(t.viewer).get(`/members?limit=3&cursor=${nextCursor}`)).json()
    expect(page2).toEqual({ items: [expect.objectContaining({ userId: t.viewer.id, localRole: 'viewer' })], nextCursor: null })
  })

  it('adds nobody directly (POST invites), and answers 4xx for everything else', async () => {
    const t = await team()
    const o = t.api(t.owner)
    await markVerified(ctx.app, t.owner.id)
    // POST /api/members is an invitation now, for any address (no USER_NOT_FOUND oracle).
    expect((await o.post('/members', { email: 'nobody-here@example.com', role: 'member' })).json()).toMatchObject({ state: 'pending' })
    expectError(await o.post('/members', { email: t.editor.email.toUpperCase(), role: 'admin', localRole: 'admin' }), 409, 'ALREADY_MEMBER')
    // The refused duplicate didn't touch the tenant-side row.
    expect((await o.get('/members')).json().items.find((m: { userId: string }) => m.userId === t.editor.id)).toMatchObject({
      role: 'member',
      localRole: 'editor',
    })
    expectError(await o.post('/members', { email: t.editor.email, role: 'owner' }), 400, 'VALIDATION_ERROR')
    expectError(await o.post('/members', { email: 'not-an-email', role: 'member' }), 400, 'VALIDATION_ERROR')
    expectError(await o.post('/members', { email: t.editor.email, role: 'member', extra: 1 }), 400, 'VALIDATION_ERROR')
    expectError(await o.patch(`/members/${t.editor.id}`, {}), 400, 'VALIDATION_ERROR')
    expectError(await o.patch(`/members/${t.editor.id}`, { localRole: 'superuser' }), 400, 'VALIDATION_ERROR')
    expectError(await o.patch('/members/not-a-uuid', { localRole: 'viewer' }), 400, 'VALIDATION_ERROR')
    const stranger = await actor('stranger')
    expectError(await o.patch(`/members/${stranger.id}`, { localRole: 'viewer' }), 404, 'MEMBER_NOT_FOUND')
    expectError(await o.delete(`/members/${stranger.id}`), 404, 'MEMBER_NOT_FOUND')
    expectError(
      await o.put(`/members/${stranger.id}/permissions`, { resource: 'projects', action: 'edit', granted: true }),
      404,
      'MEMBER_NOT_FOUND',
    )
    expectError(
      await o.put(`/members/${t.editor.id}/permissions`, { resource: 'Projects!', action: 'edit', granted: true }),
      400,
      'VALIDATION_ERROR',
    )
    expectError(
      await o.put(`/members/${t.editor.id}/permissions`, { resource: 'projects', action: 'edit', granted: 'yes' }),
      400,
      'VALIDATION_ERROR',
    )
    // Only the resource × action pairs the features declare (services.permissions).
    for (const [resource, action] of [['reports', 'export'], ['projects', 'manage'], ['api_keys', 'view']]) {
      expectError(await o.put(`/members/${t.editor.id}/permissions`, { resource, action, granted: true }), 400, 'VALIDATION_ERROR')
    }

    // Invited as a member without a local role: viewer, once they accept (and not before).
    const invited = await o.post('/members', { email: stranger.email, role: 'member' })
    expect(invited.statusCode).toBe(201)
    expect(invited.json()).toMatchObject({ email: stranger.email, role: 'member', localRole: 'viewer', state: 'pending' })
    expectError(await stranger.c.get('/api/projects', { 'x-tenant-id': t.slug }), 404, 'TENANT_NOT_FOUND')
    expectError(await o.patch(`/members/${stranger.id}`, { localRole: 'editor' }), 404, 'MEMBER_NOT_FOUND')
  })

  it('lets any member leave; leaving clears the session active tenant and removes the tenant user', async () => {
    const t = await team()
    expect((await t.viewer.c.put('/me/active-tenant', { tenant: t.slug })).statusCode).toBe(200)
    expect((await t.viewer.c.get('/api/tenant')).statusCode).toBe(200)
    expect((await t.viewer.c.delete(`/api/members/${t.viewer.id}`)).statusCode).toBe(204)
    expectError(await t.viewer.c.get('/api/tenant'), 400, 'TENANT_REQUIRED')
    expectError(await t.viewer.c.get('/api/tenant', { 'x-tenant-id': t.slug }), 404, 'TENANT_NOT_FOUND')
    const rows = await ctx.app.tenancy.pools.withTenant(
      (await ctx.app.tenancy.catalog.get(t.tenant.id))!,
      (db) => db.$client`select 1 from core_tenant_users where global_user_id = ${t.viewer.id}`,
    )
    expect(rows).toHaveLength(0)
    // Re-invited later, they start from the role given now, with no leftover grants.
    await joinTenant(ctx.app, t.tenant.id, t.viewer, 'member', 'editor')
    expect((await t.api(t.owner).get('/members')).json().items.find((m: { userId: string }) => m.userId === t.viewer.id)).toMatchObject({
      localRole: 'editor',
      permissions: [],
    })
  })
})
