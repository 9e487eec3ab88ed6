/**
 * In development (NODE_ENV=development with AUTO_MIGRATE on, what `npm run dev` runs), the plans file is
 * seeded at boot right after the host migrations, so `GET /billing/plans` is not empty on a fresh clone
 * and edits to config/plans.json apply at the next restart. Elsewhere plans are seeded by `npm run
 * db:seed` (a deploy step), never behind an operator's back.
 */
import type { Config } from '../../core/config.js'
import type { HostDb } from '../../core/db/host.js'
import { seedPlansFromFile } from './plans.js'
import { DEFAULT_PLANS_FILE } from './seed-command.js'

export const seedsPlansAtBoot = (config: Pick<Config, 'env' | 'autoMigrate'>) => config.env === 'development' && config.autoMigrate

export async function seedPlansAtBoot(
  config: Pick<Config, 'env' | 'autoMigrate'>,
  db: HostDb,
  log: { info(obj: object, msg: string): void },
  file = DEFAULT_PLANS_FILE,
): Promise<void> {
  if (!seedsPlansAtBoot(config)) return
  const r = await seedPlansFromFile(db, file, process.env)
  log.info({ plans: r.upserted, deactivated: r.deactivated, unpurchasable: r.missingPrices.map((m) => `${m.key}/${m.interval}`) }, `seeded ${r.upserted.length} plan(s) from ${file} (development)`)
}
