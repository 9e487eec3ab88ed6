/**
 * The local Redis Cluster of the cluster tests: three masters on 127.0.0.1:7001-7003, started by
 * .ci/redis-cluster (CI runs it before `npm test`; a test that finds it down runs it too). Tests skip,
 * saying why, only when it cannot be started at all (no redis-server on the machine).
 */
import { execFileSync } from 'node:child_process'
import { readFileSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { Redis } from 'ioredis'

export const CLUSTER_PORTS = (process.env.TENANTKIT_REDIS_CLUSTER_PORTS ?? '7001 7002 7003').split(/\s+/).filter(Boolean).map(Number)
/** What a test world needs to run on the cluster: REDIS_URL names one node, the clients discover the others. */
export const CLUSTER_VARS = { REDIS_URL: `redis://127.0.0.1:${CLUSTER_PORTS[0]}`, REDIS_CLUSTER: 'true' }

async function healthy(): Promise<boolean> {
  const node = new Redis({ host: '127.0.0.1', port: CLUSTER_PORTS[0], lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0 })
  node.on('error', () => {})
  try {
    await node.connect()
    return /cluster_state:ok/.test(String(await node.cluster('INFO')))
  } catch {
    return false
  } finally {
    node.disconnect()
  }
}

/** Start the cluster if needed: undefined when it is up, else why it could not be started. */
export async function ensureRedisCluster(): Promise<string | undefined> {
  if (await healthy()) return undefined
  try {
    execFileSync(join(import.meta.dirname, '../../.ci/redis-cluster'), { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
  } catch (err) {
    const e = err as { stderr?: string; message: string }
    return `the Redis Cluster (127.0.0.1 ports ${CLUSTER_PORTS.join(', ')}) could not be started: ${(e.stderr || e.message).trim()}`
  }
  return (await healthy()) ? undefined : `the Redis Cluster (127.0.0.1 ports ${CLUSTER_PORTS.join(', ')}) was started but is not ok`
}

/** Per master: the keys that contain `part` (test-env's cleanup scans only the Redis on 6379). */
export async function clusterKeys(part: string): Promise<Map<number, string[]>> {
  const found = new Map<number, string[]>()
  for (const port of CLUSTER_PORTS) {
    const node = new Redis({ host: '127.0.0.1', port })
    try {
      const keys: string[] = []
      let cursor = '0'
      do {
        const [next, batch] = await node.scan(cursor, 'MATCH', `*${part}*`, 'COUNT', 1000)
        cursor = next
        keys.push(...batch)
      } while (cursor !== '0')
      found.set(port, keys)
    } finally {
      node.disconnect()
    }
  }
  return found
}

/** Drop a test world's keys from every master (one DEL per key: they are in different slots). */
export async function dropClusterKeys(part: string): Promise<void> {
  for (const [port, keys] of await clusterKeys(part)) {
    if (keys.length === 0) continue
    const node = new Redis({ host: '127.0.0.1', port })
    try {
      const pipeline = node.pipeline()
      for (const key of keys) pipeline.del(key)
      await pipeline.exec()
    } finally {
      node.disconnect()
    }
  }
}

/** A cluster of the test's own (masters and replicas), started fresh and stopped by its pid files: the failover test kills its nodes. */
export interface ScratchCluster {
  ports: number[]
  url: string
  /** tls: the CA that signed the nodes' certificate (for NODE_EXTRA_CA_CERTS). */
  caFile: string | undefined
  /** The port of the master serving `key`'s slot now. */
  masterOf(key: string): Promise<number>
  /** SIGKILL the server on `port` (by its pid file). */
  kill(port: number): void
  stop(): Promise<void>
}

export async function startScratchCluster(opts: {
  ports: number[]
  replicas: number
  nodeTimeoutMs: number
  dir: string
  /** TLS only (client port, bus, replication), a private CA's certificate for 127.0.0.1: `rediss://` (masterOf does not speak it). */
  tls?: boolean
}): Promise<ScratchCluster> {
  const pidOf = (port: number) => {
    try {
      return Number(readFileSync(join(opts.dir, String(port), 'redis.pid'), 'utf8').trim())
    } catch {
      return undefined
    }
  }
  const kill = (port: number) => {
    const pid = pidOf(port)
    if (!pid) return
    try {
      process.kill(pid, 'SIGKILL')
    } catch {}
  }
  const stop = async () => {
    for (const port of opts.ports) kill(port)
    await new Promise((r) => setTimeout(r, 200))
    rmSync(opts.dir, { recursive: true, force: true })
  }
  await stop() // what an earlier run left (it killed a master: that cluster is not reusable)
  execFileSync(join(import.meta.dirname, '../../.ci/redis-cluster'), {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    env: {
      ...process.env,
      TENANTKIT_REDIS_CLUSTER_PORTS: opts.ports.join(' '),
      TENANTKIT_REDIS_CLUSTER_DIR: opts.dir,
      TENANTKIT_REDIS_CLUSTER_REPLICAS: String(opts.replicas),
      TENANTKIT_REDIS_CLUSTER_NODE_TIMEOUT_MS: String(opts.nodeTimeoutMs),
      TENANTKIT_REDIS_CLUSTER_TLS: opts.tls ? '1' : '0',
    },
  })
  const foreign = opts.ports.filter((port) => pidOf(port) === undefined)
  if (foreign.length > 0) throw new Error(`ports ${foreign.join(', ')} already serve a Redis this test did not start`)
  const masterOf = async (key: string) => {
    for (const port of opts.ports) {
      const node = new Redis({ host: '127.0.0.1', port, lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0 })
      node.on('error', () => {})
      try {
        await node.connect()
        const slot = Number(await node.cluster('KEYSLOT', key))
        const range = (await node.cluster('SLOTS')).find(([from, to]) => slot >= from && slot <= to)
        if (range?.[2]) return range[2][1]
      } catch {
        // a dead node: ask the next
      } finally {
        node.disconnect()
      }
    }
    throw new Error(`no live node knows the master of ${key}`)
  }
  return {
    ports: opts.ports,
    url: `${opts.tls ? 'rediss' : 'redis'}://127.0.0.1:${opts.ports[0]}`,
    caFile: opts.tls ? join(opts.dir, 'tls', 'ca.crt') : undefined,
    masterOf,
    kill,
    stop,
  }
}
