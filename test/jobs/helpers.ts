/**
 * A jobs test world: a test env (host DB, Redis prefix), the kit's services, tenants provisioned for
 * real (cloned from the tenant template), and helpers to wait on job records.
 */
import { randomBytes } from 'node:crypto'
import { pino } from 'pino'
import { expect } from 'vitest'
import type { JobView, TaskManager } from '../../src/core/jobs/task-manager.js'
import type { Queues } from '../../src/core/jobs/queues.js'
import type { JobRegistry } from '../../src/core/jobs/registry.js'
import { createServices, type Services } from '../../src/services.js'
import type { TenantRecord } from '../../src/core/tenancy/types.js'
import { createTestEnv, type TestEnv } from '../helpers/test-env.js'
import { waitFor } from '../helpers/wait-for.js'

export const silent = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' })

export interface JobsWorld {
  env: TestEnv
  services: Services
  tenant(label?: string): Promise<TenantRecord>
  close(): Promise<void>
}

export async function createJobsWorld(extra: Record<string, string> = {}): Promise<JobsWorld> {
  const env = await createTestEnv(extra)
  const services = createServices(env.config, silent)
  await services.catalog.ready
  return {
    env,
    services,
    async tenant(label = 'acme') {
      const slug = `${label}-${randomBytes(3).toString('hex')}`
      const t = await services.provisioner.provision({ slug, name: label })
      const record = await services.catalog.get(t.id)
      if (!record) throw new Error(`provisioned tenant ${slug} is not in the catalog`)
      return record
    },
    async close() {
      await services.close()
      await env.cleanup()
    },
  }
}

/** Simulated work inside a job (a duration the test chooses); never a way to wait for something. */
export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** waitFor (test/helpers/wait-for.ts) in this folder's older shape: check, timeout, what. */
export function until<T>(check: () => Promise<T | undefined | false>, timeoutMs = 15_000, what = 'condition'): Promise<T> {
  return waitFor(check, { timeout: timeoutMs, message: what }) as Promise<T>
}

/** True when neither queue has a job left to run (waiting, active, delayed or retrying): whatever was queued has finished. */
export async function queuesIdle(queues: Queues): Promise<boolean> {
  for (const queue of [queues.system, queues.tenant]) {
    const counts = await queue.getJobCounts('waiting', 'active', 'delayed', 'prioritized', 'waiting-children')
    if (Object.values(counts).some((n) => n > 0)) return false
  }
  return true
}

/** Wait until the job's record is completed or failed AND BullMQ agrees; returns the view. */
export async function settled<R extends JobRegistry>(
  tasks: TaskManager<R>,
  id: string,
  scope: 'system' | { tenantId: string },
  timeoutMs = 15_000,
): Promise<JobView> {
  return until(
    async () => {
      const view = await tasks.getJob(id, scope)
      const done = (view.status === 'completed' || view.status === 'failed') && view.queueState === view.status
      return done ? view : undefined
    },
    timeoutMs,
    `job ${id} to settle`,
  )
}

export function expectAppError(err: unknown, statusCode: number, code: string): asserts err is Error {
  expect(err).toMatchObject({ name: 'AppError', statusCode, code })
}
