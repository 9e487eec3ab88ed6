/**
 * Child process of bench/request-plane.ts: the full app, with a user, their tenant and one project. Prints
 * one JSON line with its port, the session cookie, an API key, the project id and the tenant database's URL
 * (for the bare server, bench/lib/bare-server.ts, which runs in a process of its own: served from one
 * process, bare and app requests shared its JIT and heap, and the app measured 10-18 % dearer than the
 * same code served alone), then serves until killed.
 */
import Fastify from 'fastify'
import fp from 'fastify-plugin'
import app, { serverOptions } from '../../src/app.js'
import { loadConfig } from '../../src/core/config.js'

const config = loadConfig(process.env)
const full = Fastify({ ...serverOptions(config), logger: false })
await full.register(fp(app), { config })
await full.ready()

// A user, their tenant and one project, through the real API.
const signup = await full.inject({
  method: 'POST',
  url: '/auth/signup',
  payload: { email: 'bench@example.com', password: 'correct horse battery staple' },
})
const sid = signup.cookies.find((c) => c.name === 'sid')!.value
const cookie = `sid=${sid}`
const csrf = (await full.inject({ url: '/auth/csrf', headers: { cookie } })).json().token
// Creating an API key needs a verified address (the emailed link, skipped here).
await full.host.sql`update core_users set email_verified_at = now() where email = 'bench@example.com'`
const project = await full.inject({
  method: 'POST',
  url: '/api/projects',
  headers: { cookie, 'x-csrf-token': csrf },
  payload: { name: 'bench' },
})
const projectId = project.json().id as string
const apiKey = (
  await full.inject({
    method: 'POST',
    url: '/api/api-keys',
    headers: { cookie, 'x-csrf-token': csrf },
    payload: { name: 'bench', role: 'viewer' },
  })
).json().secret as string
const tenant = (await full.tenancy.catalog.get(signup.json().tenant.id))!

await full.listen({ port: 0, host: '127.0.0.1' })
const appPort = (full.server.address() as { port: number }).port
process.stdout.write(`${JSON.stringify({ appPort, cookie, apiKey, projectId, dbUrl: tenant.dbUrl })}\n`)

// BENCH_ALLOC_PROF=<dir>: sample every allocation from here on, collected ones included (what GC churns
// through, not only what stays live, which is all --heap-prof reports), written there as a .heapprofile on exit.
const allocProf = process.env.BENCH_ALLOC_PROF ? await startAllocationSampling() : undefined

process.on('SIGTERM', async () => {
  await allocProf?.(process.env.BENCH_ALLOC_PROF!)
  await full.close()
  process.exit(0)
})

async function startAllocationSampling() {
  const { Session } = await import('node:inspector/promises')
  const { writeFileSync } = await import('node:fs')
  const session = new Session()
  session.connect()
  await session.post('HeapProfiler.startSampling', {
    samplingInterval: 4096,
    includeObjectsCollectedByMajorGC: true,
    includeObjectsCollectedByMinorGC: true,
  })
  return async (dir: string) => {
    const { profile } = await session.post('HeapProfiler.stopSampling')
    writeFileSync(`${dir}/request-plane-${process.pid}.heapprofile`, JSON.stringify(profile))
  }
}
