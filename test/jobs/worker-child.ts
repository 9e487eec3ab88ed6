/**
 * The real worker process (`node --import tsx src/worker.ts …`) as a child of the test, for tests that
 * SIGTERM or SIGKILL it. Children are tracked so a file's afterEach can kill the ones it started.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { dirname, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { until } from './helpers.js'

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..')

export interface WorkerChild {
  proc: ChildProcess
  output: () => string
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
  waitForLog(msg: string, timeoutMs?: number): Promise<void>
}

const children: WorkerChild[] = []

/** Spawn `src/worker.ts` with these flags, the test env's variables and `extra` on top (LOG_LEVEL info). */
export function spawnWorker(args: string[], vars: Record<string, string>, extra: Record<string, string> = {}): WorkerChild {
  const proc = spawn(process.execPath, ['--import', 'tsx', 'src/worker.ts', ...args], {
    cwd: root,
    env: { ...process.env, ...vars, LOG_LEVEL: 'info', WORKER_SHUTDOWN_TIMEOUT_MS: '10000', ...extra },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let out = ''
  proc.stdout!.on('data', (d) => {
    out += d
  })
  proc.stderr!.on('data', (d) => {
    out += d
  })
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) =>
    proc.once('exit', (code, signal) => r({ code, signal })),
  )
  const child: WorkerChild = {
    proc,
    output: () => out,
    exited,
    waitForLog: (msg, timeoutMs = 60_000) =>
      until(async () => out.includes(`"msg":"${msg}`), timeoutMs, `worker log "${msg}"\n${out}`).then(() => {}),
  }
  children.push(child)
  return child
}

/** SIGKILL the children spawned so far that are still running (only those, by their own handles). */
export async function killSpawnedWorkers(): Promise<void> {
  for (const c of children.splice(0)) {
    if (c.proc.exitCode === null && c.proc.signalCode === null) {
      c.proc.kill('SIGKILL')
      await c.exited
    }
  }
}
