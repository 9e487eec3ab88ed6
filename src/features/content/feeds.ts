/**
 * The machine-read documents of the site: RSS 2.0 and Atom feeds of the blog (the `feed` package),
 * sitemap.xml (seed fh-saas `generate_sitemap_xml`) and robots.txt.
 */
import { Feed } from 'feed'
import { escapeHtml } from './markdown.js'
import type { Post } from './posts.js'

export interface Site {
  baseUrl: string
  name: string
}

/** Posts in a feed: the newest this many. */
const FEED_ITEMS = 20

export function blogFeed(posts: Post[], site: Site): Feed {
  const newest = posts[0]
  const feed = new Feed({
    title: `${site.name} blog`,
    description: `News and articles from ${site.name}`,
    id: `${site.baseUrl}/blog`,
    link: `${site.baseUrl}/blog`,
    language: 'en',
    copyright: `© ${site.name}`,
    updated: newest ? (newest.updated ?? newest.date) : new Date(0),
    feedLinks: { rss: `${site.baseUrl}/blog/feed.xml`, atom: `${site.baseUrl}/blog/atom.xml` },
    generator: site.name,
  })
  for (const post of posts.slice(0, FEED_ITEMS)) {
    const url = `${site.baseUrl}/blog/${post.slug}`
    feed.addItem({
      title: post.title,
      id: url,
      link: url,
      description: post.description,
      content: post.html,
      date: post.updated ?? post.date,
      published: post.date,
      author: post.author ? [{ name: post.author }] : undefined,
      category: post.tags.map((name) => ({ name })),
    })
  }
  return feed
}

export function sitemapXml(posts: Post[], staticPaths: string[], site: Site): string {
  const url = (loc: string, lastmod?: Date) =>
    `  <url><loc>${escapeHtml(`${site.baseUrl}${loc}`)}</loc>${lastmod ? `<lastmod>${lastmod.toISOString()}</lastmod>` : ''}</url>`
  const newest = posts[0]
  const paths = [...new Set(staticPaths)].filter((p) => p !== '/blog')
  return [
    '<?xml version="1.0" encoding="UTF-8"?>',
    '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">',
    ...paths.map((p) => url(p)),
    url('/blog', newest ? (newest.updated ?? newest.date) : undefined),
    ...posts.map((p) => url(`/blog/${p.slug}`, p.updated ?? p.date)),
    '</urlset>',
    '',
  ].join('\n')
}

/** Crawlers may read the public site, never the API, auth or admin; outside production they may read nothing. */
export function robotsTxt(site: Site, production: boolean): string {
  const rules = production ? ['Allow: /', 'Disallow: /api/', 'Disallow: /t/', 'Disallow: /auth/', 'Disallow: /admin'] : ['Disallow: /']
  return ['User-agent: *', ...rules, '', `Sitemap: ${site.baseUrl}/sitemap.xml`, ''].join('\n')
}
