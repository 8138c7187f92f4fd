// The status page file and its Content-Security-Policy (src/admin/status-page.ts): the hashes match the inline script and style, and the page loads nothing from elsewhere nor writes markup from data.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { contentSecurityPolicy, statusPage } from '../../src/admin/status-page.js';

const html = readFileSync(new URL('../../src/admin/status-page.html', import.meta.url), 'utf8');
const hash = (text: string) => `'sha256-${createHash('sha256').update(text, 'utf8').digest('base64')}'`;
const between = (open: string, close: string) => {
  const start = html.indexOf(open);
  return html.slice(start + open.length, html.indexOf(close, start));
};

describe('status page', () => {
  it('is served with a CSP that admits exactly its inline script and style, by hash', () => {
    const page = statusPage();
    expect(page.body).toBe(html);
    const csp = String(page.headers['content-security-policy']);
    const directives = new Map(csp.split('; ').map((d) => [d.split(' ')[0], d.split(' ').slice(1)]));
    expect(directives.get('default-src')).toEqual(["'none'"]);
    expect(directives.get('script-src')).toEqual([hash(between('<script>', '</script>'))]);
    expect(directives.get('style-src')).toEqual([hash(between('<style>', '</style>'))]);
    expect(directives.get('connect-src')).toEqual(["'self'"]);
    expect(directives.get('frame-ancestors')).toEqual(["'none'"]);
    expect(csp).not.toMatch(/unsafe|\*|https?:/);
    expect(page.headers['x-frame-options']).toBe('DENY');
  });

  it('hashes every inline script and style, and admits none when there is none', () => {
    const csp = contentSecurityPolicy('<style>a{}</style><script>1</script><p>x</p><script>2</script>');
    expect(csp).toContain(`script-src ${hash('1')} ${hash('2')};`);
    expect(csp).toContain(`style-src ${hash('a{}')};`);
    expect(contentSecurityPolicy('<p>no code</p>')).toContain("script-src 'none'; style-src 'none'");
  });

  it('has one script and one style element, without attributes (what the hashes cover), and no element the CSP would block', () => {
    expect(html.match(/<script\b/g)).toEqual(['<script']);
    expect(html.match(/<style\b/g)).toEqual(['<style']);
    expect(html).toContain('<script>');
    expect(html).toContain('<style>');
    // Inline handlers and style attributes need 'unsafe-inline'; src/href to another place would be refused.
    expect(html).not.toMatch(/\son[a-z]+\s*=|\sstyle\s*=|\ssrc\s*=/i);
  });

  it('names no other origin (no CDN, no web font): the only URL is the SVG namespace', () => {
    expect(html.match(/[a-z]+:\/\/[^\s'"<>)]*/gi)).toEqual(['http://www.w3.org/2000/svg']);
    expect(html).not.toMatch(/@import|url\(|@font-face/i);
  });

  it('never turns data into markup: no innerHTML, outerHTML, insertAdjacentHTML, document.write or eval', () => {
    expect(html).not.toMatch(/innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function/);
  });
});
