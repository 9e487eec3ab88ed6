/**
 * The operator's command line (`npm run db:migrate`, `npm run tenants -- <command>`, `npm run users -- <command>`).
 * Commands print plain lines on stdout, errors one line on stderr; the exit code is 0 on success,
 * 1 when something failed (a tenant migration, a provisioning, a bad config) and 2 on bad usage.
 */
import { pathToFileURL } from 'node:url'
import { parseArgs } from 'node:util'
import { asc, sql } from 'drizzle-orm'
import { pino, type Logger } from 'pino'
import { DEFAULT_DB_SERVER, tenants, users } from '../drizzle/host/schema.js'
import { type Config, loadConfigOrExit } from './core/config.js'
import { seedCommand } from './features/billing/seed-command.js'
import { createPlatformAdmins, isBootstrapAdmin } from './core/identity/platform-admins.js'
import { createHostDatabase } from './core/db/host.js'
import { ensureDatabaseUrl } from './core/db/dev-database.js'
import { migrateHost } from './core/db/migrations.js'
import { AppError } from './core/lib/errors.js'
import { createServices, type Services } from './services.js'
import { errorMessage } from './core/lib/error-log.js'
import { listBehind, migrateFleet } from './core/tenancy/fleet.js'
import { queueFleetMigration } from './core/tenancy/provisioning-jobs.js'
import { runDoctor } from './doctor.js'
import { moveFigures } from './core/tenancy/move/index.js'
import { drainServer } from './core/tenancy/move/drain-server.js'
import { connect, withDatabase } from './core/db/connect.js'
import { checkPooler, describeServers, hostOf, removeServer, serverAdminDeps, setServerPooler } from './core/tenancy/server-admin.js'
import { PROVISIONER_CONNECTIONS, readServerLimit } from './core/db/connection-budget.js'

export const USAGE = `usage:
  doctor                                       check config, host DB, Redis, SMTP, Stripe, template database, tenant migrations
  db:migrate                                   apply host database migrations
  db:seed [--file PATH]                        load pricing plans (default config/plans.json) into the host database
  tenants list                                 every tenant: slug, status, plan, isolation, server, migration version and status; flags stale provisioning
  tenants resume-stale [--older-than S]        resume tenants stuck in provisioning (default: PROVISION_STALE_AFTER_S)
  tenants behind                               tenants not on the current tenant migration
  tenants provision <slug> [--name N] [--owner EMAIL] [--plan TIER] [--isolation shared|database] [--server NAME]
  tenants servers list                         the database servers: role, status, tenant databases, capacity, budget,
                                               host, pooler, whether it answers
  tenants servers add <name> --url URL [--role dedicated|shared] [--capacity N] [--max-connections N]
                     [--shared-url URL]          role shared: a shared database there too (URL of its data role: not the
                                               owner, no BYPASSRLS), created and migrated now; shared tenants are placed on it
                     [--pooler-url URL]          a pooler in front of it (as servers pooler)
                                               register a Postgres server (a CREATEDB role's URL; checked first)
  tenants servers pooler <name> <postgres://host:port | none>
                                               its database tenants connect through that pooler (PgBouncer, transaction
                                               pooling, accepting every tenant role and database) as themselves, or
                                               directly again; every process reroutes at once
  tenants servers drain <name> [--inline]      take no new tenants there, and move each of its database tenants to
                                               the server placement picks: tenants.move jobs (--inline: one by one here)
  tenants servers activate <name>              take new tenants again
  tenants servers remove <name>                forget a drained server: only a draining one that holds nothing (no tenant,
                                               soft-deleted ones included, no move in flight, no row in its shared database);
                                               drops the shared database and the templates tenantkit created there
                                               (the templates only when no other server is on that Postgres); not default
  tenants retry <slug>                         resume a failed provisioning
  tenants move <slug> --isolation shared|database [--server NAME] [--queue]
  tenants move <slug> --server NAME [--queue]  move the tenant's data to the other mode or another server (writes
                                               paused briefly, rows verified); run again to resume an interrupted move
  tenants move <slug> --abort                  give up the tenant's move (only before it has switched)
  tenants migrate [--tenant SLUG]... [--concurrency N] [--continue-on-error]
  tenants migrate --queue                      one tenant.migrate job per tenant behind; the worker runs them
  tenants suspend <slug>
  tenants resume <slug>
  tenants restore <slug>                       undo a soft delete (active again; billing is not restarted)
  tenants delete <slug> [--hard]               soft delete (catalog only), or drop the database too
  users grant-admin <email>                    make a user a platform administrator (/admin)
  users revoke-admin <email>                   take it back (effective on the next /admin request)
  users list-admins                            everyone /admin admits, and why`

