/**
 * `npm run doctor`: is this deployment able to run? One line per check, `ok`, `fail` (with the fix on the
 * next line) or `skip` (not configured, or blocked by an earlier failure), and exit code 1 when any failed.
 * Every check is read-only and bounded in time, so it is safe against production and never hangs.
 *
 *   config            the environment parses (the same rules as the server's boot)
 *   host database     DATABASE_URL answers; host migrations applied
 *   redis             REDIS_URL answers PING
 *   smtp              the SMTP server accepts our connection and login (nodemailer verify)
 *   stripe            the secret key works: the configured prices are read back (or the balance, without prices)
 *   template database the tenant server lets us create databases; the template for the current tenant migrations exists
 *   tenant migrations no active or suspended tenant is behind the current tenant migration
 */
import { pino } from 'pino'
import { ConfigError, type Config, loadConfig } from './core/config.js'
import { connect, type Sql } from './core/db/connect.js'
import { createHostDatabase } from './core/db/host.js'
import { MIGRATIONS, migrationInfo } from './core/db/migrations.js'
import { createMailer } from './core/email/index.js'
import { errorMessage } from './core/lib/error-log.js'
import { newRedisClient, type RedisTarget } from './core/lib/redis.js'
import { listBehind } from './core/tenancy/fleet.js'
import { maintenanceUrl, templateName } from './core/tenancy/template.js'
import { createStripe } from './features/billing/stripe.js'

export type CheckStatus = 'ok' | 'fail' | 'skip'

export interface CheckResult {
  name: string
  status: CheckStatus
  detail: string
  /** What to do about a failure. */
  fix?: string
}

export interface DoctorOptions {
  env: NodeJS.ProcessEnv
  out: (line: string) => void
  /** Bound on each check (default 5 s). */
  timeoutMs?: number
  /** Tenant migrations folder (tests use temporary copies). */
  tenantMigrationsFolder?: string
}

class CheckFailed extends Error {
  constructor(
    message: string,
    readonly fix: string,
  ) {
    super(message)
  }
}

const within = <T>(ms: number, what: string, p: Promise<T>) =>
  Promise.race([p, new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`${what}: no answer after ${ms} ms`)), ms).unref())])

const ok = (name: string, detail: string): CheckResult => ({ name, status: 'ok', detail })
const skip = (name: string, detail: string): CheckResult => ({ name, status: 'skip', detail })

/** Run every check, print them, and resolve to the exit code (0: nothing failed). */
export async function runDoctor(opts: DoctorOptions): Promise<number> {
  const results = await doctorChecks(opts)
  for (const r of results) {
    opts.out(`${r.status.padEnd(4)}  ${r.name.padEnd(17)}  ${r.detail}`)
    if (r.fix) opts.out(`${' '.repeat(25)}fix: ${r.fix}`)
  }
  const failed = results.filter((r) => r.status === 'fail').length
  opts.out(failed === 0 ? 'all checks passed' : `${failed} check(s) failed`)
  return failed === 0 ? 0 : 1
}

