/**
 * A test world with a shared database (SHARED) and services over it: an owner user and the tenants asked for,
 * provisioned in order with their isolation, their catalog records, the shared database as a superuser (row-level
 * security does not apply: the ground truth) and `as(t, fn)` to run on a tenant's handle. For tests of the
 * shared layout (shared isolation, data helpers, PgBouncer, lean reads) that need services but no app.
 */
import { pino } from 'pino'
import { users } from '../../drizzle/host/schema.js'
import { connect, type Sql, withDatabase } from '../../src/core/db/connect.js'
import type { TenantDb, TenantRecord } from '../../src/core/tenancy/types.js'
import { createServices, type Services } from '../../src/services.js'
import { ADMIN_URL, SHARED } from './env.js'
import { createTestEnv, type TestEnv } from './test-env.js'

export interface SharedWorld {
  env: TestEnv
  services: Services
  /** The owner of every tenant provisioned here. */
  owner: string
  /** By slug, in the order asked. */
  tenants: Record<string, TenantRecord>
  /** The shared database as a superuser: what is really there. */
  truth: Sql
  /** The tenant's catalog record, read again (after a change to its row). */
  record(slug: string): Promise<TenantRecord>
  as<T>(t: TenantRecord, fn: (db: TenantDb) => Promise<T>): Promise<T>
  close(): Promise<void>
}

export async function sharedWorld(tenants: Record<string, 'shared' | 'database'>, vars: Record<string, string> = {}): Promise<SharedWorld> {
  const env = await createTestEnv({ ...SHARED, ...vars })
  const services = createServices(env.config, pino({ level: 'silent' }))
  const [u] = await services.host.db.insert(users).values({ email: `owner-${env.name}@example.com`, name: 'Owner' }).returning()
  const record = async (slug: string) => {
    const r = await services.catalog.get(slug)
    if (!r) throw new Error(`no tenant ${slug}`)
    return r
  }
  const records: Record<string, TenantRecord> = {}
  for (const [slug, isolation] of Object.entries(tenants)) {
    await services.provisioner.provision({ slug, name: slug, ownerUserId: u!.id, isolation })
    records[slug] = await record(slug)
  }
  const truth = connect(withDatabase(ADMIN_URL, `${env.name}_shared`), { max: 1 })
  return {
    env,
    services,
    owner: u!.id,
    tenants: records,
    truth,
    record,
    as: (t, fn) => services.pools.withTenant(t, fn),
    async close() {
      await truth.end()
      await services.close()
      await env.cleanup()
    },
  }
}
