import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { pino } from 'pino'
import { Value } from 'typebox/value'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { AppError } from '../../src/core/lib/errors.js'
import { isPermanentEmailError } from '../../src/core/email/errors.js'
import { type Mailer, createMailer } from '../../src/core/email/mailer.js'
import { EmailMessageSchema } from '../../src/core/email/message.js'
import { sendInvitationEmail, sendPasswordResetEmail, sendVerifyEmail, sendWelcomeEmail, welcomeEmail } from '../../src/core/email/senders.js'
import { type SmtpCapture, startSmtpCapture } from '../helpers/smtp.js'
import { type TestEnv, createTestEnv } from '../helpers/test-env.js'

let env: TestEnv
let capture: SmtpCapture
let mailer: Mailer
let overrides: string
const silent = pino({ level: 'silent' })
const opened: Mailer[] = []

const FROM = 'Acme <no-reply@acme.test>'
const smtpVars = (port: number, extra: Record<string, string> = {}) => ({
  SMTP_HOST: '127.0.0.1',
  SMTP_PORT: String(port),
  SMTP_STARTTLS: 'false',
  SMTP_MAIL_FROM: FROM,
  ...extra,
})

function open(vars: Record<string, string>, logger = silent): Mailer {
  const m = createMailer(env.configWith(vars).smtp, logger, { defaultVariables: { app_name: 'Acme' } })
  opened.push(m)
  return m
}

beforeAll(async () => {
  env = await createTestEnv()
  capture = await startSmtpCapture({ rejectRecipient: (address) => address.startsWith('bounce@') })
  mailer = open(smtpVars(capture.port))
  overrides = await mkdtemp(join(tmpdir(), 'tk-email-overrides-'))
  await writeFile(
    join(overrides, 'welcome.md'),
    '---\nsubject: Custom hello, {user_name}\n---\nThis is **our own** welcome to {tenant_name}.\n',
  )
})

afterEach(() => {
  capture.messages.splice(0)
})

afterAll(async () => {
  for (const m of opened) m.close()
  await capture?.close()
  await rm(overrides, { recursive: true, force: true })
  await env.cleanup()
})

async function rejection(p: Promise<unknown>): Promise<AppError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  )
  expect(err).toBeInstanceOf(AppError)
  return err as AppError
}

describe('built-in templates over real SMTP', () => {
  it('welcome', async () => {
    const id = await sendWelcomeEmail(mailer, {
      to: 'ada@example.test',
      userName: 'Ada',
      tenantName: 'Analytical Engines',
      dashboardUrl: 'https://acme.test/t/ae',
    })
    const [mail] = await capture.waitFor(1)
    expect(mail!.messageId).toBe(id)
    expect(mail!.envelope).toEqual({ from: 'no-reply@acme.test', to: ['ada@example.test'] })
    expect(mail!.from?.value).toEqual([{ name: 'Acme', address: 'no-reply@acme.test' }])
    expect(mail!.to).toMatchObject({ text: 'ada@example.test' })
    expect(mail!.subject).toBe('Welcome to Acme, Ada')
    expect(mail!.text).toContain('Your workspace **Analytical Engines** is set up')
    expect(mail!.text).toContain('Open your dashboard (https://acme.test/t/ae)')
    expect(mail!.text).toContain('because ada@example.test was used to sign up for Acme')
    expect(mail!.html).toContain('<h1>Welcome to Acme, Ada!</h1>')
    expect(mail!.html).toContain('<a href="https://acme.test/t/ae">Open your dashboard</a>')
    expect(mail!.html).toContain('<strong>Analytical Engines</strong>')
  })

  it('invitation', async () => {
    await sendInvitationEmail(mailer, {
      to: 'grace@example.test',
      inviterName: 'Ada',
      tenantName: 'Analytical Engines',
      invitationUrl: 'https://acme.test/invite/abc?x=1&y=2',
      expiresIn: '7 days',
    })
    const [mail] = await capture.waitFor(1)
    expect(mail!.envelope.to).toEqual(['grace@example.test'])
    expect(mail!.subject).toBe('Ada invited you to join Analytical Engines on Acme')
    expect(mail!.text).toContain('Accept the invitation (https://acme.test/invite/abc?x=1&y=2)')
    expect(mail!.text).toContain('This invitation expires in 7 days.')
    expect(mail!.text).toContain('This invitation was sent to grace@example.test.')
    expect(mail!.html).toContain('<a href="https://acme.test/invite/abc?x=1&amp;y=2">Accept the invitation</a>')
  })

  it('password_reset', async () => {
    await sendPasswordResetEmail(mailer, {
      to: 'ada@example.test',
      userName: 'Ada',
      resetUrl: 'https://acme.test/reset/tok',
      expiresIn: '1 hour',
    })
    const [mail] = await capture.waitFor(1)
    expect(mail!.subject).toBe('Reset your Acme password')
    expect(mail!.text).toContain('Hi Ada,')
    expect(mail!.text).toContain('Choose a new password (https://acme.test/reset/tok)')
    expect(mail!.text).toContain('This link expires in 1 hour')
    expect(mail!.html).toContain('<a href="https://acme.test/reset/tok">Choose a new password</a>')
  })

  it('verify_email', async () => {
    await sendVerifyEmail(mailer, {
      to: 'ada@example.test',
      userName: 'Ada',
      verifyUrl: 'https://acme.test/verify/tok',
      expiresIn: '24 hours',
    })
    const [mail] = await capture.waitFor(1)
    expect(mail!.subject).toBe('Confirm your email address for Acme')
    expect(mail!.text).toContain('Please confirm that ada@example.test is your email address')
    expect(mail!.html).toContain('<a href="https://acme.test/verify/tok">Confirm my email address</a>')
    expect(mail!.text).toContain('expires in 24 hours')
  })
})

