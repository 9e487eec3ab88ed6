/**
 * Account flows end to end: email verification, password reset and change, sessions, the account's
 * self-service (name, email change, export, deletion), the tenant a login starts in, and login
 * throttling. Mail goes through the real `email.send` job (a worker in this process) to a real SMTP
 * server; every token is read from the delivered message.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { DELAY_FREE, LOGIN_FAILURES_PER_EMAIL_IP } from '../../src/features/auth/login-throttle.js'
import { hashPassword } from '../../src/core/identity/password.js'
import { RESET_REQUESTED } from '../../src/features/auth/routes/password-reset.js'
import { startWorkers, type WorkerRuntime } from '../../src/worker.js'
import { type Client, createClient, PASSWORD } from '../helpers/client.js'
import { type CapturedMail, type SmtpCapture, startSmtpCapture } from '../helpers/smtp.js'
import { useApp } from '../helpers/use-app.js'

const BASE = 'http://app.account.test'
let smtp: SmtpCapture
let worker: WorkerRuntime

beforeAll(async () => {
  smtp = await startSmtpCapture()
})
afterAll(async () => {
  await smtp?.close()
})
// Dropping the ~40 tenant databases this file makes takes a while (each DROP DATABASE checkpoints).
const ctx = useApp(() => ({ APP_BASE_URL: BASE, SMTP_HOST: smtp.host, SMTP_PORT: String(smtp.port), SMTP_STARTTLS: 'false' }), {
  closeTimeoutMs: 180_000,
})
beforeAll(async () => {
  worker = await startWorkers(ctx.app.services, { scopes: ['system'], concurrency: 4 })
}, 30_000)
afterAll(async () => {
  await worker?.close(5000)
})

let seq = 0
const unique = (label: string) => `${label}-${Date.now().toString(36)}${(seq++).toString(36)}@account.test`
const TOKEN = /\b(tk[vre]_[A-Za-z0-9_-]{43})\b/

/** The `n`-th message (1-based) delivered to `to` whose subject contains `subject`. */
async function mailTo(to: string, subject: string, n = 1): Promise<CapturedMail> {
  const pick = () => smtp.messages.filter((m) => m.envelope.to.includes(to.toLowerCase()) && m.subject?.includes(subject))[n - 1]
  await expect.poll(pick, { timeout: 15_000, interval: 50 }).toBeDefined()
  return pick()!
}
const tokenIn = (mail: CapturedMail) => {
  const token = TOKEN.exec(mail.text ?? '')?.[1]
  expect(token, mail.text).toBeDefined()
  return token!
}
const userRow = async (email: string) =>
  (
    await ctx.app.host.sql<
      {
        id: string
        email: string
        name: string | null
        email_verified_at: Date | null
        deleted_at: Date | null
        password_hash: string | null
      }[]
    >`select id, email, name, email_verified_at, deleted_at, password_hash from core_users where lower(email) = lower(${email})`
  )[0]

async function signedUp(label: string) {
  const email = unique(label)
  const c = createClient(ctx.app)
  const res = await c.signup(email, PASSWORD, label)
  expect(res.statusCode, res.body).toBe(201)
  return { c, email, id: res.json().user.id as string, tenantId: res.json().tenant.id as string }
}
async function verified(label: string) {
  const u = await signedUp(label)
  const res = await createClient(ctx.app).post('/auth/verify-email/confirm', { token: tokenIn(await mailTo(u.email, 'Confirm your email')) })
  expect(res.statusCode, res.body).toBe(200)
  return u
}
/** The link is the token: the email job's record must never hold it in clear (src/core/email/sealed.ts). */
async function expectNotInJobRecords(token: string) {
  const payloads = await ctx.app.host.sql`select payload from sys_jobs where job_type = 'email.send'`
  expect(payloads.length).toBeGreaterThan(0)
  expect(JSON.stringify(payloads)).not.toContain(token)
}
const createKey = (c: Client) => c.post('/api/api-keys', { name: 'k', role: 'viewer' })
const useKey = (secret: string) => ctx.app.inject({ url: '/api/projects', headers: { authorization: `Bearer ${secret}` } })

