/**
 * `npm run db:seed [-- --file PATH]`: load the pricing plans file (default config/plans.json) into
 * core_pricing_plans. Prints one summary line, plus a line per plan interval left unpurchasable
 * because its "${ENV_VAR}" price placeholder is unset. Re-running is safe (upsert by key).
 */
import { parseArgs } from 'node:util'
import { createHostDatabase } from '../../core/db/host.js'
import { seedPlansFromFile } from './plans.js'

export const DEFAULT_PLANS_FILE = 'config/plans.json'

export interface SeedCommandOptions {
  databaseUrl: string | undefined
  /** Where "${ENV_VAR}" price placeholders are read (process.env in the CLI). */
  env: NodeJS.ProcessEnv
  out: (line: string) => void
}

/** Resolves to the exit code; a bad or unreadable file throws PlansFileError (the CLI prints it, exit 1). */
export async function seedCommand(argv: string[], opts: SeedCommandOptions): Promise<number> {
  // strict parseArgs: an unknown flag or a positional throws ERR_PARSE_ARGS_*, which the CLI reports as usage (exit 2).
  const { values } = parseArgs({ args: argv, options: { file: { type: 'string' } }, strict: true })
  if (!opts.databaseUrl) throw new Error('DATABASE_URL is not set')
  const file = values.file ?? DEFAULT_PLANS_FILE
  const host = createHostDatabase(opts.databaseUrl, 1)
  try {
    const r = await seedPlansFromFile(host.db, file, opts.env)
    const deactivated = r.deactivated.length ? `; deactivated ${r.deactivated.join(', ')}` : ''
    opts.out(`seeded ${r.upserted.length} plan(s) from ${file}: ${r.upserted.join(', ')}${deactivated}`)
    for (const m of r.missingPrices) opts.out(`  ${m.key} per ${m.interval}: not purchasable (${m.placeholder} is unset)`)
    return 0
  } finally {
    await host.close()
  }
}
