/**
 * Child process of bench/request-plane.ts: the baseline, a bare Fastify + postgres.js server reading the
 * same project row from the same tenant database (BARE_DB_URL) as the app, with nothing in front of it.
 * Prints one JSON line with its port, then serves until killed.
 */
import Fastify from 'fastify'
import { loadConfig } from '../../src/core/config.js'
import { connect } from '../../src/core/db/connect.js'

const config = loadConfig(process.env)
const bare = Fastify({ logger: false })
const sql = connect(process.env.BARE_DB_URL!, { max: config.pool.maxPerTenant })
bare.get<{ Params: { id: string } }>('/projects/:id', async (req, reply) => {
  const [row] = await sql`select * from projects where id = ${req.params.id}`
  if (!row) return reply.code(404).send()
  return row
})
await bare.listen({ port: 0, host: '127.0.0.1' })
process.stdout.write(`${JSON.stringify({ barePort: (bare.server.address() as { port: number }).port })}\n`)

process.on('SIGTERM', async () => {
  await Promise.all([bare.close(), sql.end()])
  process.exit(0)
})
