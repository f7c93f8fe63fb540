// Finding an order again on /lookup: by email + query password, by order number + password; a
// wrong password shows the "nothing found" state and no key anywhere on the page.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  DESKTOP,
  failureShots,
  firstPage,
  launchBrowser,
  shot,
  startKami,
  tid,
} from './lib/harness.mjs';
import { buyThroughSimulator } from './lib/flows.mjs';

describe('order lookup', { timeout: 180_000 }, () => {
  let kami;
  let buyer;
  let other;
  let page;
  let bought;

  before(async () => {
    kami = await startKami('lookup');
    buyer = await launchBrowser(DESKTOP);
    const buyerPage = await firstPage(buyer.context);
    bought = await failureShots(buyer.context, 'lookup-buy', () =>
      buyThroughSimulator(buyer.context, buyerPage, kami, 'lookup-buy', {
        method: 'sandbox',
        expect: 'redirect',
        email: 'lookup-buyer@example.com',
        password: 'correct-horse-7',
      }),
    );
    await buyer.close();
    buyer = null;
    // Looked up from another device: a fresh browser that has never seen the order (the
    // buyer's own browser lists its recent orders on /lookup anyway).
    other = await launchBrowser(DESKTOP);
    page = await firstPage(other.context);
  });

  after(async () => {
    await buyer?.close();
    await other?.close();
    await kami?.stop();
  });

  /** Fill and submit the lookup form; resolves once a result or the empty state shows. */
  async function lookup(q, password, step) {
    await page.goto(`${kami.base}/lookup`);
    const form = page.locator(`form${tid('lookup-form')}`);
    await form.waitFor();
    await form.locator('input[name="q"]').fill(q);
    await form.locator('input[name="password"]').fill(password);
    await Promise.all([
      page.waitForEvent('load'),
      form.locator(`button${tid('lookup-submit')}`).click(),
    ]);
    await page.locator(`${tid('lookup-result')}, ${tid('lookup-empty')}`).first().waitFor();
    await shot(page, 'lookup', step);
  }

  /** A test on the other browser, with screenshots of its tabs if it fails. */
  const check = (name, fn) => it(name, () => failureShots(other.context, 'lookup', fn));

  async function expectFound() {
    await page.locator(tid('lookup-result')).waitFor();
    const orders = page.locator(tid('lookup-order'));
    assert.ok((await orders.count()) >= 1, 'at least one order found');
    const found = orders.filter({ hasText: bought.orderNo });
    assert.equal(await found.count(), 1, `order ${bought.orderNo} listed once`);
    const keys = (await found.locator(tid('key')).allInnerTexts()).map((k) => k.trim());
    assert.deepEqual(keys, bought.keys, 'the order shows its key');
    assert.equal(await page.locator(tid('lookup-empty')).count(), 0, 'no empty state');
  }

  check('email + correct password shows the order with its key', async () => {
    await lookup(bought.email, bought.password, 'email-right-password');
    await expectFound();
  });

  check('email + wrong password shows nothing, no key anywhere', async () => {
    await lookup(bought.email, 'wrong-password-1', 'email-wrong-password');
    await page.locator(tid('lookup-empty')).waitFor();
    assert.equal(await page.locator(tid('key')).count(), 0, 'no [data-testid=key]');
    assert.equal(await page.locator(tid('lookup-order')).count(), 0, 'no order listed');
    const html = await page.content();
    for (const k of bought.keys) assert.ok(!html.includes(k), 'the key is nowhere in the page');
    assert.ok(!html.includes(bought.orderNo), 'the order number is not disclosed');
  });

  check('order number + password shows the order with its key', async () => {
    await lookup(bought.orderNo, bought.password, 'order-no-right-password');
    await expectFound();
  });

  check('order number + wrong password shows nothing', async () => {
    await lookup(bought.orderNo, 'wrong-password-2', 'order-no-wrong-password');
    await page.locator(tid('lookup-empty')).waitFor();
    assert.equal(await page.locator(tid('key')).count(), 0, 'no [data-testid=key]');
    const html = await page.content();
    for (const k of bought.keys) assert.ok(!html.includes(k), 'the key is nowhere in the page');
  });
});
