/**
 * The BullMQ queues of one deployment, over ioredis, every key under the deployment prefix
 * (REDIS_PREFIX → BullMQ `prefix`, so `${prefix}:system:…` and `${prefix}:tenant:…`).
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
import { logRedisErrors, type RedisErrorLogger } from '../lib/redis.js'
import type { JobScope } from './registry.js'

export const QUEUE_NAMES = { system: 'system', tenant: 'tenant' } as const satisfies Record<JobScope, string>
export type QueueName = (typeof QUEUE_NAMES)[JobScope]

/**
 * Connection options for a BullMQ Worker. Workers block on Redis and must retry forever
 * (`maxRetriesPerRequest: null`); BullMQ opens and closes these connections itself.
 */
export function workerConnection(url: string): ConnectionOptions {
  return { url, maxRetriesPerRequest: null }
}

export interface Queues {
  system: Queue
  tenant: Queue
  byScope(scope: JobScope): Queue
  close(): Promise<void>
}

/** Both queues on one shared producer connection (BullMQ does not close a connection it was given). */
export function createQueues(connection: Redis, prefix: string, logger?: RedisErrorLogger): Queues {
  const system = new Queue(QUEUE_NAMES.system, { connection, prefix })
  const tenant = new Queue(QUEUE_NAMES.tenant, { connection, prefix })
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
