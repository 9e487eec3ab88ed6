/** /api/jobs (tenant admins, the tenant's own records) and /admin/queues (platform admins only). */
import { pino } from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { runCli } from '../../src/cli.js'
import { startWorkers, type WorkerRuntime } from '../../src/worker.js'
import { type Client, createClient } from '../helpers/client.js'
import { joinTenant } from '../helpers/members.js'
import { useApp } from '../helpers/use-app.js'
import { waitFor } from '../helpers/wait-for.js'

let worker: WorkerRuntime
let owner: Client
let other: Client
let tenantId: string
let otherTenantId: string

const ctx = useApp({ PLATFORM_ADMIN_EMAILS: 'ops@example.com' })
beforeAll(async () => {
  worker = await startWorkers(ctx.app.services, { scopes: ['tenant'], concurrency: 2 })
  owner = createClient(ctx.app)
  tenantId = (await owner.signup('jobs-owner@example.com')).json().tenant.id
  other = createClient(ctx.app)
  otherTenantId = (await other.signup('jobs-other@example.com')).json().tenant.id
})
afterAll(async () => {
  await worker?.close(5000)
})

const settled = (c: Client, id: string) =>
  waitFor(
    async () => {
      const job = (await c.get(`/api/jobs/${id}`)).json()
      return job.status === 'completed' || job.status === 'failed' ? job : undefined
    },
    { message: `job ${id} to settle`, interval: 50 },
  )

describe('/api/jobs', () => {
  it('lists and reads the resolved tenant’s jobs, with their result and queue state', async () => {
    await owner.post('/api/projects', { name: 'one' })
    const submitted = await ctx.app.services.tasks.submit('projects.recount', { tenantId })
    const job = await settled(owner, submitted.id)
    expect(job).toMatchObject({
      id: submitted.id,
      jobType: 'projects.recount',
      status: 'completed',
      result: { total: 1, active: 1 },
      queueState: 'completed',
    })
    const list = (await owner.get('/api/jobs?type=projects.recount')).json()
    expect(list.items.map((j: { id: string }) => j.id)).toContain(submitted.id)
  })

  it('never shows another tenant’s job, and needs the admin role', async () => {
    const theirs = await ctx.app.services.tasks.submit('projects.recount', { tenantId: otherTenantId })
    const res = await owner.get(`/api/jobs/${theirs.id}`)
    expect(res.statusCode).toBe(404)
    expect(res.json().code).toBe('JOB_NOT_FOUND')
    expect((await owner.get('/api/jobs')).json().items.map((j: { id: string }) => j.id)).not.toContain(theirs.id)

    const viewer = createClient(ctx.app)
    const signedUp = await viewer.signup('jobs-viewer@example.com')
    await joinTenant(ctx.app, tenantId, signedUp.json().user, 'member', 'viewer')
    const denied = await viewer.get('/api/jobs', { 'x-tenant-id': tenantId })
    expect(denied.statusCode).toBe(403)
    expect(denied.json().code).toBe('INSUFFICIENT_ROLE')
  })

  it('rejects bad filters', async () => {
    expect((await owner.get('/api/jobs?status=exploded')).statusCode).toBe(400)
    expect((await owner.get('/api/jobs?limit=0')).statusCode).toBe(400)
    expect((await owner.get('/api/jobs/not-a-uuid')).statusCode).toBe(400)
  })
})

