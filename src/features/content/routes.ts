/**
 * The public site: the blog (/blog, /blog/:slug), its RSS and Atom feeds, /sitemap.xml and /robots.txt.
 * Pages are rendered once per content version and served with an ETag (@fastify/etag, this scope only),
 * so a revalidating browser or CDN gets a 304. A reader's browser asking for a missing post or page gets
 * an HTML 404 page; any other client gets the kit's JSON error.
 */
import etag from '@fastify/etag'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { Type } from 'typebox'
import type { AppOptions } from '../../core/config.js'
import { notFound } from '../../core/lib/errors.js'
import { errorResponse } from '../../core/lib/schemas.js'
import { blogFeed, robotsTxt, sitemapXml } from './feeds.js'
import { listPage, notFoundPage, postPage, type SiteInfo } from './pages.js'
import { loadPosts, PostLibrary, SLUG, TAG, watchPosts } from './posts.js'

const Html = (description: string) => ({ description, content: { 'text/html': { schema: Type.String() } } })
const Xml = (type: string, description: string) => ({ description, content: { [type]: { schema: Type.String() } } })
/** A 404 documented both ways: the HTML page browsers get, the JSON error everyone else gets. */
const NotFound = {
  description: 'Not found: an HTML page for browsers (Accept: text/html), the JSON error otherwise',
  content: { 'application/json': { schema: errorResponse(404) }, 'text/html': { schema: Type.String() } },
}
const ListQuery = Type.Object(
  {
    page: Type.Integer({ minimum: 1, maximum: 10_000, default: 1, description: 'Page number, from 1' }),
    tag: Type.Optional(Type.String({ pattern: TAG.source, maxLength: 64, description: 'Only posts with this tag' })),
  },
  { additionalProperties: false },
)
const SlugParams = Type.Object({ slug: Type.String({ pattern: SLUG.source, maxLength: 200 }) })

const contentRoutes: FastifyPluginAsyncTypebox<AppOptions> = async (fastify, { config }) => {
  const site: SiteInfo = { baseUrl: config.appBaseUrl, name: config.appName }
  const development = config.env === 'development'
  const library = new PostLibrary(development)
  // A broken post stops the start (ContentError names the file and field): content ships with the deploy.
  library.set(await loadPosts(config.content.dir))
  fastify.log.debug({ posts: library.list().length, dir: config.content.dir }, 'blog loaded')
  if (development) {
    const stop = watchPosts(config.content.dir, library, fastify.log)
    fastify.addHook('onClose', async () => stop())
  }

  // Rendered documents, dropped whenever the posts change.
  const rendered = new Map<string, string>()
  library.onChange(() => rendered.clear())
  const memo = (key: string, render: () => string) => {
    let doc = rendered.get(key)
    if (doc === undefined) {
      doc = render()
      rendered.set(key, doc)
    }
    return doc
  }

  await fastify.register(etag)
  fastify.addHook('onSend', async (_req, reply, payload) => {
    if (reply.statusCode < 400)
      reply.header('cache-control', development ? 'no-cache' : 'public, max-age=300, stale-while-revalidate=86400')
    return payload
  })

  // Browsers put text/html in Accept for a navigation; API clients and curl don't.
  const wantsHtml = (req: FastifyRequest) => /\btext\/html\b/.test(req.headers.accept ?? '')
  const missing = (req: FastifyRequest, reply: FastifyReply, error: ReturnType<typeof notFound>) => {
    if (!wantsHtml(req)) throw error
    return reply
      .code(404)
      .header('cache-control', 'no-store')
      .type('text/html; charset=utf-8')
      .send(notFoundPage(site, req.url.split('?')[0]!))
  }
  const tags = { tags: ['content'] }

  fastify.get(
    '/blog',
    {
      schema: {
        ...tags,
        summary: 'The blog: published posts, newest first, paginated, optionally by tag',
        querystring: ListQuery,
        response: { 200: Html('A page of posts'), 404: NotFound },
      },
    },
    async (req, reply) => {
      const { page, tag } = req.query
      const posts = library.list(tag)
      const totalPages = Math.max(1, Math.ceil(posts.length / config.content.pageSize))
      if (page > totalPages)
        return missing(req, reply, notFound('PAGE_NOT_FOUND', `The blog has ${totalPages} page(s)${tag ? ` for tag ${tag}` : ''}`))
      const view = { posts: posts.slice((page - 1) * config.content.pageSize, page * config.content.pageSize), page, totalPages, tag }
      // Only known tags are memoised: the key space stays the content's, not the query string's.
      const html = tag && posts.length === 0 ? listPage(site, view) : memo(`list:${tag ?? ''}:${page}`, () => listPage(site, view))
      return reply.type('text/html; charset=utf-8').send(html)
    },
  )

  fastify.get(
    '/blog/:slug',
    {
      schema: {
        ...tags,
        summary: 'One post as HTML, with its table of contents and head tags',
        params: SlugParams,
        response: { 200: Html('The post'), 404: NotFound },
      },
    },
    async (req, reply) => {
      const post = library.get(req.params.slug)
      if (!post) return missing(req, reply, notFound('POST_NOT_FOUND', `No post "${req.params.slug}"`))
      return reply.type('text/html; charset=utf-8').send(memo(`post:${post.slug}`, () => postPage(site, post)))
    },
  )

  fastify.get(
    '/blog/feed.xml',
    { schema: { ...tags, summary: 'The blog as an RSS 2.0 feed', response: { 200: Xml('application/rss+xml', 'RSS 2.0') } } },
    async (_req, reply) => reply.type('application/rss+xml; charset=utf-8').send(memo('rss', () => blogFeed(library.list(), site).rss2())),
  )

  fastify.get(
    '/blog/atom.xml',
    { schema: { ...tags, summary: 'The blog as an Atom feed', response: { 200: Xml('application/atom+xml', 'Atom 1.0') } } },
    async (_req, reply) =>
      reply.type('application/atom+xml; charset=utf-8').send(memo('atom', () => blogFeed(library.list(), site).atom1())),
  )

  fastify.get(
    '/sitemap.xml',
    {
      schema: {
        ...tags,
        summary: 'The sitemap: configured static pages, the blog and every post',
        response: { 200: Xml('application/xml', 'Sitemap 0.9') },
      },
    },
    async (_req, reply) =>
      reply.type('application/xml; charset=utf-8').send(
        memo('sitemap', () =>
          sitemapXml(
            library.list().filter((p) => !p.draft),
            config.content.sitemapPaths,
            site,
          ),
        ),
      ),
  )

  fastify.get(
    '/robots.txt',
    { schema: { ...tags, summary: 'Crawler rules, pointing at the sitemap', response: { 200: Xml('text/plain', 'robots.txt') } } },
    async (_req, reply) => reply.type('text/plain; charset=utf-8').send(memo('robots', () => robotsTxt(site, config.env === 'production'))),
  )
}

export default contentRoutes
