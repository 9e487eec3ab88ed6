/**
 * postgres.js connections. One place sets the options every pool shares: no NOTICE noise from
 * migrations, no type fetch round trip on connect (cold connects are the cost of database-per-tenant),
 * and prepared statements on (the hot paths rely on them) unless a pool goes through a transaction-pooling
 * PgBouncer older than 1.21 (`prepare: false`, pool-manager.ts).
 */
import postgres from 'postgres'

export type Sql = postgres.Sql

export interface ConnectOptions {
  max?: number
  idleTimeoutS?: number
  applicationName?: string
  /** Give up opening a connection after this long (CONNECT_TIMEOUT); default 10 s. */
  connectTimeoutMs?: number
  /** Server-side statement_timeout of every session (57014 after it); default none. */
  statementTimeoutMs?: number
  /**
   * Named prepared statements (default true). false: every statement goes unnamed (per-query `prepare: true`,
   * drizzle's `.prepare()` included, is then ignored): what a transaction-pooling PgBouncer < 1.21 needs.
   */
  prepare?: boolean
}

/** Seconds before a pool retries a failed connection: 50 ms more per consecutive failure, at most 250 ms. */
export const reconnectBackoffS = (retries: number) => Math.min(0.05 * retries, 0.25)

export function connect(url: string, opts: ConnectOptions = {}): Sql {
  return postgres(url, {
    max: opts.max ?? 10,
    idle_timeout: opts.idleTimeoutS ?? 0,
    // postgres.js takes seconds and accepts fractions.
    connect_timeout: (opts.connectTimeoutMs ?? 10_000) / 1000,
    // postgres.js' default reconnect delay grows 3^n/100 s up to 20 s, per pool: during an outage each
    // query waited longer than the last (requests held up to 45 s, and up to 15 s after Postgres was back).
    // Capped at 250 ms, a query during an outage fails fast (503) and the first one after it connects.
    backoff: reconnectBackoffS,
    fetch_types: false,
    prepare: opts.prepare ?? true,
    onnotice: () => {},
    connection: {
      application_name: opts.applicationName ?? 'tenantkit',
      // A startup parameter: set once per connection, no extra round trip.
      ...(opts.statementTimeoutMs ? { statement_timeout: opts.statementTimeoutMs } : {}),
    },
  })
}

/** The same server URL pointed at another database. */
export function withDatabase(url: string, database: string): string {
  const u = new URL(url)
  u.pathname = `/${encodeURIComponent(database)}`
  return u.toString()
}

/** Identifiers we build ourselves (database names) are checked, then quoted. */
export function quoteIdent(name: string): string {
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(name)) throw new Error(`refusing unsafe identifier "${name}"`)
  return `"${name}"`
}
