/**
 * What goes in a page's <head> for search engines and link previews (seed fh-saas `generate_head_tags`,
 * `generate_json_ld`): title, description, canonical URL, OpenGraph and Twitter card, and JSON-LD.
 */
import { escapeHtml } from './markdown.js'
import type { Post } from './posts.js'

export interface PageMeta {
  title: string
  description: string
  /** Absolute canonical URL of the page. */
  url: string
  type: 'website' | 'article'
  siteName: string
  /** Absolute URL of the social card image. */
  image?: string
  publishedTime?: Date
  modifiedTime?: Date
  author?: string
  tags?: string[]
  /** Structured data objects, each written as one application/ld+json block. */
  jsonLd?: object[]
}

/** JSON inside <script>: `<` escaped so no string in it can close the element. */
export const jsonForScript = (value: unknown) => JSON.stringify(value).replace(/</g, '\\u003c')

/** An absolute URL: `pathOrUrl` as is if it already is one, else under `baseUrl`. */
export const absoluteUrl = (baseUrl: string, pathOrUrl: string) => (/^https?:\/\//.test(pathOrUrl) ? pathOrUrl : `${baseUrl}${pathOrUrl}`)

export function headTags(meta: PageMeta): string {
  const tag = (attr: 'name' | 'property', key: string, content: string) => `<meta ${attr}="${key}" content="${escapeHtml(content)}">`
  const lines = [
    `<title>${escapeHtml(meta.title)}</title>`,
    tag('name', 'description', meta.description),
    `<link rel="canonical" href="${escapeHtml(meta.url)}">`,
    tag('property', 'og:type', meta.type),
    tag('property', 'og:site_name', meta.siteName),
    tag('property', 'og:title', meta.title),
    tag('property', 'og:description', meta.description),
    tag('property', 'og:url', meta.url),
    tag('name', 'twitter:card', meta.image ? 'summary_large_image' : 'summary'),
    tag('name', 'twitter:title', meta.title),
    tag('name', 'twitter:description', meta.description),
  ]
  if (meta.image) lines.push(tag('property', 'og:image', meta.image), tag('name', 'twitter:image', meta.image))
  if (meta.publishedTime) lines.push(tag('property', 'article:published_time', meta.publishedTime.toISOString()))
  if (meta.modifiedTime) lines.push(tag('property', 'article:modified_time', meta.modifiedTime.toISOString()))
  if (meta.author) lines.push(tag('name', 'author', meta.author), tag('property', 'article:author', meta.author))
  for (const t of meta.tags ?? []) lines.push(tag('property', 'article:tag', t))
  // Data blocks: not scripts, so the CSP's script-src doesn't apply to them.
  for (const data of meta.jsonLd ?? []) lines.push(`<script type="application/ld+json">${jsonForScript(data)}</script>`)
  return lines.join('\n    ')
}

/** schema.org BlogPosting for a post. */
export function blogPostingJsonLd(post: Post, site: { baseUrl: string; name: string }) {
  const url = `${site.baseUrl}/blog/${post.slug}`
  return {
    '@context': 'https://schema.org',
    '@type': 'BlogPosting',
    headline: post.title,
    description: post.description,
    url,
    mainEntityOfPage: { '@type': 'WebPage', '@id': url },
    datePublished: post.date.toISOString(),
    dateModified: (post.updated ?? post.date).toISOString(),
    ...(post.author ? { author: { '@type': 'Person', name: post.author } } : {}),
    publisher: { '@type': 'Organization', name: site.name, url: site.baseUrl },
    ...(post.image ? { image: absoluteUrl(site.baseUrl, post.image) } : {}),
    ...(post.tags.length ? { keywords: post.tags.join(', ') } : {}),
  }
}
