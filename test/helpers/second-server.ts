/**
 * The second Postgres cluster of the several-servers tests (core_db_servers): 127.0.0.1:55433, started by
 * .ci/second-postgres (CI runs it before `npm test`; a test that finds it down runs it too). Tests skip,
 * saying why, only when it cannot be started at all (no server binaries on the machine).
 */
import { execFileSync } from 'node:child_process'
import { join } from 'node:path'
import { connect } from '../../src/core/db/connect.js'
import { APP_ROLE, SHARED_ROLE } from './env.js'

export const SECOND_PORT = Number(process.env.TENANTKIT_PG2_PORT ?? 55433)
export const SECOND_ADMIN_URL = `postgres://postgres@127.0.0.1:${SECOND_PORT}/postgres`
/** The kit's non-superuser app role (CREATEDB) on the second cluster: what `servers add --url` is given. */
export const SECOND_APP_URL = `postgres://${APP_ROLE}:${APP_ROLE}@127.0.0.1:${SECOND_PORT}/postgres`

async function answers(): Promise<boolean> {
  const sql = connect(SECOND_APP_URL, { max: 1, connectTimeoutMs: 2000 })
  try {
    await sql`select 1`
    return true
  } catch {
    return false
  } finally {
    await sql.end({ timeout: 1 })
  }
}

/** Start the second cluster if needed: undefined when it is up, else why it could not be started. */
export async function ensureSecondServer(): Promise<string | undefined> {
  if (await answers()) return undefined
  try {
    execFileSync(join(import.meta.dirname, '../../.ci/second-postgres'), { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
  } catch (err) {
    const e = err as { stderr?: string; message: string }
    return `the second Postgres cluster (127.0.0.1:${SECOND_PORT}) could not be started: ${(e.stderr || e.message).trim()}`
  }
  return (await answers()) ? undefined : `the second Postgres cluster (127.0.0.1:${SECOND_PORT}) was started but does not answer`
}

/** A test world's shared database on the second cluster, reached as the shared data role (what `servers add --shared-url` is given). */
export const secondSharedUrl = (world: string) => `postgres://${SHARED_ROLE}:${SHARED_ROLE}@127.0.0.1:${SECOND_PORT}/${world}_shared`

/** The shared data role on the second cluster (no superuser, no BYPASSRLS), as test/global-setup.ts makes it on the first. */
export async function ensureSecondSharedRole(): Promise<void> {
  const admin = connect(SECOND_ADMIN_URL, { max: 1 })
  try {
    const [found] = await admin`select 1 from pg_roles where rolname = ${SHARED_ROLE}`
    if (!found)
      await admin.unsafe(`create role ${SHARED_ROLE} login nosuperuser nobypassrls password '${SHARED_ROLE}'`).catch((err: { code?: string }) => {
        if (err.code !== '42710') throw err // made meanwhile by another test file
      })
  } finally {
    await admin.end()
  }
}

/** Drop the databases a test world made on the second cluster (test-env's cleanup covers the first). */
export async function dropOnSecondServer(world: string): Promise<void> {
  const admin = connect(SECOND_ADMIN_URL, { max: 1 })
  try {
    const dbs = await admin<{ datname: string }[]>`select datname from pg_database where datname like ${`${world}%`}`
    for (const { datname } of dbs) {
      await admin.unsafe(`update pg_database set datistemplate = false where datname = '${datname}'`)
      await admin.unsafe(`drop database if exists "${datname}" with (force)`)
    }
  } finally {
    await admin.end()
  }
}
