/**
 * Provisioning when Postgres goes away: a Postgres cluster of this file's own (scratch-services.ts) is both
 * the host database and the tenant server, and is stopped in the middle of provisioning runs.
 *
 * - The call fails within a bounded time, never minutes.
 * - Postgres back within the failure-mark deadline: the tenant is 'failed' (the mark was retried), and
 *   retry finishes it.
 * - Postgres down for longer: the tenant stays 'provisioning'; once stale, `tenants list` flags it and
 *   the worker's sweep resumes it to 'active', with no orphan database and no duplicate owner.
 * - One sweep at a time across processes, and a sweep never takes a tenant a run holds.
 */
import { eq } from 'drizzle-orm'
import { pino } from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { memberships, tenants, users } from '../../drizzle/host/schema.js'
import { runCli } from '../../src/cli.js'
import type { Config } from '../../src/core/config.js'
import { connect, withDatabase } from '../../src/core/db/connect.js'
import { createServices, type Services } from '../../src/services.js'
import type { LifecycleFaults, StepName } from '../../src/core/tenancy/lifecycle.js'
import { createProvisioner, type Provisioner } from '../../src/core/tenancy/provisioning.js'
import { startWorkers } from '../../src/worker.js'
import { type ScratchPostgres, startScratchPostgres } from '../helpers/scratch-services.js'
import { createTestEnv, type TestEnv } from '../helpers/test-env.js'

const logger = pino({ level: 'silent' })
let env: TestEnv
let pg: ScratchPostgres
let config: Config
let services: Services
/** Provisioners made by a test, closed at the end (they hold maintenance connections). */
const extra: Provisioner[] = []

beforeAll(async () => {
  env = await createTestEnv()
  pg = await startScratchPostgres()
  const hostUrl = await pg.createHostDatabase()
  config = env.configWith({
    DATABASE_URL: hostUrl,
    TENANT_DATABASE_URL: pg.appUrl,
    PROVISION_STALE_AFTER_S: '2',
    PROVISION_SWEEP_INTERVAL_S: '1',
  })
  services = createServices(config, logger)
  // Build the template before any fault: the runs below time their steps, not a one-off build.
  await services.provisioner.provision({ slug: 'warm-up', name: 'Warm up' })
}, 120_000)
afterAll(async () => {
  for (const p of extra) await p.close().catch(() => {})
  await services?.close()
  pg?.destroy()
  await env?.cleanup()
}, 120_000)

function provisionerWith(faults: LifecycleFaults, failureMark?: { deadlineMs: number; firstDelayMs?: number }): Provisioner {
  const p = createProvisioner({ ...services, config, logger, faults, ...(failureMark ? { failureMark } : {}) })
  extra.push(p)
  return p
}

async function newOwner(email: string) {
  const [user] = await services.host.db
    .insert(users)
    .values({ email, name: email.split('@')[0] })
    .returning()
  return user!
}

/** Tenant databases on the scratch server (templates excluded) and the catalog's, to compare. */
async function orphanCheck() {
  const onServer = await services.host.sql<{ datname: string }[]>`
    select datname from pg_database where datname like ${`${env.name}\\_%`} and datname not like ${`${env.name}\\_tpl\\_%`} order by 1`
  const inCatalog = await services.host.db.select({ dbName: tenants.dbName }).from(tenants).orderBy(tenants.dbName)
  return { onServer: onServer.map((r) => r.datname), inCatalog: inCatalog.map((r) => r.dbName) }
}

async function ownerRows(dbName: string, ownerId: string) {
  const sql = connect(withDatabase(pg.appUrl, dbName), { max: 1 })
  try {
    const [row] = await sql<{ owners: number; users: number }[]>`
      select count(*) filter (where global_user_id = ${ownerId} and role = 'admin')::int as owners, count(*)::int as users from core_tenant_users`
    return row
  } finally {
    await sql.end({ timeout: 1 })
  }
}

/** Stop Postgres (a crash: no clean shutdown) the first time any run reaches `step`; start it again after `downMs`. */
function stopAt(step: StepName, downMs?: number): LifecycleFaults {
  let stopped = false
  return {
    beforeStep: (s) => {
      if (s !== step || stopped) return
      stopped = true
      pg.stop('immediate')
      if (downMs !== undefined) setTimeout(() => pg.start(), downMs)
    },
  }
}

