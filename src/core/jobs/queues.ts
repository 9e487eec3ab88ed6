/**
 * The BullMQ queues of one deployment, over ioredis, every key under the deployment prefix
 * (REDIS_PREFIX → BullMQ `prefix`, so `${prefix}:system:…` and `${prefix}:tenant:…`). On a Redis Cluster
 * (REDIS_CLUSTER) each queue has a hash-tagged prefix of its own, `{${prefix}:system}` and
 * `{${prefix}:tenant}` (queuePrefix): BullMQ's scripts touch many keys of a queue at once, which must share
 * a slot, and two tags let the two queues live on different nodes. A workflow (one BullMQ flow) keeps its
 * parent and steps in one queue, so a flow never spans two slots.
 *
 * Two queues, split by what a job needs before it may run:
 * - `system`: platform work (email, provisioning steps, fleet chores). Its record lives in the host DB
 *   (sys_jobs) and it never waits on a tenant's concurrency cap.
 * - `tenant`: work on one tenant's data. Its record lives in that tenant's database (tenant_jobs) and it
 *   runs only when the tenant has a free slot (tenant-slots.ts). Keeping it apart means a tenant backlog
 *   bouncing off its cap never sits in front of a signup's welcome email, and the two can be given
 *   separate worker processes.
 */
import { type ConnectionOptions, Queue } from 'bullmq'
import type { Redis } from 'ioredis'
import { logRedisErrors, newRedisClient, type RedisErrorLogger, type RedisTarget, slotGroup } from '../lib/redis.js'
import type { JobScope } from './registry.js'

export const QUEUE_NAMES = { system: 'system', tenant: 'tenant' } as const satisfies Record<JobScope, string>
export type QueueName = (typeof QUEUE_NAMES)[JobScope]

/** The deployment's Redis prefix and whether Redis is a cluster (what queue prefixes are made of). */
export type QueueTarget = Pick<RedisTarget, 'redisCluster'> & { redisPrefix: string }

/** A queue's BullMQ `prefix`: REDIS_PREFIX, on a cluster `{REDIS_PREFIX:<queue>}` (lib/redis.ts slotGroup). */
export function queuePrefix(target: QueueTarget, queue: string): string {
  return target.redisCluster ? slotGroup(target.redisPrefix, queue, true) : target.redisPrefix
}

/**
 * The connection of a BullMQ Worker. Workers block on Redis and must retry forever
 * (`maxRetriesPerRequest: null`); BullMQ opens and closes these connections itself: from options on one
 * server; on a cluster, options alone would make BullMQ open a plain single-node client, so this is a
 * (lazy) Cluster: BullMQ duplicates it for the blocking connection and uses it as the worker's main one,
 * but leaves a client it was given open: closeWorkerConnection after the worker has closed.
 */
export function workerConnection(target: RedisTarget): ConnectionOptions {
  if (!target.redisCluster) return { url: target.redisUrl, maxRetriesPerRequest: null }
  return newRedisClient(target, { maxRetriesPerRequest: null, lazyConnect: true }, { maxRedirections: WORKER_MAX_REDIRECTIONS })
}

/**
 * How many redirections and TRYAGAIN answers a worker's command follows on a cluster (ioredis waits
 * `retryDelayOnTryAgain`, 100 ms, before each TRYAGAIN retry; its default of 16 gives up after ~1.6 s). While
 * a queue's slot is being resharded its multi-key scripts answer TRYAGAIN; a worker's completion write that
 * gave up left its job active, run again by the stalled check 30 s later. 200 (~20 s) rides out a reshard
 * of a busy queue's slot and stays under the job lock (30 s), so the worker keeps its job. The request path
 * (submits) keeps ioredis' default and answers 503 QUEUE_UNAVAILABLE instead of waiting.
 */
export const WORKER_MAX_REDIRECTIONS = 200

/** Close what workerConnection made (the Cluster of a worker that has closed); options need nothing. */
export function closeWorkerConnection(connection: ConnectionOptions): void {
  const client = connection as Partial<Redis>
  // disconnect, not quit: the worker is done with it, and QUIT would wait on a node that is down.
  if (typeof client.disconnect === 'function') client.disconnect()
}

export interface Queues {
  system: Queue
  tenant: Queue
  byScope(scope: JobScope): Queue
  close(): Promise<void>
}

/** Both queues on one shared producer connection (BullMQ does not close a connection it was given). */
export function createQueues(connection: Redis, target: QueueTarget, logger?: RedisErrorLogger): Queues {
  const system = new Queue(QUEUE_NAMES.system, { connection, prefix: queuePrefix(target, QUEUE_NAMES.system) })
  const tenant = new Queue(QUEUE_NAMES.tenant, { connection, prefix: queuePrefix(target, QUEUE_NAMES.tenant) })
  // A Queue re-emits its connection's errors; with no listener BullMQ console.errors each one raw.
  for (const q of [system, tenant]) logRedisErrors(q, logger ?? { warn: () => {} }, `queue ${q.name}`)
  return {
    system,
    tenant,
    byScope: (scope) => (scope === 'system' ? system : tenant),
    async close() {
      await Promise.all([system.close(), tenant.close()])
    },
  }
}
