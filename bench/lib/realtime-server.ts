/**
 * Child process of bench/realtime.ts (run with --expose-gc): the full app, and a bare SSE fan-out beside
 * it (node:http, one Redis subscriber on the same channels, frames written to every connection of the
 * tenant: no auth, no replay, no caps, no backpressure), both listening. Makes `BENCH_TENANTS` tenants (shared
 * isolation: rows, not databases), each with an owner logged in, and prints one JSON line: the ports and
 * each tenant's id, slug and session cookie. Then, per line on stdin: `mem` prints {"rss","heapUsed",
 * "connections","bare"} after a full GC.
 */
import { createServer, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { createInterface } from 'node:readline'
import Fastify from 'fastify'
import fp from 'fastify-plugin'
import { Redis } from 'ioredis'
import app, { serverOptions } from '../../src/app.js'
import { loadConfig } from '../../src/core/config.js'
import { hashPassword } from '../../src/core/identity/password.js'
import { realtimeKeys } from '../../src/features/realtime/stream.js'

const TENANTS = Number(process.env.BENCH_TENANTS ?? 100)
const PASSWORD = 'correct horse battery staple'

const config = loadConfig(process.env)
const full = Fastify({ ...serverOptions(config), logger: false })
await full.register(fp(app), { config })
await full.ready()
await full.listen({ host: '127.0.0.1', port: 0 })

const passwordHash = await hashPassword(PASSWORD)
const tenants: { id: string; slug: string; cookie: string }[] = []
for (let i = 0; i < TENANTS; i++) {
  const email = `rt-${i}@example.com`
  const user = await full.users.create({ email, name: `rt ${i}`, passwordHash })
  const tenant = await full.tenancy.provisioner.provision({ slug: `rt-${i}`, name: `rt ${i}`, ownerUserId: user.id })
  // Each from an address of its own: login's own rate limit is per client.
  const login = await full.inject({
    method: 'POST',
    url: '/auth/login',
    payload: { email, password: PASSWORD },
    remoteAddress: `10.9.${i >> 8}.${i & 255}`,
  })
  const sid = login.cookies.find((c) => c.name === 'sid')?.value
  if (!sid) throw new Error(`login failed: ${login.statusCode} ${login.body}`)
  tenants.push({ id: tenant.id, slug: tenant.slug, cookie: `sid=${sid}` })
}

// The baseline: the least a fan-out over Redis pub/sub can do.
const keys = realtimeKeys(config.redisPrefix)
const byTenant = new Map<string, Set<ServerResponse>>()
let bareCount = 0
const subscriber = new Redis(config.redisUrl)
await subscriber.psubscribe(`${config.redisPrefix}:rt:ev:*`)
subscriber.on('pmessage', (_pattern: string, channel: string, message: string) => {
  const clients = byTenant.get(channel)
  if (!clients) return
  const nl = message.indexOf('\n')
  const head = message.slice(0, nl)
  const sp = head.indexOf(' ')
  const frame = `id: ${head.slice(0, sp)}\nevent: ${head.slice(sp + 1)}\ndata: ${message.slice(nl + 1)}\n\n`
  for (const res of clients) res.write(frame)
})
const bare = createServer((req, res) => {
  const tenantId = new URL(req.url ?? '/', 'http://x').searchParams.get('tenant') ?? ''
  const channel = keys.channel(tenantId)
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' })
  res.write('retry: 2000\n\n')
  const set = byTenant.get(channel) ?? new Set<ServerResponse>()
  byTenant.set(channel, set)
  set.add(res)
  bareCount++
  res.on('close', () => {
    set.delete(res)
    bareCount--
  })
})
await new Promise<void>((resolve) => bare.listen(0, '127.0.0.1', resolve))

process.stdout.write(
  `${JSON.stringify({ appPort: (full.server.address() as AddressInfo).port, barePort: (bare.address() as AddressInfo).port, tenants })}\n`,
)

const gc = (globalThis as { gc?: () => void }).gc
createInterface({ input: process.stdin }).on('line', (line) => {
  if (line.trim() !== 'mem') return
  gc?.()
  gc?.()
  const m = process.memoryUsage()
  process.stdout.write(
    `${JSON.stringify({ rss: m.rss, heapUsed: m.heapUsed, connections: full.realtime.stats().connections, bare: bareCount })}\n`,
  )
})
process.on('SIGTERM', async () => {
  bare.close()
  subscriber.disconnect()
  await full.close()
  process.exit(0)
})
