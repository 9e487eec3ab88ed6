import { eq } from 'drizzle-orm'
import { pino } from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { auditLogs, memberships, tenants, users } from '../../drizzle/host/schema.js'
import { connect, withDatabase } from '../../src/core/db/connect.js'
import { migrationInfo } from '../../src/core/db/migrations.js'
import { decrypt } from '../../src/core/lib/crypto.js'
import { createServices, type Services } from '../../src/services.js'
import type { StepName } from '../../src/core/tenancy/lifecycle.js'
import { KIT_LIFECYCLE } from '../../src/features/index.js'
import { welcomeEmailJobId } from '../../src/features/tenants/welcome-email.js'
import { createProvisioner, type Provisioner } from '../../src/core/tenancy/provisioning.js'
import { APP_URL } from '../helpers/env.js'
import { createTestEnv, type TestEnv } from '../helpers/test-env.js'

const logger = pino({ level: 'silent' })
/** What a second provisioner in these tests shares with the services' own (each test adds its faults). */
const provisionerDeps = () => ({
  host: services.host,
  catalog: services.catalog,
  tasks: services.tasks,
  lifecycle: services.lifecycle,
  pools: services.pools,
  config: env.config,
  logger,
})
const version = migrationInfo('tenant').version
let env: TestEnv
let services: Services

beforeAll(async () => {
  env = await createTestEnv()
  services = createServices(env.config, logger)
})
afterAll(async () => {
  await services?.close()
  await env?.cleanup()
})

async function newUser(email: string) {
  const [user] = await services.host.db
    .insert(users)
    .values({ email, name: email.split('@')[0] })
    .returning()
  return user!
}

/** Tenant databases on the server with this test world's prefix (templates excluded). */
async function tenantDatabases(): Promise<string[]> {
  const rows = await services.host.sql<{ datname: string }[]>`
    select datname from pg_database where datname like ${`${env.name}\\_%`} and datname not like ${`${env.name}\\_tpl\\_%`} and datname <> ${`${env.name}_host`} order by 1`
  return rows.map((r) => r.datname)
}

async function catalogDbNames(): Promise<string[]> {
  const rows = await services.host.db.select({ dbName: tenants.dbName }).from(tenants).orderBy(tenants.dbName)
  return rows.map((r) => r.dbName)
}

/** Run fn with a short-lived connection to a tenant database. */
async function inTenantDb<T>(dbName: string, fn: (sql: ReturnType<typeof connect>) => Promise<T>): Promise<T> {
  const sql = connect(withDatabase(APP_URL, dbName), { max: 1 })
  try {
    return await fn(sql)
  } finally {
    await sql.end()
  }
}

/** Welcome email jobs submitted for this recipient: records in sys_jobs (no worker runs in this file). */
async function welcomeJobs(email: string) {
  const records = await services.tasks.listJobs({ type: 'email.send', limit: 200 })
  return records.filter((r) => r.payload.to === email)
}

async function auditActions(tenantId: string): Promise<string[]> {
  const rows = await services.host.db.select().from(auditLogs).where(eq(auditLogs.tenantId, tenantId)).orderBy(auditLogs.createdAt)
  return rows.map((r) => r.action)
}