describe('sendEmail', () => {
  it('escapes values in the HTML part, keeps them literal in the text part, and never renders Markdown from values', async () => {
    await sendWelcomeEmail(mailer, {
      to: 'ada@example.test',
      userName: '<script>alert(1)</script>',
      tenantName: '**Evil** [click](https://evil.test)',
      dashboardUrl: 'https://acme.test/d',
    })
    const [mail] = await capture.waitFor(1)
    expect(mail!.html).toContain('&lt;script&gt;alert(1)&lt;/script&gt;')
    expect(mail!.html).not.toContain('<script>')
    expect(mail!.html).toContain('<strong>**Evil** [click](https://evil.test)</strong>')
    expect(mail!.html).not.toContain('evil.test"')
    expect(mail!.text).toContain('Welcome to Acme, <script>alert(1)</script>!')
    expect(mail!.subject).toBe('Welcome to Acme, <script>alert(1)</script>')
  })

  it('sets Reply-To when given', async () => {
    await mailer.sendEmail({
      ...welcomeEmail({ to: 'a@example.test', userName: 'A', tenantName: 'T', dashboardUrl: 'https://acme.test' }),
      replyTo: 'support@acme.test',
    })
    const [mail] = await capture.waitFor(1)
    expect(mail!.replyTo?.text).toBe('support@acme.test')
  })

  it('fails on a missing variable, naming it, and sends nothing', async () => {
    const err = await rejection(
      mailer.sendEmail({ to: 'ada@example.test', template: 'password_reset', variables: { user_name: 'Ada', expires_in: '' } }),
    )
    expect(err.code).toBe('EMAIL_VARIABLES_MISSING')
    expect(err.message).toContain('reset_url, expires_in')
    expect(isPermanentEmailError(err)).toBe(true)
    // The next mail is the only one the server has seen.
    await mailer.sendEmail({
      to: 'next@example.test',
      template: 'verify_email',
      variables: { user_name: 'N', verify_url: 'https://acme.test/v', expires_in: '1 day' },
    })
    await capture.waitFor(1)
    // Nothing else must arrive: a short look (a loaded machine can only make it miss a stray, never fail).
    await new Promise((r) => setTimeout(r, 100))
    expect(capture.messages.map((m) => m.envelope.to)).toEqual([['next@example.test']])
  })

  it('validates the message: bad address, header injection, bad template name, non-scalar variables', async () => {
    const bad = [
      { to: 'not-an-email', template: 'welcome', variables: {} },
      { to: 'a@example.test\r\nBcc: x@evil.test', template: 'welcome', variables: {} },
      { to: 'a@example.test', template: '../secrets', variables: {} },
      { to: 'a@example.test', template: 'welcome', variables: { user_name: { nested: true } } },
      { to: 'a@example.test', template: 'welcome', variables: { 'user-name': 'A' } },
      { to: 'a@example.test', template: 'welcome', variables: {}, cc: 'x@evil.test' },
    ]
    for (const message of bad) {
      expect(Value.Check(EmailMessageSchema, message)).toBe(false)
      // biome-ignore lint/suspicious/noExplicitAny: deliberately invalid payloads, as a job could carry
      expect((await rejection(mailer.sendEmail(message as any))).code).toBe('EMAIL_MESSAGE_INVALID')
    }
    expect(capture.messages).toHaveLength(0)
  })

  it('uses a template from the overrides folder instead of the built-in one', async () => {
    const custom = open(smtpVars(capture.port, { EMAIL_TEMPLATES_DIR: overrides }))
    await sendWelcomeEmail(custom, { to: 'ada@example.test', userName: 'Ada', tenantName: 'AE', dashboardUrl: 'https://acme.test' })
    // Templates without an override still come from the built-ins.
    await sendVerifyEmail(custom, { to: 'ada@example.test', userName: 'Ada', verifyUrl: 'https://acme.test/v', expiresIn: '1 day' })
    const [welcome, verify] = await capture.waitFor(2)
    expect(welcome!.subject).toBe('Custom hello, Ada')
    expect(welcome!.html).toContain('This is <strong>our own</strong> welcome to AE.')
    expect(welcome!.text).toBe('This is **our own** welcome to AE.\n')
    expect(verify!.subject).toBe('Confirm your email address for Acme')
  })

  it('rejects a path-traversal template name and an unknown template', async () => {
    // A job payload with such a name fails validation; a direct call fails on the name itself.
    expect((await rejection(mailer.sendEmail({ to: 'a@example.test', template: '../../etc/passwd', variables: {} }))).code).toBe(
      'EMAIL_MESSAGE_INVALID',
    )
    const traversal = await rejection(mailer.sendBatchEmails([{ to: 'a@example.test' }], '../templates/welcome'))
    expect(traversal.code).toBe('EMAIL_TEMPLATE_NAME_INVALID')
    expect(traversal.statusCode).toBe(400)
    expect((await rejection(mailer.sendEmail({ to: 'a@example.test', template: 'nope', variables: {} }))).code).toBe(
      'EMAIL_TEMPLATE_NOT_FOUND',
    )
  })

  it('authenticates with SMTP_USER / SMTP_PASSWORD, and a wrong password is a permanent failure', async () => {
    const authed = await startSmtpCapture({ users: { mailer: 's3cret' } })
    try {
      const good = open(smtpVars(authed.port, { SMTP_USER: 'mailer', SMTP_PASSWORD: 's3cret' }))
      await sendVerifyEmail(good, { to: 'a@example.test', userName: 'A', verifyUrl: 'https://acme.test/v', expiresIn: '1 day' })
      const [mail] = await authed.waitFor(1)
      expect(mail!.authUser).toBe('mailer')

      const wrong = open(smtpVars(authed.port, { SMTP_USER: 'mailer', SMTP_PASSWORD: 'nope' }))
      const err = await wrong
        .sendEmail(welcomeEmail({ to: 'a@example.test', userName: 'A', tenantName: 'T', dashboardUrl: 'https://acme.test' }))
        .catch((e: unknown) => e)
      expect(err).toMatchObject({ code: 'EAUTH' })
      expect(isPermanentEmailError(err)).toBe(true)
      expect(authed.messages).toHaveLength(1)
      good.close()
      wrong.close()
    } finally {
      await authed.close()
    }
  })
})

