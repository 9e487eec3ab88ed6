/**
 * Boot check: the connections one process may hold must fit what Postgres allows. Otherwise the
 * overflow shows up only under load, as `53300 too many clients` on random requests. Postgres' limit
 * for a non-superuser is max_connections minus the reserved slots (superuser_reserved_connections, and
 * reserved_connections from Postgres 16); what other processes hold is not knowable here, so this is the
 * bound for ONE process: HOST_POOL_MAX + POOL_CONNECTION_BUDGET (+ the provisioner's 3 admin/lock
 * connections) when tenants live on the host's server, each server checked on its own otherwise. Every other
 * database server of core_db_servers is checked against its own budget (its max_connections, else
 * POOL_CONNECTION_BUDGET) + the provisioning connections; one that does not answer is reported, not fatal
 * (its tenants wait for it; the others are served).
 */
import type { Logger } from 'pino'
import type { Config } from '../config.js'
import { ConfigError } from '../config.js'
import { decrypt } from '../lib/crypto.js'
import { isDependencyDown, pgCode } from '../lib/errors.js'
import { maintenanceUrl } from '../tenancy/template.js'
import { connect, type Sql } from './connect.js'

/** The provisioner's admin (2) and advisory-lock (1) connections to the tenant server. */
export const PROVISIONER_CONNECTIONS = 3

export interface ServerLimit {
  maxConnections: number
  reserved: number
}

export async function readServerLimit(sql: Sql): Promise<ServerLimit> {
  const rows = await sql<{ name: string; setting: string }[]>`
    select name, setting from pg_settings
    where name in ('max_connections', 'superuser_reserved_connections', 'reserved_connections')`
  const get = (n: string) => Number(rows.find((r) => r.name === n)?.setting ?? 0)
  return { maxConnections: get('max_connections'), reserved: get('superuser_reserved_connections') + get('reserved_connections') }
}

const serverOf = (url: string) => {
  const u = new URL(url)
  return `${u.hostname}:${u.port || '5432'}`
}

/** Throws a one-line ConfigError when the configured pools can't fit; resolves otherwise. */
export async function checkConnectionBudget(
  config: Config,
  hostSql: Sql,
  onUnreachable: (server: string, err: unknown) => void = () => {},
): Promise<void> {
  await checkDefaultServer(config, hostSql)
  // The other database servers (core_db_servers), each against its own budget.
  let rows: { name: string; url: string; max: number | null }[]
  try {
    rows = await hostSql<{ name: string; url: string; max: number | null }[]>`
      select name, admin_url_encrypted as url, max_connections as max from core_db_servers where name <> 'default' order by name`
  } catch (err) {
    if (pgCode(err) === '42P01') return // host database not migrated yet: nothing registered
    throw err
  }
  for (const row of rows) {
    const budget = row.max ?? config.pool.connectionBudget
    const sql = connect(decrypt(row.url, config.encryptionKeys), {
      max: 1,
      connectTimeoutMs: config.pool.connectTimeoutMs,
      applicationName: 'tenantkit-boot-check',
    })
    let limit: ServerLimit
    try {
      limit = await readServerLimit(sql)
    } catch (err) {
      onUnreachable(row.name, err)
      continue
    } finally {
      await sql.end({ timeout: 1 })
    }
    const allowed = limit.maxConnections - limit.reserved
    if (budget + PROVISIONER_CONNECTIONS > allowed) {
      throw new ConfigError(
        'POOL_CONNECTION_BUDGET',
        `database server "${row.name}": a budget of ${budget} + ${PROVISIONER_CONNECTIONS} provisioning = ${budget + PROVISIONER_CONNECTIONS} connections per process, but it allows ${allowed} (max_connections ${limit.maxConnections} - ${limit.reserved} reserved); lower its max_connections (core_db_servers) or raise the server's`,
      )
    }
  }
}

async function checkDefaultServer(config: Config, hostSql: Sql): Promise<void> {
  const hostUrl = config.databaseUrl!
  const tenantUrl = config.tenantDatabaseUrl ?? hostUrl
  const shared = serverOf(hostUrl) === serverOf(tenantUrl)
  const tenantNeed = config.pool.connectionBudget + PROVISIONER_CONNECTIONS
  const fail = (limit: ServerLimit, server: string, need: number, parts: string) => {
    const allowed = limit.maxConnections - limit.reserved
    if (need <= allowed) return
    throw new ConfigError(
      'POOL_CONNECTION_BUDGET',
      `${parts} = ${need} connections per process, but Postgres at ${server} allows ${allowed} (max_connections ${limit.maxConnections} - ${limit.reserved} reserved); lower POOL_CONNECTION_BUDGET/HOST_POOL_MAX or raise max_connections`,
    )
  }
  const hostLimit = await readServerLimit(hostSql)
  if (shared) {
    fail(hostLimit, serverOf(hostUrl), config.pool.hostMax + tenantNeed, `HOST_POOL_MAX ${config.pool.hostMax} + POOL_CONNECTION_BUDGET ${config.pool.connectionBudget} + ${PROVISIONER_CONNECTIONS} provisioning`)
    return
  }
  fail(hostLimit, serverOf(hostUrl), config.pool.hostMax, `HOST_POOL_MAX ${config.pool.hostMax}`)
  const tenantSql = connect(maintenanceUrl(config), { max: 1, connectTimeoutMs: config.pool.connectTimeoutMs, applicationName: 'tenantkit-boot-check' })
  try {
    fail(await readServerLimit(tenantSql), serverOf(tenantUrl), tenantNeed, `POOL_CONNECTION_BUDGET ${config.pool.connectionBudget} + ${PROVISIONER_CONNECTIONS} provisioning`)
  } finally {
    await tenantSql.end({ timeout: 1 })
  }
}

/**
 * At boot: refuse (ConfigError) when the pools can't fit; when Postgres can't be asked right now
 * (down at boot), warn and start anyway: requests answer 503 until it is back.
 */
export async function bootConnectionCheck(config: Config, hostSql: Sql, logger: Pick<Logger, 'warn'>): Promise<void> {
  try {
    await checkConnectionBudget(config, hostSql, (server, err) =>
      logger.warn({ err, server }, 'database server unreachable at boot; its connection budget not checked'),
    )
  } catch (err) {
    if (err instanceof ConfigError || !isDependencyDown(err)) throw err
    logger.warn({ err }, 'could not read max_connections at boot (Postgres unreachable); connection budget not checked')
  }
}
