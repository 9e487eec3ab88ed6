import { describe, expect, it } from 'vitest'
import { ConfigError, loadConfig } from '../src/core/config.js'

const base = { NODE_ENV: 'test', DATABASE_URL: 'postgres://u:p@localhost:5432/db' }

describe('config', () => {
  it('applies defaults', () => {
    const c = loadConfig(base)
    expect(c.port).toBe(3000)
    expect(c.redisUrl).toBe('redis://127.0.0.1:6379')
    expect(c.session.maxAgeS).toBe(3600)
    expect(c.smtp.port).toBe(587)
    expect(c.stripe).toBeUndefined()
  })

  it.each([
    [{ PORT: 'abc' }, 'PORT'],
    [{ PORT: '70000' }, 'PORT'],
    [{ REDIS_URL: 'not a url' }, 'REDIS_URL'],
    [{ TRUST_PROXY: 'maybe' }, 'TRUST_PROXY'],
    [{ NODE_ENV: 'staging' }, 'NODE_ENV'],
    [{ ENCRYPTION_KEYS: 'k1:short' }, 'ENCRYPTION_KEYS'],
    [{ SESSION_SECRETS: 'too-short' }, 'SESSION_SECRETS'],
    [{ TENANT_DB_PREFIX: 'Bad-Prefix' }, 'TENANT_DB_PREFIX'],
    [{ STRIPE_SECRET_KEY: 'sk_test_x' }, 'STRIPE_WEBHOOK_SECRET'],
    [{ STRIPE_ONE_TIME_PRICES: 'price_1Abc, prod_NotAPrice' }, 'STRIPE_ONE_TIME_PRICES'],
  ])('rejects %o naming %s', (bad, variable) => {
    try {
      loadConfig({ ...base, ...bad })
      expect.unreachable('loadConfig accepted a bad value')
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError)
      expect((err as ConfigError).variable).toBe(variable)
      expect((err as Error).message.startsWith(`${variable}:`)).toBe(true)
    }
  })

  it('queues provisioning by default, and runs the workers in the API process only in development unless told', () => {
    expect(loadConfig(base).jobs).toMatchObject({ provisionInline: false, workerInProcess: false })
    expect(loadConfig({ NODE_ENV: 'development' }).jobs).toMatchObject({ provisionInline: false, workerInProcess: true })
    expect(loadConfig({ ...base, NODE_ENV: 'production', ENCRYPTION_KEYS: `k1:${Buffer.alloc(32).toString('base64')}`, SESSION_SECRETS: 'x'.repeat(32), SMTP_HOST: 'smtp' }).jobs.workerInProcess).toBe(false)
    expect(loadConfig({ NODE_ENV: 'development', WORKER_IN_PROCESS: 'false', PROVISION_INLINE: 'true' }).jobs).toMatchObject({
      provisionInline: true,
      workerInProcess: false,
    })
    expect(loadConfig({ ...base, WORKER_IN_PROCESS: 'yes' }).jobs.workerInProcess).toBe(true)
    expect(() => loadConfig({ ...base, PROVISION_INLINE: 'sometimes' })).toThrow(/^PROVISION_INLINE:/)
  })

  it('reads STRIPE_ONE_TIME_PRICES as a list of price ids', () => {
    const stripe = { STRIPE_SECRET_KEY: 'sk_test_x', STRIPE_WEBHOOK_SECRET: 'whsec_x' }
    expect(loadConfig({ ...base, ...stripe }).stripe!.oneTimePriceIds).toEqual([])
    expect(loadConfig({ ...base, ...stripe, STRIPE_ONE_TIME_PRICES: ' price_1Abc ,price_2Def,' }).stripe!.oneTimePriceIds).toEqual([
      'price_1Abc',
      'price_2Def',
    ])
  })

  it('requires DATABASE_URL outside development', () => {
    expect(() => loadConfig({ NODE_ENV: 'test' })).toThrow(/^DATABASE_URL:/)
    expect(loadConfig({ NODE_ENV: 'development' }).databaseUrl).toBeUndefined()
  })

  it('builds the host URL from the seed DB_* variables', () => {
    const c = loadConfig({ NODE_ENV: 'test', DB_HOST: 'db', DB_USER: 'app', DB_PASS: 'p@ss', DB_PORT: '6543', DB_NAME: 'host' })
    expect(c.databaseUrl).toBe('postgres://app:p%40ss@db:6543/host')
  })

  it('refuses development fallbacks in production', () => {
    const prod = { ...base, NODE_ENV: 'production', SMTP_HOST: 'smtp.example.com' }
    expect(() => loadConfig(prod)).toThrow(/^ENCRYPTION_KEYS:/)
    const keys = { ENCRYPTION_KEYS: `k1:${Buffer.alloc(32, 1).toString('base64')}` }
    expect(() => loadConfig({ ...prod, ...keys })).toThrow(/^SESSION_SECRETS:/)
    const ok = loadConfig({ ...prod, ...keys, SESSION_SECRETS: 'x'.repeat(32) })
    expect(ok.session.cookieSecure).toBe(true)
    expect(ok.autoMigrate).toBe(false)
  })
})