describe('sendBatchEmails', () => {
  it('renders per recipient, delivers the good ones and reports each failure without stopping', async () => {
    const results = await mailer.sendBatchEmails(
      [
        { to: 'ada@example.test', variables: { user_name: 'Ada' } },
        { to: 'bounce@example.test', variables: { user_name: 'Bounce' } },
        { to: 'nameless@example.test' },
        { to: 'not-an-address', variables: { user_name: 'X' } },
        { to: 'grace@example.test', variables: { user_name: 'Grace', tenant_name: 'Compilers' } },
      ],
      'welcome',
      { tenant_name: 'Analytical Engines', dashboard_url: 'https://acme.test/d' },
    )
    expect(results.map((r) => [r.to, r.ok])).toEqual([
      ['ada@example.test', true],
      ['bounce@example.test', false],
      ['nameless@example.test', false],
      ['not-an-address', false],
      ['grace@example.test', true],
    ])
    const [, bounce, nameless, invalid] = results
    expect(bounce).toMatchObject({ ok: false, error: { code: 'EENVELOPE', permanent: true } })
    expect(nameless).toMatchObject({ ok: false, error: { code: 'EMAIL_VARIABLES_MISSING', permanent: true } })
    expect(nameless!.ok === false && nameless!.error.message).toContain('user_name')
    expect(invalid).toMatchObject({ ok: false, error: { code: 'EMAIL_MESSAGE_INVALID', permanent: true } })

    await capture.waitFor(2)
    // Nothing else must arrive: a short look (a loaded machine can only make it miss a stray, never fail).
    await new Promise((r) => setTimeout(r, 100))
    const bySubject = Object.fromEntries(capture.messages.map((m) => [m.envelope.to[0], m]))
    expect(Object.keys(bySubject).sort()).toEqual(['ada@example.test', 'grace@example.test'])
    expect(bySubject['ada@example.test']!.subject).toBe('Welcome to Acme, Ada')
    expect(bySubject['ada@example.test']!.text).toContain('**Analytical Engines**')
    // A recipient's own variables override the shared ones.
    expect(bySubject['grace@example.test']!.text).toContain('**Compilers**')
    const okIds = results.flatMap((r) => (r.ok ? [r.messageId] : []))
    expect(okIds.sort()).toEqual(capture.messages.map((m) => m.messageId).sort())
  })

  it('keeps going when the server goes away: every recipient gets a result', async () => {
    const gone = await startSmtpCapture()
    const port = gone.port
    await gone.close()
    const dead = open(smtpVars(port))
    const results = await dead.sendBatchEmails([{ to: 'a@example.test' }, { to: 'b@example.test' }], 'verify_email', {
      user_name: 'U',
      verify_url: 'https://acme.test/v',
      expires_in: '1 day',
    })
    expect(results).toHaveLength(2)
    for (const r of results) expect(r).toMatchObject({ ok: false, error: { permanent: false } })
    await expect(dead.verify()).rejects.toMatchObject({ code: 'ESOCKET' })
    await expect(mailer.verify()).resolves.toBeUndefined()
    dead.close()
  })
})