describe('email verification', () => {
  it('signup mails a link; until it is used the account works in its tenant but may not create API keys', async () => {
    const { c, email } = await signedUp('verify')
    expect((await c.get('/me')).json().user.emailVerified).toBe(false)
    expect((await c.post('/api/projects', { name: 'mine' })).statusCode).toBe(201)
    const refused = await createKey(c)
    expect(refused.statusCode).toBe(403)
    expect(refused.json()).toMatchObject({ statusCode: 403, code: 'EMAIL_NOT_VERIFIED' })

    const mail = await mailTo(email, 'Confirm your email')
    expect(mail.text).toContain(`${BASE}/verify-email?token=`)
    await expectNotInJobRecords(tokenIn(mail))
    const confirmed = await c.post('/auth/verify-email/confirm', { token: tokenIn(mail) })
    expect(confirmed.statusCode, confirmed.body).toBe(200)
    expect(confirmed.json().user).toMatchObject({ email, emailVerified: true })
    expect((await c.get('/me')).json().user.emailVerified).toBe(true)
    expect((await createKey(c)).statusCode).toBe(201)
    expect((await userRow(email))!.email_verified_at).not.toBeNull()
  })

  it('gives every bad token its own code: malformed, unknown, used, expired, stale', async () => {
    const { email, id } = await signedUp('badtoken')
    const token = tokenIn(await mailTo(email, 'Confirm your email'))
    const confirm = (t: string) => createClient(ctx.app).post('/auth/verify-email/confirm', { token: t })

    expect((await confirm('not-a-token')).json()).toMatchObject({ statusCode: 400, code: 'TOKEN_MALFORMED' })
    // Right shape, wrong purpose: a reset token is not a verification token.
    expect((await confirm(`tkr_${token.slice(4)}`)).json()).toMatchObject({ statusCode: 400, code: 'TOKEN_MALFORMED' })
    expect((await confirm(`tkv_${'A'.repeat(43)}`)).json()).toMatchObject({ statusCode: 404, code: 'TOKEN_NOT_FOUND' })
    expect((await confirm(token)).statusCode).toBe(200)
    expect((await confirm(token)).json()).toMatchObject({ statusCode: 409, code: 'TOKEN_USED' })

    const other = await signedUp('expired')
    const late = tokenIn(await mailTo(other.email, 'Confirm your email'))
    await ctx.app.host.sql`update core_user_tokens set expires_at = now() - interval '1 second' where user_id = ${other.id}`
    expect((await confirm(late)).json()).toMatchObject({ statusCode: 410, code: 'TOKEN_EXPIRED' })
    expect((await userRow(other.email))!.email_verified_at).toBeNull()

    // A link mailed to an address the account has since left.
    const third = await signedUp('stale')
    const stale = tokenIn(await mailTo(third.email, 'Confirm your email'))
    await ctx.app.host.sql`update core_users set email = ${unique('moved')} where id = ${third.id}`
    expect((await confirm(stale)).json()).toMatchObject({ statusCode: 409, code: 'TOKEN_STALE' })
    expect(id).toBeTruthy()
  })

  it('sends the link again on request (rate limited), and says so when there is nothing to verify', async () => {
    const { c, email } = await signedUp('resend')
    await mailTo(email, 'Confirm your email')
    const again = await c.post('/auth/verify-email/request')
    expect(again.statusCode, again.body).toBe(202)
    const second = tokenIn(await mailTo(email, 'Confirm your email', 2))
    expect((await c.post('/auth/verify-email/request')).statusCode).toBe(202)
    expect((await c.post('/auth/verify-email/request')).statusCode).toBe(202)
    const limited = await c.post('/auth/verify-email/request')
    expect(limited.json()).toMatchObject({ statusCode: 429, code: 'RATE_LIMITED' })

    expect((await c.post('/auth/verify-email/confirm', { token: second })).statusCode).toBe(200)
    const fresh = await verified('already')
    expect((await fresh.c.post('/auth/verify-email/request')).json()).toMatchObject({ statusCode: 409, code: 'EMAIL_ALREADY_VERIFIED' })
    expect((await createClient(ctx.app).post('/auth/verify-email/request')).statusCode).toBe(401)
  })

  it('needs the CSRF token from a logged-in session', async () => {
    const { c } = await signedUp('csrf')
    const res = await c.post('/auth/verify-email/request', undefined, { 'x-csrf-token': 'forged' })
    expect(res.statusCode).toBe(403)
  })
})

