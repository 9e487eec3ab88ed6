/**
 * A Redis Cluster with in-transit encryption, as ElastiCache (cluster mode, TLS on) or Memorystore serve it:
 * REDIS_URL=rediss://<a node>, REDIS_CLUSTER=true; the cluster speaks TLS only (no plaintext port; TLS on its bus
 * too) with a certificate for 127.0.0.1 signed by a private CA, which the process trusts through Node's own
 * NODE_EXTRA_CA_CERTS (managed services' certificates chain to public CAs: nothing to set there). The HTTP entry
 * point runs in a child process with its job workers: a signup (session in Redis), its provisioning job through
 * BullMQ on the cluster, then a clean SIGTERM. Without the CA the certificate is refused, and a plaintext
 * client gets nothing: the traffic above really went over verified TLS.
 */
import { readFileSync } from 'node:fs'
import { dirname, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Redis, type RedisOptions } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type ScratchCluster, startScratchCluster } from './helpers/redis-cluster.js'
import { type ServerProcess, signUpUntilActive, startServerProcess } from './helpers/server-process.js'
import { createTestEnv, type TestEnv } from './helpers/test-env.js'

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..')

let cluster: ScratchCluster | undefined
let unavailable: string | undefined
try {
  cluster = await startScratchCluster({ ports: [7111, 7112, 7113], replicas: 0, nodeTimeoutMs: 5000, dir: '/tmp/tenantkit-redis-cluster-tls', tls: true })
} catch (err) {
  const e = err as { stderr?: string; message: string }
  unavailable = `a TLS Redis Cluster could not be started: ${(e.stderr || e.message).trim()}`
  console.warn(`skipping the Redis Cluster TLS test: ${unavailable}`)
}

describe.skipIf(unavailable)('Redis Cluster over TLS (rediss://, a private CA)', () => {
  let env: TestEnv
  let server: ServerProcess | undefined

  beforeAll(async () => {
    env = await createTestEnv({ REDIS_URL: cluster!.url, REDIS_CLUSTER: 'true' })
  })
  afterAll(async () => {
    await server?.kill()
    await env?.cleanup()
    await cluster?.stop()
  })

  it('serves a signup, its provisioning job and the session over it, then stops cleanly', async () => {
    server = startServerProcess(['--import', 'tsx', 'src/server.ts'], root, { ...env.vars, NODE_EXTRA_CA_CERTS: cluster!.caFile! })
    const base = await server.listening()
    await signUpUntilActive(base, 'tls@example.com')
    expect(await server.stop(), server.output()).toEqual({ code: 0, signal: null })
    expect(server.output()).not.toMatch(/"level":(50|60)/)
  })

  it('refuses the nodes’ certificate without the CA, and answers nothing in plaintext', async () => {
    // This process was started without NODE_EXTRA_CA_CERTS: one node, as the cluster client's first connection.
    const errors: string[] = []
    const node = (options: RedisOptions, url = cluster!.url) => {
      const client = new Redis(url, { lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0, connectTimeout: 2000, ...options })
      client.on('error', (err: Error) => errors.push(err.message))
      return client
    }
    const untrusted = node({})
    await expect(untrusted.connect()).rejects.toThrow()
    // (connect() says only "Connection is closed."; the socket's error says why.)
    expect(errors.join('\n')).toMatch(/self[- ]signed certificate/)
    untrusted.disconnect()
    const trusted = node({ tls: { ca: readFileSync(cluster!.caFile!) } })
    await trusted.connect()
    expect(await trusted.ping()).toBe('PONG')
    trusted.disconnect()
    const plaintext = node({}, cluster!.url.replace('rediss:', 'redis:'))
    await expect(plaintext.connect().then(() => plaintext.ping())).rejects.toThrow()
    plaintext.disconnect()
  })
})
