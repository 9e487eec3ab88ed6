/**
 * Jobs/s through the task manager (payload validation, a record per job written before enqueue,
 * running/completed record updates per job) against raw BullMQ (addBulk + a no-op worker) on the same
 * Redis in the same run. Goal: task manager ≥ 0.5× raw for both enqueue and process.
 *
 *   npx tsx bench/jobs.ts     (BENCH_JOBS, default 10000; BENCH_CONCURRENCY, default 50; BENCH_ROUNDS, default 6)
 *   BENCH_REDIS_CLUSTER=1 npx tsx bench/jobs.ts
 *       the same on the local Redis Cluster (.ci/redis-cluster, REDIS_CLUSTER: hash-tagged queue prefixes)
 *   BENCH_BASELINE_REF=<commit> npx tsx bench/jobs.ts
 *       also measures the task manager as of that commit (its src/core/jobs loaded from a temporary git
 *       worktree into this process, on the same services), so before and after share the run.
 *
 * Rounds alternate raw / system / tenant (/ baseline system / baseline tenant) so drift on a shared
 * machine hits all of them; each round's ratio is taken against that round's raw run, and the median
 * over rounds is reported (with the load average). Runs in an isolated world (its own host database,
 * tenant prefix and Redis prefix) and drops everything at the end.
 */
import { execFileSync } from 'node:child_process'
import { mkdtempSync, rmSync, symlinkSync } from 'node:fs'
import { loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { Queue, Worker } from 'bullmq'
import { pino } from 'pino'
import { Type } from 'typebox'
import { closeWorkerConnection, queuePrefix, workerConnection } from '../src/core/jobs/queues.js'
import { systemJob, tenantJob } from '../src/core/jobs/registry.js'
import { createTaskManager } from '../src/core/jobs/task-manager.js'
import { createServices } from '../src/services.js'
import setup from '../test/global-setup.js'
import { CLUSTER_VARS, dropClusterKeys, ensureRedisCluster } from '../test/helpers/redis-cluster.js'
import { createTestEnv } from '../test/helpers/test-env.js'

const JOBS = Number(process.env.BENCH_JOBS ?? 10_000)
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 50)
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 6)
const BASELINE_REF = process.env.BENCH_BASELINE_REF
const CLUSTER = process.env.BENCH_REDIS_CLUSTER === '1'
const root = fileURLToPath(new URL('..', import.meta.url))
const BATCH = 1000

const line = (label: string, value: string | number) => console.log(`${label}: ${value}`)
const rate = (n: number, ms: number) => Math.round((n / ms) * 1000)

await setup()
if (CLUSTER) {
  const why = await ensureRedisCluster()
  if (why) throw new Error(why)
}
const env = await createTestEnv({ JOB_TENANT_CONCURRENCY: String(CONCURRENCY), HOST_POOL_MAX: '10', ...(CLUSTER ? CLUSTER_VARS : {}) })
const logger = pino({ level: 'silent' })
const services = createServices(env.config, logger)

const registry = {
  'bench.noop': systemJob({ payload: Type.Object({ n: Type.Integer() }), process: async () => null }),
  'bench.tenant_noop': tenantJob({ payload: { n: Type.Integer() }, process: async () => null }),
}
const tasks = createTaskManager({ registry, deps: {}, ...services, config: env.config, logger })
let baselineTree: string | undefined
let baselineTasks: typeof tasks | undefined
if (BASELINE_REF) {
  baselineTree = mkdtempSync(join(tmpdir(), 'jobs-baseline-'))
  execFileSync('git', ['-C', root, 'worktree', 'add', '--detach', baselineTree, BASELINE_REF], { stdio: 'ignore' })
  symlinkSync(join(root, 'node_modules'), join(baselineTree, 'node_modules'))
  const old = (await import(pathToFileURL(join(baselineTree, 'src/core/jobs/task-manager.ts')).href)) as { createTaskManager: typeof createTaskManager }
  baselineTasks = old.createTaskManager({ registry, deps: {}, ...services, config: env.config, logger })
}
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
  const prefix = queuePrefix(env.config, `raw${round}`)
  const queue = new Queue(`raw${round}`, { connection: services.redis, prefix })
  let t = performance.now()
  for (let i = 0; i < JOBS; i += BATCH) {
    await queue.addBulk(
      Array.from({ length: Math.min(BATCH, JOBS - i) }, (_, k) => ({ name: 'noop', data: { n: i + k }, opts: retention })),
    )
  }
  const enqueueMs = performance.now() - t
  const connection = workerConnection(env.config)
  const worker = new Worker(`raw${round}`, async () => null, {
    connection,
    prefix,
    concurrency: CONCURRENCY,
    autorun: false,
  })
  const finished = drained([worker], JOBS)
  t = performance.now()
  void worker.run()
  await finished
  const processMs = performance.now() - t
  await worker.close()
  closeWorkerConnection(connection)
  await queue.obliterate({ force: true })
  await queue.close()
  return { enqueue: rate(JOBS, enqueueMs), process: rate(JOBS, processMs) }
}

