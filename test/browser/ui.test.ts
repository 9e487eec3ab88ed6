/**
 * The pages a person opens, in a real browser (Debian's Chromium driven by puppeteer-core) over real
 * HTTP: Bull Board at /admin/queues, used by a platform admin to pause and resume a queue, the Swagger
 * UI at /docs, and the blog (/blog, a post, the 404 page). None may log a single console error (a CSP
 * refusal is one). A screenshot of a post is saved to .data/screenshots/ for review.
 * Chromium is required: .ci/run installs it; without it this file fails, naming the fix.
 */
import { existsSync } from 'node:fs'
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import type { FastifyInstance } from 'fastify'
import puppeteer, { type Browser, type Page } from 'puppeteer-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildApp } from '../helpers/build-app.js'
import { createClient, PASSWORD } from '../helpers/client.js'
import { createTestEnv, type TestEnv } from '../helpers/test-env.js'
import { waitFor } from '../helpers/wait-for.js'

const CHROMIUM_CANDIDATES = [process.env.CHROMIUM_PATH, '/usr/bin/chromium', '/usr/bin/chromium-browser'].filter(Boolean) as string[]

function chromiumPath(): string {
  const found = CHROMIUM_CANDIDATES.find((p) => existsSync(p))
  if (!found) {
    throw new Error(
      `Chromium not found (looked at ${CHROMIUM_CANDIDATES.join(', ')}): install it with \`apt-get install -y chromium\` (.ci/run does) or set CHROMIUM_PATH`,
    )
  }
  return found
}

const SCREENSHOTS = join(import.meta.dirname, '..', '..', '.data', 'screenshots')

// The machine may be busy: a browser step gets minutes, never a fixed sleep.
const STEP_MS = 120_000

let env: TestEnv
let app: FastifyInstance
let browser: Browser
let base: string
const ADMIN = 'board-ops@example.com'