export async function doctorChecks(opts: DoctorOptions): Promise<CheckResult[]> {
  const ms = opts.timeoutMs ?? 5000
  const run = async (name: string, check: () => Promise<string>): Promise<CheckResult> => {
    try {
      return ok(name, await within(ms, name, check()))
    } catch (err) {
      return { name, status: 'fail', detail: errorMessage(err), fix: err instanceof CheckFailed ? err.fix : FIXES[name] }
    }
  }

  let config: Config
  try {
    config = loadConfig(opts.env)
  } catch (err) {
    const variable = err instanceof ConfigError ? err.variable : undefined
    return [
      {
        name: 'config',
        status: 'fail',
        detail: errorMessage(err),
        fix: variable ? `set ${variable} (its format and default are in .env.example)` : 'see .env.example',
      },
      ...['host database', 'redis', 'smtp', 'stripe', 'template database', 'tenant migrations'].map((n) => skip(n, 'needs a valid config')),
    ]
  }
  const results: CheckResult[] = [ok('config', `NODE_ENV=${config.env}`)]

  const databaseUrl = config.databaseUrl
  const hostDb = databaseUrl ? createHostDatabase(databaseUrl, 1, { connectTimeoutMs: ms }) : undefined
  try {
    const host = hostDb
      ? await run('host database', async () => {
          await hostDb.sql`select 1`
          const applied = await appliedHostMigrations(hostDb.sql)
          const { tags } = migrationInfo('host')
          if (applied < tags.length)
            throw new CheckFailed(`reachable, but ${tags.length - applied} host migration(s) not applied`, 'npm run db:migrate (or AUTO_MIGRATE=true at boot)')
          return `reachable, ${applied} host migrations applied`
        })
      : skip('host database', 'DATABASE_URL unset: `npm run dev` starts an embedded Postgres')
    results.push(host)

    results.push(await run('redis', () => pingRedis(config, ms)))

    results.push(
      config.smtp.host
        ? await run('smtp', async () => {
            const mailer = createMailer(config.smtp, pino({ level: 'silent' }))
            try {
              await mailer.verify()
            } finally {
              mailer.close()
            }
            return `${config.smtp.host}:${config.smtp.port} accepts the connection${config.smtp.user ? ' and login' : ''}`
          })
        : skip('smtp', 'SMTP_HOST unset: mail is logged, not sent (refused in production)'),
    )

    results.push(config.stripe ? await run('stripe', () => checkStripe(config)) : skip('stripe', 'STRIPE_SECRET_KEY unset: billing is off'))

    const hostUp = hostDb !== undefined && host.status === 'ok'
    results.push(
      hostUp
        ? await run('template database', () => checkTemplate(config, ms, opts.tenantMigrationsFolder))
        : skip('template database', 'needs the host database'),
    )
    results.push(
      hostUp
        ? await run('tenant migrations', async () => {
            const behind = await listBehind({ host: hostDb, folder: opts.tenantMigrationsFolder })
            const { version } = migrationInfo('tenant', opts.tenantMigrationsFolder ?? MIGRATIONS.tenant)
            if (behind.length > 0) {
              const named = behind.slice(0, 5).map((t) => `${t.slug} (${t.migrationVersion ?? 'none'}, ${t.migrationStatus})`)
              throw new CheckFailed(
                `${behind.length} tenant(s) not on ${version}: ${named.join(', ')}${behind.length > 5 ? ', …' : ''}`,
                'npm run tenants -- migrate (or --queue to let the workers do it)',
              )
            }
            return `every tenant is on ${version}`
          })
        : skip('tenant migrations', 'needs the host database'),
    )
  } finally {
    await hostDb?.close()
  }
  return results
}

const FIXES: Record<string, string> = {
  'host database': 'start Postgres, or check DATABASE_URL (host, port, user, password, database)',
  redis: 'start Redis, or check REDIS_URL',
  smtp: 'check SMTP_HOST, SMTP_PORT, SMTP_USER, SMTP_PASSWORD, SMTP_STARTTLS / SMTP_SSL',
  stripe: 'check STRIPE_SECRET_KEY (Stripe dashboard → Developers → API keys) and the STRIPE_*_PRICE_ID values',
  'template database': 'check TENANT_DATABASE_URL (or DATABASE_URL): its role needs CREATEDB',
  'tenant migrations': 'npm run tenants -- behind, then npm run tenants -- migrate',
}

async function appliedHostMigrations(sql: Sql): Promise<number> {
  const [row] = await sql<{ n: number }[]>`
    select case when to_regclass('drizzle.__drizzle_migrations') is null then 0
                else (select count(*)::int from drizzle.__drizzle_migrations) end as n`
  return row?.n ?? 0
}

