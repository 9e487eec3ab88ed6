/**
 * /api/settings (editors read, admins write: zone and currency checked against Intl's lists, flags
 * merged, audited) and /api/me/preferences (each member their own, merged), in a tenant with every role.
 */
import { beforeAll, describe, expect, it } from 'vitest'
import { createClient } from '../helpers/client.js'
import { type TenantFixture, tenantWith } from '../helpers/tenant-fixtures.js'
import { useApp } from '../helpers/use-app.js'

const ctx = useApp()
let t: TenantFixture
let other: TenantFixture

beforeAll(async () => {
  t = await tenantWith(ctx.app)
  other = await tenantWith(ctx.app)
})

const expectError = (res: { statusCode: number; json(): unknown }, status: number, code: string) => {
  expect(res.statusCode).toBe(status)
  expect(res.json()).toMatchObject({ statusCode: status, code, error: expect.any(String), message: expect.any(String) })
}

describe('/api/settings', () => {
  it('starts with the defaults; editors read, viewers may not', async () => {
    const res = await t.as(t.editor).get('/settings')
    expect(res.statusCode, res.body).toBe(200)
    expect(res.json()).toMatchObject({ timezone: 'UTC', currency: 'usd', featureFlags: {} })
    expectError(await t.as(t.viewer).get('/settings'), 403, 'INSUFFICIENT_ROLE')
    expectError(await createClient(ctx.app).get('/api/settings', { 'x-tenant-id': t.slug }), 401, 'UNAUTHENTICATED')
  })

  it('admins change zone, currency and flags (merged, null removes), audited; editors may not', async () => {
    const a = t.as(t.admin)
    const first = await a.patch('/settings', { timezone: 'Europe/Paris', currency: 'EUR', featureFlags: { beta: true, old: true } })
    expect(first.statusCode, first.body).toBe(200)
    expect(first.json()).toMatchObject({ timezone: 'Europe/Paris', currency: 'eur', featureFlags: { beta: true, old: true } })
    const second = await a.patch('/settings', { featureFlags: { old: null, next: false } })
    expect(second.json()).toMatchObject({ timezone: 'Europe/Paris', currency: 'eur', featureFlags: { beta: true, next: false } })
    expect(second.json().featureFlags).not.toHaveProperty('old')
    expect((await t.as(t.editor).get('/settings')).json()).toMatchObject({ featureFlags: { beta: true, next: false } })

    expectError(await t.as(t.editor).patch('/settings', { timezone: 'UTC' }), 403, 'INSUFFICIENT_ROLE')
    const audited = await ctx.app.host.sql<{ actor_user_id: string; ip: string | null }[]>`
      select actor_user_id, ip from sys_audit_logs where tenant_id = ${t.id} and action = 'settings.updated'`
    expect(audited).toHaveLength(2)
    expect(audited[0]).toMatchObject({ actor_user_id: t.admin.id, ip: expect.any(String) })
    // Another tenant's settings are its own.
    expect((await other.as(other.admin).get('/settings')).json()).toMatchObject({ timezone: 'UTC', featureFlags: {} })
  })

  it('refuses unknown zones and currencies, bad flag names and empty bodies with a 400', async () => {
    const a = t.as(t.admin)
    expectError(await a.patch('/settings', { timezone: 'Mars/Olympus' }), 400, 'INVALID_TIMEZONE')
    expectError(await a.patch('/settings', { currency: 'XYZ' }), 400, 'INVALID_CURRENCY')
    expectError(await a.patch('/settings', { currency: 'euro' }), 400, 'VALIDATION_ERROR')
    expectError(await a.patch('/settings', { featureFlags: { 'Bad Flag': true } }), 400, 'INVALID_KEY')
    expectError(await a.patch('/settings', { featureFlags: { beta: 'yes' } }), 400, 'VALIDATION_ERROR')
    expectError(await a.patch('/settings', {}), 400, 'VALIDATION_ERROR')
    expectError(await a.patch('/settings', { timezone: 'UTC', plan: 'pro' }), 400, 'VALIDATION_ERROR')
  })
})

describe('/api/me/preferences', () => {
  it('each member keeps their own, merged; null removes one', async () => {
    const v = t.as(t.viewer)
    expect((await v.get('/me/preferences')).json()).toEqual({ preferences: {} })
    const set = await v.patch('/me/preferences', { preferences: { theme: 'dark', 'page.size': 50, compact: true } })
    expect(set.statusCode, set.body).toBe(200)
    expect(set.json()).toEqual({ preferences: { theme: 'dark', 'page.size': 50, compact: true } })
    expect((await v.patch('/me/preferences', { preferences: { compact: null, theme: 'light' } })).json()).toEqual({
      preferences: { theme: 'light', 'page.size': 50 },
    })
    // Another member's are untouched, and so are the viewer's in another tenant.
    expect((await t.as(t.editor).get('/me/preferences')).json()).toEqual({ preferences: {} })
    expect((await other.as(other.viewer).get('/me/preferences')).json()).toEqual({ preferences: {} })
  })

  it('refuses bad keys, values and empty changes with a 400; a non-member gets 404', async () => {
    const v = t.as(t.viewer)
    expectError(await v.patch('/me/preferences', { preferences: {} }), 400, 'VALIDATION_ERROR')
    expectError(await v.patch('/me/preferences', { preferences: { '../x': 1 } }), 400, 'INVALID_KEY')
    expectError(await v.patch('/me/preferences', { preferences: { nested: { a: 1 } } }), 400, 'VALIDATION_ERROR')
    expectError(await v.patch('/me/preferences', { theme: 'dark' }), 400, 'VALIDATION_ERROR')
    // A member of another tenant naming this one: the guard answers before the route.
    expectError(await t.as(other.viewer).get('/me/preferences'), 404, 'TENANT_NOT_FOUND')
    expectError(await t.as(other.admin).patch('/settings', { timezone: 'UTC' }), 404, 'TENANT_NOT_FOUND')
  })
})