export interface CliIo {
  out: (line: string) => void
  err: (line: string) => void
}

export interface CliOptions {
  config: Config
  logger: Logger
  io?: CliIo
  /** Tenant migrations folder (tests and benchmarks use temporary copies). */
  tenantMigrationsFolder?: string
  /** Where db:seed reads "${ENV_VAR}" price placeholders (default process.env). */
  env?: NodeJS.ProcessEnv
}

class UsageError extends Error {}

const stdio: CliIo = {
  out: (line) => process.stdout.write(`${line}\n`),
  err: (line) => process.stderr.write(`${line}\n`),
}

/** Fixed-width columns, header first. */
export function table(header: string[], rows: string[][]): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)))
  const line = (cells: string[]) =>
    cells
      .map((c, i) => c.padEnd(widths[i] ?? 0))
      .join('  ')
      .trimEnd()
  return [line(header), ...rows.map(line)]
}

function one(positionals: string[], what: string): string {
  const [value, ...rest] = positionals
  if (!value || rest.length) throw new UsageError(`expected exactly one ${what}`)
  return value
}

/** The role a URL names (the server's add check reads its attributes). */
function safeUser(url: string): string {
  try {
    const user = decodeURIComponent(new URL(url).username)
    if (user) return user
  } catch {}
  throw new UsageError('--shared-url must be postgres://role:password@host:port/dbname')
}

const count = (v: string | undefined, what: string, min: number): number | undefined => {
  if (v === undefined) return undefined
  const n = Number(v)
  if (!Number.isInteger(n) || n < min) throw new UsageError(`${what} must be a whole number (${min} or more)`)
  return n
}

