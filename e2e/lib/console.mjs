// The seller console's side of the browser suite: signing in (password, then the TOTP code,
// computed here as an authenticator app would: RFC 6238 over node:crypto's HMAC-SHA1), the
// console's own message catalogues (to assert exact texts in both languages), page hygiene
// (console errors, horizontal overflow), and a buyer's purchase through the sandbox channel
// with the options the seller flows need (input fields, coupon, a dropped notification).

import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { WORKSPACE, shot as deviceShot, tid, waitUntil } from './harness.mjs';

/**
 * The console suite's screenshots: full page at one pixel per CSS pixel (a phone's 3x
 * screenshots of long pages cost seconds each to encode, and show nothing more).
 */
export const shot = (page, flow, step) => deviceShot(page, flow, step, { scale: 'css' });

// ---------------------------------------------------------------------------------------------
// TOTP (RFC 6238: HMAC-SHA1, 6 digits, 30-second steps), what kami's security page enrols.

export const TOTP_STEP_SECS = 30;

/** RFC 4648 base32 (no padding needed) → bytes. */
export function base32Decode(text) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  const clean = text.replace(/[\s=-]/g, '').toUpperCase();
  let bits = 0;
  let value = 0;
  const out = [];
  for (const ch of clean) {
    const v = alphabet.indexOf(ch);
    if (v < 0) throw new Error(`not base32: ${JSON.stringify(ch)} in the TOTP secret`);
    value = (value << 5) | v;
    bits += 5;
    if (bits >= 8) {
      out.push((value >>> (bits - 8)) & 0xff);
      bits -= 8;
    }
  }
  return Buffer.from(out);
}

/** The 6-digit code of time step `step` (RFC 4226 dynamic truncation). */
export function totpAt(secret, step) {
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(step));
  const mac = crypto.createHmac('sha1', secret).update(counter).digest();
  const offset = mac[mac.length - 1] & 0x0f;
  const bin = mac.readUInt32BE(offset) & 0x7fffffff;
  return String(bin % 1_000_000).padStart(6, '0');
}

export const stepNow = () => Math.floor(Date.now() / 1000 / TOTP_STEP_SECS);

/**
 * A code the server has not seen used: the step after `lastUsed`, as long as it is within the
 * one step of drift the server allows around now (waits for the clock otherwise).
 */
export async function freshCode(secret, lastUsed) {
  for (;;) {
    const now = stepNow();
    const step = Math.max(lastUsed + 1, now - 1);
    if (step <= now + 1) return { step, code: totpAt(secret, step) };
    await sleep(500);
  }
}

/** A six-digit code no step within two of now produces: certainly wrong. */
export function wrongCode(secret) {
  const now = stepNow();
  const valid = new Set([-2, -1, 0, 1, 2].map((d) => totpAt(secret, now + d)));
  for (let n = 123456; ; n = (n + 111_111) % 1_000_000) {
    const c = String(n).padStart(6, '0');
    if (!valid.has(c)) return c;
  }
}

// RFC 6238 appendix B's SHA-1 vector (8 digits there; the last 6 of 94287082 here), so a
// broken implementation fails before it is blamed on the server.
{
  const rfcSecret = Buffer.from('12345678901234567890');
  assert.equal(totpAt(rfcSecret, Math.floor(59 / 30)), '287082', 'RFC 6238 test vector');
  assert.equal(totpAt(rfcSecret, Math.floor(1111111109 / 30)), '081804', 'RFC 6238 test vector');
}

// ---------------------------------------------------------------------------------------------
// The theme's message catalogues (crates/kami-server/theme/locales/*.toml): `[section]`
// headers and `key = "value"` lines, which is all they use.

const catalogues = new Map();

export function messages(locale) {
  if (catalogues.has(locale)) return catalogues.get(locale);
  const file = path.join(WORKSPACE, 'crates/kami-server/theme/locales', `${locale}.toml`);
  const table = new Map();
  let section = '';
  for (const raw of fs.readFileSync(file, 'utf8').split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const s = /^\[([^\]]+)\]$/.exec(line);
    if (s) {
      section = s[1].trim();
      continue;
    }
    const kv = /^("(?:[^"\\]|\\.)*"|[A-Za-z0-9_.-]+)\s*=\s*("(?:[^"\\]|\\.)*")\s*(#.*)?$/.exec(line);
    if (!kv) continue;
    const key = kv[1].startsWith('"') ? JSON.parse(kv[1]) : kv[1];
    table.set(section ? `${section}.${key}` : key, JSON.parse(kv[2]));
  }
  catalogues.set(locale, table);
  return table;
}

/** The catalogue text of `key` in `locale`, with `{name}` placeholders filled from `args`. */
export function msg(locale, key, args = {}) {
  const text = messages(locale).get(key);
  assert.ok(text !== undefined, `message ${key} missing from ${locale}.toml`);
  return text.replace(/\{(\w+)\}/g, (all, name) => (name in args ? String(args[name]) : all));
}

// ---------------------------------------------------------------------------------------------
// Page hygiene

