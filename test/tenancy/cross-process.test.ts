/**
 * Two "processes" (the app and a CLI-like createServices) over the same host DB and Redis: a
 * lifecycle change made by one reaches the other through catalog invalidation, which also closes the
 * other's pool for that tenant.
 */
import pino from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createServices, type Services } from '../../src/services.js'
import { createClient } from '../helpers/client.js'
import { useApp } from '../helpers/use-app.js'
import { waitFor } from '../helpers/wait-for.js'

let cli: Services

const ctx = useApp()
beforeAll(async () => {
  cli = createServices(ctx.env.config, pino({ level: 'silent' }))
  await cli.catalog.ready
})
afterAll(async () => {
  await cli?.close()
})

const until = (check: () => boolean | Promise<boolean>) => waitFor(check, { message: 'the change to reach this process' })

describe('catalog changes made by another process', () => {
  it('suspend elsewhere → this app refuses the tenant and closes its pool; resume → serves again', async () => {
    const c = createClient(ctx.app)
    const { tenant } = (await c.signup('cross@example.com')).json()
    expect((await c.get('/api/projects')).statusCode).toBe(200)
    const openBefore = ctx.app.tenancy.pools.stats().openPools
    expect(openBefore).toBeGreaterThan(0)

    await cli.provisioner.run('suspended', tenant.id)
    await until(() => ctx.app.tenancy.pools.stats().openPools === openBefore - 1)
    const refused = await c.get('/api/projects')
    expect(refused.statusCode).toBe(403)
    expect(refused.json().code).toBe('TENANT_SUSPENDED')

    await cli.provisioner.run('resumed', tenant.id)
    await until(async () => (await c.get('/api/projects')).statusCode === 200)
  })
})