/** `tenants servers …`: the Postgres servers tenant databases live on. */
async function serversCommand(
  args: string[],
  values: {
    url?: string | undefined
    role?: string | undefined
    capacity?: string | undefined
    'max-connections'?: string | undefined
    'shared-url'?: string | undefined
    'pooler-url'?: string | undefined
    inline?: boolean | undefined
  },
  services: Services,
  io: CliIo,
): Promise<number> {
  const [sub, ...rest] = args
  const { servers } = services.provisioner
  switch (sub) {
    case 'list': {
      if (rest.length) throw new UsageError('tenants servers list takes no arguments')
      const all = await describeServers(serverAdminDeps(services), { probe: true })
      const lines = table(
        ['NAME', 'ROLE', 'STATUS', 'TENANTS', 'SHARED', 'CAPACITY', 'BUDGET', 'HOST', 'POOLER', 'REACHABLE'],
        all.map((s) => [
          s.name,
          s.role,
          s.status,
          String(s.tenants.databases),
          s.sharedDatabase === null ? '-' : String(s.tenants.shared),
          s.capacity === null ? '-' : String(s.capacity),
          String(s.pool.budget),
          s.host,
          s.pooler ?? '-',
          s.reachable ? 'yes' : 'no',
        ]),
      )
      for (const line of lines) io.out(line)
      io.out(`${all.length} server(s)`)
      return 0
    }
    case 'add': {
      const name = one(rest, 'server name')
      if (!values.url) throw new UsageError('tenants servers add needs --url postgres://role:password@host:port/postgres')
      const role = values.role ?? 'dedicated'
      if (role !== 'dedicated' && role !== 'shared') throw new UsageError('--role must be dedicated or shared')
      const capacity = count(values.capacity, '--capacity', 0)
      const maxConnections = count(values['max-connections'], '--max-connections', 1)
      // It must answer, let its role create databases, and fit the budget, before any tenant is put there.
      const probe = connect(withDatabase(values.url, 'postgres'), { max: 1, connectTimeoutMs: 5000, applicationName: 'tenantkit-servers' })
      try {
        const [me] = await probe<{ createdb: boolean; superuser: boolean }[]>`select rolcreatedb as createdb, rolsuper as superuser from pg_roles where rolname = current_user`
        if (!me?.createdb && !me?.superuser) throw new AppError(400, 'INVALID_SERVER', 'the role of --url cannot create databases (needs CREATEDB)')
        const sharedRole = values['shared-url'] === undefined ? undefined : safeUser(values['shared-url'])
        if (sharedRole !== undefined) {
          // Row-level security binds the data role only if it is a plain role: not a superuser, no BYPASSRLS.
          const [data] = await probe<{ superuser: boolean; bypass: boolean }[]>`select rolsuper as superuser, rolbypassrls as bypass from pg_roles where rolname = ${sharedRole}`
          if (!data) throw new AppError(400, 'INVALID_SERVER', `the role of --shared-url (${sharedRole}) does not exist on that server`)
          if (data.superuser || data.bypass)
            throw new AppError(400, 'INVALID_SERVER', `the role of --shared-url (${sharedRole}) is a superuser or has BYPASSRLS: row-level security would not bind it`)
        }
        const limit = await readServerLimit(probe)
        const need = (maxConnections ?? services.config.pool.connectionBudget) + PROVISIONER_CONNECTIONS
        if (need > limit.maxConnections - limit.reserved)
          throw new AppError(
            400,
            'INVALID_SERVER',
            `a budget of ${need - PROVISIONER_CONNECTIONS} (+${PROVISIONER_CONNECTIONS} provisioning) does not fit its max_connections ${limit.maxConnections} - ${limit.reserved} reserved; pass a smaller --max-connections`,
          )
      } finally {
        await probe.end({ timeout: 1 })
      }
      // Checked before the server is added, like the URL: nothing is half set up on a wrong pooler.
      if (values['pooler-url'] !== undefined) await checkPooler(values['pooler-url'])
      const s = await servers.add({
        name,
        adminUrl: values.url,
        role,
        capacity,
        maxConnections,
        sharedUrl: values['shared-url'],
        poolerUrl: values['pooler-url'],
      })
      io.out(`added server ${s.name} (${s.role}) at ${hostOf(s.adminUrl)}`)
      if (s.poolerUrl) io.out(`${s.name}: database tenants connect through the pooler at ${hostOf(s.poolerUrl)}`)
      const shared = await servers.shared(s.name)
      if (shared) {
        await shared.ensure()
        io.out(`shared database ${shared.dbName} ready on ${s.name} (data role ${shared.dataRole})`)
      }
      return 0
    }
    case 'drain': {
      const name = one(rest, 'server name')
      const result = await drainServer({ host: services.host, provisioner: services.provisioner, mover: services.mover }, name, { inline: values.inline })
      io.out(`${name}: draining (no new tenants)`)
      for (const m of result.moved)
        io.out(values.inline ? `${m.slug}: moved to ${m.to} (move ${m.moveId})` : `${m.slug}: move to ${m.to} queued (move ${m.moveId}, job ${m.jobId})`)
      for (const s of result.skipped) io.out(`${s.slug}: not moved: ${s.reason}`)
      io.out(`${result.moved.length} tenant(s) ${values.inline ? 'moved' : 'queued to move'}, ${result.skipped.length} left`)
      if (!values.inline && result.moved.length) io.out('the worker runs the moves (`npm run worker`); follow them with `npm run tenants -- servers list`')
      return result.skipped.some((s) => !s.reason.startsWith('shared tenant')) ? 1 : 0
    }
    case 'pooler': {
      // `servers pooler <name> postgres://host:port` or `servers pooler <name> none`
      if (rest.length !== 2) throw new UsageError('usage: tenants servers pooler <server name> <postgres://host:port | none>')
      const [name, url] = rest as [string, string]
      const set = await setServerPooler(serverAdminDeps(services), name, url === 'none' ? null : url)
      io.out(set.pooler ? `${name}: database tenants connect through the pooler at ${set.pooler}` : `${name}: database tenants connect directly`)
      return 0
    }
    case 'activate': {
      const name = one(rest, 'server name')
      await servers.setStatus(name, 'active')
      io.out(`${name}: active`)
      return 0
    }
    case 'remove': {
      const removed = await removeServer(serverAdminDeps(services), one(rest, 'server name'))
      io.out(`${removed.name}: removed`)
      const shared = removed.sharedDatabase
      if (shared) io.out(shared.dropped ? `shared database ${shared.name} dropped` : `shared database ${shared.name} kept: ${shared.reason}`)
      const { dropped, kept, reason } = removed.templates
      if (dropped.length) io.out(`template(s) dropped: ${dropped.join(', ')}`)
      if (kept.length || reason) io.out(`template(s) kept${kept.length ? ` (${kept.join(', ')})` : ''}: ${reason}`)
      return 0
    }
    default:
      throw new UsageError(sub ? `unknown tenants servers command "${sub}"` : 'missing tenants servers command (list, add, pooler, drain, activate, remove)')
  }
}

