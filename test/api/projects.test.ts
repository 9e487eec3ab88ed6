/**
 * /api/projects, the example resource: CRUD with its response shapes, the status filter, and cursor
 * pagination that visits every row exactly once in a stable newest-first order, even while rows are
 * added or removed between pages.
 */
import { describe, expect, it } from 'vitest'
import { type Client, createClient } from '../helpers/client.js'
import { useApp } from '../helpers/use-app.js'

const ctx = useApp()

/** A fresh user whose session points at their own fresh personal tenant (an empty projects table). */
async function owner(): Promise<{ c: Client; userId: string }> {
  const c = createClient(ctx.app)
  const res = await c.signup(`p-${Math.random().toString(36).slice(2, 10)}@example.com`)
  expect(res.statusCode).toBe(201)
  return { c, userId: res.json().user.id }
}

interface Page {
  items: { id: string; name: string }[]
  nextCursor: string | null
}

async function pageAll(c: Client, limit: number, extra = ''): Promise<{ ids: string[]; names: string[]; pages: number[] }> {
  const ids: string[] = []
  const names: string[] = []
  const pages: number[] = []
  let cursor: string | null = null
  do {
    const res = await c.get(`/api/projects?limit=${limit}${cursor ? `&cursor=${cursor}` : ''}${extra}`)
    expect(res.statusCode, res.body).toBe(200)
    const page: Page = res.json()
    pages.push(page.items.length)
    for (const p of page.items) {
      ids.push(p.id)
      names.push(p.name)
    }
    cursor = page.nextCursor
    expect(pages.length).toBeLessThan(50)
  } while (cursor)
  return { ids, names, pages }
}

describe('CRUD', () => {
  it('creates, reads, lists, updates and deletes', async () => {
    const { c, userId } = await owner()
    const created = await c.post('/api/projects', { name: 'Apollo', description: 'to the moon' })
    expect(created.statusCode).toBe(201)
    const p = created.json()
    expect(p).toEqual({
      id: expect.stringMatching(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/),
      name: 'Apollo',
      description: 'to the moon',
      status: 'active',
      createdBy: userId,
      createdAt: expect.any(String),
      updatedAt: expect.any(String),
    })
    expect(new Date(p.createdAt).toISOString()).toBe(p.createdAt)

    expect((await c.get(`/api/projects/${p.id}`)).json()).toEqual(p)
    expect((await c.get('/api/projects')).json()).toEqual({ items: [p], nextCursor: null })

    const minimal = (await c.post('/api/projects', { name: 'Gemini' })).json()
    expect(minimal).toMatchObject({ name: 'Gemini', description: null, status: 'active' })
    // An explicit null stays null (not coerced to "").
    const nulled = (await c.post('/api/projects', { name: 'Vostok', description: null })).json()
    expect(nulled.description).toBeNull()
    expect((await c.delete(`/api/projects/${nulled.id}`)).statusCode).toBe(204)

    const renamed = await c.patch(`/api/projects/${p.id}`, { name: 'Apollo 11', description: null })
    expect(renamed.statusCode).toBe(200)
    expect(renamed.json()).toMatchObject({ id: p.id, name: 'Apollo 11', description: null, status: 'active', createdAt: p.createdAt })
    expect(new Date(renamed.json().updatedAt).getTime()).toBeGreaterThanOrEqual(new Date(p.updatedAt).getTime())
    const archived = (await c.patch(`/api/projects/${p.id}`, { status: 'archived' })).json()
    expect(archived).toMatchObject({ name: 'Apollo 11', status: 'archived' })

    // The status filter.
    expect((await c.get('/api/projects?status=archived')).json().items.map((x: { id: string }) => x.id)).toEqual([p.id])
    expect((await c.get('/api/projects?status=active')).json().items.map((x: { id: string }) => x.id)).toEqual([minimal.id])

    const deleted = await c.delete(`/api/projects/${p.id}`)
    expect(deleted.statusCode).toBe(204)
    expect(deleted.body).toBe('')
    for (const res of [
      await c.get(`/api/projects/${p.id}`),
      await c.patch(`/api/projects/${p.id}`, { name: 'x' }),
      await c.delete(`/api/projects/${p.id}`),
    ]) {
      expect(res.statusCode).toBe(404)
      expect(res.json()).toMatchObject({ code: 'PROJECT_NOT_FOUND' })
    }
    expect((await c.get('/api/projects')).json().items.map((x: { id: string }) => x.id)).toEqual([minimal.id])
  })

  it('PATCH with an empty body, no body, or only unknown fields → 400 and nothing changes', async () => {
    const { c } = await owner()
    const p = (await c.post('/api/projects', { name: 'Mercury' })).json()
    for (const res of [await c.patch(`/api/projects/${p.id}`, {}), await c.patch(`/api/projects/${p.id}`, { colour: 'red' })]) {
      expect(res.statusCode, res.body).toBe(400)
      expect(res.json()).toMatchObject({ statusCode: 400, code: 'VALIDATION_ERROR' })
    }
    const none = await c.request({ method: 'PATCH', url: `/api/projects/${p.id}` })
    expect(none.statusCode).toBe(400)
    expect(none.json().code).toMatch(/^(VALIDATION_ERROR|INVALID_BODY)$/)
    expect((await c.get(`/api/projects/${p.id}`)).json()).toEqual(p)
  })
})