async function managed(tasks: NonNullable<typeof baselineTasks>, name: 'bench.noop' | 'bench.tenant_noop', tenantId?: string): Promise<Figures> {
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
  // Done when the records are: a job returns before its "completed" write lands (a commit or so later).
  await (handle as Partial<typeof handle>).settled?.()
  const processMs = performance.now() - t
  await handle.close()
  // A fresh queue for the next round.
  await tasks.queues.byScope(tenantId ? 'tenant' : 'system').obliterate({ force: true })
  return { enqueue: rate(JOBS, enqueueMs), process: rate(JOBS, processMs) }
}

const median = (xs: number[]) => {
  const sorted = [...xs].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}
const load = () => loadavg().map((l) => l.toFixed(2)).join(' ')

try {
  const t = await services.provisioner.provision({ slug: 'bench-jobs', name: 'Bench' })
  line('redis', CLUSTER ? `cluster (${env.config.redisUrl} and its peers)` : env.config.redisUrl)
  line('jobs per round', JOBS)
  line('worker concurrency', CONCURRENCY)
  const subjects: [string, () => Promise<Figures>][] = [
    ['system', () => managed(tasks, 'bench.noop')],
    ['tenant', () => managed(tasks, 'bench.tenant_noop', t.id)],
  ]
  if (baselineTasks) {
    const old = baselineTasks
    subjects.push([`system @${BASELINE_REF}`, () => managed(old, 'bench.noop')])
    subjects.push([`tenant @${BASELINE_REF}`, () => managed(old, 'bench.tenant_noop', t.id)])
  }
  const ratios = new Map(subjects.map(([name]) => [name, { enqueue: [] as number[], process: [] as number[] }]))
  const raws: Figures[] = []
  for (let round = 1; round <= ROUNDS; round++) {
    const r = await raw(round)
    raws.push(r)
    const figures: string[] = []
    for (const [name, measure] of subjects) {
      const f = await measure()
      ratios.get(name)!.enqueue.push(f.enqueue / r.enqueue)
      ratios.get(name)!.process.push(f.process / r.process)
      figures.push(`${name} ${f.enqueue}/${f.process}`)
    }
    line(`round ${round} (load ${load()}) enqueue/processed per s`, `raw ${r.enqueue}/${r.process} | ${figures.join(' | ')}`)
  }
  line('raw BullMQ median enqueue (addBulk) | processed jobs/s', `${median(raws.map((r) => r.enqueue))} | ${median(raws.map((r) => r.process))}`)
  for (const [name] of subjects) {
    const r = ratios.get(name)!
    line(`median ratio to raw, ${name}: enqueue | processed`, `${median(r.enqueue).toFixed(2)} | ${median(r.process).toFixed(2)}`)
  }
} finally {
  await tasks.close()
  await baselineTasks?.close()
  await services.close()
  if (CLUSTER) await dropClusterKeys(env.name)
  await env.cleanup()
  if (baselineTree) {
    rmSync(join(baselineTree, 'node_modules'))
    execFileSync('git', ['-C', root, 'worktree', 'remove', '--force', baselineTree], { stdio: 'ignore' })
  }
}