async function cli(args: string[]) {
  const out: string[] = []
  const code = await runCli(args, { config, logger, io: { out: (l) => out.push(l), err: (l) => out.push(l) } })
  return { code, out }
}

describe('Postgres stops during provisioning', () => {
  it('back within the failure-mark deadline: the call fails in seconds, the tenant is failed, retry finishes it', async () => {
    const owner = await newOwner('brief-outage@example.com')
    // Postgres comes back 3 s after the run stopped it (the restart itself takes a moment more).
    const p = provisionerWith(stopAt('seedOwner', 3000), { deadlineMs: 60_000, firstDelayMs: 200 })
    const started = performance.now()
    await expect(p.provision({ slug: 'brief-outage', name: 'Brief', ownerUserId: owner.id })).rejects.toMatchObject({
      statusCode: 503,
      code: 'PROVISIONING_FAILED',
      message: expect.stringContaining('it is marked failed and can be retried'),
    })
    const seconds = (performance.now() - started) / 1000
    expect(seconds).toBeLessThan(45)

    const row = await services.provisioner.describe('brief-outage')
    expect(row).toMatchObject({ status: 'failed', provisionStep: 'seedOwner' })
    expect(row.provisionError).toMatch(/^seedOwner: /)
    await expect
      .poll(() => services.provisioner.retry('brief-outage').then((t) => t.status), { timeout: 60_000, interval: 500 })
      .toBe('active')
    expect(await ownerRows(row.dbName, owner.id)).toEqual({ owners: 1, users: 1 })
    const { onServer, inCatalog } = await orphanCheck()
    expect(onServer).toEqual(inCatalog)
  }, 120_000)

  it('down for longer: calls fail within a bound, tenants stay provisioning, the list flags them, the worker sweep makes them active', async () => {
    const owners = await Promise.all([1, 2, 3].map((i) => newOwner(`long-outage-${i}@example.com`)))
    // A short failure-mark deadline: Postgres stays down well past it.
    const p = provisionerWith(stopAt('seedOwner'), { deadlineMs: 2000, firstDelayMs: 100 })
    // Registered first, so that every run is inside its steps when Postgres goes (what provision() does
    // after register; a register that fails has written nothing).
    const registered = await Promise.all(
      owners.map((owner, i) => p.register({ slug: `long-outage-${i + 1}`, name: `Long ${i + 1}`, ownerUserId: owner.id })),
    )
    const timed = registered.map(async (t) => {
      const t0 = performance.now()
      const err = await p.retry(t.id).then(
        () => undefined,
        (e: unknown) => e,
      )
      return { err, seconds: (performance.now() - t0) / 1000 }
    })
    const results = await Promise.all(timed)
    for (const r of results) {
      expect(r.err).toMatchObject({
        statusCode: 503,
        code: 'PROVISIONING_FAILED',
        message: expect.stringContaining('could not be marked failed'),
      })
      expect(r.seconds).toBeLessThan(45)
    }
    pg.start()

    const statuses = async () =>
      (await services.host.db.select({ slug: tenants.slug, status: tenants.status }).from(tenants))
        .filter((t) => t.slug.startsWith('long-outage-'))
        .map((t) => t.status)
    await expect.poll(statuses, { timeout: 60_000, interval: 500 }).toHaveLength(3)
    // Nothing could record the failure, so nothing will retry them: left 'provisioning' (the bug's state).
    expect(await statuses()).toEqual(['provisioning', 'provisioning', 'provisioning'])

    // Stale after PROVISION_STALE_AFTER_S (2 s here) with no run holding them: the list says so.
    await expect
      .poll(async () => (await cli(['tenants', 'list'])).out.filter((l) => /^long-outage-\d .*STALE: no run holds it/.test(l)).length, {
        timeout: 30_000,
        interval: 500,
      })
      .toBe(3)
    const list = await cli(['tenants', 'list'])
    expect(list.out).toContain("3 stale provisioning tenant(s): the worker's sweep resumes them, or run `npm run tenants -- resume-stale`")
    expect(list.out.find((l) => l.startsWith('warm-up'))).toMatch(/active\s+free\s+database\s+\S+\s+\S+\s+current$/)

    // The worker's sweep (every PROVISION_SWEEP_INTERVAL_S = 1 s here) resumes them.
    const worker = await startWorkers(services, { concurrency: 1 })
    try {
      expect(worker.sweeper).toBeDefined()
      await expect.poll(statuses, { timeout: 60_000, interval: 500 }).toEqual(['active', 'active', 'active'])
    } finally {
      await worker.close(5000)
    }
    for (const [i, owner] of owners.entries()) {
      const t = await services.provisioner.describe(`long-outage-${i + 1}`)
      expect(t).toMatchObject({ status: 'active', provisionStep: null, provisionError: null, migrationStatus: 'current' })
      expect(await ownerRows(t.dbName, owner.id)).toEqual({ owners: 1, users: 1 })
      expect(await services.host.db.select().from(memberships).where(eq(memberships.tenantId, t.id))).toHaveLength(1)
    }
    const { onServer, inCatalog } = await orphanCheck()
    expect(onServer).toEqual(inCatalog)
    expect((await cli(['tenants', 'list'])).out.some((l) => l.includes('STALE'))).toBe(false)
  }, 180_000)
})

