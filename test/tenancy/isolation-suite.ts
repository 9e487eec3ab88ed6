/**
 * The isolation suite. Three live tenants (A, B, C) plus one suspended, one still provisioning, one
 * failed and one soft-deleted; users with every role in A and B, one user in both A and B with
 * different roles, an invited (not yet active) member, a user with a pending invitation (not accepted, so
 * no membership), a user in no tenant, and no session at all. Every tenant route × every
 * (user, target tenant) × every way of naming the tenant (X-Tenant-ID by slug and by id, /t/:tenant/api
 * by slug and by id, subdomain, session active tenant, nothing) is requested, and each response must
 * have exactly the status and code an oracle derives from the issue's rules, and must carry no other
 * tenant's ids, names, project names or member ids (error responses: no tenant's at all).
 * API keys are callers of the matrix too (src/core/identity/api-keys.ts): keys of A, B, a suspended tenant and a
 * revoked one, each sent beside another user's session cookie (which must play no part). A key speaks
 * for its own tenant only (naming another: 404), as its creator at min(key role, creator's role), and
 * with nothing named (or only the session's active tenant) its own tenant answers.
 * People-management routes (members' writes, invitations, ownership offers) refuse every key (403
 * API_KEY_NOT_ALLOWED); invitations and offers of another tenant are 404 through this one.
 * Then hundreds of concurrent requests for different tenants, interleaved, each seeing only its own data.
 */
import { randomBytes } from 'node:crypto'
import type { LightMyRequestResponse } from 'fastify'
import { uuidv7 } from 'uuidv7'
import { beforeAll, describe, expect, it } from 'vitest'
import type { MembershipRole } from '../../drizzle/host/schema.js'
import { projects } from '../../drizzle/tenant/schema.js'
import { hashPassword } from '../../src/core/identity/password.js'
import { createInvitationsRepository } from '../../src/features/members/invitations/repository.js'
import { ROLE_LEVEL, type Role } from '../../src/core/tenancy/rbac.js'
import { type Client, createClient, PASSWORD } from '../helpers/client.js'
import { joinTenant, markVerified } from '../helpers/members.js'
import type { TenantIsolation } from '../../drizzle/host/schema.js'
import { SHARED } from '../helpers/env.js'
import { type AppHandle, useApp } from '../helpers/use-app.js'

const SUFFIX = 'tenants.test'
let ctx: AppHandle
const METHODS = ['header-slug', 'header-id', 'path-slug', 'path-id', 'subdomain', 'session'] as const
type Method = (typeof METHODS)[number] | 'none'
type Status = 'active' | 'suspended' | 'provisioning' | 'failed' | 'deleted' | 'unknown'

interface Member {
  role: MembershipRole
  localRole: Role
  /** Only 'active' memberships enter; an invited user is not in yet. */
  status?: 'invited'
}
interface TenantFx {
  key: string
  id: string
  slug: string
  tok: string
  status: Status
  /** Seeded project ids (live tenants only). */
  projects: string[]
  /** A seeded pending invitation and ownership offer (A and B): what other tenants must not reach. */
  invitationId?: string
  offerId?: string
  members: Map<string, Member>
  markers: string[]
}
interface UserFx {
  key: string
  /** For an API-key caller: its creator (the acting user). */
  id: string
  email: string
  /** null: no session at all. For an API-key caller: a session of ANOTHER user, sent along and ignored. */
  client: Client | null
  /** An API-key caller: the key's tenant, its role, and whether it was revoked. */
  apiKey?: { tenant: string; role: Role; revoked?: boolean }
  bearer?: string
}
interface Ctx {
  user: UserFx
  T: TenantFx
  role: Role
  member: Member
}
interface Expect {
  status: number
  code?: string
}
interface RouteCase {
  label: string
  method: 'GET' | 'POST' | 'PATCH' | 'PUT' | 'DELETE'
  /** The path under /api; may prepare data (a fresh project to delete) when the caller can reach the handler. */
  path: (ctx: Ctx | undefined) => string | Promise<string>
  body?: unknown
  /** For a member of a live tenant: what this route answers. */
  expect: (ctx: Ctx) => Expect
  /** Extra checks on a 2xx. */
  check?: (res: LightMyRequestResponse, ctx: Ctx) => void
  /** Manages people (config.sessionOnly): every API key gets 403 API_KEY_NOT_ALLOWED. */
  sessionOnly?: boolean
}

const tenants: Record<string, TenantFx> = {}
const users: Record<string, UserFx> = {}
let allMarkers: string[] = []
let requests = 0

const rand = () => randomBytes(3).toString('hex')
const effective = (m: Member): Role => (m.role === 'owner' || m.role === 'admin' ? 'admin' : m.localRole)
const atLeast = (role: Role, min: Role) => ROLE_LEVEL[role] >= ROLE_LEVEL[min]
const ok = (status: number): Expect => ({ status })
const err = (status: number, code: string): Expect => ({ status, code })
const gate = (ctx: Ctx, min: Role, then: () => Expect) => (atLeast(ctx.role, min) ? then() : err(403, 'INSUFFICIENT_ROLE'))
const lowest = (a: Role, b: Role): Role => (atLeast(a, b) ? b : a)

