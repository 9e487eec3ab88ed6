import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { auditLogs } from '../drizzle/host/schema.js'
import { createHostDatabase, type HostDatabase } from '../src/core/db/host.js'
import { createTestEnv, type TestEnv } from './helpers/test-env.js'

let env: TestEnv
let host: HostDatabase

beforeAll(async () => {
  env = await createTestEnv()
  host = createHostDatabase(env.hostUrl, 2)
})
afterAll(async () => {
  await host?.close()
  await env?.cleanup()
})

describe('host database', () => {
  it('runs as a non-superuser role', async () => {
    const [row] = await host.sql<{ rolsuper: boolean }[]>`select rolsuper from pg_roles where rolname = current_user`
    expect(row?.rolsuper).toBe(false)
  })

  it('keeps the audit log append-only', async () => {
    const [entry] = await host.db.insert(auditLogs).values({ action: 'test.event', metadata: { a: 1 } }).returning()
    expect(entry?.id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7/) // UUIDv7
    await expect(host.sql`update sys_audit_logs set action = 'x'`).rejects.toThrow(/append-only: UPDATE/)
    await expect(host.sql`delete from sys_audit_logs`).rejects.toThrow(/append-only: DELETE/)
    await expect(host.sql`truncate sys_audit_logs`).rejects.toThrow(/append-only: TRUNCATE/)
    const [count] = await host.sql`select count(*)::int as n from sys_audit_logs`
    expect(count?.n).toBe(1)
  })

  it('treats emails case-insensitively unique', async () => {
    await host.sql`insert into core_users (id, email) values (gen_random_uuid(), 'Ada@Example.com')`
    await expect(host.sql`insert into core_users (id, email) values (gen_random_uuid(), 'ada@example.COM')`).rejects.toMatchObject({ code: '23505' })
  })
})
