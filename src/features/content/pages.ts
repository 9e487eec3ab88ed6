/**
 * The blog's HTML: one layout (head tags, inline styles, header and footer) and three pages. Every value
 * that comes from content is escaped here or was sanitised when the post was rendered (markdown.ts).
 * No scripts: the pages work with JavaScript off and under the kit's CSP.
 */
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { blogPostingJsonLd, headTags, type PageMeta } from './head.js'
import { escapeHtml as esc } from './markdown.js'
import type { Post } from './posts.js'

export interface SiteInfo {
  baseUrl: string
  name: string
}

// highlight.js' GitHub theme, inlined on post pages (style-src allows inline styles; no extra request).
const CODE_THEME = readFileSync(createRequire(import.meta.url).resolve('highlight.js/styles/github.css'), 'utf8').replace(
  /\/\*[\s\S]*?\*\//g,
  '',
)

const STYLE = `
:root{color-scheme:light;--fg:#1f2328;--muted:#59636e;--line:#d1d9e0;--link:#0969da;--bg:#fff;--code:#f6f8fa}
*{box-sizing:border-box}body{margin:0;font:17px/1.65 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);background:var(--bg)}
a{color:var(--link)}header.site,footer.site{max-width:46rem;margin:0 auto;padding:1.25rem 1rem;display:flex;gap:1rem;align-items:baseline}
header.site{border-bottom:1px solid var(--line)}header.site a.brand{font-weight:700;text-decoration:none;color:var(--fg)}
footer.site{border-top:1px solid var(--line);color:var(--muted);font-size:.9rem;margin-top:3rem}
main{max-width:46rem;margin:0 auto;padding:1rem}h1{line-height:1.2}
.meta{color:var(--muted);font-size:.92rem}.tags{display:flex;gap:.4rem;flex-wrap:wrap;list-style:none;padding:0;margin:.5rem 0}
.tags a{font-size:.8rem;padding:.1rem .55rem;border:1px solid var(--line);border-radius:1rem;text-decoration:none}
ol.posts{list-style:none;padding:0}ol.posts li{padding:1rem 0;border-bottom:1px solid var(--line)}ol.posts h2{margin:.2rem 0;font-size:1.3rem}
nav.toc{background:var(--code);border:1px solid var(--line);border-radius:6px;padding:.5rem 1rem;margin:1.5rem 0;font-size:.95rem}
nav.toc ol{margin:.25rem 0;padding-left:1.25rem}nav.toc li.depth-3{margin-left:1rem}
article h2,article h3,article h4{position:relative;scroll-margin-top:1rem}
a.anchor{text-decoration:none;color:var(--muted);font-weight:400;margin-left:-1.1em;padding-right:.2em;opacity:.35}a.anchor:hover,a.anchor:focus{opacity:1}
pre{background:var(--code);padding:1rem;border-radius:6px;overflow:auto;font-size:.88rem;line-height:1.45}pre code.hljs{padding:0;background:none}
code{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}:not(pre)>code{background:var(--code);padding:.1em .35em;border-radius:4px;font-size:.9em}
img{max-width:100%;height:auto}table{border-collapse:collapse}th,td{border:1px solid var(--line);padding:.3rem .6rem}
nav.pages{display:flex;justify-content:space-between;margin:2rem 0}`

const dateFmt = new Intl.DateTimeFormat('en', { year: 'numeric', month: 'long', day: 'numeric', timeZone: 'UTC' })
const time = (d: Date) => `<time datetime="${d.toISOString()}">${dateFmt.format(d)}</time>`
const tagList = (tags: string[]) =>
  tags.length
    ? `<ul class="tags" aria-label="Tags">${tags.map((t) => `<li><a href="/blog?tag=${esc(encodeURIComponent(t))}">${esc(t)}</a></li>`).join('')}</ul>`
    : ''

function layout(site: SiteInfo, meta: PageMeta, body: string, extraStyle = ''): string {
  return `<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8">
    <meta name="viewport" content="width=device-width, initial-scale=1">
    ${headTags(meta)}
    <link rel="alternate" type="application/rss+xml" title="${esc(site.name)} blog (RSS)" href="/blog/feed.xml">
    <link rel="alternate" type="application/atom+xml" title="${esc(site.name)} blog (Atom)" href="/blog/atom.xml">
    <link rel="icon" href="data:,">
    <style>${STYLE}${extraStyle}</style>
  </head>
  <body>
    <header class="site"><a class="brand" href="/blog">${esc(site.name)}</a><a href="/blog">Blog</a><a href="/blog/feed.xml">RSS</a></header>
    <main>
${body}
    </main>
    <footer class="site">© ${esc(site.name)} · <a href="/sitemap.xml">Sitemap</a></footer>
  </body>
</html>
`
}