describe('cursor pagination', () => {
  it('pages through 25 projects 10 at a time: no duplicates, none missing, newest first, stable', async () => {
    const { c } = await owner()
    const created: string[] = []
    for (let i = 0; i < 25; i++) created.push((await c.post('/api/projects', { name: `p${String(i).padStart(2, '0')}` })).json().id)

    const first = await pageAll(c, 10)
    expect(first.pages).toEqual([10, 10, 5])
    expect(new Set(first.ids).size).toBe(25)
    expect(first.ids).toEqual([...created].reverse())
    expect(first.names[0]).toBe('p24')
    expect(first.names.at(-1)).toBe('p00')
    // The same walk again gives the same sequence; so do other page sizes.
    expect((await pageAll(c, 10)).ids).toEqual(first.ids)
    expect((await pageAll(c, 7)).pages).toEqual([7, 7, 7, 4])
    expect((await pageAll(c, 7)).ids).toEqual(first.ids)
    expect((await pageAll(c, 25)).pages).toEqual([25])
    expect((await pageAll(c, 100)).ids).toEqual(first.ids)
    // The default page size is 20.
    expect((await c.get('/api/projects')).json().items).toHaveLength(20)
  })

  it('stays consistent when rows are added or removed between pages', async () => {
    const { c } = await owner()
    const created: string[] = []
    for (let i = 0; i < 25; i++) created.push((await c.post('/api/projects', { name: `q${i}` })).json().id)
    const p1: Page = (await c.get('/api/projects?limit=10')).json()
    // A new project (newer than the cursor) doesn't shift later pages; a removed one just isn't there.
    await c.post('/api/projects', { name: 'late arrival' })
    const removed = created[5]!
    expect((await c.delete(`/api/projects/${removed}`)).statusCode).toBe(204)
    const rest: string[] = []
    let cursor = p1.nextCursor
    while (cursor) {
      const page: Page = (await c.get(`/api/projects?limit=10&cursor=${cursor}`)).json()
      rest.push(...page.items.map((p) => p.id))
      cursor = page.nextCursor
    }
    const seen = [...p1.items.map((p) => p.id), ...rest]
    expect(seen).toEqual([...created].reverse().filter((id) => id !== removed))
  })

  it('paginates within a status filter', async () => {
    const { c } = await owner()
    const archived: string[] = []
    for (let i = 0; i < 12; i++) {
      const id = (await c.post('/api/projects', { name: `r${i}` })).json().id
      if (i % 2 === 0) {
        await c.patch(`/api/projects/${id}`, { status: 'archived' })
        archived.push(id)
      }
    }
    const walk = await pageAll(c, 4, '&status=archived')
    expect(walk.pages).toEqual([4, 2])
    expect(walk.ids).toEqual([...archived].reverse())
  })
})
