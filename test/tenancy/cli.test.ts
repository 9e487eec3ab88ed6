/**
 * The CLI as an operator runs it: a child process (`tsx src/cli.ts …`), its output and its exit code.
 * Each child costs about a second to start, so the remaining commands run in-process through runCli,
 * which is what main() calls before process.exit(code).
 */
import { execFile } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { eq } from 'drizzle-orm'
import { pino } from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { tenants, users } from '../../drizzle/host/schema.js'
import { runCli } from '../../src/cli.js'
import { connect, withDatabase } from '../../src/core/db/connect.js'
import { createHostDatabase, type HostDatabase } from '../../src/core/db/host.js'
import { migrationInfo } from '../../src/core/db/migrations.js'
import { APP_URL, sharedUrl } from '../helpers/env.js'
import { createTestEnv, type TestEnv } from '../helpers/test-env.js'

const root = fileURLToPath(new URL('../..', import.meta.url))
const version = migrationInfo('tenant').version
const SERVER = 'default'
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

function cli(args: string[], extraEnv: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--import', 'tsx', 'src/cli.ts', ...args],
      { cwd: root, env: { ...process.env, ...env.vars, ...extraEnv }, timeout: 60_000 },
      (err, stdout, stderr) => resolve({ code: err ? Number(err.code ?? 1) : 0, stdout, stderr }),
    )
  })
}

/** The same command in this process. */
async function runInProcess(args: string[], vars: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = ''
  let stderr = ''
  const io = { out: (l: string) => (stdout += `${l}\n`), err: (l: string) => (stderr += `${l}\n`) }
  const code = await runCli(args, { config: env.configWith(vars), logger: pino({ level: 'silent' }), io })
  return { code, stdout, stderr }
}

const dbExists = async (dbName: string) => (await host.sql`select 1 from pg_database where datname = ${dbName}`).length === 1

