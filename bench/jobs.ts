/**
 * Jobs/s through the task manager (payload validation, a record per job written before enqueue,
 * running/completed record updates per job) against raw BullMQ (addBulk + a no-op worker) on the same
 * Redis in the same run. Goal: task manager ≥ 0.5× raw for both enqueue and process.
 *
 *   npx tsx bench/jobs.ts     (BENCH_JOBS, default 20000; BENCH_CONCURRENCY, default 50; BENCH_ROUNDS, default 3)
 *
 * Rounds alternate raw / system task manager / tenant task manager so drift in a shared machine hits
 * all three; the best round of each is reported. Runs in an isolated world (its own host database,
 * tenant prefix and Redis prefix) and drops everything at the end.
 */
import { Queue, Worker } from 'bullmq'
import { pino } from 'pino'
import { Type } from 'typebox'
import { workerConnection } from '../src/core/jobs/queues.js'
import { systemJob, tenantJob } from '../src/core/jobs/registry.js'
import { createTaskManager } from '../src/core/jobs/task-manager.js'
import { createServices } from '../src/services.js'
import setup from '../test/global-setup.js'
import { createTestEnv } from '../test/helpers/test-env.js'

const JOBS = Number(process.env.BENCH_JOBS ?? 20_000)
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 50)
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3)
const BATCH = 1000

const line = (label: string, value: string | number) => console.log(`${label}: ${value}`)
const rate = (n: number, ms: number) => Math.round((n / ms) * 1000)

await setup()
const env = await createTestEnv({ JOB_TENANT_CONCURRENCY: String(CONCURRENCY), HOST_POOL_MAX: '10' })
const logger = pino({ level: 'silent' })
const services = createServices(env.config, logger)

const registry = {
  'bench.noop': systemJob({ payload: Type.Object({ n: Type.Integer() }), process: async () => null }),
  'bench.tenant_noop': tenantJob({ payload: { n: Type.Integer() }, process: async () => null }),
}
const tasks = createTaskManager({ registry, deps: {}, ...services, config: env.config, logger })
const retention = { removeOnComplete: { age: 86_400 }, removeOnFail: { age: 7 * 86_400 } }

async function drained(workers: Worker[], target: number): Promise<void> {
  let done = 0
  await new Promise<void>((resolve) => {
    for (const w of workers) {
      w.on('completed', () => {
        if (++done === target) resolve()
      })
    }
  })
}

interface Figures {
  enqueue: number
  process: number
}

async function raw(round: number): Promise<Figures> {
  const queue = new Queue(`raw${round}`, { connection: services.redis, prefix: env.config.redisPrefix })
  let t = performance.now()
  for (let i = 0; i < JOBS; i += BATCH) {
    await queue.addBulk(
      Array.from({ length: Math.min(BATCH, JOBS - i) }, (_, k) => ({ name: 'noop', data: { n: i + k }, opts: retention })),
    )
  }
  const enqueueMs = performance.now() - t
  const worker = new Worker(`raw${round}`, async () => null, {
    connection: workerConnection(env.config.redisUrl),
    prefix: env.config.redisPrefix,
    concurrency: CONCURRENCY,
    autorun: false,
  })
  const finished = drained([worker], JOBS)
  t = performance.now()
  void worker.run()
  await finished
  const processMs = performance.now() - t
  await worker.close()
  await queue.obliterate({ force: true })
  await queue.close()
  return { enqueue: rate(JOBS, enqueueMs), process: rate(JOBS, processMs) }
}

async function managed(name: 'bench.noop' | 'bench.tenant_noop', tenantId?: string): Promise<Figures> {
  let t = performance.now()
  for (let i = 0; i < JOBS; i += BATCH) {
    const payloads = Array.from({ length: Math.min(BATCH, JOBS - i) }, (_, k) => ({ n: i + k, ...(tenantId ? { tenantId } : {}) }))
    await tasks.submitMany(name, payloads as { n: number; tenantId: string }[])
  }
  const enqueueMs = performance.now() - t
  const handle = tasks.startWorkers({ scopes: [tenantId ? 'tenant' : 'system'], concurrency: CONCURRENCY })
  const finished = drained(handle.workers, JOBS)
  t = performance.now()
  await finished
  const processMs = performance.now() - t
  await handle.close()
  // A fresh queue for the next round.
  await tasks.queues.byScope(tenantId ? 'tenant' : 'system').obliterate({ force: true })
  return { enqueue: rate(JOBS, enqueueMs), process: rate(JOBS, processMs) }
}

try {
  const t = await services.provisioner.provision({ slug: 'bench-jobs', name: 'Bench' })
  line('jobs per round', JOBS)
  line('worker concurrency', CONCURRENCY)
  const best = { raw: { enqueue: 0, process: 0 }, system: { enqueue: 0, process: 0 }, tenant: { enqueue: 0, process: 0 } }
  for (let round = 1; round <= ROUNDS; round++) {
    const r = await raw(round)
    const s = await managed('bench.noop')
    const tn = await managed('bench.tenant_noop', t.id)
    for (const [key, f] of [
      ['raw', r],
      ['system', s],
      ['tenant', tn],
    ] as const) {
      best[key].enqueue = Math.max(best[key].enqueue, f.enqueue)
      best[key].process = Math.max(best[key].process, f.process)
    }
    line(`round ${round} enqueue/s raw | system | tenant`, `${r.enqueue} | ${s.enqueue} | ${tn.enqueue}`)
    line(`round ${round} processed/s raw | system | tenant`, `${r.process} | ${s.process} | ${tn.process}`)
  }
  line('raw BullMQ enqueue (addBulk) jobs/s', best.raw.enqueue)
  line('raw BullMQ processed jobs/s', best.raw.process)
  line('task manager system enqueue (submitMany, records in sys_jobs) jobs/s', best.system.enqueue)
  line('task manager system processed (records running → completed) jobs/s', best.system.process)
  line('task manager tenant enqueue (records in tenant_jobs) jobs/s', best.tenant.enqueue)
  line('task manager tenant processed (+ tenant slot, pool lease) jobs/s', best.tenant.process)
  line('ratio system enqueue vs raw', (best.system.enqueue / best.raw.enqueue).toFixed(2))
  line('ratio system processed vs raw', (best.system.process / best.raw.process).toFixed(2))
  line('ratio tenant enqueue vs raw', (best.tenant.enqueue / best.raw.enqueue).toFixed(2))
  line('ratio tenant processed vs raw', (best.tenant.process / best.raw.process).toFixed(2))
} finally {
  await tasks.close()
  await services.close()
  await env.cleanup()
}