async function tenantsCommand(argv: string[], services: Services, io: CliIo, folder: string | undefined): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      name: { type: 'string' },
      owner: { type: 'string' },
      plan: { type: 'string' },
      isolation: { type: 'string' },
      server: { type: 'string' },
      url: { type: 'string' },
      role: { type: 'string' },
      capacity: { type: 'string' },
      'max-connections': { type: 'string' },
      'shared-url': { type: 'string' },
      'pooler-url': { type: 'string' },
      tenant: { type: 'string', multiple: true },
      concurrency: { type: 'string' },
      'continue-on-error': { type: 'boolean', default: false },
      queue: { type: 'boolean', default: false },
      hard: { type: 'boolean', default: false },
      'older-than': { type: 'string' },
      abort: { type: 'boolean', default: false },
      inline: { type: 'boolean', default: false },
    },
  })
  const [command, ...args] = positionals
  const { host, provisioner } = services

  switch (command) {
    case 'list': {
      const rows = await host.db.select().from(tenants).orderBy(asc(tenants.slug))
      const stale = new Set((await provisioner.listStale()).map((t) => t.id))
      const now = Date.now()
      const lines = table(
        ['SLUG', 'NAME', 'STATUS', 'PLAN', 'ISOLATION', 'SERVER', 'MIGRATION', 'MIGRATION STATUS', 'NOTE'],
        rows.map((r) => [
          r.slug,
          r.name,
          r.status,
          r.planTier,
          r.isolation,
          r.server,
          r.migrationVersion ?? '-',
          r.migrationStatus,
          stale.has(r.id) ? `STALE: no run holds it, unchanged for ${idleFor(now - r.updatedAt.getTime())}` : '',
        ]),
      )
      for (const line of lines) io.out(line)
      io.out(`${rows.length} tenant(s)`)
      if (stale.size)
        io.out(`${stale.size} stale provisioning tenant(s): the worker's sweep resumes them, or run \`npm run tenants -- resume-stale\``)
      return 0
    }
    case 'resume-stale': {
      if (args.length) throw new UsageError('tenants resume-stale takes no positional arguments')
      const olderThan = values['older-than']
      const olderThanS = olderThan === undefined ? undefined : Number(olderThan)
      if (olderThanS !== undefined && (!Number.isInteger(olderThanS) || olderThanS < 0))
        throw new UsageError('--older-than must be a whole number of seconds (0 or more)')
      const result = await provisioner.resumeStale({ olderThanS })
      if (result === 'busy') {
        io.out('another sweep is running (a worker or another resume-stale); nothing done')
        return 0
      }
      for (const slug of result.resumed) io.out(`${slug}: active`)
      for (const f of result.failed) io.out(`${f.slug}: failed: ${f.error}`)
      for (const slug of result.busy) io.out(`${slug}: skipped, another run holds it`)
      io.out(`${result.resumed.length} resumed, ${result.failed.length} failed, ${result.busy.length} skipped`)
      return result.failed.length ? 1 : 0
    }
    case 'behind': {
      const rows = await listBehind({ host, folder })
      for (const line of table(
        ['SLUG', 'STATUS', 'MIGRATION', 'MIGRATION STATUS'],
        rows.map((r) => [r.slug, r.status, r.migrationVersion ?? '-', r.migrationStatus]),
      ))
        io.out(line)
      io.out(`${rows.length} tenant(s) behind`)
      return 0
    }
    case 'provision': {
      const slug = one(args, 'slug')
      let ownerUserId: string | undefined
      if (values.owner) {
        const [owner] = await host.db.select({ id: users.id }).from(users).where(sql`lower(${users.email}) = lower(${values.owner})`)
        if (!owner) throw new AppError(400, 'UNKNOWN_OWNER', `no user with email ${values.owner}`)
        ownerUserId = owner.id
      }
      const isolation = values.isolation
      if (isolation !== undefined && isolation !== 'shared' && isolation !== 'database') throw new UsageError('--isolation must be shared or database')
      const t = await provisioner.provision({ slug, name: values.name ?? slug, ownerUserId, planTier: values.plan, isolation, server: values.server })
      const where = t.isolation === 'shared' ? `shared database ${t.dbName}` : `database ${t.dbName} on server ${t.server}`
      io.out(`provisioned ${t.slug} (${t.id}): ${t.status}, ${where}, migration ${t.migrationVersion}`)
      return 0
    }
    case 'move':
      return moveCommand(one(args, 'slug'), values, services, io)
    case 'servers':
      return serversCommand(args, values, services, io)
    case 'retry': {
      const t = await provisioner.retry(one(args, 'slug'))
      io.out(`${t.slug}: ${t.status}`)
      return 0
    }
    case 'migrate': {
      if (args.length) throw new UsageError('tenants migrate takes --tenant SLUG options, not positional arguments')
      if (values.queue) return queueMigrations(values, services, io, folder)
      const concurrency = values.concurrency === undefined ? 4 : Number(values.concurrency)
      if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 64)
        throw new UsageError('--concurrency must be an integer 1-64')
      const summary = await migrateFleet(
        { host, catalog: services.catalog, pools: services.pools, config: services.config, logger: services.logger, folder, shared: provisioner.shared, servers: provisioner.servers },
        {
          tenants: values.tenant,
          concurrency,
          continueOnError: values['continue-on-error'],
          onProgress: (r, done, total) => {
            const detail = r.outcome === 'failed' ? `: ${r.error}` : r.outcome === 'migrated' ? ` to ${r.version}` : ''
            io.out(`[${done}/${total}] ${r.slug} ${r.outcome}${detail} (${r.ms} ms)`)
          },
        },
      )
      io.out(
        `${summary.total} tenant(s) at ${summary.version}: ${summary.migrated} migrated, ${summary.skipped} already current, ` +
          `${summary.failed} failed, ${summary.notRun} not run (${(summary.ms / 1000).toFixed(2)} s)`,
      )
      if (summary.notRun) io.out('stopped at the first failure; pass --continue-on-error to migrate the rest')
      if (summary.failed || summary.notRun) return 1
      // The fleet is on the new version, on every server: each server's template of older migrations is no
      // longer needed, and each active server's current template is built now rather than by its next provisioning.
      let code = 0
      for (const server of await provisioner.servers.list()) {
        const on = server.name === DEFAULT_DB_SERVER ? '' : ` on ${server.name}`
        try {
          const template = await provisioner.servers.template(server.name)
          for (const dropped of await template.dropStale()) io.out(`dropped stale template ${dropped}${on}`)
          if (server.name !== DEFAULT_DB_SERVER && server.status === 'active') await template.ensure()
        } catch (err) {
          io.err(`server ${server.name}: templates not updated: ${errorMessage(err)}`)
          code = 1
        }
      }
      return code
    }
    case 'suspend':
    case 'resume':
    case 'restore': {
      const slug = one(args, 'slug')
      const event = command === 'suspend' ? 'suspended' : command === 'resume' ? 'resumed' : 'restored'
      const outcome = await provisioner.run(event, slug)
      io.out(`${slug}: ${outcome === 'already_done' ? 'already ' : ''}${command === 'suspend' ? 'suspended' : 'active'}`)
      return 0
    }
    case 'delete': {
      const slug = one(args, 'slug')
      const outcome = await provisioner.run(values.hard ? 'hardDeleted' : 'softDeleted', slug)
      io.out(
        values.hard
          ? `${slug}: database dropped and catalog row removed`
          : `${slug}: ${outcome === 'already_done' ? 'already ' : ''}deleted (database kept; --hard drops it)`,
      )
      return 0
    }
    default:
      throw new UsageError(command ? `unknown tenants command "${command}"` : 'missing tenants command')
  }
}

