/**
 * The OpenAPI document (/docs/json) checked from outside, by a validator that is not ours: Stoplight Prism
 * (`prism proxy <spec> <app> --errors`) in front of the app on a real port. Every request goes through it
 * with real HTTP (fetch), as a client generated from the document would send it; Prism validates the request
 * (an invalid one is refused with 422, or 401 without the declared credentials, and never forwarded) and the
 * response against the operation's documented statuses, media types and schemas. A response that violates
 * the document becomes Prism's 500 `VIOLATIONS` problem (--errors), and any violation, warnings included, is
 * listed in its `sl-violations` header: both are collected and must stay empty.
 *
 * test/helpers/contract.ts holds responses to the document from inside (Ajv on Fastify's schemas); this holds
 * the published document itself to what the app answers, and requests the app accepts to the document. Two
 * canary operations prove Prism reports violations; the last test checks how much of the document was reached.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { eq } from 'drizzle-orm'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { users } from '../drizzle/host/schema.js'
import { parsePlansFile, seedPlans } from '../src/features/billing/plans.js'
import { createInvitationsRepository } from '../src/features/members/invitations/repository.js'
import { WEBHOOK_SECRET } from './billing/helpers.js'
import { PASSWORD } from './helpers/client.js'
import { type FakeStripe, startFakeStripe } from './helpers/fake-stripe.js'
import { joinTenant, markVerified } from './helpers/members.js'
import { newMember } from './helpers/tenant-fixtures.js'
import { useApp } from './helpers/use-app.js'

// biome-ignore lint/suspicious/noExplicitAny: parsed JSON bodies, read by path in assertions
type Json = any

const PRO_M = 'price_1QkT0aJx4nB2cD3ePrismProM'
const PRO_Y = 'price_1QkT0bJx4nB2cD3ePrismProY'
const ENT_M = 'price_1QkT0cJx4nB2cD3ePrismEntM'

let stripe: FakeStripe | undefined
beforeAll(async () => {
  stripe = await startFakeStripe()
  stripe.addPrice({ id: PRO_M, unitAmount: 2900, interval: 'month' })
  stripe.addPrice({ id: PRO_Y, unitAmount: 29000, interval: 'year' })
  stripe.addPrice({ id: ENT_M, unitAmount: 9900, interval: 'month' })
})
afterAll(async () => {
  await stripe?.close()
})
// One client IP (127.0.0.1) for the whole file: the general limit is lifted, login/signup keep theirs.
// Billing on, against the fake Stripe, so its routes answer what a configured server answers.
const ctx = useApp(() => ({
  RATE_LIMIT_MAX: '100000',
  WEBHOOKS_ALLOW_PRIVATE: 'true',
  // One POST /tenants per user per hour: the second is the 429 this file checks.
  TENANT_CREATES_PER_HOUR: '1',
  STRIPE_SECRET_KEY: 'sk_test_prism',
  STRIPE_WEBHOOK_SECRET: WEBHOOK_SECRET,
  STRIPE_API_HOST: stripe?.url ?? '',
}))

let prism: ChildProcess | undefined
let prismLog = ''
let dir: string | undefined
let appUrl: string
let proxyUrl: string
/** Every violation Prism reported, as `METHOD path → status: …`. */
const violations: string[] = []
/** Every request sent through Prism, as `METHOD /path` (query left off), for the coverage check. */
const sent = new Set<string>()
/** The document's operations, as `METHOD` and a matcher of their path template. */
let operations: { name: string; method: string; path: RegExp }[] = []

const freePort = () =>
  new Promise<number>((resolve, reject) => {
    const s = createServer()
    s.once('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as AddressInfo
      s.close(() => resolve(port))
    })
  })

beforeAll(async () => {
  const plans = parsePlansFile(JSON.parse(await readFile(new URL('../config/plans.json', import.meta.url), 'utf8')))
  await seedPlans(ctx.app.host.db, plans, {
    STRIPE_MONTHLY_PRICE_ID: PRO_M,
    STRIPE_YEARLY_PRICE_ID: PRO_Y,
    STRIPE_ENTERPRISE_MONTHLY_PRICE_ID: ENT_M,
  })
  await ctx.app.listen({ port: 0, host: '127.0.0.1' })
  appUrl = `http://127.0.0.1:${(ctx.app.server.address() as AddressInfo).port}`
  dir = await mkdtemp(join(tmpdir(), 'tk-prism-'))
  const specFile = join(dir, 'openapi.json')
  const spec = await fetch(`${appUrl}/docs/json`)
  expect(spec.status).toBe(200)
  const doc = await spec.json()
  operations = Object.entries(doc.paths as Record<string, Record<string, unknown>>).flatMap(([path, item]) =>
    Object.keys(item).map((method) => ({
      name: `${method.toUpperCase()} ${path}`,
      method: method.toUpperCase(),
      path: new RegExp(`^${path.replace(/\{[^}]+\}/g, '[^/]+')}$`),
    })),
  )
  // Two canaries, so that a Prism that validates nothing fails this file: /docs/json and /docs/yaml (real
  // routes, left out of the document) declared here with a body they do not send and a status they do not answer.
  expect(doc.paths['/docs/json']).toBeUndefined()
  expect(doc.paths['/docs/yaml']).toBeUndefined()
  doc.paths['/docs/json'] = {
    get: {
      operationId: 'prismCanaryBody',
      summary: 'canary: a required property the document never has',
      security: [],
      responses: {
        200: { description: 'OK', content: { 'application/json': { schema: { $ref: '#/components/schemas/PrismCanary' } } } },
      },
    },
  }
  // By $ref, as the kit's Error responses are: the reference is resolved, not skipped.
  doc.components.schemas.PrismCanary = { type: 'object', required: ['prismCanary'] }
  doc.paths['/docs/yaml'] = {
    get: {
      operationId: 'prismCanaryStatus',
      summary: 'canary: only a status it never answers',
      security: [],
      responses: { 201: { description: 'Created', content: { 'application/json': { schema: { type: 'object' } } } } },
    },
  }
  await writeFile(specFile, JSON.stringify(doc))

  const bin = join(import.meta.dirname, '..', 'node_modules', '.bin', 'prism')
  if (!existsSync(bin)) throw new Error(`${bin} is missing: run \`npm ci\` (@stoplight/prism-cli is a devDependency)`)
  // A free port can be taken between our probe and Prism's bind (other suites run alongside): a few tries.
  for (let attempt = 1; ; attempt++) {
    const started = await startPrism(bin, specFile, await freePort())
    if (started === 'listening') break
    if (attempt === 3 || started !== 'port taken') throw new Error(`prism did not start (${started}):\n${prismLog}`)
  }
}, 90_000)

