/**
 * Hybrid isolation: a plan names where its tenants' data lives (`isolation` in config/plans.json:
 * "shared" or "database"). Read from the file, not the seeded plans table, so provisioning decides the
 * same way on a fresh database that was never seeded.
 */
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import type { TenantIsolation } from '../../../drizzle/host/schema.js'
import { PROJECT_ROOT } from '../db/migrations.js'

export const PLANS_FILE = join(PROJECT_ROOT, 'config/plans.json')

/** plan key → isolation; a plan naming none (or a missing file) maps to undefined, which provisioning takes as database. */
export function loadPlanIsolation(file: string = PLANS_FILE): (planTier: string) => TenantIsolation | undefined {
  const byPlan = new Map<string, TenantIsolation>()
  let text: string | undefined
  try {
    text = readFileSync(file, 'utf8')
  } catch {
    text = undefined
  }
  if (text) {
    const parsed = JSON.parse(text) as { plans?: { key?: unknown; isolation?: unknown }[] }
    for (const plan of parsed.plans ?? []) {
      if (typeof plan.key !== 'string' || plan.isolation === undefined) continue
      if (plan.isolation !== 'shared' && plan.isolation !== 'database') throw new Error(`${file}: plan "${plan.key}" has isolation ${JSON.stringify(plan.isolation)}; use "shared" or "database"`)
      byPlan.set(plan.key, plan.isolation)
    }
  }
  return (planTier) => byPlan.get(planTier)
}