beforeAll(async () => {
  const executablePath = chromiumPath()
  env = await createTestEnv()
  app = await buildApp(env.config)
  await app.listen({ port: 0, host: '127.0.0.1' })
  base = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`
  const { user } = (await createClient(app).signup(ADMIN)).json()
  await app.host.sql`update core_users set is_platform_admin = true where id = ${user.id}`
  browser = await puppeteer.launch({ executablePath, headless: true, args: ['--no-sandbox', '--disable-dev-shm-usage'], protocolTimeout: STEP_MS })
}, 300_000)
afterAll(async () => {
  await browser?.close()
  await app?.close()
  await env?.cleanup()
}, 300_000)

/** A page that records every console error, uncaught exception and failed request. */
async function openPage(): Promise<{ page: Page; problems: string[] }> {
  const page = await browser.newPage()
  page.setDefaultTimeout(STEP_MS)
  page.setDefaultNavigationTimeout(STEP_MS)
  const problems: string[] = []
  page.on('console', (m) => {
    if (m.type() === 'error') problems.push(`console: ${m.text()} (${m.location()?.url ?? ''})`)
  })
  page.on('pageerror', (e) => problems.push(`page error: ${e}`))
  page.on('requestfailed', (r) => problems.push(`request failed: ${r.method()} ${r.url()} ${r.failure()?.errorText}`))
  return { page, problems }
}

/** Log in as a browser does: a same-origin fetch from one of our pages, which leaves the session cookie in the browser. */
async function logIn(page: Page, email: string) {
  await page.goto(`${base}/health`)
  const status = await page.evaluate(
    async (body) => (await fetch('/auth/login', { method: 'POST', headers: { 'content-type': 'application/json' }, body })).status,
    JSON.stringify({ email, password: PASSWORD }),
  )
  expect(status).toBe(200)
}

describe('Bull Board in Chromium', () => {
  it('a platform admin pauses and resumes a queue from the UI, with no console error', async () => {
    const { page, problems } = await openPage()
    await logIn(page, ADMIN)
    problems.length = 0 // (the JSON page used to log in has no favicon: the browser's own 404, not the board's)
    const queue = app.services.tasks.queues.system
    expect(await queue.isPaused()).toBe(false)

    await page.goto(`${base}/admin/queues/queue/${queue.name}`)
    // Bull Board's queue actions menu (Radix dropdown): Pause, then its confirmation if asked for.
    // Whether the board asks for a confirmation is its own setting, and on a busy machine the dialog can
    // take seconds to appear: click the item, then until the queue is in the state asked for, confirm
    // whenever a confirmation is showing (never a fixed wait that a slow render outlasts).
    // The menu itself can close before its item is clicked (the board re-renders on its polling refresh, and
    // on a loaded machine a render can land between the two clicks): each round, whatever shows is acted on,
    // the confirmation first, then the item, else the menu is opened (again).
    const act = async (label: 'Pause' | 'Resume') => {
      const want = label === 'Pause'
      const click = (el: { click(): Promise<void> } | null) => el?.click().catch(() => undefined) // (it may go between finding and clicking)
      await waitFor(
        async () => {
          if ((await queue.isPaused()) === want) return true
          const confirm = await page.$('[role="alertdialog"] button::-p-text(Confirm), [role="dialog"] button::-p-text(Confirm)')
          if (confirm) await click(confirm)
          else {
            const item = await page.$(`[role="menuitem"]::-p-text(${label})`)
            await click(item ?? (await page.$('button[aria-haspopup="menu"]')))
          }
          return false
        },
        { timeout: STEP_MS, interval: 300, message: `queue ${label.toLowerCase()}d from the board` },
      )
    }
    await act('Pause')
    await act('Resume')

    expect(problems).toEqual([])
    await page.close()
  }, 600_000)
})

describe('Swagger UI in Chromium', () => {
  it('/docs renders the API with no console error', async () => {
    const { page, problems } = await openPage()
    await page.goto(`${base}/docs`)
    await page.locator(`::-p-text(${env.config.appName} API)`).wait()
    await page.locator('.opblock-tag').wait()
    // Every operation of the document renders: open each tag (they start collapsed) and count its operations.
    const spec = (await app.inject('/docs/json')).json() as { paths: Record<string, Record<string, { tags: string[] }>> }
    const perTag = new Map<string, number>()
    for (const item of Object.values(spec.paths)) for (const op of Object.values(item)) perTag.set(op.tags[0]!, (perTag.get(op.tags[0]!) ?? 0) + 1)
    expect(await page.$$eval('.opblock-tag', (els) => els.map((e) => e.getAttribute('data-tag')).sort())).toEqual([...perTag.keys()].sort())
    for (const [tag, count] of perTag) {
      await page.click(`.opblock-tag[data-tag="${tag}"]`)
      await waitFor(async () => (await page.$$eval('.opblock-tag-section.is-open .opblock', (els) => els.length)) === count, {
        timeout: STEP_MS,
        interval: 100,
        message: `tag ${tag}: ${count} operations rendered`,
      })
      await page.click(`.opblock-tag[data-tag="${tag}"]`)
    }
    expect(problems).toEqual([])
    await page.close()
  }, 600_000)
})

describe('the blog in Chromium', () => {
  it('a post renders with its head tags, its table of contents links move to the headings, and nothing errs', async () => {
    const { page, problems } = await openPage()
    const windowHeight = 800
    await page.setViewport({ width: 1000, height: windowHeight })
    await page.goto(`${base}/blog`)
    const first = await page.$eval('ol.posts h2 a', (a) => (a as HTMLAnchorElement).getAttribute('href'))
    expect(first).toMatch(/^\/blog\/[a-z0-9-]+$/)

    await page.goto(`${base}/blog/writing-posts`)
    const head = await page.evaluate(() => ({
      title: document.title,
      description: document.querySelector('meta[name="description"]')?.getAttribute('content'),
      canonical: document.querySelector('link[rel="canonical"]')?.getAttribute('href'),
      ogTitle: document.querySelector('meta[property="og:title"]')?.getAttribute('content'),
      twitter: document.querySelector('meta[name="twitter:card"]')?.getAttribute('content'),
      ld: JSON.parse(document.querySelector('script[type="application/ld+json"]')?.textContent ?? 'null'),
    }))
    expect(head).toMatchObject({
      title: `Writing a post · ${env.config.appName}`,
      canonical: `${env.config.appBaseUrl}/blog/writing-posts`,
      ogTitle: `Writing a post · ${env.config.appName}`,
      twitter: 'summary',
      ld: { '@type': 'BlogPosting', headline: 'Writing a post' },
    })
    expect(head.description).toContain('Front matter')

    // Each table of contents link lands on its heading: the hash changes and the heading scrolls to the top.
    const links = await page.$$eval('nav.toc a', (as) => as.map((a) => a.getAttribute('href')!))
    expect(links.length).toBeGreaterThanOrEqual(3)
    for (const href of links) {
      await page.click(`nav.toc a[href="${href}"]`)
      await waitFor(async () => (await page.evaluate(() => location.hash)) === href, { timeout: STEP_MS, message: `hash ${href}` })
      // At the top of the window, or as near as the page's end allows.
      const { top, atEnd } = await page.$eval(href, (h) => ({
        top: h.getBoundingClientRect().top,
        atEnd: Math.ceil(window.scrollY + window.innerHeight) >= document.documentElement.scrollHeight - 1,
      }))
      expect(Math.abs(top) < 60 || (atEnd && top > 0 && top < windowHeight), href).toBe(true)
    }
    // Highlighted code is styled by the inlined theme (a CSP refusal would leave it unstyled and log an error).
    const keywordColor = await page.$eval('code.hljs .hljs-keyword', (el) => getComputedStyle(el).color)
    expect(keywordColor).not.toBe(await page.$eval('article p', (el) => getComputedStyle(el).color))

    await page.evaluate(() => window.scrollTo(0, 0))
    await mkdir(SCREENSHOTS, { recursive: true })
    await page.screenshot({ path: join(SCREENSHOTS, 'blog-post.png'), fullPage: true })

    const missing = await page.goto(`${base}/blog/no-such-post`)
    expect(missing?.status()).toBe(404)
    expect(await page.$eval('h1', (h) => h.textContent)).toBe('Not found')
    // (The browser logs its own "Failed to load resource: 404" for the page itself: that one is expected.)
    expect(problems.filter((p) => !p.includes('404'))).toEqual([])
    await page.close()
  }, 600_000)
})