describe('password reset', () => {
  it('answers 202 with the same body for an account and for an unknown address, and queues the same job for both', async () => {
    const { email } = await signedUp('reset-same')
    const unknown = unique('nobody')
    const known = await createClient(ctx.app).post('/auth/password-reset/request', { email })
    const none = await createClient(ctx.app).post('/auth/password-reset/request', { email: unknown })
    expect(known.statusCode).toBe(202)
    expect(none.statusCode).toBe(202)
    expect(known.body).toBe(none.body)
    expect(known.json()).toEqual(RESET_REQUESTED)
    // The request path does the same work for both: one auth.password_reset_request job each.
    const jobs = await ctx.app.services.tasks.listJobs({ type: 'auth.password_reset_request', limit: 200 })
    const forEmail = (e: string) => jobs.filter((j) => (j.payload as { email: string }).email === e)
    expect(forEmail(email)).toHaveLength(1)
    expect(forEmail(unknown)).toHaveLength(1)
    await mailTo(email, 'Reset your')
  })

  it('takes about as long for an account as for an unknown address (medians of interleaved samples)', async () => {
    const accounts: string[] = []
    for (let i = 0; i < 12; i++) {
      const email = unique('timing')
      await ctx.app.users.create({ email, passwordHash: 'x' })
      accounts.push(email)
    }
    const time = async (email: string) => {
      const started = performance.now()
      const res = await createClient(ctx.app).post('/auth/password-reset/request', { email })
      expect(res.statusCode).toBe(202)
      return performance.now() - started
    }
    const known: number[] = []
    const unknown: number[] = []
    for (const email of accounts) {
      known.push(await time(email))
      unknown.push(await time(unique('ghost')))
    }
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
    const [k, u] = [median(known), median(unknown)]
    // Same code path, so a generous bound: a lookup or an argon2 hash on one side only would show far beyond it.
    expect(Math.abs(k - u), `known ${k.toFixed(1)} ms, unknown ${u.toFixed(1)} ms`).toBeLessThan(Math.max(k, u) * 0.5 + 5)
  })

  it('sets the password, verifies the address and ends every older session and API key; the link works once', async () => {
    const { c, email } = await verified('reset')
    const secret = (await createKey(c)).json().secret as string
    expect((await useKey(secret)).statusCode).toBe(200)
    const other = createClient(ctx.app)
    expect((await other.login(email)).statusCode).toBe(200)

    expect((await createClient(ctx.app).post('/auth/password-reset/request', { email })).statusCode).toBe(202)
    const mail = await mailTo(email, 'Reset your')
    expect(mail.text).toContain('30 minutes')
    expect(mail.text).toContain(`${BASE}/reset-password?token=`)
    const token = tokenIn(mail)
    await expectNotInJobRecords(token)
    const anon = createClient(ctx.app)
    // A refused password leaves the token usable.
    expect((await anon.post('/auth/password-reset/confirm', { token, password: 'short' })).json()).toMatchObject({ statusCode: 400 })
    const done = await anon.post('/auth/password-reset/confirm', { token, password: 'a brand new passphrase' })
    expect(done.statusCode, done.body).toBe(200)

    expect((await c.get('/me')).json()).toMatchObject({ statusCode: 401, code: 'SESSION_REVOKED' })
    expect((await other.get('/me')).json()).toMatchObject({ statusCode: 401, code: 'SESSION_REVOKED' })
    expect((await useKey(secret)).json()).toMatchObject({ statusCode: 401, code: 'INVALID_API_KEY' })
    expect((await createClient(ctx.app).login(email)).statusCode).toBe(401)
    expect((await createClient(ctx.app).login(email, 'a brand new passphrase')).statusCode).toBe(200)
    expect((await anon.post('/auth/password-reset/confirm', { token, password: 'another new passphrase' })).json()).toMatchObject({
      statusCode: 409,
      code: 'TOKEN_USED',
    })
  })

  it('marks an unverified address verified, and refuses expired, unknown and malformed tokens with their codes', async () => {
    const { email, id } = await signedUp('reset-unverified')
    await createClient(ctx.app).post('/auth/password-reset/request', { email })
    const token = tokenIn(await mailTo(email, 'Reset your'))
    const confirm = (t: string) => createClient(ctx.app).post('/auth/password-reset/confirm', { token: t, password: 'fresh passphrase here' })
    expect((await confirm('tkr_short')).json()).toMatchObject({ statusCode: 400, code: 'TOKEN_MALFORMED' })
    expect((await confirm(`tkr_${'b'.repeat(43)}`)).json()).toMatchObject({ statusCode: 404, code: 'TOKEN_NOT_FOUND' })
    expect((await confirm(token)).statusCode).toBe(200)
    expect((await userRow(email))!.email_verified_at).not.toBeNull()

    await createClient(ctx.app).post('/auth/password-reset/request', { email })
    const late = tokenIn(await mailTo(email, 'Reset your', 2))
    await ctx.app.host.sql`update core_user_tokens set expires_at = now() - interval '1 second' where user_id = ${id} and used_at is null`
    expect((await confirm(late)).json()).toMatchObject({ statusCode: 410, code: 'TOKEN_EXPIRED' })
  })

  it('rate limits requests per address, the same for any address', async () => {
    for (const email of [unique('limit-known'), unique('limit-unknown')]) {
      if (email.startsWith('limit-known')) await ctx.app.users.create({ email, passwordHash: 'x' })
      for (let i = 0; i < 3; i++) expect((await createClient(ctx.app).post('/auth/password-reset/request', { email })).statusCode).toBe(202)
      expect((await createClient(ctx.app).post('/auth/password-reset/request', { email })).json()).toMatchObject({ statusCode: 429 })
    }
    expect((await createClient(ctx.app).post('/auth/password-reset/request', { email: 'not an email' })).statusCode).toBe(400)
  })
})

