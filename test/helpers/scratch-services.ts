/**
 * A Postgres cluster and a Redis instance of the test's own, on free ports, for tests that stop, kill or
 * restart a dependency (fault tests). Never the shared 127.0.0.1:5432 / :6379: killing those would break
 * every other test file running at the same time.
 *
 * Postgres refuses to run as root, so the cluster runs as the `postgres` OS user when the test runs as root
 * (CI does); its socket goes to the cluster's own folder (`-k`), never Debian's default socket directory.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process'
import { chownSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Redis } from 'ioredis'
import { connect, withDatabase } from '../../src/core/db/connect.js'
import { migrateHost } from '../../src/core/db/migrations.js'
import { APP_ROLE } from './env.js'
import { waitFor } from './wait-for.js'

/** A free TCP port on 127.0.0.1 (asked of the kernel, then released). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.unref()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number }
      server.close(() => resolve(port))
    })
  })
}

function pgBinDir(): string {
  try {
    return execFileSync('pg_config', ['--bindir'], { encoding: 'utf8' }).trim()
  } catch {
    for (const v of ['17', '16', '15']) if (existsSync(`/usr/lib/postgresql/${v}/bin/pg_ctl`)) return `/usr/lib/postgresql/${v}/bin`
    throw new Error('no Postgres server binaries found (apt-get install postgresql)')
  }
}

const asRoot = process.getuid?.() === 0

/** Run a Postgres binary as the postgres OS user when we are root (initdb and postgres refuse root). */
function pgRun(bin: string, args: string[], opts: { allowFail?: boolean } = {}): void {
  const cmd = join(pgBinDir(), bin)
  const r = asRoot
    ? spawnSync('runuser', ['-u', 'postgres', '--', cmd, ...args], { encoding: 'utf8' })
    : spawnSync(cmd, args, { encoding: 'utf8' })
  if (r.status !== 0 && !opts.allowFail) throw new Error(`${bin} ${args.join(' ')} failed (${r.status}): ${r.stderr || r.stdout}`)
}

/** pgRun without blocking the event loop: for callers that time other work meanwhile (bench/faults.ts). */
function pgRunAsync(bin: string, args: string[], opts: { allowFail?: boolean } = {}): Promise<void> {
  const cmd = join(pgBinDir(), bin)
  const child = asRoot ? spawn('runuser', ['-u', 'postgres', '--', cmd, ...args]) : spawn(cmd, args)
  let output = ''
  child.stdout.on('data', (d) => (output += d))
  child.stderr.on('data', (d) => (output += d))
  return new Promise((resolve, reject) => {
    child.once('error', reject)
    child.once('exit', (code) => {
      if (code !== 0 && !opts.allowFail) reject(new Error(`${bin} ${args.join(' ')} failed (${code}): ${output}`))
      else resolve()
    })
  })
}

export interface ScratchPostgres {
  port: number
  /** Superuser URL (database postgres). */
  adminUrl: string
  /** The kit's non-superuser app role (CREATEDB), database postgres: what TENANT_DATABASE_URL points at. */
  appUrl: string
  /** Create a migrated host database owned by the app role; returns its app-role URL. */
  createHostDatabase(name?: string): Promise<string>
  /** pg_ctl stop: 'fast' (clean), 'immediate' (crash: recovery on the next start). */
  stop(mode?: 'fast' | 'immediate'): void
  start(): void
  /** stop/start that leave the event loop running (the caller is timing requests meanwhile). */
  stopAsync(mode?: 'fast' | 'immediate'): Promise<void>
  startAsync(): Promise<void>
  /** Stop and delete the cluster. */
  destroy(): void
}

