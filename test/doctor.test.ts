/**
 * `npm run doctor` against the real services of a test world (host DB, Redis, an SMTP capture, the fake
 * Stripe): all ok; then one failure at a time, each a `fail` line with its fix and exit code 1: a bad
 * Redis URL, a Stripe price that does not exist, a tenant behind on migrations, a config that does not parse.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { pino } from 'pino'
import { runDoctor } from '../src/doctor.js'
import { createServices } from '../src/services.js'
import { type FakeStripe, startFakeStripe } from './helpers/fake-stripe.js'
import { type SmtpCapture, startSmtpCapture } from './helpers/smtp.js'
import { createTestEnv, type TestEnv } from './helpers/test-env.js'

let env: TestEnv
let smtp: SmtpCapture
let stripe: FakeStripe
let vars: Record<string, string>
let tenantId: string

beforeAll(async () => {
  smtp = await startSmtpCapture()
  stripe = await startFakeStripe()
  stripe.addPrice({ id: 'price_doctor_m', unitAmount: 1000, interval: 'month' })
  env = await createTestEnv()
  vars = {
    ...env.vars,
    SMTP_HOST: smtp.host,
    SMTP_PORT: String(smtp.port),
    SMTP_STARTTLS: 'false',
    STRIPE_SECRET_KEY: 'sk_test_doctor',
    STRIPE_WEBHOOK_SECRET: 'whsec_doctor',
    STRIPE_API_HOST: stripe.url,
    STRIPE_MONTHLY_PRICE_ID: 'price_doctor_m',
  }
  const services = createServices(env.config, pino({ level: 'silent' }))
  try {
    tenantId = (await services.provisioner.provision({ slug: `doc-${env.name.slice(-6)}`, name: 'Doctor' })).id
  } finally {
    await services.close()
  }
}, 60_000)
afterAll(async () => {
  await env?.cleanup()
  await stripe?.close()
  await smtp?.close()
})

async function doctor(extra: Record<string, string> = {}) {
  const lines: string[] = []
  const code = await runDoctor({ env: { ...vars, ...extra }, out: (l) => lines.push(l) })
  const line = (name: string) => lines.find((l) => l.slice(6).startsWith(name))
  const fixAfter = (name: string) => lines[lines.findIndex((l) => l.slice(6).startsWith(name)) + 1]
  return { code, lines, line, fixAfter }
}

describe('npm run doctor', () => {
  it('passes against working services, one ok line per check', async () => {
    const d = await doctor()
    expect(d.code, d.lines.join('\n')).toBe(0)
    for (const name of ['config', 'host database', 'redis', 'smtp', 'stripe', 'template database', 'tenant migrations'])
      expect(d.line(name), `${name}\n${d.lines.join('\n')}`).toMatch(/^ok {4}/)
    expect(d.line('redis')).toContain('PONG')
    expect(d.line('template database')).toContain('is current')
    expect(d.lines.at(-1)).toBe('all checks passed')
  })

  it('fails on a Redis that is not there, with the fix', async () => {
    const d = await doctor({ REDIS_URL: 'redis://127.0.0.1:1' })
    expect(d.code).toBe(1)
    expect(d.line('redis')).toMatch(/^fail {2}redis\s+.*ECONNREFUSED/)
    expect(d.fixAfter('redis')).toContain('fix: start Redis, or check REDIS_URL')
    expect(d.line('host database')).toMatch(/^ok/)
    expect(d.lines.at(-1)).toBe('1 check(s) failed')
  })

  it('fails on a Stripe price the account does not have, and skips Stripe without a key', async () => {
    const missing = await doctor({ STRIPE_MONTHLY_PRICE_ID: 'price_not_there' })
    expect(missing.code).toBe(1)
    expect(missing.line('stripe')).toMatch(/^fail.*price_not_there does not exist/)
    const off = await doctor({ STRIPE_SECRET_KEY: '', STRIPE_MONTHLY_PRICE_ID: '' })
    expect(off.line('stripe')).toMatch(/^skip.*STRIPE_SECRET_KEY unset/)
    expect(off.code).toBe(0)
  })

  it('fails while a tenant is behind on migrations, naming it', async () => {
    const sql = (await import('../src/core/db/connect.js')).connect(env.hostUrl, { max: 1 })
    try {
      await sql`update core_tenants set migration_version = '0000_old' where id = ${tenantId}`
      const d = await doctor()
      expect(d.code).toBe(1)
      expect(d.line('tenant migrations')).toMatch(/^fail.*1 tenant\(s\) not on .*doc-.*0000_old/)
      expect(d.fixAfter('tenant migrations')).toContain('npm run tenants -- migrate')
    } finally {
      await sql.end()
    }
  })

  it('reports a config that does not parse, and skips the rest', async () => {
    const d = await doctor({ PORT: 'eighty' })
    expect(d.code).toBe(1)
    expect(d.line('config')).toMatch(/^fail.*PORT: must be an integer/)
    expect(d.fixAfter('config')).toContain('set PORT')
    expect(d.line('redis')).toMatch(/^skip/)
  })
})
