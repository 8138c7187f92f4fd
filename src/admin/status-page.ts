// GET / on the admin port: the self-contained status page (status-page.html beside this file, copied into dist/ by the build) and the Content-Security-Policy that lets only its own inline script and style run.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type http from 'node:http';

export interface StatusPage {
  body: string;
  headers: http.OutgoingHttpHeaders;
}

const FILE = new URL('./status-page.html', import.meta.url);

const sha256 = (text: string): string => `'sha256-${createHash('sha256').update(text, 'utf8').digest('base64')}'`;

/** Hashes of the bodies of every `<tag>…</tag>` in the page, exactly as the browser hashes them for CSP. */
function hashes(html: string, tag: 'script' | 'style'): string[] {
  return [...html.matchAll(new RegExp(`<${tag}>([\\s\\S]*?)</${tag}>`, 'g'))].map((m) => sha256(m[1]!));
}

/**
 * Only the page's own inline script and style, found by hash (so nothing injected could run even if escaping failed);
 * fetches only to this origin; no frames, forms, plugins or base URL. img-src data: is the empty favicon.
 */
export function contentSecurityPolicy(html: string): string {
  return [
    "default-src 'none'",
    `script-src ${hashes(html, 'script').join(' ') || "'none'"}`,
    `style-src ${hashes(html, 'style').join(' ') || "'none'"}`,
    "connect-src 'self'",
    'img-src data:',
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join('; ');
}

let cached: StatusPage | null = null;

/** The page and its headers, read once; throws naming the file when the build did not ship it. */
export function statusPage(): StatusPage {
  if (cached !== null) return cached;
  let html: string;
  try {
    html = readFileSync(FILE, 'utf8');
  } catch (err) {
    throw new Error(`the status page is missing (${(err as NodeJS.ErrnoException).code ?? (err as Error).message} reading ${FILE.pathname}): npm run build copies it from src/admin/status-page.html`);
  }
  cached = {
    body: html,
    headers: {
      'content-security-policy': contentSecurityPolicy(html),
      'x-frame-options': 'DENY',
      'referrer-policy': 'no-referrer',
      'cross-origin-opener-policy': 'same-origin',
    },
  };
  return cached;
}