describe('/admin/queues (Bull Board)', () => {
  /** The operator's `npm run users -- …`, in this process (what src/cli.ts main() runs). */
  const users = async (...args: string[]) => {
    const out: string[] = []
    const code = await runCli(['users', ...args], {
      config: ctx.env.config,
      logger: pino({ level: 'silent' }),
      io: { out: (l) => out.push(l), err: (l) => out.push(l) },
    })
    return { code, out }
  }

  it('is for platform admins only: granted from the CLI, read from the DB on each request', async () => {
    expect((await ctx.app.inject('/admin/queues')).statusCode).toBe(401)
    const denied = await owner.get('/admin/queues')
    expect(denied.statusCode).toBe(403)
    expect(denied.json().code).toBe('PLATFORM_ADMIN_REQUIRED')

    const ops = createClient(ctx.app)
    await ops.signup('granted-ops@example.com')
    expect((await ops.get('/admin/queues')).statusCode).toBe(403)
    expect((await users('grant-admin', 'Granted-Ops@example.com')).code).toBe(0)
    const board = await ops.get('/admin/queues')
    expect(board.statusCode).toBe(200)
    expect(board.headers['content-type']).toContain('text/html')
    const queues = await ops.get('/admin/queues/api/queues')
    expect(queues.statusCode).toBe(200)
    expect(
      queues
        .json()
        .queues.map((q: { name: string }) => q.name)
        .sort(),
    ).toEqual(['schedules', 'system', 'tenant'])

    // A revocation applies on the very next request, whatever the session's user snapshot says.
    expect((await users('revoke-admin', 'granted-ops@example.com')).code).toBe(0)
    expect((await ops.get('/admin/queues')).statusCode).toBe(403)
  })

  it('Bull Board writes: admin check first, then same origin (no CSRF token), errors in the kit shape without internals', async () => {
    const ops = createClient(ctx.app)
    await ops.signup('board-admin@example.com')
    const pause = '/admin/queues/api/queues/system/pause'
    const resume = '/admin/queues/api/queues/system/resume'
    const self = 'http://localhost:80'
    // Not an admin: refused as such, whatever the origin says (nothing is learnt about the origin rule).
    expect((await ctx.app.inject({ method: 'PUT', url: pause, headers: { origin: self } })).statusCode).toBe(401)
    const notAdmin = await owner.put(pause, undefined, { origin: self, 'sec-fetch-site': 'same-origin' })
    expect(notAdmin.json()).toMatchObject({ statusCode: 403, code: 'PLATFORM_ADMIN_REQUIRED' })
    expect((await users('grant-admin', 'board-admin@example.com')).code).toBe(0)

    // An admin's browser on another site, or a request with no origin at all: refused, nothing paused.
    for (const headers of [{ origin: 'https://evil.example' }, { 'sec-fetch-site': 'cross-site', origin: self }, { 'sec-fetch-site': 'same-site' }, {}] as Record<string, string>[]) {
      const res = await ops.put(pause, undefined, { ...headers, 'x-csrf-token': '' })
      expect(res.statusCode, JSON.stringify(headers)).toBe(403)
      expect(res.json()).toEqual({ statusCode: 403, error: 'Forbidden', message: expect.any(String), code: 'CROSS_SITE_REQUEST' })
    }
    expect(await ctx.app.services.tasks.queues.system.isPaused()).toBe(false)

    // From the board's own page (Bull Board sends no CSRF token): allowed, by Sec-Fetch-Site or by Origin.
    const noToken = { 'x-csrf-token': 'not-a-token' }
    expect((await ops.put(pause, undefined, { ...noToken, 'sec-fetch-site': 'same-origin' })).statusCode).toBe(200)
    expect(await ctx.app.services.tasks.queues.system.isPaused()).toBe(true)
    expect((await ops.put(resume, undefined, { ...noToken, origin: ctx.env.config.appBaseUrl })).statusCode).toBe(200)
    expect(await ctx.app.services.tasks.queues.system.isPaused()).toBe(false)

    // Bull Board's own errors leave in the kit's shape, without a stack trace.
    const unknown = await ops.put('/admin/queues/api/queues/nope/pause', undefined, { origin: self })
    expect(unknown.statusCode).toBe(404)
    expect(unknown.json()).toMatchObject({ statusCode: 404, error: 'Not Found', code: expect.any(String) })
    expect(unknown.body).not.toMatch(/stack|\/work\/|node_modules/)

    // The page loads no third-party stylesheet (the CSP would refuse it).
    const page = await ops.get('/admin/queues')
    expect(page.statusCode).toBe(200)
    expect(page.body).not.toContain('fonts.googleapis.com')
    expect(page.body).toContain('static/css/')
  })

  it('PLATFORM_ADMIN_EMAILS admits only a verified email: signing up first with that address gets nothing', async () => {
    // Anyone can sign up with a password as ops@example.com (listed in PLATFORM_ADMIN_EMAILS): unverified.
    const squatter = createClient(ctx.app)
    const { user } = (await squatter.signup('ops@example.com')).json()
    expect(user.emailVerified).toBe(false)
    const denied = await squatter.get('/admin/queues')
    expect(denied.statusCode).toBe(403)
    expect(denied.json().code).toBe('PLATFORM_ADMIN_REQUIRED')
    expect((await users('list-admins')).out.join('\n')).not.toContain('ops@example.com')

    // Once the address is verified (e.g. linked through Google), the bootstrap list applies.
    await ctx.app.host.sql`update core_users set email_verified_at = now() where id = ${user.id}`
    expect((await squatter.get('/admin/queues')).statusCode).toBe(200)
    const listed = await users('list-admins')
    expect(listed.out.find((l) => l.startsWith('ops@example.com'))).toMatch(/ops@example\.com\s+\S+\s+yes\s+PLATFORM_ADMIN_EMAILS$/)
  })
})

describe('a feature job', () => {
  it('submitted from a route (POST /api/projects/recount) runs in the worker', async () => {
    await owner.post('/api/projects', { name: 'counted' })
    const res = await owner.post('/api/projects/recount')
    expect(res.statusCode, res.body).toBe(202)
    expect(res.json()).toMatchObject({ jobType: 'projects.recount' })
    const job = await settled(owner, res.json().id)
    expect(job).toMatchObject({ jobType: 'projects.recount', status: 'completed', result: { total: expect.any(Number) } })
    expect(job.result.total).toBeGreaterThanOrEqual(1)
    // It is a tenant route like any other: behind the guard.
    expect((await createClient(ctx.app).post('/api/projects/recount')).statusCode).toBe(401)
  })
})