describe('password change and sessions', () => {
  it('POST /me/password checks the current password, ends the other sessions and keeps this one (and API keys)', async () => {
    const { c, email } = await verified('change')
    const secret = (await createKey(c)).json().secret as string
    const laptop = createClient(ctx.app)
    expect((await laptop.login(email)).statusCode).toBe(200)

    const wrong = await c.post('/me/password', { currentPassword: 'not it at all', newPassword: 'changed passphrase one' })
    expect(wrong.json()).toMatchObject({ statusCode: 403, code: 'CURRENT_PASSWORD_INVALID' })
    expect((await c.post('/me/password', { currentPassword: PASSWORD, newPassword: 'short' })).statusCode).toBe(400)
    const ok = await c.post('/me/password', { currentPassword: PASSWORD, newPassword: 'changed passphrase one' })
    expect(ok.statusCode, ok.body).toBe(204)

    expect((await c.get('/me')).statusCode).toBe(200)
    c.csrf = (await c.get('/auth/csrf')).json().token
    expect((await c.patch('/me', { name: 'Still here' })).statusCode).toBe(200)
    expect((await laptop.get('/me')).json()).toMatchObject({ statusCode: 401, code: 'SESSION_REVOKED' })
    expect((await useKey(secret)).statusCode).toBe(200)
    expect((await createClient(ctx.app).login(email, 'changed passphrase one')).statusCode).toBe(200)
    expect((await createClient(ctx.app).login(email)).statusCode).toBe(401)
  })

  it('POST /me/sessions/revoke-all logs out everywhere, this session too, and needs CSRF', async () => {
    const { c, email } = await signedUp('everywhere')
    const phone = createClient(ctx.app)
    expect((await phone.login(email)).statusCode).toBe(200)
    expect((await c.post('/me/sessions/revoke-all', undefined, { 'x-csrf-token': 'nope' })).statusCode).toBe(403)
    expect((await c.post('/me/sessions/revoke-all')).statusCode).toBe(204)
    expect((await c.get('/me')).statusCode).toBe(401)
    expect((await phone.get('/me')).json()).toMatchObject({ statusCode: 401, code: 'SESSION_REVOKED' })
    const back = createClient(ctx.app)
    expect((await back.login(email)).statusCode).toBe(200)
    expect((await back.get('/me')).statusCode).toBe(200)
  })
})