export interface ListView {
  posts: Post[]
  page: number
  totalPages: number
  tag: string | undefined
}

export function listPage(site: SiteInfo, view: ListView): string {
  const { posts, page, totalPages, tag } = view
  const query = (p: number) => {
    const q = new URLSearchParams()
    if (tag) q.set('tag', tag)
    if (p > 1) q.set('page', String(p))
    const s = q.toString()
    return s ? `/blog?${s}` : '/blog'
  }
  const heading = tag ? `Posts tagged “${esc(tag)}”` : 'Blog'
  const items = posts.length
    ? `<ol class="posts">${posts
        .map(
          (p) => `
        <li>
          <p class="meta">${time(p.date)}${p.author ? ` · ${esc(p.author)}` : ''} · ${p.readingMinutes} min read</p>
          <h2><a href="/blog/${p.slug}">${esc(p.title)}</a></h2>
          <p>${esc(p.description)}</p>
          ${tagList(p.tags)}
        </li>`,
        )
        .join('')}
      </ol>`
    : `<p>${tag ? 'No posts with this tag yet.' : 'No posts yet.'}</p>`
  const nav =
    totalPages > 1
      ? `<nav class="pages" aria-label="Pages">${page > 1 ? `<a rel="prev" href="${esc(query(page - 1))}">← Newer</a>` : '<span></span>'}<span>Page ${page} of ${totalPages}</span>${page < totalPages ? `<a rel="next" href="${esc(query(page + 1))}">Older →</a>` : '<span></span>'}</nav>`
      : ''
  const meta: PageMeta = {
    title: tag ? `Posts tagged ${tag} · ${site.name}` : `Blog · ${site.name}`,
    description: tag ? `Articles from ${site.name} tagged ${tag}` : `News and articles from ${site.name}`,
    url: `${site.baseUrl}${query(page)}`,
    type: 'website',
    siteName: site.name,
  }
  return layout(site, meta, `<h1>${heading}</h1>${items}${nav}`)
}

export function postPage(site: SiteInfo, post: Post): string {
  const toc = post.headings.filter((h) => h.depth === 2 || h.depth === 3)
  const tocHtml =
    toc.length >= 2
      ? `<nav class="toc" aria-label="Table of contents"><strong>Contents</strong><ol>${toc
          .map((h) => `<li class="depth-${h.depth}"><a href="#${esc(h.id)}">${esc(h.text)}</a></li>`)
          .join('')}</ol></nav>`
      : ''
  const url = `${site.baseUrl}/blog/${post.slug}`
  const meta: PageMeta = {
    title: `${post.title} · ${site.name}`,
    description: post.description,
    url,
    type: 'article',
    siteName: site.name,
    image: post.image ? (post.image.startsWith('/') ? `${site.baseUrl}${post.image}` : post.image) : undefined,
    publishedTime: post.date,
    modifiedTime: post.updated,
    author: post.author,
    tags: post.tags,
    jsonLd: [blogPostingJsonLd(post, site)],
  }
  const body = `<article>
      <h1>${esc(post.title)}</h1>
      <p class="meta">${time(post.date)}${post.updated ? ` (updated ${time(post.updated)})` : ''}${post.author ? ` · ${esc(post.author)}` : ''} · ${post.readingMinutes} min read${post.draft ? ' · <strong>draft</strong>' : ''}</p>
      ${tagList(post.tags)}
      ${tocHtml}
      <div class="content">
${post.html}
      </div>
    </article>
    <p><a href="/blog">← All posts</a></p>`
  return layout(site, meta, body, CODE_THEME)
}

export function notFoundPage(site: SiteInfo, path: string): string {
  const meta: PageMeta = {
    title: `Not found · ${site.name}`,
    description: 'This page does not exist.',
    url: `${site.baseUrl}${path}`,
    type: 'website',
    siteName: site.name,
  }
  return layout(site, meta, `<h1>Not found</h1><p>There is no post here. <a href="/blog">See all posts</a>.</p>`)
}