describe('tenants CLI', () => {
  it('provisions tenants and lists them with status and migration version', async () => {
    const one = await cli(['tenants', 'provision', 'cli-one', '--name', 'CLI One'])
    expect(one).toMatchObject({ code: 0, stderr: '' })
    expect(one.stdout).toMatch(
      new RegExp(`^provisioned cli-one \\([0-9a-f-]{36}\\): active, database ${env.name}_[0-9a-f]{32} on server default, migration ${version}\\n$`),
    )
    expect((await runInProcess(['tenants', 'provision', 'cli-two'])).code).toBe(0)

    const list = await cli(['tenants', 'list'])
    expect(list.code).toBe(0)
    const lines = list.stdout.trimEnd().split('\n')
    expect(lines[0]).toMatch(/^SLUG\s+NAME\s+STATUS\s+PLAN\s+ISOLATION\s+SERVER\s+MIGRATION\s+MIGRATION STATUS\s+NOTE$/)
    expect(lines[1]).toMatch(new RegExp(`^cli-one\\s+CLI One\\s+active\\s+free\\s+database\\s+${SERVER}\\s+${version}\\s+current$`))
    expect(lines[2]).toMatch(new RegExp(`^cli-two\\s+cli-two\\s+active\\s+free\\s+database\\s+${SERVER}\\s+${version}\\s+current$`))
    expect(lines[3]).toBe('2 tenant(s)')
  })

  it('db:migrate applies host migrations (none pending here)', async () => {
    expect(await runInProcess(['db:migrate'])).toEqual({ code: 0, stdout: 'host database migrated\n', stderr: '' })
    const [row] = await host.sql`select count(*)::int as n from drizzle.__drizzle_migrations`
    expect(row?.n).toBe(migrationInfo('host').tags.length)
  })

  it('answers bad input with one error line and a non-zero exit', async () => {
    const reserved = await cli(['tenants', 'provision', 'www'])
    expect(reserved.code).toBe(1)
    expect(reserved.stderr).toBe('error: slug "www" is reserved (INVALID_SLUG)\n')
    const taken = await runInProcess(['tenants', 'provision', 'cli-one'])
    expect(taken).toMatchObject({ code: 1, stderr: 'error: slug "cli-one" is already taken (SLUG_TAKEN)\n' })
    const unknown = await runInProcess(['tenants', 'suspend', 'nobody-here'])
    expect(unknown).toMatchObject({ code: 1, stderr: 'error: no tenant "nobody-here" (TENANT_NOT_FOUND)\n' })
    const usage = await runInProcess(['tenants', 'frobnicate'])
    expect(usage.code).toBe(2)
    expect(usage.stderr).toMatch(/^error: unknown tenants command "frobnicate"\nusage:/)
    const config = await cli(['tenants', 'list'], { POOL_CONNECTION_BUDGET: 'lots' })
    expect(config).toMatchObject({
      code: 1,
      stdout: '',
      stderr: 'Invalid configuration: POOL_CONNECTION_BUDGET: must be an integer, got "lots"\n',
    })
  })

  it('suspends, resumes and deletes (soft, then hard)', async () => {
    expect(await runInProcess(['tenants', 'suspend', 'cli-two'])).toMatchObject({ code: 0, stdout: 'cli-two: suspended\n' })
    expect((await runInProcess(['tenants', 'list'])).stdout).toMatch(/cli-two\s+cli-two\s+suspended/)
    expect(await runInProcess(['tenants', 'resume', 'cli-two'])).toMatchObject({ code: 0, stdout: 'cli-two: active\n' })

    const [row] = await host.db.select().from(tenants).where(eq(tenants.slug, 'cli-two'))
    expect((await runInProcess(['tenants', 'delete', 'cli-two'])).code).toBe(0)
    expect(await dbExists(row!.dbName)).toBe(true)
    expect(await runInProcess(['tenants', 'restore', 'cli-two'])).toMatchObject({ code: 0, stdout: 'cli-two: active\n' })
    expect(await runInProcess(['tenants', 'restore', 'cli-two'])).toMatchObject({ code: 0, stdout: 'cli-two: already active\n' })
    expect((await runInProcess(['tenants', 'delete', 'cli-two'])).code).toBe(0)
    expect((await runInProcess(['tenants', 'delete', 'cli-two', '--hard'])).code).toBe(0)
    expect(await dbExists(row!.dbName)).toBe(false)
    expect((await runInProcess(['tenants', 'list'])).stdout).not.toContain('cli-two')
  })

  it('migrates the fleet with progress lines and exits 1 when a tenant fails', async () => {
    expect((await runInProcess(['tenants', 'provision', 'cli-three'])).code).toBe(0)
    // Every tenant looks behind; cli-three's database lost its migration history, so re-running 0000 collides.
    await host.db.update(tenants).set({ migrationVersion: null, migrationStatus: 'pending' })
    const [broken] = await host.db.select().from(tenants).where(eq(tenants.slug, 'cli-three'))
    const sql = connect(withDatabase(APP_URL, broken!.dbName), { max: 1 })
    await sql`drop schema drizzle cascade`
    await sql.end()

    expect((await runInProcess(['tenants', 'behind'])).stdout).toMatch(
      /cli-one\s+active\s+-\s+pending\ncli-three\s+active\s+-\s+pending\n2 tenant\(s\) behind/,
    )
    const run = await cli(['tenants', 'migrate', '--continue-on-error'])
    expect(run.code).toBe(1)
    expect(run.stdout).toMatch(/\[\d\/2\] cli-one migrated to /)
    expect(run.stdout).toMatch(/\[\d\/2\] cli-three failed: relation "\w+" already exists/)
    expect(run.stdout).toMatch(/2 tenant\(s\) at \S+: 1 migrated, 0 already current, 1 failed, 0 not run/)

    const ok = await runInProcess(['tenants', 'migrate', '--tenant', 'cli-one'])
    expect(ok.code).toBe(0)
    expect(ok.stdout).toMatch(
      /^\[1\/1\] cli-one skipped \(\d+ ms\)\n1 tenant\(s\) at \S+: 0 migrated, 1 already current, 0 failed, 0 not run/,
    )
  })
})