/** A copy of a user's client on its own remote address: same session, separate per-IP rate-limit bucket. */
function sibling(c: Client): Client {
  const s = createClient(ctx.app)
  s.cookies = c.cookies
  s.csrf = c.csrf
  return s
}

/** Write the session's active tenant server-side, as a stale session (removed membership, deleted tenant) would hold it. */
async function setSessionTenant(c: Client, tenantId: string | undefined) {
  const sid = decodeURIComponent(c.cookies.sid!).split('.')[0]
  const key = `${ctx.env.config.redisPrefix}:sess:${sid}`
  const session = JSON.parse((await ctx.app.redis.get(key))!)
  if (tenantId) session.activeTenantId = tenantId
  else delete session.activeTenantId
  await ctx.app.redis.set(key, JSON.stringify(session), 'KEEPTTL')
  await ctx.app.sessions.drop(sid!) // written behind the kit's back: drop cached copies
}

async function insertProject(T: TenantFx, name: string): Promise<string> {
  const record = (await ctx.app.tenancy.catalog.get(T.id))!
  const [row] = await ctx.app.tenancy.pools.withTenant(record, (db) => db.insert(projects).values({ name }).returning({ id: projects.id }))
  return row!.id
}

/** No marker of another tenant in a success body; no marker of any tenant in an error body. */
function assertNoLeak(res: LightMyRequestResponse, T: TenantFx, label: string) {
  const own = new Set(res.statusCode < 300 ? T.markers : [])
  const body = res.body
  for (const marker of allMarkers) {
    if (!own.has(marker) && body.includes(marker))
      throw new Error(`${label}: response ${res.statusCode} leaks "${marker}": ${body.slice(0, 400)}`)
  }
}

