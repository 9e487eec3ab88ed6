/**
 * Child process of bench/request-plane.ts: the full app and a bare Fastify + postgres.js server side
 * by side, reading the same project row from the same tenant database. Prints one JSON line with the
 * ports, the session cookie and the project id, then serves until killed.
 */
import Fastify from 'fastify'
import fp from 'fastify-plugin'
import app, { serverOptions } from '../../src/app.js'
import { loadConfig } from '../../src/core/config.js'
import { connect } from '../../src/core/db/connect.js'

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

// The baseline: the same SELECT with nothing in front of it.
const bare = Fastify({ logger: false })
const sql = connect(tenant.dbUrl, { max: config.pool.maxPerTenant })
bare.get<{ Params: { id: string } }>('/projects/:id', async (req, reply) => {
  const [row] = await sql`select * from projects where id = ${req.params.id}`
  if (!row) return reply.code(404).send()
  return row
})

await full.listen({ port: 0, host: '127.0.0.1' })
await bare.listen({ port: 0, host: '127.0.0.1' })
const port = (f: typeof full) => (f.server.address() as { port: number }).port
process.stdout.write(`${JSON.stringify({ appPort: port(full), barePort: port(bare), cookie, apiKey, projectId })}\n`)

process.on('SIGTERM', async () => {
  await Promise.all([full.close(), bare.close(), sql.end()])
  process.exit(0)
})