describe('account self-service', () => {
  it('PATCH /me changes the name, refusing blanks and unknown fields', async () => {
    const { c } = await signedUp('rename')
    const res = await c.patch('/me', { name: 'Ada Lovelace' })
    expect(res.statusCode, res.body).toBe(200)
    expect(res.json().user.name).toBe('Ada Lovelace')
    expect((await c.get('/me')).json().user.name).toBe('Ada Lovelace')
    expect((await c.patch('/me', { name: '   ' })).json()).toMatchObject({ statusCode: 400, code: 'NAME_EMPTY' })
    expect((await c.patch('/me', { name: 'x', email: 'a@b.c' })).statusCode).toBe(400)
    expect((await createClient(ctx.app).patch('/me', { name: 'x' })).statusCode).toBe(401)
  })

  it('changes the email only when the link mailed to the new address is used, by the same account', async () => {
    const { c, email, id } = await signedUp('mover')
    const newEmail = unique('moved-to')
    expect((await c.post('/me/email', { newEmail })).json()).toMatchObject({ statusCode: 403, code: 'CURRENT_PASSWORD_INVALID' })
    expect((await c.post('/me/email', { newEmail: email, currentPassword: PASSWORD })).json()).toMatchObject({ code: 'EMAIL_UNCHANGED' })
    const asked = await c.post('/me/email', { newEmail, currentPassword: PASSWORD })
    expect(asked.statusCode, asked.body).toBe(202)
    const mail = await mailTo(newEmail, 'Confirm your new email')
    expect(mail.text).toContain(email)
    const token = tokenIn(mail)
    await expectNotInJobRecords(token)
    expect((await userRow(email))!.id).toBe(id) // nothing changed yet

    // Someone else's session can't use it, and doesn't burn it.
    const intruder = await signedUp('intruder')
    expect((await intruder.c.post('/me/email/confirm', { token })).json()).toMatchObject({ statusCode: 403, code: 'TOKEN_WRONG_ACCOUNT' })
    const done = await c.post('/me/email/confirm', { token })
    expect(done.statusCode, done.body).toBe(200)
    expect(done.json().user).toMatchObject({ email: newEmail, emailVerified: true })
    expect((await createClient(ctx.app).login(newEmail)).statusCode).toBe(200)
    expect((await createClient(ctx.app).login(email)).statusCode).toBe(401)
    // The old address is told where the account went.
    const notice = await mailTo(email, 'now uses another email address')
    expect(notice.text).toContain(newEmail)
    expect((await c.post('/me/email/confirm', { token })).json()).toMatchObject({ statusCode: 409, code: 'TOKEN_USED' })
    expect((await c.post('/me/email/confirm', { token: 'garbage' })).json()).toMatchObject({ statusCode: 400, code: 'TOKEN_MALFORMED' })
  })

  it('answers 409 EMAIL_TAKEN when the new address got an account before the link was used', async () => {
    const { c } = await signedUp('racer')
    const target = unique('contested')
    await c.post('/me/email', { newEmail: target, currentPassword: PASSWORD })
    const token = tokenIn(await mailTo(target, 'Confirm your new email'))
    await signedUp('placeholder').then(() => ctx.app.users.create({ email: target }))
    expect((await c.post('/me/email/confirm', { token })).json()).toMatchObject({ statusCode: 409, code: 'EMAIL_TAKEN' })
  })

  it('GET /me/export returns the profile, memberships, keys and the audit entries about the user', async () => {
    const { c, email, id, tenantId } = await verified('exporter')
    await createKey(c)
    const res = await c.get('/me/export')
    expect(res.statusCode, res.body).toBe(200)
    expect(res.headers['content-disposition']).toContain('attachment')
    const data = res.json()
    expect(data.profile).toMatchObject({ id, email, hasPassword: true, googleLinked: false })
    expect(data.profile.emailVerifiedAt).not.toBeNull()
    expect(data.memberships).toEqual([expect.objectContaining({ tenantId, role: 'owner' })])
    expect(data.apiKeys).toHaveLength(1)
    expect(JSON.stringify(data.apiKeys)).not.toContain('hash')
    const actions = data.auditEntries.map((e: { action: string }) => e.action)
    expect(actions).toEqual(expect.arrayContaining(['auth.signup', 'auth.email_verified', 'api_key.created']))
    // Only this user's entries.
    expect(data.auditEntries.every((e: { actorUserId: string; targetId: string }) => e.actorUserId === id || e.targetId === id)).toBe(true)
  })
})

