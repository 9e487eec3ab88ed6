/**
 * `npm run db:seed`: the plans file into core_pricing_plans, as an operator runs it (a child process
 * through the package script's command) and in-process through runCli for the error paths.
 */
import { execFile } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { pino } from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { runCli } from '../../src/cli.js'
import { createHostDatabase, type HostDatabase } from '../../src/core/db/host.js'
import { createTestEnv, type TestEnv } from '../helpers/test-env.js'

const root = fileURLToPath(new URL('../..', import.meta.url))
let env: TestEnv
let host: HostDatabase
let dir: string

beforeAll(async () => {
  env = await createTestEnv()
  host = createHostDatabase(env.hostUrl, 2)
  dir = await mkdtemp(join(tmpdir(), 'tk-seed-'))
})
afterAll(async () => {
  await host?.close()
  await env?.cleanup()
  if (dir) await rm(dir, { recursive: true, force: true })
})

const PRICES = {
  STRIPE_MONTHLY_PRICE_ID: 'price_seed_pro_m',
  STRIPE_YEARLY_PRICE_ID: 'price_seed_pro_y',
  STRIPE_ENTERPRISE_MONTHLY_PRICE_ID: 'price_seed_ent_m',
  STRIPE_ENTERPRISE_YEARLY_PRICE_ID: '',
}

function cli(args: string[], extraEnv: Record<string, string>): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--import', 'tsx', 'src/cli.ts', ...args],
      { cwd: root, env: { ...process.env, ...env.vars, ...extraEnv }, timeout: 60_000 },
      (err, stdout, stderr) => resolve({ code: err ? Number(err.code ?? 1) : 0, stdout, stderr }),
    )
  })
}

async function inProcess(args: string[], vars: NodeJS.ProcessEnv = {}) {
  let stdout = ''
  let stderr = ''
  const io = { out: (l: string) => (stdout += `${l}\n`), err: (l: string) => (stderr += `${l}\n`) }
  const code = await runCli(args, { config: env.config, logger: pino({ level: 'silent' }), io, env: vars })
  return { code, stdout, stderr }
}

const plans = () =>
  host.sql<
    { key: string; is_active: boolean; stripe_price_monthly: string | null; stripe_price_yearly: string | null; features: string[] }[]
  >`
    select key, is_active, stripe_price_monthly, stripe_price_yearly, features from core_pricing_plans order by sort_order, key`

describe('db:seed', () => {
  it('loads config/plans.json with price ids from the environment and prints a summary', async () => {
    const res = await cli(['db:seed'], PRICES)
    expect(res.stderr).toBe('')
    expect(res.code).toBe(0)
    expect(res.stdout).toBe(
      'seeded 3 plan(s) from config/plans.json: free, pro, enterprise\n' +
        `  enterprise per year: not purchasable (\${STRIPE_ENTERPRISE_YEARLY_PRICE_ID} is unset)\n`,
    )
    const rows = await plans()
    expect(rows.map((r) => [r.key, r.is_active, r.stripe_price_monthly, r.stripe_price_yearly])).toEqual([
      ['free', true, null, null],
      ['pro', true, 'price_seed_pro_m', 'price_seed_pro_y'],
      ['enterprise', true, 'price_seed_ent_m', null],
    ])
    // The example gated route (GET /api/projects/export) needs `exports`: every paid plan has it, free doesn't.
    expect(rows.filter((r) => r.features.includes('exports')).map((r) => r.key)).toEqual(['pro', 'enterprise'])
  }, 60_000)

  it('is re-runnable, and a plan dropped from the file is deactivated, not deleted', async () => {
    const file = join(dir, 'plans.json')
    await writeFile(
      file,
      JSON.stringify({
        plans: [
          {
            key: 'pro',
            name: 'Pro',
            amountMonthly: 2900,
            amountYearly: null,
            currency: 'usd',
            trialDays: 7,
            features: ['exports'],
            tierLevel: 1,
            sortOrder: 1,
            stripePriceMonthly: `\${STRIPE_MONTHLY_PRICE_ID}`,
          },
        ],
      }),
    )
    const res = await inProcess(['db:seed', '--file', file], { STRIPE_MONTHLY_PRICE_ID: 'price_seed_pro_m2' })
    expect(res).toEqual({ code: 0, stdout: `seeded 1 plan(s) from ${file}: pro; deactivated free, enterprise\n`, stderr: '' })
    expect((await plans()).map((r) => [r.key, r.is_active, r.stripe_price_monthly])).toEqual([
      ['free', false, null],
      ['pro', true, 'price_seed_pro_m2'],
      ['enterprise', false, 'price_seed_ent_m'],
    ])
    // And back: the default file re-activates them.
    expect((await inProcess(['db:seed'], PRICES)).code).toBe(0)
    expect((await plans()).every((r) => r.is_active)).toBe(true)
  })

  it('a bad file is one error line and exit 1, nothing changed; bad usage is exit 2', async () => {
    const before = await plans()
    const bad = join(dir, 'bad.json')
    await writeFile(bad, JSON.stringify({ plans: [{ key: 'Pro!', name: '' }] }))
    const invalid = await inProcess(['db:seed', '--file', bad])
    expect(invalid.code).toBe(1)
    expect(invalid.stdout).toBe('')
    expect(invalid.stderr).toMatch(/^error: invalid plans file: .+\n$/)

    const missing = await inProcess(['db:seed', '--file', join(dir, 'nope.json')])
    expect(missing.code).toBe(1)
    expect(missing.stderr).toMatch(/^error: cannot read plans file .*nope\.json/)
    expect(await plans()).toEqual(before)

    const usage = await inProcess(['db:seed', '--force'])
    expect(usage.code).toBe(2)
    expect(usage.stderr).toMatch(/^error: .*--force[\s\S]*usage:[\s\S]*db:seed \[--file PATH\]/)
  })
})