describe('log transport (no SMTP_HOST)', () => {
  it('logs the mail through pino instead of sending it', async () => {
    const lines: Record<string, unknown>[] = []
    const stream = new Writable({
      write(chunk, _enc, cb) {
        lines.push(JSON.parse(String(chunk)))
        cb()
      },
    })
    const dev = open({ SMTP_MAIL_FROM: FROM }, pino({ level: 'info' }, stream))
    expect(dev.transport).toBe('log')
    const id = await sendPasswordResetEmail(dev, {
      to: 'dev@example.test',
      userName: '<Dev>',
      resetUrl: 'https://localhost/reset/t',
      expiresIn: '1 hour',
    })
    expect(id).toMatch(/^<.+@.+>$/)
    await new Promise((r) => setImmediate(r))
    expect(lines).toHaveLength(1)
    expect(lines[0]).toMatchObject({
      level: 30,
      msg: expect.stringContaining('not sent'),
      email: {
        messageId: id,
        from: FROM,
        to: 'dev@example.test',
        template: 'password_reset',
        subject: 'Reset your Acme password',
        text: expect.stringContaining('Choose a new password (https://localhost/reset/t)'),
      },
    })
    expect((lines[0]!.email as { text: string }).text).toContain('Hi <Dev>,')
    // Missing variables fail the same way as with SMTP.
    expect((await rejection(dev.sendEmail({ to: 'dev@example.test', template: 'welcome', variables: {} }))).code).toBe(
      'EMAIL_VARIABLES_MISSING',
    )
    expect(lines).toHaveLength(1)
    expect(capture.messages).toHaveLength(0)
  })
})
