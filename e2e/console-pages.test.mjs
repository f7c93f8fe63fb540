// Every console page in both languages on a desktop and a phone: a screenshot of each, the
// language chosen with the console's switch (a `?lang=` link, remembered in a cookie), every
// text translated (no catalogue key shows through), nothing wider than a phone's screen, and
// no error in the browser's console.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  DESKTOP,
  PHONE,
  failureShots,
  firstPage,
  launchBrowser,
  startKami,
  tid,
} from './lib/harness.mjs';
import {
  assertNoOverflow,
  clickAndLoad,
  consoleGoto,
  messages,
  signIn,
  signOut,
  watchPage,
  shot,
} from './lib/console.mjs';

const LANGS = ['zh-CN', 'en'];
const COUPON = 'E2E-PAGES';
const SLUG = 'demo-game-key';

/** The console's pages: name, address and the navigation entry marked current. */
const pages = (orderNo) => [
  { name: 'dashboard', path: '/admin', nav: 'dashboard' },
  { name: 'orders', path: '/admin/orders', nav: 'orders' },
  { name: 'order', path: `/admin/orders/${orderNo}`, nav: 'orders' },
  { name: 'products', path: '/admin/products', nav: 'products' },
  { name: 'product-edit', path: `/admin/products/${SLUG}`, nav: 'products' },
  { name: 'cards', path: `/admin/products/${SLUG}/cards`, nav: 'products' },
  { name: 'coupons', path: '/admin/coupons', nav: 'coupons' },
  { name: 'coupon-edit', path: `/admin/coupons/${COUPON}`, nav: 'coupons' },
  { name: 'users', path: '/admin/users', nav: 'users' },
  { name: 'audit', path: '/admin/audit', nav: 'audit' },
  { name: 'security', path: '/admin/security', nav: 'security' },
  { name: 'settings', path: '/admin/settings', nav: 'settings' },
];

// Every message key of both catalogues: none may show through as text (a missing message
// renders as its key).
const KEYS = [...new Set([...messages('zh-CN').keys(), ...messages('en').keys()])].filter((k) =>
  k.includes('.'),
);

describe('console pages in both languages', { timeout: 240_000 }, () => {
  let kami;
  let orderNo;

  before(async () => {
    kami = await startKami('console-pages');
    orderNo = await paidOrder(kami);
  });

  after(async () => {
    await kami?.stop();
  });

  for (const [device, profile] of [
    ['desktop', DESKTOP],
    ['phone', PHONE],
  ]) {
    it(`every page, zh-CN and en, on a ${device}`, { timeout: 150_000 }, async () => {
      const flow = `console-pages-${device}`;
      const browser = await launchBrowser(profile);
      try {
        await failureShots(browser.context, flow, async () => {
          const page = await firstPage(browser.context);
          const watch = watchPage(page);
          const check = async (lang, name, nav) => {
            assert.equal(await page.locator('html').getAttribute('lang'), lang, `${name}: html[lang]`);
            await checkTranslated(page, lang, `${name} (${lang})`);
            if (nav) {
              const current = page.locator(`${tid('console-nav')} a[aria-current="page"]`);
              assert.equal(await current.getAttribute('data-testid'), `nav-${nav}`, `${name}: nav entry`);
            }
            await assertNoOverflow(page, `${name} (${lang}, ${device})`);
            watch.assertClean(`${name} (${lang}, ${device})`);
            await shot(page, flow, `${lang}-${name}`);
          };

          // The browser says zh-CN: the login page speaks it.
          await page.goto(`${kami.base}/admin/login`);
          await check('zh-CN', 'login');
          assert.equal(await signIn(page, kami), '/admin');
          if (device === 'desktop') await makeCoupon(page, kami);

          for (const lang of LANGS) {
            // The switch in the header: a link to the same page with ?lang=, which sets the
            // cookie every later page follows.
            const current = await page.locator('html').getAttribute('lang');
            if (current !== lang) {
              await clickAndLoad(page, page.locator(`a${tid(`lang-${lang}`)}`));
              assert.equal(new URL(page.url()).searchParams.get('lang'), lang);
            }
            for (const p of pages(orderNo)) {
              await consoleGoto(page, kami, p.path); // no ?lang: the cookie decides
              await check(lang, p.name, p.nav);
            }
          }
          // Signed out, the login page keeps the chosen language.
          await signOut(page);
          await check('en', 'login');
          await clickAndLoad(page, page.locator(`a${tid('lang-zh-CN')}`));
          assert.equal(await page.locator('html').getAttribute('lang'), 'zh-CN', 'and switches back');
          watch.assertClean('the login page');
        });
      } finally {
        await browser.close();
      }
    });
  }
});

/** Nothing untranslated: no catalogue key as text or in a visible attribute. */
async function checkTranslated(page, lang, what) {
  const shown = await page.evaluate(() => {
    const attrs = [...document.querySelectorAll('[data-confirm], [placeholder], [title], [aria-label]')]
      .flatMap((e) => ['data-confirm', 'placeholder', 'title', 'aria-label'].map((a) => e.getAttribute(a)))
      .filter(Boolean);
    return [document.title, document.body.innerText, ...attrs].join('\n');
  });
  const leaked = KEYS.filter((k) => shown.includes(k));
  const dynamic = shown.match(/\bconsole\.[a-z0-9_]+\.[a-z0-9_.]+/g) || [];
  assert.deepEqual([...leaked, ...dynamic], [], `${what}: message keys shown untranslated`);
  // The header without the language links (each language is named in its own script).
  const nav = await page.evaluate(() => {
    const h = document.querySelector('header').cloneNode(true);
    for (const l of h.querySelectorAll('.langs')) l.remove();
    return h.textContent.replace(/\s+/g, ' ').trim();
  });
  if (lang === 'zh-CN') assert.match(nav, /\p{Script=Han}/u, `${what}: a Chinese header`);
  else assert.doesNotMatch(nav, /\p{Script=Han}/u, `${what}: an English header`);
}

/** A delivered order, bought through the JSON API and the sandbox simulator's JSON pay form. */
async function paidOrder(kami) {
  const r = await fetch(`${kami.base}/api/v1/orders`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      product: SLUG,
      quantity: 2,
      email: 'pages@example.com',
      method: 'sandbox',
      query_password: 'pages-pw-1',
    }),
  });
  const order = await r.json();
  assert.equal(r.status, 201, `order created: ${JSON.stringify(order)}`);
  const pay = await fetch(new URL(order.payment.url, kami.base), {
    method: 'POST',
    headers: { accept: 'application/json', 'content-type': 'application/x-www-form-urlencoded' },
    body: 'notify=normal',
  });
  assert.equal(pay.status, 200, `paid in the simulator: ${await pay.text()}`);
  const done = await fetch(`${kami.base}/api/v1/orders/${order.order_no}?wait=10`, {
    headers: { authorization: `Bearer ${order.access_token}` },
  });
  const view = await done.json();
  assert.equal(view.status, 'delivered', `order ${order.order_no} delivered`);
  return order.order_no;
}

/** The coupon the coupon pages show, made in the console. */
async function makeCoupon(page, kami) {
  await consoleGoto(page, kami, '/admin/coupons');
  const form = page.locator(`form${tid('coupon-form')}`);
  await form.locator(tid('coupon-code')).fill(COUPON);
  await form.locator(tid('coupon-kind')).selectOption('percent');
  await form.locator(tid('coupon-value')).fill('15');
  await form.locator('input[name="max_uses"]').fill('100');
  await clickAndLoad(page, form.locator(`button${tid('coupon-create')}`));
  await page.locator(tid(`coupon-${COUPON}`)).waitFor();
}