describe('users CLI (platform admins)', () => {
  const userId = async (email: string, verified = false) =>
    (
      await host.db
        .insert(users)
        .values({ email, emailVerifiedAt: verified ? new Date() : null })
        .returning()
    )[0]!.id
  const isAdmin = async (id: string) => (await host.db.select().from(users).where(eq(users.id, id)))[0]!.isPlatformAdmin

  it('grants, lists and revokes, audited; unknown emails and bad usage fail', async () => {
    const id = await userId('cli-admin@example.com')
    const granted = await runInProcess(['users', 'grant-admin', 'CLI-Admin@example.com'])
    expect(granted).toEqual({ code: 0, stdout: `cli-admin@example.com (${id}) is a platform admin\n`, stderr: '' })
    expect(await isAdmin(id)).toBe(true)

    const list = await cli(['users', 'list-admins'])
    expect(list.code).toBe(0)
    expect(list.stdout.trimEnd().split('\n')).toEqual([
      expect.stringMatching(/^EMAIL\s+ID\s+VERIFIED\s+VIA$/),
      expect.stringMatching(new RegExp(`^cli-admin@example\\.com\\s+${id}\\s+no\\s+granted$`)),
      '1 platform admin(s)',
    ])

    expect((await runInProcess(['users', 'revoke-admin', 'cli-admin@example.com'])).code).toBe(0)
    expect(await isAdmin(id)).toBe(false)
    expect((await runInProcess(['users', 'list-admins'])).stdout).toBe('EMAIL  ID  VERIFIED  VIA\n0 platform admin(s)\n')
    const actions = await host.sql`select action from sys_audit_logs where target_id = ${id} order by created_at, id`
    expect(actions.map((r) => r.action)).toEqual(['admin.platform_admin_granted', 'admin.platform_admin_revoked'])

    expect(await runInProcess(['users', 'grant-admin', 'nobody@example.com'])).toMatchObject({
      code: 1,
      stderr: 'error: no user with email nobody@example.com (UNKNOWN_USER)\n',
    })
    expect((await runInProcess(['users', 'grant-admin'])).code).toBe(2)
    expect((await runInProcess(['users', 'grant-admin', 'a@x', 'b@x'])).code).toBe(2)
    expect((await runInProcess(['users', 'promote', 'a@x'])).stderr).toMatch(/^error: unknown users command "promote"\nusage:/)
  })

  it('lists verified users that PLATFORM_ADMIN_EMAILS admits, never unverified ones, and says so on revoke', async () => {
    const verified = await userId('boot-verified@example.com', true)
    await userId('boot-unverified@example.com')
    const vars = { PLATFORM_ADMIN_EMAILS: 'Boot-Verified@example.com,boot-unverified@example.com' }
    const list = await cli(['users', 'list-admins'], vars)
    expect(list.stdout).toMatch(new RegExp(`^boot-verified@example\\.com\\s+${verified}\\s+yes\\s+PLATFORM_ADMIN_EMAILS$`, 'm'))
    expect(list.stdout).not.toContain('boot-unverified')
    expect(list.stdout).toContain('1 platform admin(s)')

    let stdout = ''
    const io = { out: (l: string) => (stdout += `${l}\n`), err: () => {} }
    const code = await runCli(['users', 'revoke-admin', 'boot-verified@example.com'], {
      config: env.configWith(vars),
      logger: pino({ level: 'silent' }),
      io,
    })
    expect(code).toBe(0)
    expect(stdout).toContain('note: PLATFORM_ADMIN_EMAILS still admits boot-verified@example.com')
  })
})

