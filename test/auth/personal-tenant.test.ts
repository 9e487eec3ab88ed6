/**
 * No account without a tenant: personal tenant slugs that collide are retried with a longer suffix;
 * a signup whose tenant can't be registered keeps nothing (so it can be retried); a user who ended up
 * without any membership gets a personal tenant at the next login, password or Google.
 * Collisions are real unique violations on core_tenants (every 16-bit suffix of a name taken), and a
 * tenant insert that always fails is a trigger on the test's own host database.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { SLUG_SUFFIX_BYTES } from '../../src/features/auth/personal-tenant.js'
import { hashPassword } from '../../src/core/identity/password.js'
import { validateSlug } from '../../src/core/tenancy/provisioning.js'
import { personalTenantSlug } from '../../src/core/tenancy/slugs.js'
import { type Client, createClient, PASSWORD } from '../helpers/client.js'
import { type MockOidc, startMockOidc } from '../helpers/oidc.js'
import { useApp } from '../helpers/use-app.js'

const BASE = 'http://localhost:3000'
let mock: MockOidc

beforeAll(async () => {
  mock = await startMockOidc()
})
afterAll(async () => {
  await mock?.close()
})
const ctx = useApp(() => ({
  GOOGLE_CLIENT_ID: 'tk-test',
  GOOGLE_CLIENT_SECRET: 'test-secret',
  OAUTH_ISSUER_URL: mock.issuerUrl,
  APP_BASE_URL: BASE,
}))
beforeAll(async () => {
  const app = ctx.app
  // Tenant inserts whose slug starts with "doomed" always fail as a taken slug would.
  await app.host.sql.unsafe(`
    create function test_doomed_slug() returns trigger language plpgsql as $$
    begin
      if new.slug like 'doomed%' then raise exception 'slug % taken (test trigger)', new.slug using errcode = 'unique_violation'; end if;
      return new;
    end $$;
    create trigger test_doomed_slug before insert on core_tenants for each row execute function test_doomed_slug();`)
})

const userRow = async (email: string) =>
  (await ctx.app.host.sql<{ id: string }[]>`select id from core_users where lower(email) = lower(${email})`)[0]
const membershipCount = async (userId: string) =>
  (await ctx.app.host.sql<{ n: number }[]>`select count(*)::int as n from core_memberships where user_id = ${userId}`)[0]!.n

async function googleLogin(c: Client, sub: string, email: string) {
  mock.setClaims({ sub, email, email_verified: true })
  const start = await c.get('/auth/google/login')
  const back = await mock.authorize(start.headers.location as string)
  return c.get(`${back.pathname}${back.search}`)
}

describe('personal tenant slugs', () => {
  it('are valid slugs at every suffix length, even for the longest local part', () => {
    for (const bytes of SLUG_SUFFIX_BYTES) {
      const slug = personalTenantSlug(`${'x'.repeat(64)}@example.com`, bytes)
      expect(validateSlug(slug)).toBe(slug)
      expect(slug).toMatch(new RegExp(`^x{40}-[0-9a-f]{${bytes * 2}}$`))
    }
    expect(personalTenantSlug('a@example.com', 2, () => Buffer.from([0xab, 0xcd]))).toBe('team-abcd')
    // A punycode-looking local part still gives a valid slug ("--" collapses; xn-- slugs are refused).
    const puny = personalTenantSlug('xn--pple-43d@example.com')
    expect(validateSlug(puny)).toBe(puny)
  })

  it('retries a taken slug with a longer suffix: signup gets a tenant when every 16-bit suffix is taken', async () => {
    // Take clash-0000 … clash-ffff: the first attempt for clash@… collides whatever it draws.
    await ctx.app.host.sql`
      insert into core_tenants (id, slug, name, status, db_name, db_url_encrypted)
      select gen_random_uuid(), 'clash-' || lpad(to_hex(i), 4, '0'), 'taken', 'deleted', 'clash_taken_' || i, 'x' from generate_series(0, 65535) i`
    const res = await createClient(ctx.app).signup('clash@example.com')
    expect(res.statusCode, res.body).toBe(201)
    expect(res.json().tenant.slug).toMatch(/^clash-[0-9a-f]{8}$/)
    expect(await membershipCount(res.json().user.id)).toBe(1)
  })
})

describe('an account is never left without a tenant', () => {
  it('a signup whose tenant cannot be registered keeps nothing, answers 503, and can be retried', async () => {
    const c = createClient(ctx.app)
    const res = await c.signup('doomed@example.com')
    expect(res.statusCode, res.body).toBe(503)
    expect(res.json().code).toBe('TENANT_SETUP_FAILED')
    expect(c.cookies.sid).toBeUndefined()
    expect(await userRow('doomed@example.com')).toBeUndefined()

    // Same address again: not EMAIL_TAKEN. (Another local part, so the trigger lets its tenant through.)
    await ctx.app.host.sql`drop trigger test_doomed_slug on core_tenants`
    try {
      const retry = await createClient(ctx.app).signup('doomed@example.com')
      expect(retry.statusCode, retry.body).toBe(201)
      expect(retry.json().tenant.slug).toMatch(/^doomed-[0-9a-f]{4}$/)
    } finally {
      await ctx.app.host.sql`create trigger test_doomed_slug before insert on core_tenants for each row execute function test_doomed_slug()`
    }
  })

  it('a password user with no membership gets a personal tenant at login, and is signed into it', async () => {
    const user = await ctx.app.users.create({ email: 'orphan@example.com', passwordHash: await hashPassword(PASSWORD) })
    const c = createClient(ctx.app)
    const login = await c.login('orphan@example.com')
    expect(login.statusCode, login.body).toBe(200)
    expect(login.json().memberships).toEqual([
      expect.objectContaining({
        role: 'owner',
        status: 'active',
        tenantStatus: 'active',
        slug: expect.stringMatching(/^orphan-[0-9a-f]{4}$/),
      }),
    ])
    const me = (await c.get('/me')).json()
    expect(me.activeTenant.tenantId).toBe(login.json().memberships[0].tenantId)
    expect((await c.post('/api/projects', { name: 'first' })).statusCode).toBe(201)
    // Only when there is none: the next login adds nothing.
    expect((await createClient(ctx.app).login('orphan@example.com')).json().memberships).toHaveLength(1)
    expect(await membershipCount(user.id)).toBe(1)
  })

  it('logs in without a tenant when provisioning fails at login, and provisions at a later login', async () => {
    await ctx.app.users.create({ email: 'doomed-later@example.com', passwordHash: await hashPassword(PASSWORD) })
    const first = await createClient(ctx.app).login('doomed-later@example.com')
    expect(first.statusCode, first.body).toBe(200)
    expect(first.json().memberships).toEqual([])
    await ctx.app.host.sql`drop trigger test_doomed_slug on core_tenants`
    try {
      const second = await createClient(ctx.app).login('doomed-later@example.com')
      expect(second.json().memberships).toHaveLength(1)
    } finally {
      await ctx.app.host.sql`create trigger test_doomed_slug before insert on core_tenants for each row execute function test_doomed_slug()`
    }
  })

  it('a first Google sign-in whose tenant failed is completed by the next sign-in', async () => {
    const sub = `google-doomed-${Date.now()}`
    const c = createClient(ctx.app)
    const first = await googleLogin(c, sub, 'doomed.google@example.com')
    expect(first.statusCode).toBe(302)
    expect(first.headers.location).toBe(`${BASE}/`)
    const me = (await c.get('/me')).json()
    expect(me.memberships).toEqual([])
    expect(me.activeTenant).toBeNull()

    await ctx.app.host.sql`drop trigger test_doomed_slug on core_tenants`
    try {
      const again = createClient(ctx.app)
      expect((await googleLogin(again, sub, 'doomed.google@example.com')).statusCode).toBe(302)
      const me2 = (await again.get('/me')).json()
      expect(me2.user.id).toBe(me.user.id)
      expect(me2.memberships).toEqual([
        expect.objectContaining({ role: 'owner', slug: expect.stringMatching(/^doomed-google-[0-9a-f]{4}$/) }),
      ])
      expect(me2.activeTenant.tenantId).toBe(me2.memberships[0].tenantId)
    } finally {
      await ctx.app.host.sql`create trigger test_doomed_slug before insert on core_tenants for each row execute function test_doomed_slug()`
    }
  })
})