function routes(T: TenantFx): RouteCase[] {
  const live = ['A', 'B', 'C'].map((k) => tenants[k]!)
  const viewers = ['A', 'B', 'C'].map((k) => users[`viewer${k}`]!)
  const outsider = users.outsider!
  const foreignPid = (X: TenantFx) => X.projects[0]!
  const cases: RouteCase[] = [
    {
      label: 'GET /projects',
      method: 'GET',
      path: () => '/projects?limit=100',
      expect: (ctx) => gate(ctx, 'viewer', () => ok(200)),
      check: (res, { T }) => {
        const names: string[] = res.json().items.map((p: { name: string }) => p.name)
        expect(names.every((n) => n.includes(T.tok))).toBe(true)
        const ids = res.json().items.map((p: { id: string }) => p.id)
        for (const id of T.projects) expect(ids).toContain(id)
      },
    },
    {
      label: 'POST /projects',
      method: 'POST',
      path: () => '/projects',
      body: { name: `${T.tok} created` },
      expect: (ctx) => gate(ctx, 'editor', () => ok(201)),
      check: (res, { T, user }) => expect(res.json()).toMatchObject({ name: `${T.tok} created`, createdBy: user.id }),
    },
    {
      label: 'GET /tenant',
      method: 'GET',
      path: () => '/tenant',
      expect: (ctx) => gate(ctx, 'viewer', () => ok(200)),
      check: (res, { T, role, member }) =>
        expect(res.json()).toEqual({
          tenant: expect.objectContaining({ id: T.id, slug: T.slug, status: 'active' }),
          role,
          membershipRole: member.role,
        }),
    },
    {
      label: 'GET /members',
      method: 'GET',
      path: () => '/members?limit=200',
      expect: (ctx) => gate(ctx, 'viewer', () => ok(200)),
      check: (res, { T }) =>
        expect(
          res
            .json()
            .items.map((m: { userId: string }) => m.userId)
            .sort(),
        ).toEqual([...T.members.keys()].sort()),
    },
    {
      // Invites (no account oracle, nobody added): the same answer as POST /invitations.
      label: 'POST /members (unknown email)',
      method: 'POST',
      path: () => '/members',
      body: { email: `nobody-${rand()}@example.com`, role: 'member' },
      sessionOnly: true,
      expect: (ctx) => gate(ctx, 'admin', () => ok(201)),
      check: (res) => expect(res.json()).toMatchObject({ state: 'pending', role: 'member' }),
    },
    {
      label: 'DELETE /members/:outsider',
      method: 'DELETE',
      path: () => `/members/${outsider.id}`,
      sessionOnly: true,
      expect: (ctx) => gate(ctx, 'admin', () => err(404, 'MEMBER_NOT_FOUND')),
    },
    {
      label: 'GET /invitations',
      method: 'GET',
      path: () => '/invitations?limit=200',
      sessionOnly: true,
      expect: (ctx) => gate(ctx, 'admin', () => ok(200)),
      check: (res, { T }) => {
        const ids = res.json().items.map((i: { id: string }) => i.id)
        if (T.invitationId) expect(ids).toContain(T.invitationId)
      },
    },
    {
      label: 'POST /invitations',
      method: 'POST',
      path: () => '/invitations',
      body: { email: `invitee-${rand()}@example.com`, role: 'member', localRole: 'editor' },
      sessionOnly: true,
      expect: (ctx) => gate(ctx, 'admin', () => ok(201)),
      check: (res) => expect(res.json()).toMatchObject({ state: 'pending', localRole: 'editor' }),
    },
    {
      label: 'GET /ownership-offers',
      method: 'GET',
      path: () => '/ownership-offers',
      sessionOnly: true,
      expect: (ctx) => gate(ctx, 'admin', () => ok(200)),
      check: (res, { T }) => expect(res.json().items.map((o: { id: string }) => o.id)).toEqual(T.offerId ? [T.offerId] : []),
    },
  ]

  // Invitations and offers of the OTHER tenants, through this one (T's own would change the fixture).
  for (const X of live) {
    if (X === T) continue
    if (X.invitationId) {
      cases.push(
        {
          label: `DELETE /invitations/:id of ${X.key}`,
          method: 'DELETE',
          path: () => `/invitations/${X.invitationId}`,
          sessionOnly: true,
          expect: (ctx) => gate(ctx, 'admin', () => err(404, 'INVITATION_NOT_FOUND')),
        },
      )
    }
    if (X.offerId) {
      cases.push(
        {
          label: `POST /ownership-offers/:id/accept of ${X.key}`,
          method: 'POST',
          path: () => `/ownership-offers/${X.offerId}/accept`,
          sessionOnly: true,
          expect: (ctx) => gate(ctx, 'admin', () => err(404, 'OFFER_NOT_FOUND')),
        },
      )
    }
  }

  for (const X of live) {
    const mine = X === T
    cases.push(
      {
        label: `GET /projects/:id of ${X.key}`,
        method: 'GET',
        path: () => `/projects/${foreignPid(X)}`,
        expect: (ctx) => gate(ctx, 'viewer', () => (mine ? ok(200) : err(404, 'PROJECT_NOT_FOUND'))),
        check: (res) => expect(res.json()).toMatchObject({ id: foreignPid(X), name: expect.stringContaining(T.tok) }),
      },
      {
        label: `PATCH /projects/:id of ${X.key}`,
        method: 'PATCH',
        path: () => `/projects/${foreignPid(X)}`,
        body: { description: 'patched by the isolation suite' },
        expect: (ctx) => gate(ctx, 'editor', () => (mine ? ok(200) : err(404, 'PROJECT_NOT_FOUND'))),
        check: (res) => expect(res.json()).toMatchObject({ id: foreignPid(X), description: 'patched by the isolation suite' }),
      },
      {
        label: `DELETE /projects/:id of ${X.key}`,
        method: 'DELETE',
        // Deleting the target tenant's own project: a fresh one, so the seeded ones stay for everyone else.
        path: async (ctx) => `/projects/${mine && ctx ? await insertProject(T, `${T.tok} to delete`) : foreignPid(X)}`,
        expect: (ctx) => gate(ctx, 'admin', () => (mine ? ok(204) : err(404, 'PROJECT_NOT_FOUND'))),
      },
    )
  }

  for (const target of viewers) {
    const inT = T.members.has(target.id)
    cases.push(
      {
        // Ownership is offered by an owner, to an admin: these targets are viewers (or not in T).
        label: `POST /members/${target.key}/ownership-offer`,
        method: 'POST',
        path: () => `/members/${target.id}/ownership-offer`,
        sessionOnly: true,
        expect: (ctx) =>
          gate(ctx, 'admin', () =>
            ctx.member.role !== 'owner'
              ? err(403, 'INSUFFICIENT_ROLE')
              : inT
                ? err(409, 'OFFER_NEEDS_ADMIN')
                : err(404, 'MEMBER_NOT_FOUND'),
          ),
      },
      {
        label: `PATCH /members/${target.key}`,
        method: 'PATCH',
        path: () => `/members/${target.id}`,
        body: { localRole: 'viewer' }, // a no-op for the viewer it may reach
        sessionOnly: true,
        expect: (ctx) => gate(ctx, 'admin', () => (inT ? ok(200) : err(404, 'MEMBER_NOT_FOUND'))),
        check: (res) => expect(res.json()).toMatchObject({ userId: target.id, localRole: 'viewer' }),
      },
      {
        label: `PUT /members/${target.key}/permissions`,
        method: 'PUT',
        path: () => `/members/${target.id}/permissions`,
        body: { resource: 'projects', action: 'view', granted: true }, // what a viewer may do anyway
        sessionOnly: true,
        expect: (ctx) => gate(ctx, 'admin', () => (inT ? ok(200) : err(404, 'MEMBER_NOT_FOUND'))),
      },
      {
        label: `DELETE /members/${target.key}/permissions (never granted)`,
        method: 'DELETE',
        path: () => `/members/${target.id}/permissions/reports/archive`,
        sessionOnly: true,
        expect: (ctx) => gate(ctx, 'admin', () => (inT ? err(404, 'PERMISSION_NOT_FOUND') : err(404, 'MEMBER_NOT_FOUND'))),
      },
    )
    // Removing a member of ANOTHER tenant through this one (removing one of T's own would change the fixture).
    if (!inT) {
      cases.push({
        label: `DELETE /members/${target.key}`,
        method: 'DELETE',
        path: () => `/members/${target.id}`,
        sessionOnly: true,
        expect: (ctx) => gate(ctx, 'admin', () => err(404, 'MEMBER_NOT_FOUND')),
      })
    }
  }
  return cases
}

