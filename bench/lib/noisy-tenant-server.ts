/**
 * Child process of bench/noisy-tenant.ts: the full app with two tenants. A is on a plan of
 * NOISY_RPM requests per minute; B is comped a plan with room to spare (its requests are counted in
 * Redis too, but never refused). Prints one JSON line (port, each tenant's cookie and project), then
 * serves until killed.
 */
import Fastify from 'fastify'
import fp from 'fastify-plugin'
import app, { serverOptions } from '../../src/app.js'
import { loadConfig } from '../../src/core/config.js'
import { compPlan } from '../../src/features/billing/index.js'
import { type PlanSeed, seedPlans } from '../../src/features/billing/plans.js'

const config = loadConfig(process.env)
const full = Fastify({ ...serverOptions(config), logger: false })
await full.register(fp(app), { config })
await full.ready()

const plan = (key: string, requestsPerMinute: number): PlanSeed => ({
  key,
  name: key,
  amountMonthly: 0,
  amountYearly: 0,
  currency: 'usd',
  trialDays: 0,
  features: ['projects', 'members', 'api_access'],
  limits: { requestsPerMinute },
  tierLevel: 0,
  sortOrder: 0,
})
await seedPlans(full.host.db, [plan('free', Number(process.env.NOISY_RPM ?? 600)), plan('roomy', 1_000_000_000)])

async function tenant(email: string) {
  const signup = await full.inject({ method: 'POST', url: '/auth/signup', payload: { email, password: 'correct horse battery staple' } })
  const cookie = `sid=${signup.cookies.find((c) => c.name === 'sid')!.value}`
  const csrf = (await full.inject({ url: '/auth/csrf', headers: { cookie } })).json().token
  const project = await full.inject({ method: 'POST', url: '/api/projects', headers: { cookie, 'x-csrf-token': csrf }, payload: { name: 'bench' } })
  return { id: signup.json().tenant.id as string, cookie, projectId: project.json().id as string }
}
const a = await tenant('noisy@example.com')
const b = await tenant('quiet@example.com')
const quiet = (await full.users.findByEmail('quiet@example.com'))!
await compPlan(full.host.db, { tenantId: b.id, planKey: 'roomy', expiresAt: null, actorUserId: quiet.id })
await full.entitlements.invalidate(b.id)

await full.listen({ port: 0, host: '127.0.0.1' })
process.stdout.write(`${JSON.stringify({ port: (full.server.address() as { port: number }).port, a, b })}\n`)

process.on('SIGTERM', async () => {
  await full.close()
  process.exit(0)
})
