/**
 * The world of the Redis Cluster fault tests (failover, reshard) on a scratch cluster of their own: a test env
 * on it with no session cache (every request reads its session from the cluster), the app, the system-job
 * workers of the test's registry, and a signed-in member. close() stops those; the test stops its cluster.
 */
import type { FastifyInstance } from 'fastify'
import type { JobRegistry } from '../../src/core/jobs/registry.js'
import { startWorkers, type WorkerRuntime } from '../../src/worker.js'
import { buildApp } from './build-app.js'
import type { ScratchCluster } from './redis-cluster.js'
import { type Member, newMember } from './tenant-fixtures.js'
import { createTestEnv, type TestEnv } from './test-env.js'

export interface ClusterApp {
  env: TestEnv
  app: FastifyInstance
  runtime: WorkerRuntime
  member: Member
  close(): Promise<void>
}

export async function clusterApp(cluster: ScratchCluster, registry: JobRegistry, label: string, vars: Record<string, string> = {}): Promise<ClusterApp> {
  const env = await createTestEnv({ REDIS_URL: cluster.url, REDIS_CLUSTER: 'true', SESSION_CACHE_TTL_MS: '0', ...vars })
  const app = await buildApp(env.config)
  const runtime = await startWorkers(app.services, { registry, scopes: ['system'], reconcileIntervalMs: 0, schedules: false })
  const member = await newMember(app, label, { signIn: true })
  return {
    env,
    app,
    runtime,
    member,
    async close() {
      await runtime.close(5000)
      await app.close()
      await env.cleanup()
    },
  }
}