/** What the issue says a request must answer, before the route's own logic. */
function oracle(user: UserFx, T: TenantFx, how: Method, route: RouteCase): { expect: Expect; ctx?: Ctx } {
  if (user.apiKey) return keyOracle(user, T, route)
  if (!user.client) return { expect: err(401, 'UNAUTHENTICATED') }
  if (how === 'none') return { expect: err(400, 'TENANT_REQUIRED') }
  const member = T.members.get(user.id)
  if (!member || member.status || T.status === 'deleted' || T.status === 'unknown') return { expect: err(404, 'TENANT_NOT_FOUND') }
  if (T.status === 'suspended') return { expect: err(403, 'TENANT_SUSPENDED') }
  if (T.status !== 'active') return { expect: err(409, 'TENANT_NOT_READY') }
  const ctx: Ctx = { user, T, member, role: effective(member) }
  return { expect: route.expect(ctx), ctx }
}

/**
 * An API key: dead keys (revoked, creator no longer an active member) authenticate nobody; a live one
 * answers for its own tenant K, named or not (runMatrixFor passes K when only the session names a tenant).
 */
function keyOracle(user: UserFx, T: TenantFx, route: RouteCase): { expect: Expect; ctx?: Ctx } {
  const K = tenants[user.apiKey!.tenant]!
  const creator = K.members.get(user.id)
  if (user.apiKey!.revoked || !creator || creator.status) return { expect: err(401, 'INVALID_API_KEY') }
  if (T !== K || K.status === 'deleted') return { expect: err(404, 'TENANT_NOT_FOUND') }
  if (K.status === 'suspended') return { expect: err(403, 'TENANT_SUSPENDED') }
  if (K.status !== 'active') return { expect: err(409, 'TENANT_NOT_READY') }
  if (route.sessionOnly) return { expect: err(403, 'API_KEY_NOT_ALLOWED') }
  const role = lowest(user.apiKey!.role, effective(creator))
  // A key never acts as an owner; below admin it is a plain member.
  const member: Member = { role: role === 'admin' && creator.role !== 'member' ? 'admin' : 'member', localRole: creator.localRole }
  const ctx: Ctx = { user, T: K, member, role }
  return { expect: route.expect(ctx), ctx }
}

function address(T: TenantFx, how: Method, path: string): { url: string; headers: Record<string, string> } {
  switch (how) {
    case 'header-slug':
      return { url: `/api${path}`, headers: { 'x-tenant-id': T.slug } }
    case 'header-id':
      return { url: `/api${path}`, headers: { 'x-tenant-id': T.id } }
    case 'path-slug':
      return { url: `/t/${T.slug}/api${path}`, headers: {} }
    case 'path-id':
      return { url: `/t/${T.id}/api${path}`, headers: {} }
    case 'subdomain':
      return { url: `/api${path}`, headers: { host: `${T.slug}.${SUFFIX}` } }
    default:
      return { url: `/api${path}`, headers: {} }
  }
}

async function send(c: Client, route: RouteCase, url: string, headers: Record<string, string>) {
  requests++
  return c.request({ method: route.method, url, headers, ...(route.body !== undefined ? { payload: route.body as object } : {}) })
}

/** Point the session at T the way a user would (PUT /me/active-tenant), or server-side when the API refuses. */
async function useSessionTenant(user: UserFx, c: Client, T: TenantFx) {
  const res = await c.put('/me/active-tenant', { tenant: T.slug })
  requests++
  const canSwitch = T.members.has(user.id) && !T.members.get(user.id)!.status && T.status !== 'deleted' && T.status !== 'unknown'
  expect(res.statusCode, `${user.key} switch to ${T.key}: ${res.body}`).toBe(canSwitch ? 200 : 404)
  if (canSwitch) expect(res.json().activeTenant).toMatchObject({ tenantId: T.id, slug: T.slug })
  else expect(res.json()).toMatchObject({ code: 'TENANT_NOT_FOUND' })
  assertNoLeak(res, T, `${user.key} switch to ${T.key}`)
  if (!canSwitch) await setSessionTenant(c, T.id)
}

async function runMatrixFor(user: UserFx): Promise<string[]> {
  const failures: string[] = []
  const targets = Object.values(tenants)
  const run = async (c: Client, T: TenantFx, how: Method) => {
    for (const route of routes(T)) {
      const { expect: want, ctx } = oracle(user, T, how, route)
      const path = await route.path(ctx)
      const { url, headers } = address(T, how, path)
      if (user.bearer) headers.authorization = `Bearer ${user.bearer}`
      const label = `${user.key} → ${T.key} via ${how}: ${route.method} ${url}`
      const res = await send(c, route, url, headers)
      try {
        expect(res.statusCode, res.body).toBe(want.status)
        if (want.code)
          expect(res.json()).toMatchObject({
            statusCode: want.status,
            code: want.code,
            error: expect.any(String),
            message: expect.any(String),
          })
        assertNoLeak(res, T, label)
        if (ctx && res.statusCode < 300 && route.check) route.check(res, ctx)
      } catch (e) {
        failures.push(`${label}: ${(e as Error).message.split('\n')[0]}`)
      }
    }
  }

  // With an API key, only the request names a tenant (the session is ignored); else it's the key's own.
  const K = user.apiKey && tenants[user.apiKey.tenant]!
  for (const T of targets) {
    for (const how of METHODS) {
      const c = user.client ? sibling(user.client) : createClient(ctx.app)
      if (how === 'session' && K) {
        await setSessionTenant(c, T.id)
        await run(c, K, how)
        continue
      }
      if (how === 'session' && user.client) await useSessionTenant(user, c, T)
      await run(c, T, how)
    }
  }
  // Nothing names a tenant: no header, no /t/ path, no tenant subdomain, no active tenant in the session.
  const c = user.client ? sibling(user.client) : createClient(ctx.app)
  if (user.client) await setSessionTenant(c, undefined)
  await run(c, K || tenants.A!, 'none')
  return failures
}