/** `tenants move`: inline by default (progress in the catalog either way), `--queue` for the worker. */
async function moveCommand(
  slug: string,
  values: { isolation?: string | undefined; server?: string | undefined; queue?: boolean | undefined; abort?: boolean | undefined },
  services: Services,
  io: CliIo,
): Promise<number> {
  const { mover } = services
  if (values.abort) {
    const tenant = await services.provisioner.writes.get(slug)
    const open = await mover.openFor(tenant.id)
    if (!open) throw new AppError(404, 'MOVE_NOT_FOUND', `tenant "${slug}" is not moving`)
    const aborted = await mover.abort(open.id)
    io.out(`${slug}: move ${aborted.id} aborted at ${open.step}; writes resumed on its ${open.fromIsolation} location`)
    return 0
  }
  // --server alone: another server, same mode (a database there, or that server's shared database).
  const isolation = values.isolation ?? (values.server !== undefined ? (await services.provisioner.writes.get(slug)).isolation : undefined)
  if (isolation !== 'shared' && isolation !== 'database') throw new UsageError('--isolation must be shared or database (or give --server)')
  const request = { target: { isolation, server: values.server } as const }
  if (values.queue) {
    const q = await mover.queue(slug, request)
    io.out(`${slug}: move ${q.moveId} queued (job ${q.jobId}); the worker runs it`)
    return 0
  }
  const move = await mover.moveTenant(slug, request)
  const f = moveFigures(move)
  // Servers are named when the move changed server.
  const where = (server: string | null) => (server && move.fromServer !== move.toServer ? ` on ${server}` : '')
  io.out(
    `${slug}: moved from ${move.fromIsolation}${where(move.fromServer)} to ${move.toIsolation}${where(move.toServer)} (${move.toDbName}): ` +
      `${f.rows} rows copied and verified, writes paused ${f.writePauseMs ?? '?'} ms, ${f.totalMs ?? '?'} ms in all`,
  )
  return 0
}