describe('provision', () => {
  it('creates an active tenant: catalog row, database cloned from the template, owner seeded', async () => {
    const owner = await newUser('ada@example.com')
    const t = await services.provisioner.provision({ slug: 'acme', name: 'Acme Inc', ownerUserId: owner.id, planTier: 'pro' })
    expect(t).toMatchObject({ slug: 'acme', name: 'Acme Inc', status: 'active', planTier: 'pro', migrationVersion: version })
    expect(t.migrationStatus).toBe('current')
    expect(t.provisionStep).toBeNull()
    expect(t.dbName).toBe(`${env.name}_${t.id.replaceAll('-', '')}`)

    const [row] = await services.host.db.select().from(tenants).where(eq(tenants.id, t.id))
    expect(row?.dbUrlEncrypted).not.toContain(t.dbName) // encrypted at rest
    expect(decrypt(row!.dbUrlEncrypted, env.config.encryptionKeys)).toBe(withDatabase(APP_URL, t.dbName))
    expect(row?.createdBy).toBe(owner.id)
    expect(row?.migratedAt).toBeInstanceOf(Date)

    const members = await services.host.db.select().from(memberships).where(eq(memberships.tenantId, t.id))
    expect(members).toMatchObject([{ userId: owner.id, role: 'owner', status: 'active' }])

    expect(await tenantDatabases()).toContain(t.dbName)
    const seeded = await inTenantDb(t.dbName, async (sql) => ({
      users: await sql`select global_user_id, email, role from core_tenant_users`,
      settings: await sql`select timezone, currency from core_settings`,
      tables: await sql`select count(*)::int as n from information_schema.tables where table_schema = 'public'`,
    }))
    expect(seeded.users).toEqual([{ global_user_id: owner.id, email: 'ada@example.com', role: 'admin' }])
    expect(seeded.settings).toEqual([{ timezone: 'UTC', currency: 'usd' }])
    expect(seeded.tables[0]?.n).toBeGreaterThanOrEqual(5)

    const record = await services.catalog.get('acme')
    expect(record).toMatchObject({ id: t.id, status: 'active', migrationVersion: version, migrationStatus: 'current' })
    expect(await auditActions(t.id)).toEqual(['tenant.created', 'tenant.provisioned'])

    // The welcome email is a job (never sent in the request), with the id derived from the tenant.
    const [welcome] = await welcomeJobs('ada@example.com')
    expect(welcome).toMatchObject({
      id: welcomeEmailJobId(t.id),
      status: 'pending',
      payload: { to: 'ada@example.com', template: 'welcome', variables: { user_name: 'ada', tenant_name: 'Acme Inc', dashboard_url: `${env.config.appBaseUrl}/` } },
    })
    expect(await services.tasks.queues.system.getJob(welcomeEmailJobId(t.id))).toMatchObject({ name: 'email.send' })
  })

  it('register() writes only the catalog row, the owner membership and the audit entry', async () => {
    const owner = await newUser('reg@example.com')
    const before = await tenantDatabases()
    const t = await services.provisioner.register({ slug: 'registered-only', name: 'Registered', ownerUserId: owner.id })
    expect(t).toMatchObject({ slug: 'registered-only', status: 'provisioning', provisionStep: KIT_LIFECYCLE.events.created.steps[0], migrationVersion: null })
    expect(await tenantDatabases()).toEqual(before)
    const members = await services.host.db.select().from(memberships).where(eq(memberships.tenantId, t.id))
    expect(members).toMatchObject([{ userId: owner.id, role: 'owner' }])
    expect(await auditActions(t.id)).toEqual(['tenant.created'])
    expect(await welcomeJobs('reg@example.com')).toEqual([])
    // The queue (or a retry) finishes it.
    expect((await services.provisioner.retry(t.id)).status).toBe('active')
    expect(await welcomeJobs('reg@example.com')).toHaveLength(1)
  })

  it('provisions without an owner (settings only)', async () => {
    const t = await services.provisioner.provision({ slug: 'no-owner', name: 'No Owner' })
    expect(t.status).toBe('active')
    const counts = await inTenantDb(t.dbName, async (sql) => {
      const [u] = await sql`select count(*)::int as n from core_tenant_users`
      const [s] = await sql`select count(*)::int as n from core_settings`
      return [u?.n, s?.n]
    })
    expect(counts).toEqual([0, 1])
    // Nobody to welcome: no email job mentions this tenant.
    const records = await services.tasks.listJobs({ type: 'email.send', limit: 200 })
    expect(records.filter((r) => (r.payload.variables as Record<string, string>).tenant_name === 'No Owner')).toEqual([])
    expect(await services.tasks.queues.system.getJob(welcomeEmailJobId(t.id))).toBeUndefined()
  })

  it.each([
    'ab',
    'A-team',
    '-abc',
    'abc-',
    'has_underscore',
    'dots.not.allowed',
    'x'.repeat(64),
    'www',
    'api',
    'admin',
    'app',
    '0190a2b4-0000-7000-8000-000000000000',
    'xn--pple-43d',
    'xn--80ak6aa92e',
    'ab--cd',
  ])('rejects slug %j with 400 INVALID_SLUG and writes nothing', async (slug) => {
    const before = await catalogDbNames()
    await expect(services.provisioner.provision({ slug, name: 'Bad' })).rejects.toMatchObject({ statusCode: 400, code: 'INVALID_SLUG' })
    expect(await catalogDbNames()).toEqual(before)
  })

  it('rejects an empty name and an unknown owner with 400', async () => {
    await expect(services.provisioner.provision({ slug: 'empty-name', name: '  ' })).rejects.toMatchObject({
      statusCode: 400,
      code: 'INVALID_NAME',
    })
    await expect(
      services.provisioner.provision({ slug: 'ghost-owner', name: 'Ghost', ownerUserId: '0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b' }),
    ).rejects.toMatchObject({ statusCode: 400, code: 'UNKNOWN_OWNER' })
    expect(await services.provisioner.writes.find('ghost-owner')).toBeUndefined()
  })

  it('lets exactly one of two concurrent provisions of the same slug win; the other gets 409 SLUG_TAKEN', async () => {
    const before = await tenantDatabases()
    const results = await Promise.allSettled([
      services.provisioner.provision({ slug: 'race', name: 'Race A' }),
      services.provisioner.provision({ slug: 'race', name: 'Race B' }),
    ])
    const won = results.filter((r) => r.status === 'fulfilled')
    const lost = results.filter((r) => r.status === 'rejected')
    expect(won).toHaveLength(1)
    expect(lost).toHaveLength(1)
    expect((lost[0] as PromiseRejectedResult).reason).toMatchObject({ statusCode: 409, code: 'SLUG_TAKEN' })
    const after = await tenantDatabases()
    expect(after.filter((d) => !before.includes(d))).toHaveLength(1) // the loser created no database
    await expect(services.provisioner.provision({ slug: 'race', name: 'Later' })).rejects.toMatchObject({ code: 'SLUG_TAKEN' })
  })
})

