/**
 * The core's scheduled housekeeping jobs (src/core/housekeeping), each run through the task manager and
 * a real worker, against real Postgres and Redis: what each deletes, what it must keep, and that a
 * second run deletes nothing more. When they run is tested in schedules.test.ts.
 */
import { randomBytes } from 'node:crypto'
import { uuidv7 } from 'uuidv7'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { connect, type Sql } from '../../src/core/db/connect.js'
import { trimTenantJobId } from '../../src/core/housekeeping/job-records.js'
import { createTenantLocks } from '../../src/core/tenancy/lifecycle.js'
import { boundedMaintenanceUrl } from '../../src/core/tenancy/provisioning.js'
import { startWorkers, type WorkerRuntime } from '../../src/worker.js'
import { insertTenant, insertUser } from '../billing/helpers.js'
import { waitFor } from '../helpers/wait-for.js'
import { createJobsWorld, type JobsWorld, settled } from './helpers.js'

let world: JobsWorld
let runtime: WorkerRuntime
let sql: Sql

beforeAll(async () => {
  world = await createJobsWorld()
  sql = world.services.host.sql
  runtime = await startWorkers(world.services, { concurrency: 2, schedules: false })
})
afterAll(async () => {
  await runtime?.close(5000)
  await world?.close()
})

/** A timestamp `days` ago (sent as text: the kit's pools don't send Dates). */
const ago = (days: number) => new Date(Date.now() - days * 86_400_000).toISOString()
const hash = () => randomBytes(32).toString('hex')

/** Hard deletes drop databases, and DROP DATABASE waits for a checkpoint: slow on a machine busy with other suites. */
const DROP_TIMEOUT_MS = 60_000

async function run(job: 'tenants.purge_deleted' | 'identity.purge_expired', timeoutMs?: number) {
  const submitted = await world.services.tasks.submit(job, {})
  const view = await settled(world.services.tasks, submitted.id, 'system', timeoutMs)
  expect(view.status, view.errorLog ?? '').toBe('completed')
  return view.result as Record<string, unknown>
}

describe('tenants.purge_deleted', () => {
  it(
    'hard-deletes tenants soft-deleted past TENANT_RETENTION_DAYS through the lifecycle, one failure not stopping the rest',
    async () => {
      const { services } = world
      const [old, alsoOld, recent, live] = await Promise.all(['old', 'old2', 'recent', 'live'].map((l) => world.tenant(l)))
      for (const t of [old, alsoOld, recent]) await services.provisioner.run('softDeleted', t!.id)
      await sql`update core_tenants set deleted_at = ${ago(31)}::timestamptz where id in ${sql([old!.id, alsoOld!.id])}`
      const dbNames = Object.fromEntries(
        (await sql<{ id: string; db_name: string }[]>`select id, db_name from core_tenants`).map((r) => [r.id, r.db_name]),
      )

      // Another operation holds alsoOld's lifecycle lock: its hard delete fails (TENANT_BUSY), old's still happens.
      const lockSql = connect(boundedMaintenanceUrl(world.env.config, 5000), { max: 1 })
      const locks = createTenantLocks(lockSql)
      try {
        expect(await locks.acquire(alsoOld!.id)).toBe(true)
        const first = await services.tasks.submit('tenants.purge_deleted', {})
        // The failed attempt is recorded (the job retries after its backoff, minutes later).
        const attempt = await waitFor(
          async () => {
            const v = await services.tasks.getJob(first.id, 'system')
            return v.retryCount === 1 && v.errorLog ? v : undefined
          },
          { message: 'the first attempt to fail', timeout: DROP_TIMEOUT_MS },
        )
        expect(attempt.errorLog).toContain(`1 of 2 tenants could not be hard-deleted (1 were): ${alsoOld!.slug}: `)
        expect(attempt.errorLog).toContain('TENANT_BUSY')
        // Its retry (a minute later) would race the runs below for the same tenant lock: taken out of the queue.
        await (await services.tasks.queues.system.getJob(first.id))?.remove()
      } finally {
        await locks.release(alsoOld!.id)
        await lockSql.end()
      }
      const remaining = async () => (await sql<{ id: string }[]>`select id from core_tenants`).map((r) => r.id)
      expect(await remaining()).not.toContain(old!.id)
      expect(await remaining()).toEqual(expect.arrayContaining([alsoOld!.id, recent!.id, live!.id]))
      const [dropped] = await sql`select count(*)::int as n from pg_database where datname = ${dbNames[old!.id]!}`
      expect(dropped!.n).toBe(0)
      const audit = await sql`select action from sys_audit_logs where tenant_id = ${old!.id} and action = 'tenant.hard_deleted'`
      expect(audit).toHaveLength(1)

      // The next run takes the one left; a run after that finds nothing.
      expect(await run('tenants.purge_deleted', DROP_TIMEOUT_MS)).toEqual({ purged: [alsoOld!.slug], kept: [], more: false })
      expect(await remaining()).not.toContain(alsoOld!.id)
      expect(await run('tenants.purge_deleted', DROP_TIMEOUT_MS)).toEqual({ purged: [], kept: [], more: false })
      expect(await remaining()).toEqual(expect.arrayContaining([recent!.id, live!.id]))
    },
    4 * DROP_TIMEOUT_MS,
  )

  it('re-checks under the tenant lock: a tenant no longer due (restored meanwhile) is not dropped', async () => {
    const t = await world.tenant('restored')
    await expect(world.services.provisioner.run('hardDeleted', t.id, { onlyIf: (row) => row.status === 'deleted' })).rejects.toMatchObject({
      code: 'PRECONDITION_FAILED',
    })
    const [row] = await sql`select status from core_tenants where id = ${t.id}`
    expect(row).toMatchObject({ status: 'active' })
  })
})