/** "14m", "3h", "2d": how long a stale tenant has been left. */
function idleFor(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000))
  if (s < 120) return `${s}s`
  if (s < 7200) return `${Math.round(s / 60)}m`
  if (s < 172800) return `${Math.round(s / 3600)}h`
  return `${Math.round(s / 86400)}d`
}

/** `tenants migrate --queue`: hand the tenants that are behind to the worker, one job each. */
async function queueMigrations(
  values: { tenant?: string[]; concurrency?: string; 'continue-on-error'?: boolean },
  services: Services,
  io: CliIo,
  folder: string | undefined,
): Promise<number> {
  if (values.tenant?.length || values.concurrency !== undefined || values['continue-on-error'])
    throw new UsageError(
      '--queue migrates every tenant that is behind; --tenant, --concurrency and --continue-on-error apply without --queue (the worker sets the concurrency)',
    )
  const { version, queued, running } = await queueFleetMigration({ host: services.host, tasks: services.tasks, folder })
  for (const t of queued) io.out(`queued ${t.slug} (job ${t.jobId})`)
  if (running.length) io.out(`not queued, a migration is running: ${running.join(', ')}`)
  io.out(`${queued.length} tenant.migrate job(s) queued to bring tenants to ${version}`)
  if (queued.length)
    io.out(
      'follow progress with `npm run tenants -- list` (MIGRATION STATUS per tenant) or `npm run tenants -- behind`; a worker must be running (`npm run worker`)',
    )
  return 0
}

