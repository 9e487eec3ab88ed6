import { uuidv7 } from 'uuidv7'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { createHostDatabase, type HostDatabase } from '../../src/core/db/host.js'
import { systemRecords } from '../../src/core/jobs/records.js'
import { createTestEnv, type TestEnv } from '../helpers/test-env.js'
import { sleep } from './helpers.js'

let env: TestEnv
let host: HostDatabase

beforeAll(async () => {
  env = await createTestEnv()
  host = createHostDatabase(env.hostUrl, 4)
})
afterAll(async () => {
  await host?.close()
  await env?.cleanup()
})

it('group-committed changes land in order per record, however they interleave across batches', async () => {
  const ids = Array.from({ length: 300 }, () => uuidv7())
  await systemRecords.insert(
    host.sql,
    ids.map((id) => ({ id, jobType: 'test.writer', payload: {}, maxRetries: 3, tenantId: null })),
  )
  // Each record: running, a failed attempt, running again, completed — sent without waiting, with random gaps,
  // so some changes merge in the queue and others wait behind their record's batch in flight.
  await Promise.all(
    ids.map(async (id, i) => {
      const writes: Promise<void>[] = []
      writes.push(systemRecords.running(host.sql, id, 0))
      if (i % 3 === 0) await sleep(Math.random() * 5)
      writes.push(systemRecords.retrying(host.sql, id, 1, `Error: attempt 1 of ${id}`))
      if (i % 2 === 0) await sleep(Math.random() * 5)
      writes.push(systemRecords.running(host.sql, id, 1))
      writes.push(systemRecords.completed(host.sql, id, 1, { i }))
      await Promise.all(writes)
    }),
  )
  const rows = await host.sql<{ id: string; status: string; retry_count: number; result: { i: number }; error_log: string; ok: boolean }[]>`
    select id, status, retry_count, result, error_log, started_at is not null and finished_at >= started_at as ok
    from sys_jobs where job_type = 'test.writer'`
  expect(rows).toHaveLength(300)
  const byId = new Map(rows.map((r) => [r.id, r]))
  ids.forEach((id, i) => {
    expect(byId.get(id)).toEqual({
      id,
      status: 'completed',
      retry_count: 1,
      result: { i },
      error_log: `Error: attempt 1 of ${id}`,
      ok: true,
    })
  })
})

it('a failing batch rejects its own callers only', async () => {
  const good = uuidv7()
  await systemRecords.insert(host.sql, [{ id: good, jobType: 'test.writer2', payload: {}, maxRetries: 0, tenantId: null }])
  // retry_count is an int column: this change cannot be written, and its caller hears about it.
  const bad = systemRecords.running(host.sql, good, 2 ** 40)
  await expect(bad).rejects.toThrow()
  await systemRecords.completed(host.sql, good, 0, 'done')
  const [row] = await host.sql`select status, result from sys_jobs where id = ${good}`
  expect(row).toEqual({ status: 'completed', result: 'done' })
})