describe('identity.purge_expired', () => {
  it('deletes tokens, API keys, invitations and offers 30 days past their end, and keeps everything still usable or recent', async () => {
    const { config } = world.env
    const tenantId = await insertTenant(world.services.host, config)
    const user = await insertUser(world.services.host)
    const token = (label: string, expiresDaysAgo: number, usedDaysAgo: number | null) =>
      sql`insert into core_user_tokens (id, user_id, purpose, token_hash, email, expires_at, used_at)
          values (${uuidv7()}, ${user.id}, 'password_reset', ${hash()}, ${label}, ${ago(expiresDaysAgo)}::timestamptz,
                  ${usedDaysAgo === null ? null : ago(usedDaysAgo)}::timestamptz)`
    await token('t-expired-long-ago', 31, null)
    await token('t-used-long-ago', -1, 40)
    await token('t-expired-recently', 29, null)
    await token('t-valid', -1, null)
    const key = (label: string, expiresDaysAgo: number | null, revokedDaysAgo: number | null) =>
      sql`insert into core_api_keys (id, tenant_id, created_by, name, prefix, key_hash, role, expires_at, revoked_at)
          values (${uuidv7()}, ${tenantId}, ${user.id}, ${label}, 'tk_abc', ${hash()}, 'viewer',
                  ${expiresDaysAgo === null ? null : ago(expiresDaysAgo)}::timestamptz, ${revokedDaysAgo === null ? null : ago(revokedDaysAgo)}::timestamptz)`
    await key('k-expired-long-ago', 40, null)
    await key('k-revoked-long-ago', null, 31)
    await key('k-revoked-recently', null, 5)
    await key('k-never-expires', null, null)
    await key('k-valid', -30, null)
    const invitation = (label: string, expiresDaysAgo: number, closed: 'accepted' | 'revoked' | null, closedDaysAgo = 0) =>
      sql`insert into core_invitations (id, tenant_id, email, role, local_role, token_hash, expires_at, accepted_at, revoked_at)
          values (${uuidv7()}, ${tenantId}, ${`${label}@example.test`}, 'member', 'viewer', ${hash()}, ${ago(expiresDaysAgo)}::timestamptz,
                  ${closed === 'accepted' ? ago(closedDaysAgo) : null}::timestamptz, ${closed === 'revoked' ? ago(closedDaysAgo) : null}::timestamptz)`
    await invitation('i-expired-long-ago', 31, null)
    await invitation('i-revoked-long-ago', -1, 'revoked', 31)
    await invitation('i-accepted-long-ago', 40, 'accepted', 45)
    await invitation('i-expired-recently', 3, null)
    await invitation('i-pending', -5, null)
    const offerees = await Promise.all([1, 2, 3, 4].map(() => insertUser(world.services.host)))
    const offer = (n: number, expiresDaysAgo: number, canceledDaysAgo: number | null) =>
      sql`insert into core_ownership_offers (id, tenant_id, user_id, expires_at, canceled_at)
          values (${uuidv7()}, ${tenantId}, ${offerees[n]!.id}, ${ago(expiresDaysAgo)}::timestamptz,
                  ${canceledDaysAgo === null ? null : ago(canceledDaysAgo)}::timestamptz)`
    await offer(0, 31, null) // expired long ago: deleted
    await offer(1, -1, 31) // canceled long ago: deleted
    await offer(2, 10, null) // expired recently: kept
    await offer(3, -1, null) // open: kept

    expect(await run('identity.purge_expired')).toEqual({ userTokens: 2, apiKeys: 2, invitations: 2, ownershipOffers: 2 })
    const left = async () => ({
      tokens: (await sql`select email from core_user_tokens where user_id = ${user.id} order by email`).map((r) => r.email),
      keys: (await sql`select name from core_api_keys where tenant_id = ${tenantId} order by name`).map((r) => r.name),
      invitations: (await sql`select email from core_invitations where tenant_id = ${tenantId} order by email`).map((r) => r.email),
      offers: (await sql`select user_id from core_ownership_offers where tenant_id = ${tenantId}`).map((r) => r.user_id).sort(),
    })
    const expected = {
      tokens: ['t-expired-recently', 't-valid'],
      keys: ['k-never-expires', 'k-revoked-recently', 'k-valid'],
      invitations: ['i-accepted-long-ago@example.test', 'i-expired-recently@example.test', 'i-pending@example.test'],
      offers: [offerees[2]!.id, offerees[3]!.id].sort(),
    }
    expect(await left()).toEqual(expected)
    // Idempotent: nothing more to delete.
    expect(await run('identity.purge_expired')).toEqual({ userTokens: 0, apiKeys: 0, invitations: 0, ownershipOffers: 0 })
    expect(await left()).toEqual(expected)
  })
})