describe('DELETE /me', () => {
  it('is refused while the user is the last owner of a tenant other people use', async () => {
    const owner = await signedUp('last-owner')
    const member = await signedUp('teammate')
    await ctx.app.tenancy.memberships.add(member.id, owner.tenantId, 'member')
    const refused = await owner.c.request({ method: 'DELETE', url: '/me', payload: { currentPassword: PASSWORD } })
    expect(refused.statusCode).toBe(409)
    expect(refused.json()).toMatchObject({ code: 'LAST_OWNER_OF_SHARED_TENANT', tenants: [expect.any(String)] })
    expect((await owner.c.get('/me')).statusCode).toBe(200)
  })

  it('deletes tenants nobody else uses, leaves the shared ones, revokes keys, ends sessions and anonymises the user', async () => {
    const leaver = await verified('leaver')
    const secret = (await createKey(leaver.c)).json().secret as string
    const host = await signedUp('host')
    await ctx.app.tenancy.memberships.add(leaver.id, host.tenantId, 'member')
    expect((await leaver.c.request({ method: 'DELETE', url: '/me', payload: { currentPassword: 'wrong password!' } })).statusCode).toBe(403)
    const res = await leaver.c.request({ method: 'DELETE', url: '/me', payload: { currentPassword: PASSWORD } })
    expect(res.statusCode, res.body).toBe(204)

    expect((await leaver.c.get('/me')).statusCode).toBe(401)
    expect((await useKey(secret)).statusCode).toBe(401)
    expect((await createClient(ctx.app).login(leaver.email)).statusCode).toBe(401)
    expect(await userRow(leaver.email)).toBeUndefined()
    const [row] = await ctx.app.host.sql<{ email: string; name: string | null; password_hash: string | null; deleted_at: Date | null }[]>`
      select email, name, password_hash, deleted_at from core_users where id = ${leaver.id}`
    expect(row).toMatchObject({ name: null, password_hash: null })
    expect(row!.email).toMatch(/@deleted\.invalid$/)
    expect(row!.deleted_at).not.toBeNull()
    expect((await ctx.app.tenancy.catalog.get(leaver.tenantId))?.status ?? 'deleted').toBe('deleted')
    expect(await ctx.app.tenancy.memberships.find(leaver.id, host.tenantId)).toBeUndefined()
    expect((await ctx.app.tenancy.catalog.get(host.tenantId))!.status).toBe('active')
    const [entry] = await ctx.app.host.sql`select metadata from sys_audit_logs where action = 'user.deleted' and actor_user_id = ${leaver.id}`
    expect(entry!.metadata).toMatchObject({ tenantsDeleted: [leaver.tenantId], membershipsEnded: 1, keysRevoked: 1 })
    // The address is free again.
    expect((await createClient(ctx.app).signup(leaver.email)).statusCode).toBe(201)
  })
})

