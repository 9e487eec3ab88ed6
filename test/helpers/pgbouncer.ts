/**
 * The local PgBouncer of the pooler tests: 1.18 (Debian bookworm) in transaction pooling mode on
 * 127.0.0.1:6432 in front of the 5432 cluster, started by .ci/pgbouncer (CI runs it before `npm test`; a test
 * that finds it down runs it too, which installs the package when it can). Tests skip, saying why, only when
 * it cannot be started at all.
 */
import { execFileSync } from 'node:child_process'
import { join } from 'node:path'
import { connect, type Sql } from '../../src/core/db/connect.js'

export const PGBOUNCER_PORT = Number(process.env.TENANTKIT_PGBOUNCER_PORT ?? 6432)

/** The same URL through the pooler: host 127.0.0.1, PgBouncer's port (the pooler forwards every database to 5432). */
export function viaPgBouncer(url: string): string {
  const u = new URL(url)
  u.hostname = '127.0.0.1'
  u.port = String(PGBOUNCER_PORT)
  return u.toString()
}

/** PgBouncer's admin console (simple queries only: SHOW CLIENTS, SHOW SERVERS, SHOW VERSION). */
export const pgbouncerConsole = (): Sql => connect(`postgres://postgres@127.0.0.1:${PGBOUNCER_PORT}/pgbouncer`, { max: 1, prepare: false })

async function answers(): Promise<boolean> {
  const sql = connect(`postgres://postgres@127.0.0.1:${PGBOUNCER_PORT}/postgres`, { max: 1, connectTimeoutMs: 2000, prepare: false })
  try {
    await sql.unsafe('select 1')
    return true
  } catch {
    return false
  } finally {
    await sql.end({ timeout: 1 })
  }
}

/** Start PgBouncer if needed: undefined when it is up, else why it could not be started. */
export async function ensurePgBouncer(): Promise<string | undefined> {
  if (await answers()) return undefined
  try {
    execFileSync(join(import.meta.dirname, '../../.ci/pgbouncer'), { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
  } catch (err) {
    const e = err as { stderr?: string; message: string }
    return `PgBouncer (127.0.0.1:${PGBOUNCER_PORT}) could not be started: ${(e.stderr || e.message).trim()}`
  }
  return (await answers()) ? undefined : `PgBouncer (127.0.0.1:${PGBOUNCER_PORT}) was started but does not answer`
}