/** `users …`: platform administrators. Needs only the host database, not the tenancy services. */
async function usersCommand(argv: string[], config: Config, io: CliIo): Promise<number> {
  const { positionals } = parseArgs({ args: argv, allowPositionals: true, options: {} })
  const [command, ...args] = positionals
  if (command !== 'grant-admin' && command !== 'revoke-admin' && command !== 'list-admins')
    throw new UsageError(command ? `unknown users command "${command}"` : 'missing users command')
  const email = command === 'list-admins' ? undefined : one(args, 'email')
  if (command === 'list-admins' && args.length) throw new UsageError('users list-admins takes no arguments')
  if (!config.databaseUrl) throw new Error('DATABASE_URL is not set')
  const host = createHostDatabase(config.databaseUrl, 2)
  try {
    const admins = createPlatformAdmins(host.db, config.platformAdminEmails)
    if (command === 'list-admins') {
      const rows = await admins.list()
      for (const line of table(
        ['EMAIL', 'ID', 'VERIFIED', 'VIA'],
        rows.map((r) => [r.email, r.id, r.emailVerified ? 'yes' : 'no', r.sources.join(', ')]),
      ))
        io.out(line)
      io.out(`${rows.length} platform admin(s)`)
      return 0
    }
    if (command === 'grant-admin') {
      const user = await admins.grant(email!)
      io.out(`${user.email} (${user.id}) is a platform admin`)
      return 0
    }
    const user = await admins.revoke(email!)
    io.out(`${user.email} (${user.id}) is no longer a platform admin`)
    if (isBootstrapAdmin(user, config.platformAdminEmails))
      io.out(`note: PLATFORM_ADMIN_EMAILS still admits ${user.email} (verified email); remove it from that list too`)
    return 0
  } finally {
    await host.close()
  }
}

/** Run one command; resolves to the process exit code. */
export async function runCli(argv: string[], opts: CliOptions): Promise<number> {
  const io = opts.io ?? stdio
  const [command, ...rest] = argv
  let services: Services | undefined
  try {
    if (command === 'db:migrate') {
      if (!opts.config.databaseUrl) throw new Error('DATABASE_URL is not set')
      await migrateHost(opts.config.databaseUrl)
      io.out('host database migrated')
      return 0
    }
    if (command === 'db:seed')
      return await seedCommand(rest, { databaseUrl: opts.config.databaseUrl, env: opts.env ?? process.env, out: io.out })
    if (command === 'users') return await usersCommand(rest, opts.config, io)
    if (command !== 'tenants') throw new UsageError(command ? `unknown command "${command}"` : 'missing command')
    services = createServices(opts.config, opts.logger, { tenantMigrationsFolder: opts.tenantMigrationsFolder })
    return await tenantsCommand(rest, services, io, opts.tenantMigrationsFolder)
  } catch (err) {
    if (err instanceof UsageError || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      io.err(`error: ${(err as Error).message}`)
      io.err(USAGE)
      return 2
    }
    if (err instanceof AppError) io.err(`error: ${err.message} (${err.code})${err.details?.error ? `: ${err.details.error}` : ''}`)
    else io.err(`error: ${errorMessage(err)}`)
    return 1
  } finally {
    await services?.close()
  }
}

async function main(): Promise<void> {
  // Before loading the config: a bad one is the doctor's first finding, not a reason to stop.
  if (process.argv[2] === 'doctor') process.exit(await runDoctor({ env: process.env, out: stdio.out }))
  const config = loadConfigOrExit()
  // Quiet by default: the command's own lines are the output; LOG_LEVEL=info shows the service logs.
  const logger = pino({ level: process.env.LOG_LEVEL ? config.logLevel : 'warn' }, pino.destination({ fd: 2, sync: true }))
  const stopEmbedded = await ensureDatabaseUrl(config, { info: (m) => logger.info(m), warn: (m) => logger.warn(m) })
  const code = await runCli(process.argv.slice(2), { config, logger })
  await stopEmbedded()
  process.exit(code)
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) await main()