describe('tenants CLI: isolation modes', () => {
  it('provisions with --isolation, lists each tenant\'s mode and server, and erases a shared tenant on hard delete', async () => {
    const vars = { SHARED_DATABASE_URL: sharedUrl(env.name) }
    const shared = await cli(['tenants', 'provision', 'cli-shared', '--isolation', 'shared'], vars)
    expect(shared).toMatchObject({ code: 0, stderr: '' })
    expect(shared.stdout).toMatch(new RegExp(`^provisioned cli-shared \\([0-9a-f-]{36}\\): active, shared database ${env.name}_shared, migration ${version}\\n$`))
    expect(await runInProcess(['tenants', 'provision', 'cli-own', '--isolation', 'database'], vars)).toMatchObject({ code: 0 })
    expect(await runInProcess(['tenants', 'provision', 'cli-rls', '--isolation', 'rls'], vars)).toMatchObject({ code: 2 })
    // Without a shared database configured, asking for one fails cleanly.
    const off = await runInProcess(['tenants', 'provision', 'cli-off', '--isolation', 'shared'])
    expect(off.code).toBe(1)
    expect(off.stderr).toContain('SHARED_ISOLATION_OFF')

    const list = (await runInProcess(['tenants', 'list'], vars)).stdout
    expect(list).toMatch(new RegExp(`\\ncli-own\\s+cli-own\\s+active\\s+free\\s+database\\s+${SERVER}\\s+${version}\\s+current\\n`))
    expect(list).toMatch(new RegExp(`\\ncli-shared\\s+cli-shared\\s+active\\s+free\\s+shared\\s+${SERVER}\\s+${version}\\s+current\\n`))

    const [row] = await host.db.select().from(tenants).where(eq(tenants.slug, 'cli-shared'))
    const truth = connect(withDatabase(APP_URL, `${env.name}_shared`), { max: 1 })
    try {
      // The owner role is subject to FORCE ROW LEVEL SECURITY too: ask as the tenant.
      const rows = () => truth.begin(async (tx) => {
        await tx`select set_config('app.tenant_id', ${row!.id}, true)`
        return (await tx`select count(*)::int as n from core_settings`)[0]!.n as number
      })
      expect(await rows()).toBe(1)
      expect((await runInProcess(['tenants', 'delete', 'cli-shared', '--hard'], vars)).code).toBe(0)
      expect(await rows()).toBe(0)
    } finally {
      await truth.end()
    }
    expect((await runInProcess(['tenants', 'list'], vars)).stdout).not.toContain('cli-shared')
  })

  it('moves a tenant to the other mode, queues a move and aborts it', async () => {
    const vars = { SHARED_DATABASE_URL: sharedUrl(env.name) }
    expect(await runInProcess(['tenants', 'provision', 'cli-mover', '--isolation', 'database'], vars)).toMatchObject({ code: 0 })
    const moved = await runInProcess(['tenants', 'move', 'cli-mover', '--isolation', 'shared'], vars)
    expect(moved).toMatchObject({ code: 0, stderr: '' })
    expect(moved.stdout).toMatch(
      new RegExp(`^cli-mover: moved from database to shared \\(${env.name}_shared\\): \\d+ rows copied and verified, writes paused \\d+ ms, \\d+ ms in all\\n$`),
    )
    expect((await runInProcess(['tenants', 'list'], vars)).stdout).toMatch(/\ncli-mover\s+cli-mover\s+active\s+free\s+shared\s/)
    expect(await runInProcess(['tenants', 'move', 'cli-mover', '--isolation', 'shared'], vars)).toMatchObject({ code: 1, stderr: expect.stringContaining('MOVE_NOT_NEEDED') })
    expect(await runInProcess(['tenants', 'move', 'cli-mover', '--isolation', 'rls'], vars)).toMatchObject({ code: 2 })

    // Queued: recorded and handed to the worker (none runs here), then given up before it started.
    const queued = await runInProcess(['tenants', 'move', 'cli-mover', '--isolation', 'database', '--queue'], vars)
    expect(queued).toMatchObject({ code: 0 })
    expect(queued.stdout).toMatch(/^cli-mover: move [0-9a-f-]{36} queued \(job [0-9a-f-]{36}\); the worker runs it\n$/)
    const aborted = await runInProcess(['tenants', 'move', 'cli-mover', '--abort'], vars)
    expect(aborted).toMatchObject({ code: 0 })
    expect(aborted.stdout).toMatch(/^cli-mover: move [0-9a-f-]{36} aborted at prepare; writes resumed on its shared location\n$/)
    expect(await runInProcess(['tenants', 'move', 'cli-mover', '--abort'], vars)).toMatchObject({ code: 1, stderr: expect.stringContaining('MOVE_NOT_FOUND') })
  }, 60_000)
})
