/**
 * Sustained-load benchmark of the postgres.js queue fix (patches/postgres+3.4.9.patch, applied by
 * patch-package at `npm ci`). postgres.js 3.4.9's queue never compacts unless shift() empties it, and
 * remove() runs indexOf from slot 0; with more concurrent queries than pool connections the pool keeps
 * handing queries to busy connections, calls remove() each time, and every call scans every slot
 * consumed so far, so throughput falls the longer one process stays under load.
 *
 * Method: an unpatched copy of the installed package is made in a temp folder by reverse-applying the
 * patch's hunks. For each variant, ONE child process runs a Fastify `GET /select1` route on a pool of 10
 * (bench/lib/soak-server.ts), and this process drives it with autocannon (100 connections > 10 pool
 * connections) for SOAK_MINUTES, recording req/s per window of SOAK_WINDOW_S seconds.
 *
 *   npx tsx bench/pg-queue-soak.ts                       # 2 × 5 minutes
 *   SOAK_MINUTES=1 SOAK_WINDOW_S=10 npx tsx bench/pg-queue-soak.ts
 *
 * Env: SOAK_MINUTES (5), SOAK_WINDOW_S (60), SOAK_CONNECTIONS (100), SOAK_DATABASE_URL
 * (default postgres://postgres@127.0.0.1:5432/postgres; `select 1` only, any database will do).
 */
import { fork } from 'node:child_process'
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..')
const minutes = Number(process.env.SOAK_MINUTES ?? 5)
const windowS = Number(process.env.SOAK_WINDOW_S ?? 60)
const connections = Number(process.env.SOAK_CONNECTIONS ?? 100)
const dbUrl = process.env.SOAK_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres'
const windows = Math.max(1, Math.round((minutes * 60) / windowS))
const unit = windowS === 60 ? 'minute' : `${windowS}s window`

// autocannon ships no types: the slice used here.
interface AutocannonResult {
  requests: { average: number; total: number }
  latency: { p99: number }
  errors: number
  timeouts: number
  non2xx: number
}
const autocannon = createRequire(import.meta.url)('autocannon') as (opts: {
  url: string
  connections: number
  duration: number
}) => Promise<AutocannonResult>

/** Undo the patch's hunks in a copy of the package: the "after" text of each hunk becomes the "before". */
async function unpatchedCopy(): Promise<{ dir: string; pkg: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'tk-soak-'))
  const pkg = join(dir, 'postgres')
  await cp(join(root, 'node_modules/postgres'), pkg, { recursive: true })
  const patch = await readFile(join(root, 'patches/postgres+3.4.9.patch'), 'utf8')
  for (const fileDiff of patch.split(/^diff --git /m).slice(1)) {
    const target = /^\+\+\+ b\/node_modules\/postgres\/(.+)$/m.exec(fileDiff)?.[1]
    if (!target) throw new Error('unexpected patch format: no +++ b/node_modules/postgres/… line')
    const file = join(pkg, target)
    let text = await readFile(file, 'utf8')
    for (const hunk of fileDiff.split(/^@@[^\n]*@@[^\n]*$/m).slice(1)) {
      const lines = hunk.replace(/^\n/, '').replace(/\n+$/, '').split('\n')
      const side = (keep: string) =>
        lines
          .filter((l) => l[0] === ' ' || l[0] === keep || l === '')
          .map((l) => l.slice(1))
          .join('\n')
      const after = side('+')
      if (!text.includes(after)) throw new Error(`${target}: the installed file does not contain the patched text (is the patch applied?)`)
      text = text.replace(after, side('-'))
    }
    await writeFile(file, text)
  }
  return { dir, pkg }
}

interface Variant {
  name: string
  pkg: string
  expectPatched: boolean
}

async function soak(variant: Variant): Promise<number[]> {
  const child = fork(join(root, 'bench/lib/soak-server.ts'), [variant.pkg, dbUrl], {
    cwd: root,
    execArgv: ['--import', 'tsx'],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  })
  const ready = await new Promise<{ port: number; patched: boolean }>((resolveReady, reject) => {
    child.once('message', (m) => resolveReady(m as { port: number; patched: boolean }))
    child.once('exit', (code) => reject(new Error(`${variant.name} server exited early (code ${code})`)))
  })
  try {
    if (ready.patched !== variant.expectPatched) {
      throw new Error(`${variant.name}: its queue.js is ${ready.patched ? 'patched' : 'unpatched'}, expected the opposite`)
    }
    const rates: number[] = []
    for (let w = 1; w <= windows; w++) {
      const r = await autocannon({ url: `http://127.0.0.1:${ready.port}/select1`, connections, duration: windowS })
      const rate = r.requests.total / windowS
      rates.push(rate)
      const faults = r.errors + r.timeouts + r.non2xx
      console.log(
        `${variant.name} ${unit} ${w}: ${Math.round(rate)} req/s (p99 ${r.latency.p99} ms${faults ? `, ${faults} errors/non-2xx` : ''})`,
      )
    }
    return rates
  } finally {
    const exited = new Promise((r) => child.once('exit', r))
    child.send('stop')
    await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))])
    if (child.exitCode === null) child.kill('SIGKILL')
  }
}

const copy = await unpatchedCopy()
try {
  console.log(`postgres.js queue soak: ${windows} × ${windowS}s per variant, ${connections} connections, pool 10, one server process each`)
  const unpatched = await soak({ name: 'unpatched', pkg: copy.pkg, expectPatched: false })
  const patched = await soak({ name: 'patched', pkg: join(root, 'node_modules/postgres'), expectPatched: true })
  const last = windows - 1
  const ratio = (a: number, b: number) => (a / b).toFixed(2)
  console.log(`unpatched ${unit} ${windows} / ${unit} 1: ${ratio(unpatched[last]!, unpatched[0]!)}`)
  console.log(`patched ${unit} ${windows} / ${unit} 1: ${ratio(patched[last]!, patched[0]!)}`)
  console.log(`patched / unpatched at ${unit} 1: ${ratio(patched[0]!, unpatched[0]!)}`)
  console.log(`patched / unpatched at ${unit} ${windows}: ${ratio(patched[last]!, unpatched[last]!)}`)
} finally {
  await rm(copy.dir, { recursive: true, force: true })
}
