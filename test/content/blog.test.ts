/**
 * The blog over HTTP: pages, pagination and tags, a post's table of contents and head tags, sanitising,
 * ETags, feeds and the sitemap (parsed as XML), robots.txt, 404s for browsers and for API clients, and
 * the loader refusing broken posts with the file and field named.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { XMLParser } from 'fast-xml-parser'
import { afterAll, describe, expect, it } from 'vitest'
import { robotsTxt } from '../../src/features/content/feeds.js'
import { ContentError, loadPosts, PostLibrary, parsePost, watchPosts } from '../../src/features/content/posts.js'
import { buildApp } from '../helpers/build-app.js'
import { useApp } from '../helpers/use-app.js'

const dir = mkdtempSync(join(tmpdir(), 'tk-content-'))
const blog = join(dir, 'blog')
mkdirSync(blog)
const post = (slug: string, fm: string, body = 'Some words.') => writeFileSync(join(blog, `${slug}.md`), `---\n${fm}\n---\n\n${body}\n`)

// Seven dated posts (page size 3: three pages), a draft, a post with headings and code, and a hostile one.
for (let i = 1; i <= 7; i++) post(`post-${i}`, `title: Post ${i}\ndate: 2026-10-0${i}\ntags: [${i % 2 ? 'odd' : 'even'}]`)
post('draft-post', 'title: Not yet\ndate: 2026-12-01\ndraft: true')
post(
  'guide',
  'title: "A <guide> & more"\ndescription: How to do things\ndate: 2026-11-15\nupdated: 2026-11-20\nauthor: Ada\ntags: [how-to]\nimage: /img/card.png',
  '## First part\n\nText.\n\n### A detail\n\n```ts\nconst answer: number = 42\n```\n\n## Second part\n\nMore.',
)
post(
  'hostile',
  'title: Hostile\ndate: 2026-11-10',
  '<script>window.pwned = 1</script>\n\n<img src="x" onerror="alert(1)">\n\n[click](javascript:alert(1))\n\n<a href="https://example.com" onclick="alert(1)">ok</a>',
)

const ctx = useApp({ CONTENT_DIR: dir, BLOG_PAGE_SIZE: '3', SITEMAP_PATHS: '/,/pricing' })
afterAll(() => rmSync(dir, { recursive: true, force: true }))

const xml = new XMLParser({ ignoreAttributes: false })
const get = (url: string, headers: Record<string, string> = {}) => ctx.app.inject({ method: 'GET', url, headers })
const HTML = { accept: 'text/html,application/xhtml+xml,*/*;q=0.8' }

describe('GET /blog', () => {
  it('lists published posts newest first, a page at a time, with links between pages', async () => {
    const first = await get('/blog')
    expect(first.statusCode).toBe(200)
    expect(first.headers['content-type']).toBe('text/html; charset=utf-8')
    const order = [...first.body.matchAll(/<h2><a href="\/blog\/([a-z0-9-]+)">/g)].map((m) => m[1])
    expect(order).toEqual(['guide', 'hostile', 'post-7'])
    expect(first.body).not.toContain('draft-post')
    expect(first.body).toContain('href="/blog?page=2"')
    expect(first.body).toContain('Page 1 of 3')
    const third = await get('/blog?page=3')
    expect([...third.body.matchAll(/<h2><a href="\/blog\/([a-z0-9-]+)">/g)].map((m) => m[1])).toEqual(['post-3', 'post-2', 'post-1'])
    expect(third.body).toContain('rel="prev" href="/blog?page=2"')
  })

  it('filters by tag, and an unknown tag is an empty page, not an error', async () => {
    const odd = await get('/blog?tag=odd')
    expect([...odd.body.matchAll(/<h2><a href="\/blog\/([a-z0-9-]+)">/g)].map((m) => m[1])).toEqual(['post-7', 'post-5', 'post-3'])
    expect(odd.body).toContain('href="/blog?tag=odd&amp;page=2"')
    const none = await get('/blog?tag=nothing-here')
    expect(none.statusCode).toBe(200)
    expect(none.body).toContain('No posts with this tag yet.')
  })

  it('answers a page past the end with 404: JSON for API clients, an HTML page for browsers', async () => {
    const api = await get('/blog?page=4')
    expect(api.statusCode).toBe(404)
    expect(api.json()).toMatchObject({ statusCode: 404, code: 'PAGE_NOT_FOUND' })
    const browser = await get('/blog?page=4', HTML)
    expect(browser.statusCode).toBe(404)
    expect(browser.headers['content-type']).toBe('text/html; charset=utf-8')
    expect(browser.body).toContain('<h1>Not found</h1>')
  })

  it('refuses bad query values with 400 and the validation error', async () => {
    for (const q of ['page=0', 'page=abc', 'tag=Not%20A%20Tag', 'tag=%3Cscript%3E', 'extra=1']) {
      const res = await get(`/blog?${q}`)
      expect(res.statusCode, q).toBe(400)
      expect(res.json(), q).toMatchObject({ statusCode: 400, error: 'Bad Request' })
      expect(typeof res.json().code, q).toBe('string')
    }
  })
})

