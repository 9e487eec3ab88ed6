/**
 * The HTTP entry point in a child process of its own, as `npm run dev` or the image runs it: its output
 * collected, its exit awaited, killed (SIGKILL, by its own handle) if a test left it running. Used by
 * test/server-process.test.ts (tsx, src/) and test/production-build.test.ts (node, dist/).
 */
import { spawn } from 'node:child_process'
import { expect } from 'vitest'
import { until } from '../jobs/helpers.js'

export interface ServerProcess {
  /** Everything it wrote to stdout and stderr so far. */
  output(): string
  /** Its base URL once it logged that it listens. */
  listening(): Promise<string>
  /** SIGTERM, then its exit code and signal. */
  stop(): Promise<{ code: number | null; signal: NodeJS.Signals | null }>
  /** SIGKILL if it still runs (afterAll). */
  kill(): Promise<void>
}

/** `node <args>` in `cwd`, in queue mode with the job workers in-process (NODE_ENV=development), on a free port. */
export function startServerProcess(args: string[], cwd: string, vars: Record<string, string>): ServerProcess {
  let out = ''
  const child = spawn(process.execPath, args, {
    cwd,
    env: { ...process.env, ...vars, NODE_ENV: 'development', PROVISION_INLINE: 'false', HOST: '127.0.0.1', PORT: '0', LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  child.stdout!.on('data', (d) => {
    out += d
  })
  child.stderr!.on('data', (d) => {
    out += d
  })
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => child.once('exit', (code, signal) => r({ code, signal })))
  return {
    output: () => out,
    listening: () => until(async () => /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(out)?.[1], 30_000, `server to listen\n${out}`),
    async stop() {
      child.kill('SIGTERM')
      return exited
    },
    async kill() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGKILL')
        await exited
      }
    },
  }
}

/** A signup through the real HTTP API; resolves once the in-process worker has provisioned its tenant. */
export async function signUpUntilActive(base: string, email: string): Promise<void> {
  const signup = await fetch(`${base}/auth/signup`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ email, password: 'correct horse battery staple' }),
  })
  expect(signup.status).toBe(201)
  const { tenant } = (await signup.json()) as { tenant: { id: string; status: string } }
  expect(tenant.status).toBe('provisioning')
  const cookie = signup.headers.getSetCookie().map((c) => c.split(';')[0]).join('; ')
  const status = async () => {
    const me = (await (await fetch(`${base}/me`, { headers: { cookie } })).json()) as { activeTenant: { tenantStatus: string } | null }
    return me.activeTenant?.tenantStatus
  }
  await until(async () => (await status()) === 'active', 30_000, 'tenant to become active')
}