describe('the stale sweep', () => {
  it('never takes a tenant a run holds, runs one at a time across processes, and resume-stale runs it once', async () => {
    // Another "process" (its own provisioner, hence its own lock session) is inside a run, paused.
    const pausedIn = new Set<string>()
    let release!: () => void
    const gate = new Promise<void>((resolve) => {
      release = resolve
    })
    const other = provisionerWith({
      beforeStep: async (s, tenantId) => {
        if (s !== 'migrate') return
        pausedIn.add(tenantId)
        await gate
      },
    })
    // A stale tenant: registered, and nothing ran it (as when a process died before its first step).
    const stale = await services.provisioner.register({ slug: 'left-behind', name: 'Left behind' })
    const running = other.provision({ slug: 'in-progress', name: 'In progress' })
    try {
      await expect.poll(() => pausedIn.size, { timeout: 30_000 }).toBe(1)
      const inProgress = await services.provisioner.describe('in-progress')
      expect(inProgress.status).toBe('provisioning')
      const listed = (await services.provisioner.listStale({ olderThanS: 0 })).map((t) => t.slug)
      expect(listed).toContain('left-behind')
      expect(listed).not.toContain('in-progress') // its run holds the lock, however old the row

      // While the other process sweeps (paused inside its run), a second sweep skips its turn.
      const otherSweep = other.resumeStale({ olderThanS: 0 })
      await expect.poll(() => pausedIn.has(stale.id), { timeout: 30_000 }).toBe(true)
      expect(await services.provisioner.resumeStale({ olderThanS: 0 })).toBe('busy')
      const viaCli = await cli(['tenants', 'resume-stale', '--older-than', '0'])
      expect(viaCli).toEqual({ code: 0, out: ['another sweep is running (a worker or another resume-stale); nothing done'] })
      release()
      expect((await running).status).toBe('active')
      const swept = await otherSweep
      expect(swept).not.toBe('busy')
      expect(swept).toMatchObject({ resumed: ['left-behind'], failed: [] })
    } finally {
      release()
    }
    expect((await services.provisioner.describe(stale.id)).status).toBe('active')
    // Nothing stale is left: the CLI says so and exits 0.
    expect(await cli(['tenants', 'resume-stale', '--older-than', '0'])).toEqual({ code: 0, out: ['0 resumed, 0 failed, 0 skipped'] })
  }, 120_000)

  it('resume-stale resumes a stale tenant and reports it; bad --older-than is a usage error', async () => {
    await services.provisioner.register({ slug: 'resume-me', name: 'Resume me' })
    expect(await cli(['tenants', 'resume-stale', '--older-than', '0'])).toEqual({
      code: 0,
      out: ['resume-me: active', '1 resumed, 0 failed, 0 skipped'],
    })
    expect((await services.provisioner.describe('resume-me')).status).toBe('active')

    for (const bad of ['-1', 'soon', '1.5']) {
      const res = await cli(['tenants', 'resume-stale', `--older-than=${bad}`])
      expect(res.code).toBe(2)
      expect(res.out[0]).toBe('error: --older-than must be a whole number of seconds (0 or more)')
    }
    expect((await cli(['tenants', 'resume-stale', 'resume-me'])).code).toBe(2)
  }, 60_000)
})