async function startPrism(bin: string, specFile: string, port: number): Promise<'listening' | 'port taken' | string> {
  proxyUrl = `http://127.0.0.1:${port}`
  prismLog = ''
  const child = spawn(bin, ['proxy', specFile, appUrl, '--errors', '--port', String(port), '--host', '127.0.0.1', '--cors', 'false', '-v', 'warn'], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, SCARF_ANALYTICS: 'false', DO_NOT_TRACK: '1' },
  })
  prism = child
  const keep = (b: Buffer) => {
    prismLog = (prismLog + b.toString()).slice(-20_000)
  }
  child.stdout?.on('data', keep)
  child.stderr?.on('data', keep)
  let exited: number | null = null
  child.once('exit', (code) => {
    exited = code ?? -1
  })
  // Prism parses and dereferences the document first (seconds on a busy machine). It is the one listening
  // (not whatever else took the port) once a path the document lacks answers its NO_PATH_MATCHED problem.
  const deadline = Date.now() + 60_000
  for (;;) {
    if (exited !== null) return /EADDRINUSE/.test(prismLog) ? 'port taken' : `exited with ${exited}`
    const res = await fetch(`${proxyUrl}/__prism-probe`).catch(() => undefined)
    const body = res ? await res.text() : ''
    if (res?.status === 404 && body.includes('NO_PATH_MATCHED')) return 'listening'
    if (res) {
      // Something else answered there: ours cannot bind it.
      prismLog += `\nport ${port} answered ${res.status} ${body.slice(0, 200)}: not Prism`
      child.kill('SIGKILL')
      return 'port taken'
    }
    if (Date.now() > deadline) return 'no answer within 60 s'
    await new Promise((r) => setTimeout(r, 250))
  }
}


afterAll(async () => {
  if (prism && prism.exitCode === null) {
    const gone = new Promise((r) => prism?.once('exit', r))
    prism.kill('SIGTERM')
    await Promise.race([gone, new Promise((r) => setTimeout(r, 3000))])
    if (prism.exitCode === null) prism.kill('SIGKILL')
  }
  if (dir) await rm(dir, { recursive: true, force: true })
})

interface Res {
  status: number
  headers: Headers
  body: Json
  text: string
}

/** A browser-like client (cookies, CSRF on writes) or an API-key client, talking to the app through Prism. */
class Via {
  cookies = new Map<string, string>()
  csrf: string | undefined
  constructor(
    private readonly base: () => string,
    readonly bearer?: string,
  ) {}

