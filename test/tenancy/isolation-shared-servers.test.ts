/**
 * The isolation suite (isolation-suite.ts) with every tenant in a shared database, and those databases on
 * two servers: the second cluster (127.0.0.1:55433) is added as a shared server before any tenant exists,
 * so placement spreads the suite's tenants over both (each server's shared database under its own
 * row-level security), and every request must still see its own tenant only.
 */
import { inArray } from 'drizzle-orm'
import { afterAll, describe, expect, it } from 'vitest'
import { tenants } from '../../drizzle/host/schema.js'
import {
  dropOnSecondServer,
  ensureSecondServer,
  ensureSecondSharedRole,
  SECOND_APP_URL,
  secondSharedUrl,
} from '../helpers/second-server.js'
import { isolationSuite } from './isolation-suite.js'

const unavailable = await ensureSecondServer()
let world: string | undefined

if (unavailable) {
  console.warn(`isolation-shared-servers.test.ts skipped: ${unavailable}`)
  describe.skip('tenant isolation over two servers', () => it('needs the second cluster', () => {}))
} else {
  isolationSuite('shared', {
    async before(app, name) {
      world = name
      await ensureSecondSharedRole()
      await app.services.provisioner.servers.add({ name: 'second', adminUrl: SECOND_APP_URL, role: 'shared', sharedUrl: secondSharedUrl(name) })
      await app.services.provisioner.servers.refresh()
    },
    async check(app, ids) {
      const rows = await app.host.db
        .select({ id: tenants.id, server: tenants.server, isolation: tenants.isolation })
        .from(tenants)
        .where(inArray(tenants.id, Object.values(ids)))
      // Both servers hold some of the suite's tenants, all in shared isolation; the live ones A, B, C among them.
      expect(new Set(rows.map((r) => r.server))).toEqual(new Set(['default', 'second']))
      expect(rows.every((r) => r.isolation === 'shared')).toBe(true)
      const live = rows.filter((r) => [ids.A, ids.B, ids.C].includes(r.id))
      expect(new Set(live.map((r) => r.server)).size).toBe(2)
    },
  })
  afterAll(async () => {
    if (world) await dropOnSecondServer(world)
  })
}
