/**
 * People and tenants for tests that need roles, not the flows that make them: a user created directly
 * (no signup, so no personal tenant unless they log in without one), a tenant provisioned for an owner
 * with an admin, an editor and a viewer who joined by invitation (members.ts), and `as(member)`: that
 * member's logged-in client on the tenant's /api routes (in the spirit of fastify/demo's injectWithLogin).
 */
import { randomBytes } from 'node:crypto'
import type { FastifyInstance, InjectOptions, LightMyRequestResponse } from 'fastify'
import { expect } from 'vitest'
import { hashPassword } from '../../src/core/identity/password.js'
import type { ProvisionedTenant } from '../../src/core/tenancy/provisioning.js'
import { type Client, createClient, PASSWORD } from './client.js'
import { joinTenant } from './members.js'

export interface Member {
  id: string
  email: string
  /** Browser-like client (cookies, CSRF): logged in once signIn() has run. */
  c: Client
  signIn(): Promise<void>
}

const tag = () => randomBytes(3).toString('hex')

/** Hashing is slow on purpose: once per test process. */
let passwordHash: Promise<string> | undefined
const sharedPasswordHash = () => {
  passwordHash ??= hashPassword(PASSWORD)
  return passwordHash
}

/** A global user `${label}-<random>@example.com` with password PASSWORD; `signIn: true` logs the client in now. */
export async function newMember(app: FastifyInstance, label: string, opts: { verified?: boolean; signIn?: boolean } = {}): Promise<Member> {
  const email = `${label}-${tag()}@example.com`
  const user = await app.users.create({
    email,
    name: label,
    passwordHash: await sharedPasswordHash(),
    ...(opts.verified ? { emailVerified: true } : {}),
  })
  const c = createClient(app)
  const member: Member = { id: user.id, email, c, signIn: async () => expect((await c.login(email)).statusCode).toBe(200) }
  if (opts.signIn) await member.signIn()
  return member
}

/** A member's requests to one tenant's /api routes (path without the /api prefix), tenant named by x-tenant-id. */
export interface TenantApi {
  get(path: string, headers?: Record<string, string>): Promise<LightMyRequestResponse>
  post(path: string, body?: unknown, headers?: Record<string, string>): Promise<LightMyRequestResponse>
  put(path: string, body?: unknown, headers?: Record<string, string>): Promise<LightMyRequestResponse>
  patch(path: string, body?: unknown, headers?: Record<string, string>): Promise<LightMyRequestResponse>
  delete(path: string, headers?: Record<string, string>): Promise<LightMyRequestResponse>
  request(method: InjectOptions['method'], path: string, body?: unknown): Promise<LightMyRequestResponse>
}

export function tenantApi(member: Pick<Member, 'c'>, slug: string): TenantApi {
  const h = (extra?: Record<string, string>) => ({ 'x-tenant-id': slug, ...extra })
  const { c } = member
  return {
    get: (path, extra) => c.get(`/api${path}`, h(extra)),
    post: (path, body, extra) => c.post(`/api${path}`, body, h(extra)),
    put: (path, body, extra) => c.put(`/api${path}`, body, h(extra)),
    patch: (path, body, extra) => c.patch(`/api${path}`, body, h(extra)),
    delete: (path, extra) => c.delete(`/api${path}`, h(extra)),
    request: (method, path, body) =>
      c.request({ method, url: `/api${path}`, headers: h(), ...(body !== undefined ? { payload: body as object } : {}) }),
  }
}

export interface TenantWithOptions {
  slug?: string
  /** Tenant display name; default `${slug} Inc`. */
  name?: string
  /** Member labels (the local part of their email starts with it). */
  labels?: { owner?: string; admin?: string; editor?: string; viewer?: string }
  /** Verified email addresses (creating API keys needs one). Default false. */
  verified?: boolean
  /**
   * When members log in: 'before-joining' (a login with no membership provisions a personal tenant, so
   * each then has one of their own too) or 'after-joining' (the fixture tenant is their only one). Default 'after-joining'.
   */
  signIn?: 'before-joining' | 'after-joining'
  /** The database server (core_db_servers) it goes on; default: placement's choice. */
  server?: string
  /** Name of a project the owner creates in it (its id is `projectId`). Default none. */
  project?: string
}

export interface TenantFixture {
  id: string
  slug: string
  tenant: ProvisionedTenant
  owner: Member
  admin: Member
  editor: Member
  viewer: Member
  projectId: string | undefined
  /** That member's requests to this tenant's /api. */
  as(member: Pick<Member, 'c'>): TenantApi
  /** Another member, joined by invitation with `role` (and `localRole`). */
  add(label: string, role: 'admin' | 'member', localRole?: 'admin' | 'editor' | 'viewer'): Promise<Member>
}

/** A tenant owned by a fresh owner, with an admin, an editor and a viewer who joined it by invitation. */
export async function tenantWith(app: FastifyInstance, opts: TenantWithOptions = {}): Promise<TenantFixture> {
  const slug = opts.slug ?? `team-${tag()}`
  const labels = { owner: 'owner', admin: 'admin', editor: 'editor', viewer: 'viewer', ...opts.labels }
  const early = (opts.signIn ?? 'after-joining') === 'before-joining'
  const person = (label: string) => newMember(app, label, { verified: opts.verified, signIn: early })
  const owner = await person(labels.owner)
  const tenant = await app.tenancy.provisioner.provision({ slug, name: opts.name ?? `${slug} Inc`, ownerUserId: owner.id, server: opts.server })
  if (!early) await owner.signIn()
  const add = async (label: string, role: 'admin' | 'member', localRole?: 'admin' | 'editor' | 'viewer') => {
    const m = await person(label)
    await joinTenant(app, tenant.id, m, role, localRole)
    if (!early) await m.signIn()
    return m
  }
  const admin = await add(labels.admin, 'admin', 'admin')
  const editor = await add(labels.editor, 'member', 'editor')
  const viewer = await add(labels.viewer, 'member', 'viewer')
  const as = (member: Pick<Member, 'c'>) => tenantApi(member, slug)
  let projectId: string | undefined
  if (opts.project !== undefined) {
    const created = await as(owner).post('/projects', { name: opts.project })
    expect(created.statusCode, created.body).toBe(201)
    projectId = created.json().id
  }
  return { id: tenant.id, slug, tenant, owner, admin, editor, viewer, projectId, as, add }
}