  async req(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<Res> {
    const h: Record<string, string> = { accept: 'application/json', ...headers }
    if (this.cookies.size > 0) h.cookie = [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; ')
    if (this.bearer) h.authorization = `Bearer ${this.bearer}`
    if (this.csrf && method !== 'GET' && !('x-csrf-token' in h)) h['x-csrf-token'] = this.csrf
    if (body !== undefined) h['content-type'] = 'application/json'
    const res = await fetch(`${this.base()}${path}`, {
      method,
      headers: h,
      body: body === undefined ? undefined : JSON.stringify(body),
      redirect: 'manual',
    })
    for (const c of res.headers.getSetCookie()) {
      const [pair = '', ...attrs] = c.split(';')
      const i = pair.indexOf('=')
      const name = pair.slice(0, i).trim()
      const value = pair.slice(i + 1).trim()
      const expired = value === '' || attrs.some((a) => /^\s*max-age=0\s*$/i.test(a))
      if (expired) this.cookies.delete(name)
      else this.cookies.set(name, value)
    }
    const text = await res.text()
    let parsed: Json
    try {
      parsed = text ? JSON.parse(text) : undefined
    } catch {
      parsed = undefined
    }
    const where = `${method} ${path} → ${res.status}`
    sent.add(`${method} ${path.split('?')[0]}`)
    const header = res.headers.get('sl-violations')
    if (header) violations.push(`${where}: sl-violations ${header}`)
    if ((res.headers.get('content-type') ?? '').includes('application/problem+json') && String(parsed?.type).endsWith('VIOLATIONS'))
      violations.push(`${where}: ${JSON.stringify(parsed.validation)}`)
    return { status: res.status, headers: res.headers, body: parsed, text }
  }
  get = (path: string, headers?: Record<string, string>) => this.req('GET', path, undefined, headers)
  post = (path: string, body?: unknown, headers?: Record<string, string>) => this.req('POST', path, body, headers)
  put = (path: string, body?: unknown) => this.req('PUT', path, body)
  patch = (path: string, body?: unknown) => this.req('PATCH', path, body)
  delete = (path: string) => this.req('DELETE', path)

  async login(email: string, password = PASSWORD) {
    const res = await this.post('/auth/login', { email, password })
    expect(res.status, res.text).toBe(200)
    await this.refreshCsrf()
    return res
  }
  async refreshCsrf() {
    const res = await this.get('/auth/csrf')
    expect(res.status, res.text).toBe(200)
    this.csrf = res.body.token
  }
}

const viaPrism = (bearer?: string) => new Via(() => proxyUrl, bearer)
const direct = () => new Via(() => appUrl)
const email = (label: string) => `${label}-${Math.random().toString(36).slice(2, 10)}@example.com`
const uuid = '01890000-0000-7000-8000-000000000000'

/** The kit's error body: what every 4xx/5xx it sends carries. */
const errorBody = (status: number, code?: string) => ({
  statusCode: status,
  error: expect.any(String),
  message: expect.any(String),
  code: code ?? expect.any(String),
})

/** Took no violation since the last call: each test ends with it, so a mismatch names its test. */
const noViolations = () => {
  const found = violations.splice(0)
  expect(found, `prism log:\n${prismLog.slice(-4000)}`).toEqual([])
}

// Dozens of requests per test, each through two processes: room for a loaded machine (the default is 30 s).
describe('through prism proxy --errors', { timeout: 90_000 }, () => {
  it('reports what violates the document (the canaries): a 500 VIOLATIONS problem and the sl-violations header', async () => {
    const c = viaPrism()
    const body = await c.get('/docs/json')
    expect(body.status).toBe(500)
    expect(body.headers.get('content-type')).toContain('application/problem+json')
    const status = await c.get('/docs/yaml')
    const found = violations.splice(0)
    expect(found.filter((v) => v.startsWith('GET /docs/json → 500: sl-violations')).join()).toContain('prismCanary')
    expect(found.filter((v) => v.startsWith('GET /docs/json → 500: [')).join()).toContain('prismCanary')
    expect(found.filter((v) => v.startsWith(`GET /docs/yaml → ${status.status}`)), found.join('\n')).not.toEqual([])
  })

  it('public routes: health, plans, blog, robots, sitemap', async () => {
    const c = viaPrism()
    expect((await c.get('/health')).status).toBe(200)
    expect((await c.get('/health/ready')).status).toBe(200)
    const plans = await c.get('/billing/plans')
    expect(plans.status, plans.text).toBe(200)
    expect((await c.get('/blog', { accept: 'text/html' })).status).toBe(200)
    expect((await c.get('/robots.txt', { accept: 'text/plain' })).status).toBe(200)
    expect((await c.get('/sitemap.xml', { accept: 'application/xml' })).status).toBe(200)
    expect((await c.get('/blog/feed.xml', { accept: 'application/rss+xml' })).status).toBe(200)
    expect((await c.get('/blog/atom.xml', { accept: 'application/atom+xml' })).status).toBe(200)
    // A missing post: an HTML page for browsers, the JSON error otherwise (both documented).
    expect((await c.get('/blog/no-such-post', { accept: 'text/html' })).status).toBe(404)
    const missing = await c.get('/blog/no-such-post')
    expect(missing.status).toBe(404)
    expect(missing.body).toMatchObject(errorBody(404))
    noViolations()
  })

  it('signup, session, CSRF, profile, tenants; logout ends the session', async () => {
    const c = viaPrism()
    const address = email('signup')
    const signup = await c.post('/auth/signup', { email: address, password: PASSWORD, name: 'Sig' })
    expect(signup.status, signup.text).toBe(201)
    expect(c.cookies.has('sid')).toBe(true)
    await c.refreshCsrf()
    const me = await c.get('/me')
    expect(me.status, me.text).toBe(200)
    expect(me.body.user.email).toBe(address)
    expect((await c.patch('/me', { name: 'Renamed' })).status).toBe(200)
    const tenants = await c.get('/tenants')
    expect(tenants.status, tenants.text).toBe(200)

    // Already registered: 409 with the kit's error body.
    const again = await viaPrism().post('/auth/signup', { email: address, password: PASSWORD })
    expect(again.status, again.text).toBe(409)
    expect(again.body).toMatchObject(errorBody(409))
    // Wrong password: 401.
    const wrong = await viaPrism().post('/auth/login', { email: address, password: 'not the password' })
    expect(wrong.status, wrong.text).toBe(401)
    expect(wrong.body).toMatchObject(errorBody(401))

    // A cookie write without the CSRF token: 403 from the kit (the header is optional in the document:
    // API keys need none).
    const noCsrf = await c.req('PATCH', '/me', { name: 'x' }, { 'x-csrf-token': '' })
    expect(noCsrf.status, noCsrf.text).toBe(403)
    expect(noCsrf.body).toMatchObject(errorBody(403))

    const old = [...c.cookies]
    expect((await c.post('/auth/logout')).status).toBe(204)
    // The old cookie is present (Prism lets it through) but no longer a session: the kit's 401.
    const stale = viaPrism()
    for (const [k, v] of old) stale.cookies.set(k, v)
    const after = await stale.get('/me')
    expect(after.status, after.text).toBe(401)
    expect(after.body).toMatchObject(errorBody(401))
    noViolations()
  })

  it('projects: create, list, get, update, delete; 404 and the kit’s 400s', async () => {
    const c = viaPrism()
    expect((await c.post('/auth/signup', { email: email('proj'), password: PASSWORD })).status).toBe(201)
    await c.refreshCsrf()
    const created = await c.post('/api/projects', { name: 'Apollo', description: 'to the moon' })
    expect(created.status, created.text).toBe(201)
    const id = created.body.id
    expect((await c.post('/api/projects', { name: 'Gemini', description: null })).status).toBe(201)
    const list = await c.get('/api/projects?limit=1')
    expect(list.status, list.text).toBe(200)
    expect(list.body.items).toHaveLength(1)
    const next = await c.get(`/api/projects?limit=1&cursor=${encodeURIComponent(list.body.nextCursor)}`)
    expect(next.status, next.text).toBe(200)
    expect((await c.get('/api/projects?status=active')).status).toBe(200)
    expect((await c.get(`/api/projects/${id}`)).body).toEqual(created.body)
    const patched = await c.patch(`/api/projects/${id}`, { name: 'Apollo 11', status: 'archived' })
    expect(patched.status, patched.text).toBe(200)
    expect((await c.delete(`/api/projects/${id}`)).status).toBe(204)
    const gone = await c.get(`/api/projects/${id}`)
    expect(gone.status).toBe(404)
    expect(gone.body).toMatchObject(errorBody(404, 'PROJECT_NOT_FOUND'))

    // Invalid by the document: Prism refuses it (422, never forwarded), and the kit on its own answers 400
    // VALIDATION_ERROR for the same request: both read the same schema.
    const bad = { name: '' }
    const refused = await c.post('/api/projects', bad)
    expect(refused.status, refused.text).toBe(422)
    expect(refused.headers.get('content-type')).toContain('application/problem+json')
    const d = direct()
    d.cookies = c.cookies
    d.csrf = c.csrf
    const kit = await d.post('/api/projects', bad)
    expect(kit.status, kit.text).toBe(400)
    expect(kit.body).toMatchObject(errorBody(400, 'VALIDATION_ERROR'))
    noViolations()
  })

  it('tenant, members, settings, preferences, API keys (used as a bearer), billing reads, audit log, jobs', async () => {
    const owner = viaPrism()
    const ownerEmail = email('owner')
    const signup = await owner.post('/auth/signup', { email: ownerEmail, password: PASSWORD })
    expect(signup.status, signup.text).toBe(201)
    await markVerified(ctx.app, signup.body.user.id) // API keys need a verified address
    await owner.refreshCsrf()
    const tenant = await owner.get('/api/tenant')
    expect(tenant.status, tenant.text).toBe(200)
    const { slug, id: tenantId } = tenant.body.tenant
    expect((await owner.patch('/api/tenant', { name: 'Prism Inc' })).status).toBe(200)
    // The same routes under /t/{tenant}/…
    const scoped = await owner.get(`/t/${slug}/api/tenant`)
    expect(scoped.status, scoped.text).toBe(200)
    expect((await owner.get(`/t/${slug}/api/projects`)).status).toBe(200)

    // Members: an invitation (deprecated POST /api/members does the same), the list, a role change, removal.
    const invited = await owner.post('/api/invitations', { email: email('invitee'), role: 'member', localRole: 'viewer' })
    expect(invited.status, invited.text).toBe(201)
    const invitations = await owner.get('/api/invitations')
    expect(invitations.status, invitations.text).toBe(200)
    const resent = await owner.post(`/api/invitations/${invited.body.id}/resend`)
    expect(resent.status, resent.text).toBe(200)
    const deprecated = await owner.post('/api/members', { email: email('old-style'), role: 'member' })
    expect(deprecated.status, deprecated.text).toBe(201)
    expect((await owner.delete(`/api/invitations/${invited.body.id}`)).status).toBe(204)

    const viewer = await newMember(ctx.app, 'viewer')
    await joinTenant(ctx.app, tenantId, { id: viewer.id, email: viewer.email }, 'member', 'viewer')
    const members = await owner.get('/api/members')
    expect(members.status, members.text).toBe(200)
    expect(members.body.items).toEqual(expect.arrayContaining([expect.objectContaining({ userId: viewer.id })]))

    // The viewer, through Prism: reads, and a write its role does not allow (403).
    const v = viaPrism()
    await v.login(viewer.email)
    expect((await v.get(`/t/${slug}/api/projects`)).status).toBe(200)
    // The same tenant named by the X-Tenant-ID header the document declares (the viewer's active tenant is
    // their own personal one, or none).
    const byHeader = await v.get('/api/projects', { 'x-tenant-id': slug })
    expect(byHeader.status, byHeader.text).toBe(200)
    const notTheirs = await v.get('/api/projects', { 'x-tenant-id': 'no-such-tenant-here' })
    expect(notTheirs.status, notTheirs.text).toBe(404)
    const denied = await v.post(`/t/${slug}/api/projects`, { name: 'nope' })
    expect(denied.status, denied.text).toBe(403)
    expect(denied.body).toMatchObject(errorBody(403))
    // A tenant that is not theirs (or not there): 404.
    const elsewhere = await v.get('/t/no-such-tenant-here/api/projects')
    expect(elsewhere.status, elsewhere.text).toBe(404)
    expect(elsewhere.body).toMatchObject(errorBody(404))

    // An invitation accepted through Prism: the public read of the token, then the accept by its addressee.
    const guest = await newMember(ctx.app, 'guest', { verified: true })
    const { token } = await createInvitationsRepository(ctx.app.host.db).create({
      tenantId,
      email: guest.email,
      role: 'member',
      localRole: 'viewer',
      invitedBy: null,
    })
    const g = viaPrism()
    const read = await g.get(`/invitations/${token}`)
    expect(read.status, read.text).toBe(200)
    await g.login(guest.email)
    const accepted = await g.post(`/invitations/${token}/accept`)
    expect(accepted.status, accepted.text).toBe(200)
    const usedAgain = await g.post(`/invitations/${token}/accept`)
    expect(usedAgain.status, usedAgain.text).toBeGreaterThanOrEqual(400)
    expect(usedAgain.body).toMatchObject(errorBody(usedAgain.status))
    // An ownership offer: refused to a member (409), made to them once an admin, seen by them, withdrawn.
    const notAdmin = await owner.post(`/api/members/${guest.id}/ownership-offer`)
    expect(notAdmin.status, notAdmin.text).toBe(409)
    expect(notAdmin.body).toMatchObject(errorBody(409, 'OFFER_NEEDS_ADMIN'))
    expect((await owner.patch(`/api/members/${guest.id}`, { role: 'admin' })).status).toBe(200)
    const offer = await owner.post(`/api/members/${guest.id}/ownership-offer`)
    expect(offer.status, offer.text).toBe(201)
    const offers = await g.get(`/t/${slug}/api/ownership-offers`)
    expect(offers.status, offers.text).toBe(200)
    expect((await owner.delete(`/api/ownership-offers/${offer.body.id}`)).status).toBe(204)
    const withdrawn = await g.post(`/api/ownership-offers/${offer.body.id}/accept`, undefined, { 'x-tenant-id': slug })
    expect(withdrawn.status, withdrawn.text).toBeGreaterThanOrEqual(400)
    expect(withdrawn.body).toMatchObject(errorBody(withdrawn.status))

    const promoted = await owner.patch(`/api/members/${viewer.id}`, { localRole: 'editor' })
    expect(promoted.status, promoted.text).toBe(200)
    const granted = await owner.put(`/api/members/${viewer.id}/permissions`, { resource: 'projects', action: 'delete', granted: true })
    expect(granted.status, granted.text).toBe(200)
    expect((await owner.delete(`/api/members/${viewer.id}/permissions/projects/delete`)).status).toBe(204)
    expect((await owner.delete(`/api/members/${viewer.id}`)).status).toBe(204)

    // Settings and preferences; a time zone that the document allows (a string) but the kit does not know: 400.
    expect((await owner.get('/api/settings')).status).toBe(200)
    const settings = await owner.patch('/api/settings', { timezone: 'Europe/Paris', currency: 'EUR', featureFlags: { beta: true } })
    expect(settings.status, settings.text).toBe(200)
    const badZone = await owner.patch('/api/settings', { timezone: 'Mars/Olympus_Mons' })
    expect(badZone.status, badZone.text).toBe(400)
    expect(badZone.body).toMatchObject(errorBody(400, 'INVALID_TIMEZONE'))
    expect((await owner.get('/api/me/preferences')).status).toBe(200)
    const prefs = await owner.patch('/api/me/preferences', { preferences: { theme: 'dark', compact: true, size: 3, gone: null } })
    expect(prefs.status, prefs.text).toBe(200)

    // API keys: create, list, use one as a bearer through Prism, revoke; the revoked key is then 401.
    const key = await owner.post('/api/api-keys', { name: 'ci', role: 'editor', expiresInDays: 30 })
    expect(key.status, key.text).toBe(201)
    const keys = await owner.get('/api/api-keys')
    expect(keys.status, keys.text).toBe(200)
    const bot = viaPrism(key.body.secret)
    const made = await bot.post('/api/projects', { name: 'by key' })
    expect(made.status, made.text).toBe(201)
    expect((await bot.get('/api/projects')).status).toBe(200)
    expect((await owner.delete(`/api/api-keys/${key.body.id}`)).status).toBe(204)
    const revoked = await bot.get('/api/projects')
    expect(revoked.status, revoked.text).toBe(401)
    expect(revoked.body).toMatchObject(errorBody(401))

    // Billing: a checkout session (on the fake Stripe), then the reads; the audit log, jobs.
    const checkout = await owner.post('/api/billing/checkout', { planId: 'pro', interval: 'month' })
    expect(checkout.status, checkout.text).toBe(200)
    for (const path of ['/api/billing/subscription', '/api/billing/entitlements', '/api/audit-logs', '/api/jobs']) {
      const res = await owner.get(path)
      expect(res.status, `${path}: ${res.text}`).toBe(200)
    }
    const missingJob = await owner.get(`/api/jobs/${uuid}`)
    expect(missingJob.status, missingJob.text).toBe(404)
    noViolations()
  })

  it('the rest of the surface: tenants, account, exports and imports, offers, webhooks, billing, OAuth, Stripe', async () => {
    const c = viaPrism()
    const address = email('rest')
    expect((await c.post('/auth/signup', { email: address, password: PASSWORD })).status).toBe(201)
    await c.refreshCsrf()
    /** One call through Prism; its status (and the kit's error code) must be the expected one. */
    const call = async (status: number, method: string, path: string, body?: unknown, headers?: Record<string, string>, code?: string) => {
      const res = await c.req(method, path, body, headers)
      expect(res.status, `${method} ${path}: ${res.text.slice(0, 500)}`).toBe(status)
      if (status >= 400 && code) expect(res.body, `${method} ${path}`).toMatchObject(errorBody(status, code))
      return res
    }
    const second = await call(201, 'POST', '/tenants', { name: 'Second', slug: `second-${Math.random().toString(36).slice(2, 8)}` })
    await call(200, 'PUT', '/me/active-tenant', { tenant: second.body.tenant?.slug ?? second.body.slug })
    const third = await call(429, 'POST', '/tenants', { name: 'Third', slug: `third-${Math.random().toString(36).slice(2, 8)}` }, undefined, 'RATE_LIMITED')
    expect(third.headers.get('retry-after')).toMatch(/^\d+$/)
    await call(200, 'GET', '/me/export')
    await call(202, 'POST', '/auth/verify-email/request')
    await call(403, 'POST', '/me/email', { newEmail: email('moved') }, undefined, 'CURRENT_PASSWORD_INVALID')
    await call(202, 'POST', '/auth/password-reset/request', { email: address })
    await call(404, 'GET', '/invitations/not-a-real-token', undefined, undefined, 'INVITATION_NOT_FOUND')
    for (const path of ['/auth/verify-email/confirm', '/me/email/confirm']) {
      const res = await c.post(path, { token: 'not-a-real-token' })
      expect(res.status, `${path}: ${res.text}`).toBeGreaterThanOrEqual(400)
      expect(res.body).toMatchObject(errorBody(res.status))
    }
    const reset = await viaPrism().post('/auth/password-reset/confirm', { token: 'not-a-real-token', password: 'a new password here' })
    expect(reset.status, reset.text).toBeGreaterThanOrEqual(400)
    expect(reset.body).toMatchObject(errorBody(reset.status))
    await call(200, 'GET', '/api/ownership-offers')
    const exported = await call(202, 'POST', '/api/tenant/export')
    await call(200, 'GET', '/api/tenant/export')
    await call(200, 'GET', `/api/tenant/export/${exported.body.id}`)
    const recount = await call(202, 'POST', '/api/projects/recount')
    const job = await call(200, 'GET', `/api/jobs/${recount.body.id}`)
    expect(job.body).toMatchObject({ id: recount.body.id })

    // Without the plan: 402 / 403 FEATURE_NOT_IN_PLAN; a platform admin sets enterprise, and they answer.
    await call(402, 'GET', '/api/projects/export?format=csv', undefined, { accept: 'text/csv' }, 'SUBSCRIPTION_REQUIRED')
    await call(403, 'GET', '/api/webhooks', undefined, undefined, 'FEATURE_NOT_IN_PLAN')
    const ops = await newMember(ctx.app, 'ops-rest')
    await ctx.app.host.db.update(users).set({ isPlatformAdmin: true }).where(eq(users.id, ops.id))
    const a = viaPrism()
    await a.login(ops.email)
    const tenantId = (await call(200, 'GET', '/api/tenant')).body.tenant.id
    const plan = await a.post(`/admin/api/tenants/${tenantId}/plan`, { planKey: 'enterprise' })
    expect(plan.status, plan.text).toBe(200)
    await call(201, 'POST', '/api/projects', { name: 'Exported' })
    const csv = await call(200, 'GET', '/api/projects/export?format=csv', undefined, { accept: 'text/csv' })
    expect(csv.text).toContain('Exported')
    const jsonl = await call(200, 'GET', '/api/projects/export?format=jsonl', undefined, { accept: 'application/x-ndjson' })
    expect(jsonl.headers.get('content-type')).toContain('application/x-ndjson')
    await call(200, 'GET', '/api/audit-logs?format=jsonl', undefined, { accept: 'application/x-ndjson' })
    await call(200, 'GET', '/api/audit-logs?limit=2')
    // A streamed NDJSON upload (not JSON: sent by hand).
    const imported = await fetch(`${proxyUrl}/api/projects/import`, {
      method: 'POST',
      headers: {
        'content-type': 'application/x-ndjson',
        cookie: [...c.cookies].map(([k, v]) => `${k}=${v}`).join('; '),
        'x-csrf-token': c.csrf ?? '',
      },
      body: `${JSON.stringify({ name: 'Imported 1' })}\n${JSON.stringify({ name: 'Imported 2' })}\n`,
    })
    sent.add('POST /api/projects/import')
    expect(imported.status, await imported.text()).toBe(202)
    expect(imported.headers.get('sl-violations')).toBeNull()

    await call(200, 'GET', '/api/webhooks')
    const hook = await call(201, 'POST', '/api/webhooks', { url: 'http://127.0.0.1:9/hook', events: ['project.created'] })
    await call(200, 'GET', `/api/webhooks/${hook.body.id}`)
    await call(200, 'PATCH', `/api/webhooks/${hook.body.id}`, { events: ['project.created', 'project.deleted'] })
    await call(200, 'GET', `/api/webhooks/${hook.body.id}/deliveries`)
    await call(202, 'POST', `/api/webhooks/${hook.body.id}/test`)
    await call(204, 'DELETE', `/api/webhooks/${hook.body.id}`)
    await call(404, 'GET', `/api/webhooks/${hook.body.id}`)

    // The same tenant's reads under /t/{tenant}/… (the same handlers, each its own operation in the document).
    for (const path of ['settings', 'me/preferences', 'jobs', 'billing/subscription', 'billing/entitlements', 'api-keys', 'audit-logs', 'webhooks', 'members', 'invitations', 'tenant/export', 'ownership-offers'])
      await call(200, 'GET', `/t/${second.body.tenant?.slug ?? second.body.slug}/api/${path}`)
    await call(400, 'POST', '/api/billing/checkout/one-time', { priceId: 'price_NotForSale', quantity: 1 })
    await call(404, 'GET', '/billing/success?session_id=cs_test_nope', undefined, undefined, 'CHECKOUT_SESSION_NOT_FOUND')
    await call(200, 'GET', '/api/billing/subscription')
    await call(409, 'POST', '/api/billing/portal', {}, undefined, 'NO_BILLING_ACCOUNT')
    await call(404, 'POST', '/api/billing/cancel', undefined, undefined, 'NO_SUBSCRIPTION')
    await call(404, 'POST', '/api/billing/change-plan', { planId: 'pro', interval: 'month' }, undefined, 'NO_SUBSCRIPTION')
    await call(503, 'GET', '/auth/google/login', undefined, undefined, 'OAUTH_DISABLED')
    await call(503, 'GET', '/auth/google/callback?code=x&state=y', undefined, undefined, 'OAUTH_DISABLED')
    await call(400, 'POST', '/webhooks/stripe', { id: 'evt_x' }, { 'stripe-signature': 't=1,v1=00' }, 'INVALID_SIGNATURE')

    await call(204, 'POST', '/me/password', { currentPassword: PASSWORD, newPassword: `${PASSWORD} 2` })
    await c.refreshCsrf()
    // Last: the tenant itself goes (202, a job), after a wrong confirmation (400).
    const slug = (await call(200, 'GET', '/api/tenant')).body.tenant.slug
    await call(400, 'DELETE', '/api/tenant', { confirm: 'not-the-slug' })
    await call(202, 'DELETE', '/api/tenant', { confirm: slug })
    await call(204, 'POST', '/me/sessions/revoke-all')
    // And an account deleted, by a user of its own.
    const leaving = viaPrism()
    expect((await leaving.post('/auth/signup', { email: email('leaving'), password: PASSWORD })).status).toBe(201)
    await leaving.refreshCsrf()
    const wrongPassword = await leaving.req('DELETE', '/me', { currentPassword: 'not it' })
    expect(wrongPassword.status, wrongPassword.text).toBe(403)
    const gone = await leaving.req('DELETE', '/me', { currentPassword: PASSWORD })
    expect(gone.status, gone.text).toBe(204)
    noViolations()
  })

  it('the platform admin API as a platform admin; 403 for anyone else', async () => {
    const someone = viaPrism()
    const address = email('plain')
    expect((await someone.post('/auth/signup', { email: address, password: PASSWORD })).status).toBe(201)
    await someone.refreshCsrf()
    const refused = await someone.get('/admin/api/tenants')
    expect(refused.status, refused.text).toBe(403)
    expect(refused.body).toMatchObject(errorBody(403))

    const ops = await newMember(ctx.app, 'ops')
    await ctx.app.host.db.update(users).set({ isPlatformAdmin: true }).where(eq(users.id, ops.id))
    const a = viaPrism()
    await a.login(ops.email)
    const tenants = await a.get('/admin/api/tenants?limit=5')
    expect(tenants.status, tenants.text).toBe(200)
    const target = tenants.body.items[0]
    expect((await a.get(`/admin/api/tenants/${target.id}`)).status).toBe(200)
    const suspended = await a.post(`/admin/api/tenants/${target.id}/suspend`)
    expect(suspended.status, suspended.text).toBe(200)
    const resumed = await a.post(`/admin/api/tenants/${target.id}/resume`)
    expect(resumed.status, resumed.text).toBe(200)
    const missing = await a.get(`/admin/api/tenants/${uuid}`)
    expect(missing.status, missing.text).toBe(404)
    expect(missing.body).toMatchObject(errorBody(404))

    const found = await a.get(`/admin/api/users?q=${encodeURIComponent(address)}`)
    expect(found.status, found.text).toBe(200)
    const userId = found.body.items[0].id
    expect((await a.get(`/admin/api/users/${userId}`)).status).toBe(200)
    expect((await a.post(`/admin/api/users/${userId}/revoke-sessions`)).status).toBe(200)
    for (const path of ['/admin/api/audit-logs?limit=5', '/admin/api/migrations', '/admin/api/jobs?limit=5']) {
      const res = await a.get(path)
      expect(res.status, `${path}: ${res.text}`).toBe(200)
    }
    const disabled = await a.post(`/admin/api/users/${userId}/disable`)
    expect(disabled.status, disabled.text).toBe(200)
    const enabled = await a.post(`/admin/api/users/${userId}/enable`)
    expect(enabled.status, enabled.text).toBe(200)

    // A tenant made by the admin, bulk-suspended and resumed, soft-deleted and restored.
    const made = await a.post('/admin/api/tenants', { slug: `ops-${Math.random().toString(36).slice(2, 8)}`, name: 'Ops made', ownerEmail: address })
    expect([201, 202], made.text).toContain(made.status)
    const madeId = made.body.id ?? made.body.tenant?.id
    const bulk = await a.post('/admin/api/tenants/bulk-suspend', { ids: [madeId] })
    expect(bulk.status, bulk.text).toBe(202)
    const bulkResume = await a.post('/admin/api/tenants/bulk-resume', { ids: [madeId] })
    expect(bulkResume.status, bulkResume.text).toBe(202)
    const deleted = await a.delete(`/admin/api/tenants/${madeId}`)
    expect([200, 202], deleted.text).toContain(deleted.status)
    const restored = await a.post(`/admin/api/tenants/${madeId}/restore`)
    expect(restored.status, restored.text).toBe(200)
    // Valid by the document, refused by the kit: neither ids nor a filter.
    const neither = await a.post('/admin/api/jobs/retry', { queue: 'system' })
    expect(neither.status, neither.text).toBe(400)
    expect(neither.body).toMatchObject(errorBody(400, 'IDS_OR_FILTER'))
    // Valid by the document; this server has no shared database.
    const moved = await a.post(`/admin/api/tenants/${madeId}/move`, { isolation: 'shared' })
    expect(moved.status, moved.text).toBe(400)
    expect(moved.body).toMatchObject(errorBody(400, 'SHARED_ISOLATION_OFF'))
    const retried = await a.post('/admin/api/jobs/retry', { queue: 'system', ids: [uuid] })
    expect(retried.status, retried.text).toBe(200)
    const noJob = await a.get(`/admin/api/jobs/${uuid}`)
    expect(noJob.status, noJob.text).toBe(404)
    expect(noJob.body).toMatchObject(errorBody(404))
    const fleet = await a.post('/admin/api/migrations/fleet')
    expect(fleet.status, fleet.text).toBe(202)
    // The database servers: the list (no URL in it), and removal refused for the default server and an unknown one.
    const servers = await a.get('/admin/api/servers')
    expect(servers.status, servers.text).toBe(200)
    expect(servers.body.items[0]).toMatchObject({ name: 'default', reachable: true })
    expect((await a.post('/admin/api/servers/default/activate')).status).toBe(200)
    const primary = await a.delete('/admin/api/servers/default')
    expect(primary.status, primary.text).toBe(409)
    expect(primary.body).toMatchObject(errorBody(409, 'SERVER_NOT_REMOVABLE'))
    const noServer = await a.post('/admin/api/servers/nowhere/drain')
    expect(noServer.status, noServer.text).toBe(404)
    expect(noServer.body).toMatchObject(errorBody(404, 'SERVER_NOT_FOUND'))
    const jsonl = await a.get('/admin/api/audit-logs?format=jsonl&limit=5', { accept: 'application/x-ndjson' })
    expect(jsonl.status, jsonl.text).toBe(200)

    const key = await a.post('/admin/api/api-keys', { name: 'ops-ci', expiresInDays: 7 })
    expect(key.status, key.text).toBe(201)
    expect((await a.get('/admin/api/api-keys')).status).toBe(200)
    // The platform key as a bearer through Prism.
    const robot = viaPrism(key.body.secret)
    expect((await robot.get('/admin/api/users?limit=1')).status).toBe(200)
    expect((await a.delete(`/admin/api/api-keys/${key.body.id}`)).status).toBe(204)
    noViolations()
  })

  it('went through most of the document: the operations no request reached are few, and listed', () => {
    const reached = (o: (typeof operations)[number]) =>
      [...sent].some((r) => r.startsWith(`${o.method} `) && o.path.test(r.slice(o.method.length + 1)))
    const missed = operations.filter((o) => !reached(o) && !o.name.includes('prismCanary')).map((o) => o.name)
    // 126 of 171 when written. Not reached: SSE and WebSocket streams (Prism reads a whole response before
    // validating it), an export download and a webhook redelivery (both need a worker to have run), and the
    // /t/{tenant}/… twins of writes reached under /api/… (the same handlers and schemas).
    expect(operations.length - missed.length, `not reached:\n${missed.join('\n')}`).toBeGreaterThanOrEqual(120)
    for (const name of ['POST /api/projects', 'GET /admin/api/tenants', 'DELETE /me', 'GET /t/{tenant}/api/projects', 'POST /tenants'])
      expect(missed).not.toContain(name)
  })
})
