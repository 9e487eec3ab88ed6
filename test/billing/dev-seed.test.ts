/**
 * In development with AUTO_MIGRATE on (`npm run dev`), the app seeds config/plans.json at boot, after
 * migrating: GET /billing/plans is not empty on a fresh clone. Not in test or production.
 */
import type { FastifyInstance } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createHostDatabase } from '../../src/core/db/host.js'
import { seedsPlansAtBoot } from '../../src/features/billing/dev-seed.js'
import { buildApp } from '../helpers/build-app.js'
import { createTestEnv, type TestEnv } from '../helpers/test-env.js'

let env: TestEnv
let app: FastifyInstance | undefined

beforeAll(async () => {
  env = await createTestEnv()
})
afterAll(async () => {
  await app?.close()
  await env?.cleanup()
})

describe('plans seeded at boot', () => {
  it('only in development with AUTO_MIGRATE on', () => {
    expect(seedsPlansAtBoot({ env: 'development', autoMigrate: true })).toBe(true)
    expect(seedsPlansAtBoot({ env: 'development', autoMigrate: false })).toBe(false)
    expect(seedsPlansAtBoot({ env: 'test', autoMigrate: true })).toBe(false)
    expect(seedsPlansAtBoot({ env: 'production', autoMigrate: true })).toBe(false)
  })

  it('a fresh development database lists the plans of config/plans.json', async () => {
    const host = createHostDatabase(env.hostUrl, 1)
    try {
      expect(await host.sql`select key from core_pricing_plans`).toHaveLength(0)
    } finally {
      await host.close()
    }
    app = await buildApp({ ...env.config, env: 'development', autoMigrate: true })
    const res = await app.inject({ url: '/billing/plans' })
    expect(res.statusCode).toBe(200)
    expect((res.json() as { plans: { key: string }[] }).plans.map((p) => p.key)).toEqual(['free', 'pro', 'enterprise'])
  })
})
