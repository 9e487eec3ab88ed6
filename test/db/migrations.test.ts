import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { connect, withDatabase } from '../../src/core/db/connect.js'
import { MIGRATIONS, migrationInfo, runMigrations } from '../../src/core/db/migrations.js'
import { ADMIN_URL, APP_ROLE, APP_URL } from '../helpers/env.js'
import { createTestEnv, type TestEnv } from '../helpers/test-env.js'

let env: TestEnv
beforeAll(async () => {
  env = await createTestEnv()
})
afterAll(async () => {
  await env?.cleanup()
})

describe('runMigrations', () => {
  it('lets concurrent runners on one database apply each migration once (advisory lock)', async () => {
    const db = `${env.name}_concurrent`
    const admin = connect(ADMIN_URL, { max: 1 })
    await admin.unsafe(`create database ${db} owner ${APP_ROLE}`)
    await admin.end()
    const url = withDatabase(APP_URL, db)
    const results = await Promise.allSettled([1, 2, 3].map(() => runMigrations(url, MIGRATIONS.tenant)))
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'fulfilled', 'fulfilled'])
    const sql = connect(url, { max: 1 })
    try {
      const applied = await sql`select count(*)::int as n from drizzle.__drizzle_migrations`
      expect(applied[0]?.n).toBe(migrationInfo('tenant').tags.length)
    } finally {
      await sql.end()
    }
  })
})