async function pingRedis(target: RedisTarget, ms: number): Promise<string> {
  // One attempt, no reconnects, no offline queue: a Redis that is not there fails at once.
  const redis = newRedisClient(target, { lazyConnect: true, connectTimeout: ms, maxRetriesPerRequest: 0, enableOfflineQueue: false, retryStrategy: () => null })
  // connect() rejects with a bare "Connection is closed."; the socket's own error (ECONNREFUSED, auth) says why.
  let cause: Error | undefined
  redis.on('error', (err: Error) => {
    cause ??= err
  })
  try {
    await redis.connect().catch(async (err: unknown) => {
      const failure = cause ?? (err as Error)
      // A cluster client says only "Failed to refresh slots cache." / "Connection is closed.": ask REDIS_URL's
      // node on its own what stops it (ECONNREFUSED, auth, TLS), if that is what it is.
      if (target.redisCluster) {
        const why = await pingRedis({ ...target, redisCluster: false }, ms).then(
          () => undefined,
          (e: unknown) => (e as Error).message,
        )
        if (why) throw new Error(`${failure.message} ${new URL(target.redisUrl).host}: ${why}`)
      }
      throw failure
    })
    const pong = await redis.ping()
    const version = /redis_version:(\S+)/.exec(await redis.info('server'))?.[1]
    // A cluster answers even with slots unserved: say its state (and refuse one that is not ok).
    let cluster = ''
    if (target.redisCluster) {
      const info = String(await redis.cluster('INFO'))
      const state = /cluster_state:(\S+)/.exec(info)?.[1] ?? 'unknown'
      if (state !== 'ok') throw new Error(`Redis Cluster state is ${state}`)
      cluster = `, cluster of ${/cluster_size:(\d+)/.exec(info)?.[1] ?? '?'} masters`
    }
    return `${pong}${version ? ` (Redis ${version}${cluster})` : ''}`
  } finally {
    redis.disconnect()
  }
}

async function checkStripe(config: Config): Promise<string> {
  const settings = config.stripe!
  const stripe = createStripe(settings, { maxNetworkRetries: 0, timeoutMs: 4000 })
  const prices = [settings.monthlyPriceId, settings.yearlyPriceId, ...settings.oneTimePriceIds].filter((p): p is string => Boolean(p))
  if (prices.length === 0) {
    await stripe.balance.retrieve()
    return 'the secret key reads the account balance'
  }
  for (const id of prices) {
    try {
      await stripe.prices.retrieve(id)
    } catch (err) {
      if ((err as { code?: string }).code === 'resource_missing')
        throw new CheckFailed(`price ${id} does not exist in this Stripe account`, 'check STRIPE_MONTHLY_PRICE_ID, STRIPE_YEARLY_PRICE_ID and STRIPE_ONE_TIME_PRICES')
      throw err
    }
  }
  return `the secret key reads the ${prices.length} configured price(s)`
}

async function checkTemplate(config: Config, ms: number, folder?: string): Promise<string> {
  const admin = connect(maintenanceUrl(config), { max: 1, connectTimeoutMs: ms, applicationName: 'tenantkit-doctor' })
  try {
    const [role] = await admin<{ rolcreatedb: boolean; rolsuper: boolean }[]>`select rolcreatedb, rolsuper from pg_roles where rolname = current_user`
    if (!role?.rolcreatedb && !role?.rolsuper) throw new CheckFailed('the tenant server role may not create databases', 'ALTER ROLE <app role> CREATEDB')
    const current = templateName(config.tenantDbPrefix, migrationInfo('tenant', folder ?? MIGRATIONS.tenant).hash)
    const templates = await admin<{ datname: string }[]>`select datname from pg_database where datname like ${`${config.tenantDbPrefix}\\_tpl\\_%`}`
    const older = templates.filter((t) => t.datname !== current).length
    const note = older > 0 ? `; ${older} older template(s), dropped by the next clean npm run tenants -- migrate` : ''
    return templates.some((t) => t.datname === current)
      ? `${current} is current${note}`
      : `${current} not built yet: the next provisioning builds it${note}`
  } finally {
    await admin.end({ timeout: 5 })
  }
}
