/**
 * The server half of bench/pg-queue-soak.ts: one long-lived process, a Fastify `GET /select1` route on a
 * postgres.js pool of 10, loaded from the package folder given as argv[2] (the installed, patched
 * package or an unpatched copy). It tells the parent its port and which queue.js it runs over IPC.
 */
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import Fastify from 'fastify'

type Sql = import('postgres').Sql
type PostgresFactory = (url: string, opts: Record<string, unknown>) => Sql

const [pkgDir, dbUrl] = process.argv.slice(2)
if (!pkgDir || !dbUrl || !process.send)
  throw new Error('usage: forked by bench/pg-queue-soak.ts with <postgres package dir> <database url>')

const queueSource = readFileSync(join(pkgDir, 'src/queue.js'), 'utf8')
const { default: postgres } = (await import(pathToFileURL(join(pkgDir, 'src/index.js')).href)) as { default: PostgresFactory }
// The pool options of src/core/db/connect.ts, so the benchmark measures what the app runs.
const sql = postgres(dbUrl, { max: 10, idle_timeout: 0, fetch_types: false, prepare: true, onnotice: () => {} })

const app = Fastify({ logger: false })
app.get('/select1', async () => {
  const [row] = await sql`select 1 as one`
  return row
})
await app.listen({ host: '127.0.0.1', port: 0 })
const address = app.server.address()
const port = typeof address === 'object' && address ? address.port : 0

process.send({ port, patched: queueSource.includes('indexOf(x, index)') })
process.on('message', async (msg) => {
  if (msg === 'stop') {
    await app.close()
    await sql.end({ timeout: 5 })
    process.exit(0)
  }
})