describe('the tenant a login starts in', () => {
  it("is the user's own tenant, not an older one they were added to; then the last one they chose", async () => {
    const older = await signedUp('older')
    const victim = await signedUp('younger')
    await ctx.app.tenancy.memberships.add(victim.id, older.tenantId, 'admin')
    const c = createClient(ctx.app)
    expect((await c.login(victim.email)).statusCode).toBe(200)
    expect((await c.get('/me')).json().activeTenant.tenantId).toBe(victim.tenantId)

    expect((await c.put('/me/active-tenant', { tenant: older.tenantId })).statusCode).toBe(200)
    const again = createClient(ctx.app)
    await again.login(victim.email)
    expect((await again.get('/me')).json().activeTenant.tenantId).toBe(older.tenantId)

    // Removed from the chosen tenant: back to their own.
    await ctx.app.tenancy.memberships.remove(victim.id, older.tenantId)
    const third = createClient(ctx.app)
    await third.login(victim.email)
    expect((await third.get('/me')).json().activeTenant.tenantId).toBe(victim.tenantId)
    expect((await c.put('/me/active-tenant', { tenant: older.tenantId })).json()).toMatchObject({
      statusCode: 404,
      code: 'TENANT_NOT_FOUND',
    })
  })

  it('is the only membership of a user who created no tenant, and none when there is a choice', async () => {
    const host = await signedUp('only-host')
    const other = await signedUp('other-host')
    const email = unique('joiner')
    const joiner = await ctx.app.users.create({ email, passwordHash: await hashPassword(PASSWORD) })
    await ctx.app.tenancy.memberships.add(joiner.id, host.tenantId, 'member')
    const c = createClient(ctx.app)
    expect((await c.login(email)).statusCode).toBe(200)
    expect((await c.get('/me')).json().activeTenant.tenantId).toBe(host.tenantId)
    await ctx.app.tenancy.memberships.add(joiner.id, other.tenantId, 'member')
    const again = createClient(ctx.app)
    expect((await again.login(email)).statusCode).toBe(200)
    expect((await again.get('/me')).json().activeTenant).toBeNull()
  })
})

describe('login throttling (reproduction 4: anyone could lock an address out of password login)', () => {
  it("never refuses the owner's correct password from their own IP because of other IPs' failures", async () => {
    const { email } = await signedUp('target')
    // Enough failures that the old per-email limit (10 per 10 min, from anywhere) locked the owner out.
    const attackers = Array.from({ length: 4 }, () => createClient(ctx.app))
    for (let i = 0; i < 11; i++) {
      const res = await attackers[i % attackers.length]!.post('/auth/login', { email, password: `wrong guess ${i}` })
      expect(res.statusCode).toBe(401)
    }
    const owner = createClient(ctx.app)
    const res = await owner.login(email)
    expect(res.statusCode, res.body).toBe(200)
    // The owner was slowed, not refused, and the delay is audited.
    const [entry] = await ctx.app.host.sql<{ metadata: { delayMs: number } }[]>`
      select metadata from sys_audit_logs where action = 'auth.login' and actor_user_id = ${res.json().user.id} order by created_at desc limit 1`
    expect(entry!.metadata.delayMs).toBeGreaterThan(0)
    expect(entry!.metadata.delayMs).toBeLessThanOrEqual(2000)
  }, 60_000)

  it('refuses one source that keeps failing on one email, and only that source', async () => {
    const email = unique('guessed')
    await ctx.app.users.create({ email, passwordHash: await hashPassword(PASSWORD) })
    const guesser = createClient(ctx.app)
    for (let i = 0; i < LOGIN_FAILURES_PER_EMAIL_IP; i++) {
      expect((await guesser.post('/auth/login', { email, password: `wrong ${i}` })).statusCode).toBe(401)
    }
    const refused = await guesser.post('/auth/login', { email, password: PASSWORD })
    expect(refused.statusCode).toBe(429)
    expect(refused.json().code).toBe('RATE_LIMITED')
    expect(Number(refused.headers['retry-after'])).toBeGreaterThan(0)
    expect((await createClient(ctx.app).login(email)).statusCode).toBe(200)
  }, 60_000)

  it('the delay grows per email and is recorded on each failure', async () => {
    const email = unique('slowed')
    const attacker = createClient(ctx.app)
    for (let i = 0; i < DELAY_FREE + 2; i++) await attacker.post('/auth/login', { email, password: `nope ${i}` })
    const rows = await ctx.app.host.sql<{ metadata: { delayMs: number } }[]>`
      select metadata from sys_audit_logs where action = 'auth.login_failed' and metadata->>'email' = ${email} order by created_at`
    const delays = rows.map((r) => r.metadata.delayMs)
    expect(delays.slice(0, DELAY_FREE)).toEqual(Array(DELAY_FREE).fill(0))
    expect(delays[DELAY_FREE]).toBeGreaterThan(0)
    expect(delays[DELAY_FREE + 1]).toBeGreaterThan(delays[DELAY_FREE]!)
  })
})
