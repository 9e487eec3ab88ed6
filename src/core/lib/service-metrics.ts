/**
 * Metrics of the kit's services (not of HTTP): they are counted wherever the work runs (the API process,
 * in-process workers, a worker process) on the services' own registry, which the app's GET /metrics
 * serves next to its HTTP metrics (plugins/metrics.ts). A separate worker process counts too but has no
 * endpoint of its own yet: its job outcomes show on the API's /metrics only with WORKER_IN_PROCESS.
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client'
import type { Queues } from '../jobs/queues.js'

export type JobOutcome = 'completed' | 'failed' | 'retried'

export interface ServiceMetrics {
  registry: Registry
  /** Seconds from a tenant's registration to its end: inline (in the call) or queued (first step job to 'active', queue waits included). */
  provisioningDuration: Histogram<'mode' | 'outcome'>
  /** One per job run that ended: completed, failed for good, or failed and retried. */
  jobOutcomes: Counter<'job_type' | 'outcome'>
}

export function createServiceMetrics(): ServiceMetrics {
  const registry = new Registry()
  return {
    registry,
    provisioningDuration: new Histogram({
      name: 'tenant_provisioning_duration_seconds',
      help: 'Tenant provisioning time, registration to active (or failed), by mode (inline | queued) and outcome',
      labelNames: ['mode', 'outcome'],
      buckets: [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
      registers: [registry],
    }),
    jobOutcomes: new Counter({
      name: 'jobs_finished_total',
      help: 'Job runs that ended, by job type and outcome (completed | failed | retried)',
      labelNames: ['job_type', 'outcome'],
      registers: [registry],
    }),
  }
}

const DEPTH_STATES = ['waiting', 'active', 'delayed', 'prioritized', 'failed'] as const

/** Jobs in each queue by state, read from Redis at scrape time (a Redis that does not answer leaves the gauge out). */
export function registerQueueDepth(registry: Registry, queues: () => Queues): void {
  new Gauge({
    name: 'job_queue_depth',
    help: 'Jobs in each BullMQ queue by state (waiting, active, delayed, prioritized, failed), read at scrape time',
    labelNames: ['queue', 'state'],
    registers: [registry],
    async collect() {
      this.reset()
      const q = queues()
      try {
        for (const queue of [q.system, q.tenant]) {
          const counts = await queue.getJobCounts(...DEPTH_STATES)
          for (const state of DEPTH_STATES) this.set({ queue: queue.name, state }, counts[state] ?? 0)
        }
      } catch {
        // Redis down: readiness says so; the scrape still answers with everything else.
      }
    },
  })
}