export interface IsolationSuiteOptions {
  /**
   * Before any tenant is made, run this (e.g. add a second server holding a shared database, so that
   * placement spreads the tenants over two servers), and after them `check` what it should have led to.
   */
  before?: (app: AppHandle['app'], world: string) => Promise<void>
  check?: (app: AppHandle['app'], tenantIds: Record<string, string>) => Promise<void>
}

/**
 * The suite, for one isolation mode: every tenant of the world (provisioned here, or personal ones from
 * logins) is in that mode. isolation.test.ts runs it for 'database', isolation-shared.test.ts for 'shared',
 * isolation-shared-servers.test.ts for 'shared' over two servers' shared databases.
 */
export function isolationSuite(isolation: TenantIsolation, opts: IsolationSuiteOptions = {}): void {
ctx = useApp(
  { TENANT_DOMAIN_SUFFIX: SUFFIX, TENANT_ISOLATION: isolation, ...(isolation === 'shared' ? SHARED : {}) },
  { closeTimeoutMs: 300_000 },
)
beforeAll(async () => {
  await opts.before?.(ctx.app, ctx.env.name)
  const passwordHash = await hashPassword(PASSWORD)
  const toks: Record<string, string> = {}
  for (const k of ['A', 'B', 'C', 'S', 'P', 'F', 'D']) toks[k] = `tok${k.toLowerCase()}${rand()}`

  async function user(key: string, tok?: string): Promise<UserFx> {
    // Users of one tenant only carry its token in their email, so a leak of their identity is caught too.
    const email = `${key.toLowerCase()}.${tok ?? rand()}@example.com`
    const row = await ctx.app.users.create({ email, name: key, passwordHash })
    const client = createClient(ctx.app)
    expect((await client.login(email)).statusCode).toBe(200)
    return { key, id: row.id, email, client }
  }
  const specs: [string, string | undefined][] = [
    ['ownerA', toks.A],
    ['adminA', toks.A],
    ['editorA', toks.A],
    ['viewerA', toks.A],
    ['invitedA', toks.A],
    ['pendingA', toks.A],
    ['ownerB', toks.B],
    ['adminB', toks.B],
    ['editorB', toks.B],
    ['viewerB', toks.B],
    ['ownerC', toks.C],
    ['viewerC', toks.C],
    ['dual', undefined],
    ['outsider', undefined],
  ]
  for (const u of await Promise.all(specs.map(([k, tok]) => user(k, tok)))) users[u.key] = u
  // Verified addresses: inviting and ownership offers need them (the matrix is about tenants, not verification).
  for (const u of Object.values(users)) await markVerified(ctx.app, u.id)
  users.anon = { key: 'anon', id: uuidv7(), email: 'anon@example.com', client: null }

  async function tenant(key: string, owner: UserFx, add: [UserFx, 'admin' | 'member', Role][]): Promise<TenantFx> {
    const tok = toks[key]!
    const row = await ctx.app.tenancy.provisioner.provision({ slug: `${tok}-co`, name: `${tok} Inc`, ownerUserId: owner.id })
    const T: TenantFx = {
      key,
      id: row.id,
      slug: row.slug,
      tok,
      status: 'active',
      projects: [],
      members: new Map([[owner.id, { role: 'owner', localRole: 'admin' }]]),
      // A shared tenant's dbName is the shared database, the same for all: not a marker of one tenant.
      markers: isolation === 'shared' ? [tok, row.id] : [tok, row.id, row.dbName],
    }
    for (const [u, role, localRole] of add) {
      await joinTenant(ctx.app, T.id, u, role, localRole)
      T.members.set(u.id, { role, localRole })
    }
    for (const n of [1, 2]) {
      const res = await owner.client!.post('/api/projects', { name: `${tok} project ${n}` }, { 'x-tenant-id': T.slug })
      expect(res.statusCode).toBe(201)
      T.projects.push(res.json().id)
      T.markers.push(res.json().id)
    }
    return T
  }
  const u = users
  // The live three first, then the rest: with tenants placed by load over two servers (isolation-shared-servers),
  // three placements in a row always reach both, while the live three drawn at random from seven did not (~1 in 7).
  const [A, B, C] = await Promise.all([
    tenant('A', u.ownerA!, [
      [u.adminA!, 'admin', 'admin'],
      [u.editorA!, 'member', 'editor'],
      [u.viewerA!, 'member', 'viewer'],
      [u.dual!, 'member', 'viewer'],
      [u.invitedA!, 'member', 'editor'],
    ]),
    tenant('B', u.ownerB!, [
      [u.adminB!, 'admin', 'admin'],
      [u.editorB!, 'member', 'editor'],
      [u.viewerB!, 'member', 'viewer'],
      [u.dual!, 'admin', 'admin'],
    ]),
    tenant('C', u.ownerC!, [[u.viewerC!, 'member', 'viewer']]),
  ])
  const [S, P, F, D] = await Promise.all([
    tenant('S', u.ownerA!, [[u.dual!, 'member', 'editor']]),
    tenant('P', u.ownerA!, [[u.dual!, 'member', 'editor']]),
    tenant('F', u.ownerB!, [[u.dual!, 'admin', 'admin']]),
    tenant('D', u.ownerB!, [[u.dual!, 'member', 'viewer']]),
  ])
  // A membership that exists but isn't active (an invitation not yet accepted) grants nothing.
  await ctx.app.host.sql`update core_memberships set status = 'invited' where user_id = ${u.invitedA!.id} and tenant_id = ${A!.id}`
  await ctx.app.tenancy.memberships.invalidate(u.invitedA!.id, A!.id)
  A!.members.get(u.invitedA!.id)!.status = 'invited'
  // Tenants that are not (or no longer) live: through the lifecycle, or catalog writes where no event leads there.
  await ctx.app.tenancy.provisioner.run('suspended', S!.id)
  S!.status = 'suspended'
  await ctx.app.tenancy.provisioner.writes.update(P!.id, { status: 'provisioning', provisionStep: 'migrate' })
  P!.status = 'provisioning'
  await ctx.app.tenancy.provisioner.writes.update(F!.id, { status: 'failed', provisionStep: 'migrate', provisionError: 'migrate: boom' })
  F!.status = 'failed'
  await ctx.app.tenancy.provisioner.run('softDeleted', D!.id)
  D!.status = 'deleted'
  for (const T of [A, B, C, S, P, F, D]) tenants[T!.key] = T!
  // A tenant that doesn't exist, named by a well-formed slug and id.
  tenants.X = {
    key: 'X',
    id: uuidv7(),
    slug: `ghost-${rand()}`,
    tok: 'ghost',
    status: 'unknown',
    projects: [],
    members: new Map(),
    markers: [],
  }

  // An invitation to pendingA's address, not accepted: they have no membership in A, so A is a 404 to them.
  // Plus one open invitation and ownership offer in A and B that other tenants must not reach.
  const invitations = createInvitationsRepository(ctx.app.host.db)
  await invitations.create({
    tenantId: A!.id,
    email: users.pendingA!.email,
    role: 'admin',
    localRole: 'admin',
    invitedBy: users.ownerA!.id,
  })
  await opts.check?.(ctx.app, Object.fromEntries(Object.entries(tenants).map(([k, T]) => [k, T.id])))
  for (const [T, owner, admin] of [
    [A!, users.ownerA!, users.adminA!],
    [B!, users.ownerB!, users.adminB!],
  ] as const) {
    const { invitation } = await invitations.create({
      tenantId: T.id,
      email: `seeded.${T.tok}@example.com`,
      role: 'member',
      localRole: 'viewer',
      invitedBy: owner.id,
    })
    const offer = await owner.client!.post(`/api/members/${admin.id}/ownership-offer`, undefined, { 'x-tenant-id': T.slug })
    expect(offer.statusCode, offer.body).toBe(201)
    T.invitationId = invitation.id
    T.offerId = offer.json().id
    T.markers.push(invitation.id, offer.json().id)
  }

  // Users of one tenant only are that tenant's markers too.
  for (const [k, list] of Object.entries({
    A: ['adminA', 'editorA', 'viewerA', 'invitedA', 'pendingA'],
    B: ['adminB', 'editorB', 'viewerB'],
    C: ['ownerC', 'viewerC'],
  })) {
    for (const key of list) tenants[k]!.markers.push(users[key]!.id)
  }
  allMarkers = Object.values(tenants).flatMap((t) => t.markers)

  // API-key callers, each beside its own login of `dual` (a member of A, B and more), whose cookie must not matter.
  const keySpecs: [string, UserFx, TenantFx, Role, boolean?][] = [
    ['keyOwnerA', u.ownerA!, A!, 'admin'],
    ['keyEditorA', u.adminA!, A!, 'editor'],
    ['keyViewerB', u.adminB!, B!, 'viewer'],
    // Made when editorB was an admin (created directly: the route caps a new key at its creator's role): acts as editor.
    ['keyCappedB', u.editorB!, B!, 'admin'],
    ['keySuspended', u.ownerA!, S!, 'admin'],
    ['keyRevokedC', u.ownerC!, C!, 'admin', true],
  ]
  for (const [key, creator, K, role, revoked] of keySpecs) {
    const { key: row, secret } = await ctx.app.apiKeys.create({ tenantId: K.id, createdBy: creator.id, name: key, role })
    if (revoked) expect(await ctx.app.apiKeys.revoke(K.id, row.id)).toMatchObject({ revoked: true })
    const client = createClient(ctx.app)
    expect((await client.login(u.dual!.email)).statusCode).toBe(200)
    users[key] = { key, id: creator.id, email: creator.email, client, apiKey: { tenant: K.key, role, revoked }, bearer: secret }
  }
}, 120_000)

// Dropping this file's tenant databases takes minutes on a loaded machine.

describe(`tenant isolation matrix (${isolation})`, () => {
  it('answers every route × user × tenant × resolution method with the specified status, leaking nothing', async () => {
    const failures = (await Promise.all(Object.values(users).map(runMatrixFor))).flat()
    expect(failures.slice(0, 30), `${failures.length} failures`).toEqual([])
    // The matrix is what it claims: (15 users + 6 keys) × 8 tenants × 6 methods × 28–33 routes, plus "nothing" (~30k requests).
    expect(requests).toBeGreaterThan(23_500)

    // Nothing written through one tenant landed in another's database.
    for (const T of ['A', 'B', 'C'].map((k) => tenants[k]!)) {
      const names = await ctx.app.tenancy.pools.withTenant((await ctx.app.tenancy.catalog.get(T.id))!, (db) =>
        db.select({ name: projects.name }).from(projects),
      )
      expect(names.every((p) => p.name.includes(T.tok))).toBe(true)
    }
  }, 900_000)

  it('references that disagree are 400 TENANT_CONFLICT, never one of them; membership is checked for the tenant named', async () => {
    const { A, B } = tenants as Record<'A' | 'B', TenantFx>
    const viewerA = sibling(users.viewerA!.client!)
    // Header and path name different tenants: neither wins (it used to be the header, silently).
    for (const [url, headers] of [
      [`/t/${B.slug}/api/tenant`, { 'x-tenant-id': A.slug }],
      [`/t/${A.slug}/api/tenant`, { 'x-tenant-id': B.slug }],
      [`/t/${B.id}/api/tenant`, { 'x-tenant-id': A.id }],
      [`/t/${B.id}/api/tenant`, { 'x-tenant-id': A.slug }],
      ['/api/tenant', { 'x-tenant-id': A.slug, host: `${B.slug}.${SUFFIX}` }],
      [`/t/${A.slug}/api/tenant`, { host: `${B.slug}.${SUFFIX}` }],
      [`/t/${A.slug}/api/tenant`, { 'x-tenant-id': 'no-such-tenant' }],
    ] as [string, Record<string, string>][]) {
      const res = await viewerA.get(url, headers)
      expect(res.statusCode, `${url} ${JSON.stringify(headers)}`).toBe(400)
      expect(res.json()).toMatchObject({ code: 'TENANT_CONFLICT' })
      expect(res.body).not.toContain(A.tok)
      expect(res.body).not.toContain(B.tok)
    }
    // The same tenant named twice, by slug and by id, in any case: fine.
    for (const [url, headers] of [
      [`/t/${A.slug}/api/tenant`, { 'x-tenant-id': A.slug.toUpperCase() }],
      [`/t/${A.id}/api/tenant`, { 'x-tenant-id': A.slug }],
      [`/t/${A.slug}/api/tenant`, { 'x-tenant-id': A.id, host: `${A.slug}.${SUFFIX}` }],
    ] as [string, Record<string, string>][]) {
      const res = await viewerA.get(url, headers)
      expect(res.statusCode, `${url} ${JSON.stringify(headers)}`).toBe(200)
      expect(res.json()).toMatchObject({ tenant: { id: A.id } })
    }
    // One reference, to a tenant viewerA is not in: 404.
    const wrong = await viewerA.get(`/t/${B.slug}/api/tenant`)
    expect(wrong.statusCode).toBe(404)
    expect(wrong.body).not.toContain(B.tok)
    // Without trust-proxy, X-Forwarded-Host can't move the request to another tenant's subdomain.
    const forwarded = await sibling(users.ownerB!.client!).get('/api/tenant', {
      host: `${A.slug}.${SUFFIX}`,
      'x-forwarded-host': `${B.slug}.${SUFFIX}`,
    })
    expect(forwarded.statusCode).toBe(404)
    expect(forwarded.json()).toMatchObject({ code: 'TENANT_NOT_FOUND' })
    // A fully qualified host (trailing dot) is the same host: its tenant, with or without a port.
    for (const host of [`${A.slug}.${SUFFIX}.`, `${A.slug.toUpperCase()}.${SUFFIX}.:3000`]) {
      const c = sibling(users.viewerA!.client!)
      await setSessionTenant(c, B.id) // a session tenant must not win over the subdomain either
      const res = await c.get('/api/tenant', { host })
      expect(res.statusCode, host).toBe(200)
      expect(res.json()).toMatchObject({ tenant: { id: A.id } })
    }
    // A host outside the suffix names nothing: the session's tenant, or none.
    for (const host of [`${A.slug}.example.org`, SUFFIX, `${SUFFIX}.`]) {
      const c = sibling(users.viewerA!.client!)
      await setSessionTenant(c, undefined)
      const res = await c.get('/api/tenant', { host })
      expect(res.statusCode, host).toBe(400)
      expect(res.json()).toMatchObject({ code: 'TENANT_REQUIRED' })
    }
    // A nested subdomain is not a tenant reference, and never falls back to the session's tenant.
    for (const host of [`x.${A.slug}.${SUFFIX}`, `${B.slug}.${A.slug}.${SUFFIX}.`]) {
      const c = sibling(users.viewerA!.client!)
      await setSessionTenant(c, A.id)
      const res = await c.get('/api/tenant', { host })
      expect(res.statusCode, host).toBe(400)
      expect(res.json()).toMatchObject({ code: 'INVALID_TENANT_REF' })
      expect(res.body).not.toContain(A.tok)
    }
  })

  it('a session still pointing at a tenant the user has left gets 404, not the data', async () => {
    const { C } = tenants as Record<'C', TenantFx>
    const leaver = createClient(ctx.app)
    const email = `leaver.${rand()}@example.com`
    await ctx.app.users.create({ email, name: 'leaver', passwordHash: await hashPassword(PASSWORD) })
    await leaver.login(email)
    const owner = sibling(users.ownerC!.client!)
    await joinTenant(ctx.app, C.id, { id: (await ctx.app.users.findByEmail(email))!.id, email }, 'admin')
    expect((await leaver.put('/me/active-tenant', { tenant: C.id })).statusCode).toBe(200)
    expect((await leaver.get('/api/projects')).statusCode).toBe(200)
    const me = (await leaver.get('/me')).json()
    const removed = await owner.delete(`/api/members/${me.user.id}`, { 'x-tenant-id': C.slug })
    expect(removed.statusCode).toBe(204)
    for (const url of ['/api/projects', '/api/tenant', '/api/members', `/api/projects/${C.projects[0]}`]) {
      const res = await leaver.get(url)
      expect(res.statusCode, url).toBe(404)
      expect(res.json()).toMatchObject({ code: 'TENANT_NOT_FOUND' })
      expect(res.body).not.toContain(C.tok)
    }
  })
})

describe(`concurrent requests for different tenants (${isolation})`, () => {
  it('interleaved reads and writes each see and touch only their own tenant', async () => {
    const { A, B, C } = tenants as Record<'A' | 'B' | 'C', TenantFx>
    // Same user (dual) in A and B, plus C's owner; every request on its own address (rate limits).
    const plan = Array.from({ length: 360 }, (_, i) => {
      const T = [A, B, C][i % 3]!
      const who = T === C ? users.ownerC! : users.dual!
      const how = (['header-slug', 'path-id', 'subdomain'] as const)[Math.floor(i / 3) % 3]!
      const kind = (['tenant', 'list', 'read', 'write'] as const)[Math.floor(i / 9) % 4]!
      return { i, T, who, how, kind }
    })
    const run = async ({ i, T, who, how, kind }: (typeof plan)[number]) => {
      const c = sibling(who.client!)
      const canWrite = T !== A // dual is a viewer in A
      const path =
        kind === 'tenant'
          ? '/tenant'
          : kind === 'list'
            ? '/projects?limit=100'
            : kind === 'read'
              ? `/projects/${T.projects[i % 2]}`
              : '/projects'
      const { url, headers } = address(T, how, path)
      const res =
        kind === 'write'
          ? await c.request({ method: 'POST', url, headers, payload: { name: `${T.tok} concurrent ${i}` } })
          : await c.request({ method: 'GET', url, headers })
      const label = `#${i} ${kind} ${T.key} via ${how}`
      assertNoLeak(res, T, label)
      if (kind === 'write' && !canWrite) {
        expect(res.statusCode, label).toBe(403)
        return
      }
      expect(res.statusCode, `${label}: ${res.body}`).toBe(kind === 'write' ? 201 : 200)
      const body = res.json()
      if (kind === 'tenant') expect(body.tenant.id, label).toBe(T.id)
      if (kind === 'list')
        expect(
          body.items.every((p: { name: string }) => p.name.includes(T.tok)),
          label,
        ).toBe(true)
      if (kind === 'read') expect(body.id, label).toBe(T.projects[i % 2])
      if (kind === 'write') expect(body.name, label).toBe(`${T.tok} concurrent ${i}`)
    }
    await Promise.all(plan.map(run))

    // Every concurrent write is in its own tenant's database, and only there.
    for (const T of [B, C]) {
      const names = await ctx.app.tenancy.pools.withTenant((await ctx.app.tenancy.catalog.get(T.id))!, (db) =>
        db.select({ name: projects.name }).from(projects),
      )
      const concurrent = names.map((p) => p.name).filter((n) => n.includes(' concurrent '))
      const want = plan.filter((p) => p.T === T && p.kind === 'write').map((p) => `${T.tok} concurrent ${p.i}`)
      expect(concurrent.sort()).toEqual(want.sort())
    }
    const inA = await ctx.app.tenancy.pools.withTenant((await ctx.app.tenancy.catalog.get(A.id))!, (db) =>
      db.select({ name: projects.name }).from(projects),
    )
    expect(inA.filter((p) => p.name.includes(' concurrent '))).toEqual([])
  })
})
}