describe('jobs.trim_records', () => {
  it('deletes finished job records past JOB_RECORD_RETENTION_DAYS, host and tenant, with their effects and dispatched outbox rows; never pending or running ones', async () => {
    const tag = randomBytes(3).toString('hex')
    const ids: Record<string, string> = {}
    const record = (label: string, status: string, daysAgo: number, finished: boolean) => {
      ids[label] = uuidv7()
      const at = ago(daysAgo)
      return sql`insert into sys_jobs (id, job_type, status, created_at, updated_at, finished_at)
                 values (${ids[label]!}, ${`test.${tag}.${label}`}, ${status}, ${at}::timestamptz, ${at}::timestamptz,
                         ${finished ? at : null}::timestamptz)`
    }
    await record('completed-old', 'completed', 31, true)
    await record('failed-old', 'failed', 40, true)
    await record('completed-recent', 'completed', 5, true)
    await record('pending-old', 'pending', 60, false)
    await record('running-old', 'running', 60, false)
    const effect = (label: string, daysAgo: number) =>
      sql`insert into sys_job_effects (job_id, effect, status, created_at, updated_at)
          values (${ids[label]!}, 'smtp', 'done', ${ago(daysAgo)}::timestamptz, ${ago(daysAgo)}::timestamptz)`
    await effect('completed-old', 31)
    await effect('running-old', 60)
    await effect('completed-recent', 5)
    const outbox = (label: string, daysAgo: number, dispatched: boolean) =>
      sql`insert into core_outbox (id, job_name, dedupe_key, job_id, payload, created_at, dispatched_at)
          values (${uuidv7()}, 'email.send', ${`${tag}-${label}`}, ${uuidv7()}, '{}'::jsonb, ${ago(daysAgo)}::timestamptz,
                  ${dispatched ? ago(daysAgo) : null}::timestamptz)`
    await outbox('dispatched-old', 31, true)
    await outbox('owed-old', 31, false)
    await outbox('dispatched-recent', 1, true)

    // A tenant's own job records, in its database.
    const tenant = await world.tenant('trim')
    const tenantRecord = (label: string, status: string, daysAgo: number) => {
      const at = ago(daysAgo)
      return world.services.pools.withTenant(
        tenant,
        (db) => db.$client`insert into tenant_jobs (id, job_type, status, created_at, updated_at, finished_at)
          values (${uuidv7()}, ${`test.${tag}.${label}`}, ${status}, ${at}::timestamptz, ${at}::timestamptz,
                  ${status === 'completed' ? at : null}::timestamptz)`,
      )
    }
    await tenantRecord('t-completed-old', 'completed', 31)
    await tenantRecord('t-pending-old', 'pending', 60)
    await tenantRecord('t-completed-recent', 'completed', 2)
    const tenantLeft = () =>
      world.services.pools.withTenant(tenant, async (db) =>
        (await db.$client`select job_type from tenant_jobs where job_type like ${`test.${tag}.%`} order by job_type`).map((r) =>
          String(r.job_type).split('.').pop(),
        ),
      )

    const submitted = await world.services.tasks.submit('jobs.trim_records', {})
    const view = await settled(world.services.tasks, submitted.id, 'system', 30_000)
    expect(view.status, view.errorLog ?? '').toBe('completed')
    expect(view.result).toMatchObject({ jobRecords: 2, jobEffects: 1, outbox: 1 })
    // Every active tenant gets its trim, except the fake catalog rows of the test above (no database behind them).
    expect((view.result as { tenants: { submitted: number } }).tenants.submitted).toBeGreaterThanOrEqual(1)
    // The tenant's trim is a tenant job of its own, under an id derived from the run's.
    const tenantTrim = await settled(world.services.tasks, trimTenantJobId(submitted.id, tenant.id), { tenantId: tenant.id })
    expect(tenantTrim).toMatchObject({ status: 'completed', result: { jobRecords: 1 } })
    expect(await tenantLeft()).toEqual(['t-completed-recent', 't-pending-old'])
    const left = async () => ({
      records: (await sql`select job_type from sys_jobs where job_type like ${`test.${tag}.%`} order by job_type`).map((r) =>
        String(r.job_type).split('.').pop(),
      ),
      effects: (await sql`select job_id from sys_job_effects where job_id in ${sql(Object.values(ids))}`).length,
      outbox: (await sql`select dedupe_key from core_outbox where dedupe_key like ${`${tag}-%`} order by dedupe_key`).map(
        (r) => r.dedupe_key,
      ),
    })
    const expected = {
      records: ['completed-recent', 'pending-old', 'running-old'],
      effects: 2,
      outbox: [`${tag}-dispatched-recent`, `${tag}-owed-old`],
    }
    expect(await left()).toEqual(expected)
    const again = await world.services.tasks.submit('jobs.trim_records', {})
    expect((await settled(world.services.tasks, again.id, 'system')).result).toMatchObject({ jobRecords: 0, jobEffects: 0, outbox: 0 })
    const tenantAgain = await settled(world.services.tasks, trimTenantJobId(again.id, tenant.id), { tenantId: tenant.id })
    expect(tenantAgain).toMatchObject({ status: 'completed', result: { jobRecords: 0 } })
    expect(await left()).toEqual(expected)
    expect(await tenantLeft()).toEqual(['t-completed-recent', 't-pending-old'])
  })
})
