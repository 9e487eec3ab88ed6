/**
 * The app of a test file, in the spirit of fastify/demo's build(t): `const ctx = useApp(vars)` at the top of
 * the file registers the hooks that make a fresh test world (test-env.ts), build and ready the app on it
 * (build-app.ts, contract check included), and close both after the file. Read `ctx.app` / `ctx.env`
 * inside tests and hooks (not at module load: they exist once beforeAll has run).
 *
 * Hooks run in registration order and after-hooks in reverse, so something started in an earlier
 * beforeAll (an SMTP capture whose port goes into `vars`) is ready for it and closed after the app;
 * something started in a later one (a worker on ctx.app.services) is closed before the app.
 */
import type { FastifyInstance } from 'fastify'
import { afterAll, beforeAll } from 'vitest'
import { buildApp } from './build-app.js'
import { createTestEnv, type TestEnv } from './test-env.js'

export interface AppHandle {
  readonly app: FastifyInstance
  readonly env: TestEnv
}

type Vars = Record<string, string> | (() => Record<string, string>)
const resolve = (vars: Vars) => (typeof vars === 'function' ? vars() : vars)

export interface UseAppOptions {
  /** Variables for this app only, layered on the env's (ctx.env.config stays without them, for other apps the file builds). */
  appVars?: Vars
  /** afterAll timeout (ms): dropping many tenant databases takes a while (each DROP DATABASE checkpoints). */
  closeTimeoutMs?: number
}

/** `vars` (or a function giving them, called in beforeAll) are the test env's extra variables. */
export function useApp(vars: Vars = {}, opts: UseAppOptions = {}): AppHandle {
  let app: FastifyInstance | undefined
  let env: TestEnv | undefined
  beforeAll(async () => {
    env = await createTestEnv(resolve(vars))
    app = await buildApp(opts.appVars ? env.configWith(resolve(opts.appVars)) : env.config)
  })
  afterAll(async () => {
    await app?.close()
    await env?.cleanup()
  }, opts.closeTimeoutMs)
  const ready = <T>(value: T | undefined, what: string): T => {
    if (value === undefined) throw new Error(`useApp: ${what} is read before beforeAll built it (read it inside a test or hook)`)
    return value
  }
  return {
    get app() {
      return ready(app, 'app')
    },
    get env() {
      return ready(env, 'env')
    },
  }
}