/**
 * Collect the page's console errors and uncaught exceptions from now on; accept every
 * `confirm()` (the console asks before destructive actions) and remember what it asked.
 */
export function watchPage(page) {
  const errors = [];
  const dialogs = [];
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(`${page.url()}: console.error: ${m.text()}`);
  });
  page.on('pageerror', (e) => errors.push(`${page.url()}: uncaught: ${e.message}`));
  page.on('dialog', async (d) => {
    dialogs.push({ type: d.type(), message: d.message() });
    await d.accept();
  });
  return {
    errors,
    dialogs,
    /** Asserts no error since the last call (or since watching began), then forgets them. */
    assertClean(what) {
      const seen = errors.splice(0);
      assert.deepEqual(seen, [], `no console errors on ${what}`);
    },
    /** Forget errors seen so far (pages answered 401/404 on purpose log one). */
    forget() {
      errors.splice(0);
    },
  };
}

/**
 * Asserts the document is no wider than the viewport (no sideways scrolling on a phone).
 * Under mobile emulation Chromium zooms out to fit a too-wide page, and `innerWidth` grows
 * with it; so the width is also held against the viewport the browser was given.
 */
export async function assertNoOverflow(page, what) {
  const viewport = page.viewportSize()?.width ?? Infinity;
  const m = await page.evaluate((limit) => ({
    scrollWidth: document.scrollingElement.scrollWidth,
    innerWidth: window.innerWidth,
    // What sticks out, to name it in the failure (a table scrolling in its wrapper is fine).
    // Boxes past the edge, or boxes whose content spills out of them (a long unbroken word).
    wide: [...document.querySelectorAll('body *')]
      .filter((e) => !e.closest('.table-wrap'))
      .filter(
        (e) =>
          e.getBoundingClientRect().right > limit + 0.5 ||
          (e.scrollWidth > e.clientWidth + 1 &&
            e.clientWidth > 0 &&
            getComputedStyle(e).overflowX === 'visible' &&
            e.getBoundingClientRect().left + e.scrollWidth > limit + 0.5),
      )
      .slice(-6)
      .map((e) => {
        const cls = typeof e.className === 'string' && e.className ? `.${e.className.trim().replace(/\s+/g, '.')}` : '';
        const id = e.getAttribute('data-testid') ? `[data-testid=${e.getAttribute('data-testid')}]` : '';
        return `${e.tagName.toLowerCase()}${cls}${id} (right ${Math.round(e.getBoundingClientRect().right)})`;
      }),
  }), Number.isFinite(viewport) ? viewport : 1e9);
  const limit = Math.min(m.innerWidth, viewport);
  assert.ok(
    m.scrollWidth <= limit,
    `${what} overflows horizontally: scrollWidth ${m.scrollWidth} > ${limit} ` +
      `(innerWidth ${m.innerWidth}, viewport ${viewport}); sticking out: ${m.wide.join(', ')}`,
  );
}

// ---------------------------------------------------------------------------------------------
// Signing in

/** Click `locator` and wait for the navigation it starts to load. */
export async function clickAndLoad(page, locator) {
  await Promise.all([page.waitForNavigation({ waitUntil: 'load' }), locator.click()]);
}

/**
 * Fill and submit /admin/login. Resolves once the next page loaded; returns its path.
 * With `code`, also submits the second-factor page (which must come next).
 */
export async function signIn(page, kami, { user, password, code } = {}) {
  const login = kami.consoleLogin;
  assert.ok(login, 'kami --demo printed the console sign-in (demo console: ... user: ... password: ...)');
  await page.goto(`${kami.base}/admin/login`);
  const form = page.locator(`form${tid('login-form')}`);
  await form.waitFor();
  await form.locator('input[name="username"]').fill(user ?? login.user);
  await form.locator('input[name="password"]').fill(password ?? login.password);
  await clickAndLoad(page, form.locator(`button${tid('login-submit')}`));
  if (code !== undefined) {
    assert.equal(new URL(page.url()).pathname, '/admin/login/code', 'the code page follows');
    await submitCode(page, code);
  }
  return new URL(page.url()).pathname;
}

/** Submit the second-factor form with `code`; resolves once the next page loaded. */
export async function submitCode(page, code) {
  const form = page.locator(`form${tid('code-form')}`);
  await form.waitFor();
  await form.locator('input[name="code"]').fill(code);
  await clickAndLoad(page, form.locator(`button${tid('code-submit')}`));
}

/** The logout button in the console's header; resolves on the login page. */
export async function signOut(page) {
  await clickAndLoad(page, page.locator(`button${tid('logout')}`));
  assert.equal(new URL(page.url()).pathname, '/admin/login', 'logging out lands on the login page');
}

/** Open a console page; asserts it answered 200 and is a console page. */
export async function consoleGoto(page, kami, pathAndQuery) {
  const resp = await page.goto(`${kami.base}${pathAndQuery}`);
  assert.equal(resp.status(), 200, `GET ${pathAndQuery} answers 200 (at ${page.url()})`);
  assert.ok(
    !new URL(page.url()).pathname.startsWith('/admin/login'),
    `GET ${pathAndQuery} did not send us to the login page`,
  );
  return resp;
}