describe('crash at each step, then retry', () => {
  const steps: StepName[] = [...KIT_LIFECYCLE.events.created.steps]
  it('covers every provisioning step', () => {
    expect(steps).toEqual(['createDatabase', 'migrate', 'seedOwner', 'sendWelcomeEmail', 'activate'])
  })
  const cases = steps.flatMap((step) => [
    { step, when: 'beforeStep' as const },
    { step, when: 'afterStep' as const },
  ])

  it.each(cases)(
    '$when $step: failed with the error recorded, then retry ends active with no orphan or duplicate',
    async ({ step, when }) => {
      const owner = await newUser(`owner-${when}-${step}@example.com`.toLowerCase())
      const slug = `crash-${when}-${step}`.toLowerCase()
      const crashing: Provisioner = createProvisioner({
        ...provisionerDeps(),
        faults: {
          [when]: (s: StepName) => {
            if (s === step) throw new Error(`simulated crash ${when} ${step}`)
          },
        },
      })
      try {
        await expect(crashing.provision({ slug, name: slug, ownerUserId: owner.id })).rejects.toMatchObject({
          statusCode: 503,
          code: 'PROVISIONING_FAILED',
        })
      } finally {
        await crashing.close()
      }
      const failed = await services.provisioner.describe(slug)
      expect(failed.status).toBe('failed')
      expect(failed.provisionError).toBe(`${step}: simulated crash ${when} ${step}`)
      expect(await auditActions(failed.id)).toEqual(['tenant.created', 'tenant.provision_failed'])
      // Retry resumes at the step that did not finish.
      expect(failed.provisionStep).toBe(step)

      const done = await services.provisioner.retry(slug)
      expect(done).toMatchObject({ status: 'active', migrationVersion: version, migrationStatus: 'current', provisionError: null })
      expect(await auditActions(failed.id)).toEqual(['tenant.created', 'tenant.provision_failed', 'tenant.provisioned'])

      // Every database on the server belongs to a catalog row and vice versa.
      expect(await tenantDatabases()).toEqual(await catalogDbNames())
      const counts = await inTenantDb(done.dbName, async (sql) => {
        const [u] = await sql`select count(*)::int as n from core_tenant_users where global_user_id = ${owner.id} and role = 'admin'`
        const [all] = await sql`select count(*)::int as n from core_tenant_users`
        const [s] = await sql`select count(*)::int as n from core_settings`
        const [m] = await sql`select count(*)::int as n from drizzle.__drizzle_migrations`
        return { owner: u?.n, users: all?.n, settings: s?.n, migrations: m?.n }
      })
      expect(counts).toEqual({ owner: 1, users: 1, settings: 1, migrations: migrationInfo('tenant').tags.length })
      const members = await services.host.db.select().from(memberships).where(eq(memberships.tenantId, done.id))
      expect(members).toHaveLength(1)

      // A second retry of an active tenant changes nothing.
      expect((await services.provisioner.retry(slug)).status).toBe('active')

      // One welcome email job, however often the step ran (crash after it, then retry: the same job id).
      const welcome = await welcomeJobs(owner.email)
      expect(welcome.map((r) => r.id)).toEqual([welcomeEmailJobId(done.id)])
      const queued = await services.tasks.queues.system.getJobs(['waiting', 'delayed', 'prioritized'])
      expect(queued.filter((j) => j.name === 'email.send' && j.data.to === owner.email)).toHaveLength(1)
    },
  )

  it('starts the welcome email together with seedOwner (a concurrent step); seedOwner failing is still the step recorded', async () => {
    const owner = await newUser('together@example.com')
    let emailStarted!: () => void
    const started = new Promise<void>((resolve) => {
      emailStarted = resolve
    })
    const together = createProvisioner({
      ...provisionerDeps(),
      faults: {
        // seedOwner waits for the email step to begin: run one after the other, this would never finish.
        beforeStep: async (s) => {
          if (s === 'sendWelcomeEmail') emailStarted()
          if (s === 'seedOwner') {
            await started
            throw new Error('seed failed')
          }
        },
      },
    })
    try {
      await expect(together.provision({ slug: 'together', name: 'Together', ownerUserId: owner.id })).rejects.toMatchObject({ code: 'PROVISIONING_FAILED' })
    } finally {
      await together.close()
    }
    const failed = await services.provisioner.describe('together')
    expect(failed).toMatchObject({ status: 'failed', provisionStep: 'seedOwner', provisionError: 'seedOwner: seed failed' })
    const done = await services.provisioner.retry('together')
    expect(done.status).toBe('active')
    expect((await welcomeJobs('together@example.com')).map((r) => r.id)).toEqual([welcomeEmailJobId(done.id)])
  })

  it('resumes a run whose process died without recording the failure (status still provisioning)', async () => {
    const dying = createProvisioner({
      ...provisionerDeps(),
      faults: {
        afterStep: (s) => {
          if (s === 'createDatabase') throw new Error('killed')
        },
      },
    })
    await dying.provision({ slug: 'died-mid-run', name: 'Died' }).catch(() => {})
    await dying.close()
    const row = await services.provisioner.describe('died-mid-run')
    // What a killed process leaves: still provisioning, database created, the step not recorded as done.
    await services.host.db.update(tenants).set({ status: 'provisioning', provisionError: null }).where(eq(tenants.id, row.id))
    expect(await tenantDatabases()).toContain(row.dbName)
    const done = await services.provisioner.retry('died-mid-run')
    expect(done.status).toBe('active')
    expect(await tenantDatabases()).toEqual(await catalogDbNames())
  })

  it('lets one lifecycle run at a time touch a tenant, across processes: the other gets 409 TENANT_BUSY', async () => {
    let paused!: () => void
    const pause = new Promise<void>((resolve) => {
      paused = resolve
    })
    let release!: () => void
    const gate = new Promise<void>((resolve) => {
      release = resolve
    })
    // Another "process": its own provisioner, hence its own lock session on the maintenance database.
    const other = createProvisioner({
      ...provisionerDeps(),
      faults: {
        beforeStep: async (s) => {
          if (s !== 'seedOwner') return
          paused()
          await gate
        },
      },
    })
    try {
      const running = other.provision({ slug: 'busy-one', name: 'Busy' })
      await pause
      await expect(services.provisioner.retry('busy-one')).rejects.toMatchObject({ statusCode: 409, code: 'TENANT_BUSY' })
      await expect(services.provisioner.run('hardDeleted', 'busy-one')).rejects.toMatchObject({ code: 'TENANT_BUSY' })
      release()
      expect((await running).status).toBe('active')
    } finally {
      release()
      await other.close()
    }
    // Two retries at once in one process: one runs, the other is refused; the tenant ends active once.
    await services.host.db.update(tenants).set({ status: 'failed', provisionStep: 'createDatabase' }).where(eq(tenants.slug, 'busy-one'))
    const results = await Promise.allSettled([services.provisioner.retry('busy-one'), services.provisioner.retry('busy-one')])
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1)
    expect(results.find((r) => r.status === 'rejected')).toMatchObject({ reason: { code: 'TENANT_BUSY' } })
    expect((await services.provisioner.describe('busy-one')).status).toBe('active')
    expect(await tenantDatabases()).toEqual(await catalogDbNames())
  })

  it('runs the steps one at a time (the job queue path)', async () => {
    const owner = await newUser('stepper@example.com')
    const stopped = createProvisioner({
      ...provisionerDeps(),
      faults: {
        beforeStep: (s) => {
          if (s === 'createDatabase') throw new Error('queued instead')
        },
      },
    })
    await stopped.provision({ slug: 'one-step-at-a-time', name: 'Steps', ownerUserId: owner.id }).catch(() => {})
    await stopped.close()
    const { id } = await services.provisioner.describe('one-step-at-a-time')
    await services.host.db.update(tenants).set({ status: 'provisioning' }).where(eq(tenants.id, id))

    const { steps } = services.provisioner
    await steps.createDatabase(id)
    expect((await services.provisioner.describe(id)).provisionStep).toBe('migrate')
    await steps.migrate(id)
    expect((await services.provisioner.describe(id)).provisionStep).toBe('seedOwner')
    await steps.seedOwner(id, owner.id)
    await steps.seedOwner(id, owner.id) // a redelivered job
    expect((await services.provisioner.describe(id)).provisionStep).toBe('sendWelcomeEmail')
    await steps.sendWelcomeEmail!(id, owner.id)
    await steps.sendWelcomeEmail!(id, owner.id) // a redelivered job: the same email job, not a second one
    expect(await welcomeJobs('stepper@example.com')).toHaveLength(1)
    expect((await services.provisioner.describe(id)).status).toBe('provisioning')
    expect(await steps.activate(id)).toEqual({ outcome: 'done', status: 'active' })
    const done = await services.provisioner.describe(id)
    expect(done).toMatchObject({ status: 'active', provisionStep: null, migrationStatus: 'current' })
    const users = await inTenantDb(done.dbName, (sql) => sql`select role from core_tenant_users`)
    expect(users).toEqual([{ role: 'admin' }])

    // Done is done: every step re-run on the active tenant succeeds and changes nothing.
    const before = await services.provisioner.writes.get(id)
    for (const step of KIT_LIFECYCLE.events.created.steps) {
      expect(await steps[step]!(id, owner.id), step).toEqual({ outcome: 'already_done', status: 'active' })
    }
    expect(await services.provisioner.writes.get(id)).toEqual(before)
    expect(await welcomeJobs('stepper@example.com')).toHaveLength(1)
    expect(await tenantDatabases()).toEqual(await catalogDbNames())
  })

  it('records a real database error and keeps failing until the cause is fixed', async () => {
    let dbName = ''
    const sabotaged = createProvisioner({
      ...provisionerDeps(),
      faults: {
        // Not a thrown fault: break the tenant database so the real seed query fails.
        beforeStep: async (s, tenantId) => {
          if (s !== 'seedOwner') return
          dbName = (await services.provisioner.describe(tenantId)).dbName
          await inTenantDb(dbName, (sql) => sql`drop table core_settings`)
        },
      },
    })
    await expect(sabotaged.provision({ slug: 'broken-seed', name: 'Broken' })).rejects.toMatchObject({ code: 'PROVISIONING_FAILED' })
    await sabotaged.close()
    const failed = await services.provisioner.describe('broken-seed')
    expect(failed.status).toBe('failed')
    expect(failed.provisionStep).toBe('seedOwner')
    expect(failed.provisionError).toMatch(/^seedOwner: .*core_settings.* does not exist/)

    await expect(services.provisioner.retry('broken-seed')).rejects.toMatchObject({ code: 'PROVISIONING_FAILED' })
    expect((await services.provisioner.describe('broken-seed')).status).toBe('failed')

    await inTenantDb(dbName, (sql) => sql`create table core_settings (id uuid primary key, timezone text not null default 'UTC')`)
    expect((await services.provisioner.retry('broken-seed')).status).toBe('active')
  })
})