describe('GET /blog/:slug', () => {
  it('renders the post with a table of contents whose links point at the headings', async () => {
    const res = await get('/blog/guide')
    expect(res.statusCode).toBe(200)
    const toc = [...res.body.matchAll(/<li class="depth-(\d)"><a href="#([^"]+)">/g)].map((m) => [m[1], m[2]])
    expect(toc).toEqual([
      ['2', 'first-part'],
      ['3', 'a-detail'],
      ['2', 'second-part'],
    ])
    for (const [, id] of toc) expect(res.body).toContain(`id="${id}"><a class="anchor" href="#${id}"`)
    expect(res.body).toContain('<code class="hljs language-ts"><span class="hljs-keyword">const</span>')
  })

  it('has the head tags: escaped title, description, canonical, OpenGraph, Twitter card and BlogPosting JSON-LD', async () => {
    const { body } = await get('/blog/guide')
    const base = ctx.env.config.appBaseUrl
    expect(body).toContain(`<title>A &lt;guide&gt; &amp; more · ${ctx.env.config.appName}</title>`)
    expect(body).toContain('<meta name="description" content="How to do things">')
    expect(body).toContain(`<link rel="canonical" href="${base}/blog/guide">`)
    expect(body).toContain('<meta property="og:type" content="article">')
    expect(body).toContain(`<meta property="og:image" content="${base}/img/card.png">`)
    expect(body).toContain('<meta name="twitter:card" content="summary_large_image">')
    const ld = JSON.parse(/<script type="application\/ld\+json">(.*?)<\/script>/.exec(body)![1]!)
    expect(ld).toMatchObject({
      '@type': 'BlogPosting',
      headline: 'A <guide> & more',
      url: `${base}/blog/guide`,
      datePublished: '2026-11-15T00:00:00.000Z',
      dateModified: '2026-11-20T00:00:00.000Z',
      author: { '@type': 'Person', name: 'Ada' },
    })
  })

  it('strips scripts, event handlers and javascript: links from a post', async () => {
    const { body } = await get('/blog/hostile')
    const article = body.slice(body.indexOf('<article>'))
    expect(article).not.toMatch(/<script|onerror|onclick|javascript:|pwned/i)
    expect(article).toContain('<a href="https://example.com">ok</a>')
  })

  it('serves an ETag, answers If-None-Match with 304, and caches publicly', async () => {
    const first = await get('/blog/guide')
    expect(first.headers.etag).toMatch(/^"/)
    expect(first.headers['cache-control']).toContain('public')
    const again = await get('/blog/guide', { 'if-none-match': first.headers.etag as string })
    expect(again.statusCode).toBe(304)
    expect(again.body).toBe('')
  })

  it('answers a missing or draft post with 404 POST_NOT_FOUND, and a malformed slug with 400', async () => {
    for (const slug of ['nope', 'draft-post']) {
      const res = await get(`/blog/${slug}`)
      expect(res.statusCode, slug).toBe(404)
      expect(res.json(), slug).toMatchObject({ code: 'POST_NOT_FOUND' })
    }
    expect((await get('/blog/nope', HTML)).body).toContain('There is no post here.')
    const bad = await get('/blog/Bad_Slug')
    expect(bad.statusCode).toBe(400)
    expect(bad.json().statusCode).toBe(400)
  })
})

describe('feeds, sitemap and robots.txt', () => {
  it('RSS lists the published posts newest first with their content', async () => {
    const res = await get('/blog/feed.xml')
    expect(res.headers['content-type']).toBe('application/rss+xml; charset=utf-8')
    const channel = xml.parse(res.body).rss.channel
    const items = channel.item as { title: string; link: string }[]
    expect(items.map((i) => i.title)).toEqual([
      'A <guide> & more',
      'Hostile',
      'Post 7',
      'Post 6',
      'Post 5',
      'Post 4',
      'Post 3',
      'Post 2',
      'Post 1',
    ])
    expect(items[0]!.link).toBe(`${ctx.env.config.appBaseUrl}/blog/guide`)
  })

  it('Atom has the same entries', async () => {
    const res = await get('/blog/atom.xml')
    expect(res.headers['content-type']).toBe('application/atom+xml; charset=utf-8')
    const entries = xml.parse(res.body).feed.entry as unknown[]
    expect(entries).toHaveLength(9)
  })

  it('the sitemap lists the static pages, the blog and every published post, with lastmod', async () => {
    const res = await get('/sitemap.xml')
    expect(res.headers['content-type']).toBe('application/xml; charset=utf-8')
    const doc = xml.parse(res.body).urlset
    expect(doc['@_xmlns']).toBe('http://www.sitemaps.org/schemas/sitemap/0.9')
    const base = ctx.env.config.appBaseUrl
    const urls = (doc.url as { loc: string; lastmod?: string }[]).map((u) => u.loc.replace(base, ''))
    expect(urls.slice(0, 3)).toEqual(['/', '/pricing', '/blog'])
    expect(urls).toContain('/blog/guide')
    expect(urls).not.toContain('/blog/draft-post')
    expect(urls).toHaveLength(3 + 9)
    expect((doc.url as { loc: string; lastmod?: string }[]).find((u) => u.loc.endsWith('/blog/guide'))!.lastmod).toBe(
      '2026-11-20T00:00:00.000Z',
    )
  })

  it('robots.txt keeps crawlers off a non-production site, and off the API and admin in production', async () => {
    const res = await get('/robots.txt')
    expect(res.headers['content-type']).toBe('text/plain; charset=utf-8')
    expect(res.body).toContain('User-agent: *\nDisallow: /\n')
    expect(res.body).toContain(`Sitemap: ${ctx.env.config.appBaseUrl}/sitemap.xml`)
    const prod = robotsTxt({ baseUrl: 'https://example.com', name: 'x' }, true)
    expect(prod).toContain('Allow: /\n')
    for (const path of ['/api/', '/t/', '/auth/', '/admin']) expect(prod).toContain(`Disallow: ${path}\n`)
  })
})

describe('the post loader', () => {
  const ok = 'title: T\ndate: 2026-01-02'
  it.each([
    ['Bad_Name.md', ok, 'file name must be a slug'],
    ['a.md', 'date: 2026-01-02', 'title is required'],
    ['a.md', 'title: T\ndate: someday', 'date must be a date'],
    ['a.md', 'title: T', 'date must be a date'],
    ['a.md', `${ok}\ntags: [Not OK]`, 'tags must be a list of lowercase slugs'],
    ['a.md', `${ok}\ntags: oops`, 'tags must be a list'],
    ['a.md', `${ok}\ndraft: maybe`, 'draft must be true or false'],
    ['a.md', `${ok}\nimage: javascript:alert(1)`, 'image must be an https:// URL or a path'],
    ['a.md', `${ok}\ntitel: typo`, 'unknown front matter field(s): titel'],
    ['a.md', 'title: [unclosed', 'front matter is not valid YAML'],
  ])('%s with %j → %s', (file, fm, message) => {
    const run = () => parsePost(file, `---\n${fm}\n---\nbody`)
    expect(run).toThrow(ContentError)
    expect(run).toThrow(message)
    expect(run).toThrow(file)
  })

  it('derives a description from the text when there is none, and a reading time', () => {
    const p = parsePost('x.md', `---\n${ok}\n---\n${'word '.repeat(500)}`)
    expect(p.description).toHaveLength(158)
    expect(p.description.endsWith('…')).toBe(true)
    expect(p.readingMinutes).toBe(2)
  })

  it('stops the app from starting on a broken post, naming the file', async () => {
    const broken = mkdtempSync(join(tmpdir(), 'tk-content-bad-'))
    mkdirSync(join(broken, 'blog'))
    writeFileSync(join(broken, 'blog', 'oops.md'), '---\ntitle: Oops\n---\nno date')
    try {
      await expect(buildApp({ ...ctx.env.config, content: { ...ctx.env.config.content, dir: broken } })).rejects.toThrow(
        'oops.md: date must be a date',
      )
    } finally {
      rmSync(broken, { recursive: true, force: true })
    }
  })

  it('reloads on change in development and keeps the last good posts when an edit is broken', async () => {
    const live = mkdtempSync(join(tmpdir(), 'tk-content-live-'))
    mkdirSync(join(live, 'blog'))
    writeFileSync(join(live, 'blog', 'one.md'), `---\n${ok}\n---\nfirst`)
    const library = new PostLibrary(true)
    library.set(await loadPosts(live))
    const refused: string[] = []
    const stop = watchPosts(live, library, ctx.app.log, (err) => err && refused.push(String(err)))
    try {
      writeFileSync(join(live, 'blog', 'two.md'), `---\ntitle: Two\ndate: 2026-02-02\ndraft: true\n---\nsecond`)
      await expect.poll(() => library.list().map((p) => p.slug)).toEqual(['two', 'one'])
      writeFileSync(join(live, 'blog', 'three.md'), '---\ntitle: Broken\n---\nno date')
      writeFileSync(join(live, 'blog', 'four.md'), `---\ntitle: Four\ndate: 2026-03-03\n---\n`)
      // The broken edit is refused (and logged), not applied: the last good set stays.
      await expect.poll(() => refused.at(-1)).toContain('three.md: date must be a date')
      expect(library.list().map((p) => p.slug)).toEqual(['two', 'one'])
      rmSync(join(live, 'blog', 'three.md'))
      await expect.poll(() => library.list().map((p) => p.slug)).toEqual(['four', 'two', 'one'])
    } finally {
      stop()
      rmSync(live, { recursive: true, force: true })
    }
  })
})
