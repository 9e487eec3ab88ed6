
import { describe, expect, it } from 'vitest'
import { createClient } from '../helpers/client.js'
import { useApp } from '../helpers/use-app.js'

const ctx = useApp()

describe('signup → me → project → logout', () => {
  it('runs the whole first-five-minutes flow', async () => {
    const c = createClient(ctx.app)
    const signup = await c.signup('Ada.Lovelace@example.com', undefined, 'Ada')
    expect(signup.statusCode).toBe(201)
    const { user, tenant } = signup.json()
    expect(user).toMatchObject({ email: 'Ada.Lovelace@example.com', name: 'Ada', emailVerified: false })
    expect(tenant).toMatchObject({ status: 'active' })
    expect(tenant.slug).toMatch(/^ada-lovelace-[0-9a-f]{4}$/)
    const cookie = signup.cookies.find((x) => x.name === 'sid')
    expect(cookie).toMatchObject({ httpOnly: true, sameSite: 'Lax', path: '/' })

    const me = await c.get('/me')
    expect(me.statusCode).toBe(200)
    expect(me.json().memberships).toEqual([
      { tenantId: tenant.id, slug: tenant.slug, name: "Ada's workspace", role: 'owner', status: 'active', tenantStatus: 'active' },
    ])
    expect(me.json().activeTenant.tenantId).toBe(tenant.id)

    const created = await c.post('/api/projects', { name: 'Analytical Engine' })
    expect(created.statusCode).toBe(201)
    const project = created.json()
    expect((await c.get(`/api/projects/${project.id}`)).json()).toMatchObject({ name: 'Analytical Engine', createdBy: user.id })
    expect((await c.get('/api/tenant')).json()).toMatchObject({ tenant: { id: tenant.id }, role: 'admin', membershipRole: 'owner' })

    const sid = c.cookies.sid
    expect((await c.post('/auth/logout')).statusCode).toBe(204)
    // The old cookie is dead server-side, not just forgotten by the client.
    const replay = await ctx.app.inject({ url: '/me', cookies: { sid: sid! } })
    expect(replay.statusCode).toBe(401)
    expect(replay.json()).toMatchObject({ code: 'UNAUTHENTICATED' })
  })

  it('logs in with the same answer for a wrong email and a wrong password', async () => {
    const c = createClient(ctx.app)
    await c.signup('grace@example.com')
    const wrongPw = await createClient(ctx.app).login('grace@example.com', 'not the password at all')
    const wrongEmail = await createClient(ctx.app).login('nobody@example.com')
    for (const res of [wrongPw, wrongEmail]) {
      expect(res.statusCode).toBe(401)
      expect(res.json()).toEqual({
        statusCode: 401,
        error: 'Unauthorized',
        message: 'Email or password is incorrect',
        code: 'INVALID_CREDENTIALS',
      })
    }
    const ok = await createClient(ctx.app).login('GRACE@example.com')
    expect(ok.statusCode).toBe(200)
    expect(ok.json().memberships).toHaveLength(1)
  })

  it('regenerates the session id at login (no fixation)', async () => {
    const c = createClient(ctx.app)
    await c.signup('fix@example.com')
    const before = c.cookies.sid
    await c.login('fix@example.com')
    expect(c.cookies.sid).toBeDefined()
    expect(c.cookies.sid).not.toBe(before)
    expect((await ctx.app.inject({ url: '/me', cookies: { sid: before! } })).statusCode).toBe(401)
  })

  it('rejects bad signups with clear codes', async () => {
    const c = createClient(ctx.app)
    await c.signup('dup@example.com')
    const cases: [unknown, number, string][] = [
      [{ email: 'DUP@example.com', password: 'another good password' }, 409, 'EMAIL_TAKEN'],
      [{ email: 'weak@example.com', password: 'short' }, 400, 'WEAK_PASSWORD'],
      [{ email: 'weak@example.com', password: 'aaaaaaaaaaaaaaaa' }, 400, 'WEAK_PASSWORD'],
      [{ email: 'long@example.com', password: 'x1'.repeat(100) }, 400, 'PASSWORD_TOO_LONG'],
      [{ email: 'not-an-email', password: 'correct horse battery' }, 400, 'VALIDATION_ERROR'],
      [{ email: 'x@example.com', password: 'correct horse battery', admin: true }, 400, 'VALIDATION_ERROR'],
    ]
    for (const [body, status, code] of cases) {
      const res = await createClient(ctx.app).post('/auth/signup', body)
      expect(res.statusCode, JSON.stringify(body)).toBe(status)
      expect(res.json()).toMatchObject({ statusCode: status, code })
    }
  })

  it('requires a CSRF token on cookie-authenticated writes', async () => {
    const c = createClient(ctx.app)
    await c.signup('csrf@example.com')
    const token = c.csrf
    c.csrf = undefined
    const res = await c.post('/api/projects', { name: 'x' })
    expect(res.statusCode).toBe(403)
    expect(res.json()).toMatchObject({ code: 'CSRF_INVALID' })
    expect((await c.post('/api/projects', { name: 'x' }, { 'x-csrf-token': 'forged' })).statusCode).toBe(403)
    c.csrf = token
    expect((await c.post('/api/projects', { name: 'x' })).statusCode).toBe(201)
  })

  it('writes the audit log for auth events with ip and user agent', async () => {
    const c = createClient(ctx.app, '10.200.0.1')
    await c.signup('audit@example.com')
    await createClient(ctx.app, '10.200.0.2').login('audit@example.com', 'wrong password here')
    await c.login('audit@example.com')
    await c.post('/auth/logout')
    const rows = await ctx.app.host.sql<{ action: string; ip: string; user_agent: string }[]>`
      select action, ip, user_agent from sys_audit_logs where action like 'auth.%' and metadata->>'email' is distinct from 'x'
      and (actor_user_id = (select id from core_users where email = 'audit@example.com')) order by created_at`
    expect(rows.map((r) => r.action)).toEqual(['auth.signup', 'auth.login_failed', 'auth.login', 'auth.logout'])
    expect(rows[0]).toMatchObject({ ip: '10.200.0.1', user_agent: 'lightMyRequest' })
    expect(rows[1]).toMatchObject({ ip: '10.200.0.2' })
  })
})