export async function startScratchPostgres(
  opts: { maxConnections?: number; settings?: Record<string, string> } = {},
): Promise<ScratchPostgres> {
  const dir = mkdtempSync(join(tmpdir(), 'tk-pg-'))
  if (asRoot) {
    const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim())
    const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim())
    chownSync(dir, uid, gid)
  }
  const data = join(dir, 'data')
  const port = await freePort()
  pgRun('initdb', ['-D', data, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--locale=C.UTF-8', '--no-sync'])
  const settings: Record<string, string> = {
    port: String(port),
    listen_addresses: '127.0.0.1',
    unix_socket_directories: dir,
    max_connections: String(opts.maxConnections ?? 100),
    fsync: 'off',
    ...opts.settings,
  }
  const o = Object.entries(settings)
    .map(([k, v]) => `-c ${k}=${v}`)
    .join(' ')
  const startArgs = ['-D', data, '-l', join(dir, 'log'), '-o', o, '-w', '-t', '30', 'start']
  const start = () => pgRun('pg_ctl', startArgs)
  start()
  const adminUrl = `postgres://postgres@127.0.0.1:${port}/postgres`
  const appUrl = `postgres://${APP_ROLE}:${APP_ROLE}@127.0.0.1:${port}/postgres`
  const admin = connect(adminUrl, { max: 1 })
  try {
    await admin.unsafe(`create role ${APP_ROLE} login createdb password '${APP_ROLE}'`)
  } finally {
    await admin.end()
  }
  let destroyed = false
  return {
    port,
    adminUrl,
    appUrl,
    async createHostDatabase(name = 'tk_host') {
      const a = connect(adminUrl, { max: 1 })
      try {
        await a.unsafe(`create database ${name} owner ${APP_ROLE}`)
      } finally {
        await a.end()
      }
      const url = withDatabase(appUrl, name)
      await migrateHost(url)
      return url
    },
    stop(mode = 'fast') {
      pgRun('pg_ctl', ['-D', data, '-m', mode, '-w', '-t', '30', 'stop'], { allowFail: true })
    },
    start,
    stopAsync: (mode = 'fast') => pgRunAsync('pg_ctl', ['-D', data, '-m', mode, '-w', '-t', '30', 'stop'], { allowFail: true }),
    startAsync: () => pgRunAsync('pg_ctl', startArgs),
    destroy() {
      if (destroyed) return
      destroyed = true
      pgRun('pg_ctl', ['-D', data, '-m', 'immediate', '-w', 'stop'], { allowFail: true })
      rmSync(dir, { recursive: true, force: true })
    },
  }
}

export interface ScratchRedis {
  port: number
  url: string
  /** SIGKILL the server (nothing saved; it had no persistence anyway unless asked). */
  kill(): Promise<void>
  /** Start it again on the same port (empty unless `appendonly`). */
  start(): Promise<void>
  destroy(): Promise<void>
}

export async function startScratchRedis(opts: { appendonly?: boolean; extraArgs?: string[] } = {}): Promise<ScratchRedis> {
  const dir = mkdtempSync(join(tmpdir(), 'tk-redis-'))
  const port = await freePort()
  const pidfile = join(dir, 'redis.pid')
  const url = `redis://127.0.0.1:${port}`
  const ping = async () => {
    const r = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, enableOfflineQueue: false })
    r.on('error', () => {})
    try {
      await r.connect()
      return (await r.ping()) === 'PONG'
    } catch {
      return false
    } finally {
      r.disconnect()
    }
  }
  const start = async () => {
    const args = [
      '--port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--save',
      '',
      '--appendonly',
      opts.appendonly ? 'yes' : 'no',
      '--daemonize',
      'yes',
      '--pidfile',
      pidfile,
      '--dir',
      dir,
      '--logfile',
      join(dir, 'log'),
      ...(opts.extraArgs ?? []),
    ]
    const r = spawnSync('redis-server', args, { encoding: 'utf8' })
    if (r.status !== 0) throw new Error(`redis-server failed: ${r.stderr || r.stdout}`)
    await waitFor(ping, { timeout: 30_000, interval: 50, message: `redis-server on ${port} to answer` })
  }
  const kill = async () => {
    let pid: number
    try {
      pid = Number(readFileSync(pidfile, 'utf8').trim())
    } catch {
      return
    }
    try {
      process.kill(pid, 'SIGKILL')
    } catch {
      return
    }
    // Gone, or a zombie nobody reaps (a container's PID 1 may not): redis-server daemonized, it is not our child.
    const gone = () => {
      try {
        process.kill(pid, 0)
      } catch {
        return true
      }
      try {
        return readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.startsWith('Z') ?? false
      } catch {
        return false // no /proc here (or it just exited: the next check sees that)
      }
    }
    await waitFor(gone, { interval: 20, message: `redis-server (pid ${pid}) to exit after SIGKILL` })
    rmSync(pidfile, { force: true })
  }
  await start()
  return {
    port,
    url,
    kill,
    start,
    async destroy() {
      await kill()
      rmSync(dir, { recursive: true, force: true })
    },
  }
}