// ---------------------------------------------------------------------------------------------
// Admin API (the demo prints its token) and a few text helpers

export async function adminApi(kami, method, p, body) {
  assert.ok(kami.adminToken, 'kami --demo printed its admin API token');
  const r = await fetch(`${kami.base}${p}`, {
    method,
    headers: {
      authorization: `Bearer ${kami.adminToken}`,
      ...(body ? { 'content-type': 'application/json' } : {}),
    },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await r.text();
  let json = null;
  try {
    json = JSON.parse(text);
  } catch {
    /* not JSON */
  }
  return { status: r.status, json, text };
}

export async function adminOrder(kami, orderNo) {
  const r = await adminApi(kami, 'GET', `/api/v1/admin/orders/${orderNo}`);
  assert.equal(r.status, 200, `admin API order ${orderNo}: ${r.text}`);
  return r.json;
}

export const squash = (s) => s.replace(/\s+/g, ' ').trim();

export async function text(locator) {
  return squash(await locator.innerText());
}

export async function streamText(stream) {
  const chunks = [];
  for await (const c of stream) chunks.push(c);
  return Buffer.concat(chunks).toString('utf8');
}

// ---------------------------------------------------------------------------------------------
// The buyer

/**
 * A buyer's purchase through the sandbox channel, in the buyer's own browser context:
 * product page → fill (quantity, email, input fields, coupon) → checkout page. Returns the
 * checkout page's facts; pay with `payInSandbox`.
 */
export async function orderFromProductPage(page, kami, flow, opts) {
  const { slug, email, quantity = 1, fields = {}, coupon, expectUnit, expectTotal } = opts;
  await page.goto(`${kami.base}/p/${slug}`);
  const form = page.locator(`form${tid('order-form')}`);
  await form.waitFor();
  if (expectUnit) {
    assert.equal(await text(page.locator(tid('unit-price'))), expectUnit, 'unit price shown');
  }
  await form.locator('input[name="quantity"]').fill(String(quantity));
  await form.locator('input[name="email"]').fill(email);
  for (const [name, value] of Object.entries(fields)) {
    await form.locator(`input${tid(`field-${name}`)}`).fill(value);
  }
  await form.locator('input[name="query_password"]').fill(`pw-${flow}`);
  await form.locator('input[name="method"][value="sandbox"]').check();
  if (coupon) await form.locator(`input${tid('coupon')}`).fill(coupon);
  if (expectTotal) {
    await waitUntil(
      async () => (await text(page.locator(tid('total')))) === expectTotal,
      `the live total to read ${expectTotal}`,
    );
  }
  await shot(page, flow, 'product-form');
  await clickAndLoad(page, form.locator(`button${tid('buy')}`));
  const url = new URL(page.url());
  assert.match(url.pathname, /^\/orders\/K\d{26}$/, `checkout URL (form error?) ${page.url()}`);
  const orderNo = url.pathname.split('/')[2];
  assert.equal(await page.locator(tid('order-status')).getAttribute('data-status'), 'pending');
  const amount = await text(page.locator(tid('amount')));
  const discount = (await page.locator(tid('discount')).count())
    ? await text(page.locator(tid('discount')))
    : null;
  await shot(page, flow, 'checkout');
  return { orderNo, checkoutUrl: page.url(), amount, discount };
}

/**
 * Follow the checkout page's pay link to the sandbox simulator and press Pay with the given
 * notification test control (`normal` or `drop`). Asserts the simulator asks for `expectAmount`
 * ("12.30 CNY"). Closes the simulator tab.
 */
export async function payInSandbox(context, page, flow, { notify = 'normal', expectAmount }) {
  const link = page.locator(`a${tid('pay-link')}`);
  await link.waitFor();
  const [sim] = await Promise.all([context.waitForEvent('page'), link.click()]);
  await sim.waitForLoadState('load');
  const pay = sim.getByRole('button', { name: /^Pay(\s|$)/ });
  await pay.waitFor({ timeout: 20_000 });
  const body = squash(await sim.locator('body').innerText());
  if (expectAmount) {
    assert.ok(body.includes(expectAmount), `the simulator charges ${expectAmount}: ${body}`);
  }
  await sim.locator('select[name="notify"]').selectOption(notify);
  await shot(sim, flow, `simulator-${notify}`);
  await Promise.all([sim.waitForEvent('load'), pay.click()]);
  const after = squash(await sim.locator('body').innerText());
  assert.match(after, /gateway trade/i, `the simulator took the payment: ${after}`);
  await sim.close();
  await page.bringToFront();
}

/** Wait for the buyer's order page to reach `status` (it updates itself while open). */
export async function waitForBuyerStatus(page, status, timeout = 20_000) {
  await page
    .locator(`${tid('order-status')}[data-status="${status}"]`)
    .first()
    .waitFor({ timeout });
}
