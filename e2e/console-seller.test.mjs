// The seller's day in the console, on a desktop and on a phone, each against its own demo
// shop, with a buyer in a separate browser: import thousands of keys with the progress bar
// (duplicates counted, the CSV export holds them), change a price and sell at the new price,
// fulfil a manual order from the buyer's answers, recover a payment whose notification was
// dropped with "check payment", and sell with a coupon made in the console.

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
  waitUntil,
} from './lib/harness.mjs';
import {
  adminOrder,
  assertNoOverflow,
  clickAndLoad,
  consoleGoto,
  msg,
  orderFromProductPage,
  payInSandbox,
  signIn,
  streamText,
  text,
  waitForBuyerStatus,
  watchPage,
  shot,
} from './lib/console.mjs';

for (const [device, profile] of [
  ['desktop', DESKTOP],
  ['phone', PHONE],
]) {
  describe(`seller console flows (${device})`, { timeout: 240_000 }, () => {
    const lang = profile.locale;
    let kami;
    let seller; // the seller's browser, signed in to the console
    let buyer; // a buyer's browser: another person, other cookies
    let page;
    let watch;

    before(async () => {
      // The payment checker's debug lines say when it first asked the channel about an order.
      kami = await startKami(`console-seller-${device}`, {
        env: { RUST_LOG: 'info,kami_server::services::checks=debug' },
      });
      seller = await launchBrowser(profile);
      buyer = await launchBrowser(profile);
      page = await firstPage(seller.context);
      watch = watchPage(page);
      assert.equal(await signIn(page, kami), '/admin', 'the seller signed in');
    });

    after(async () => {
      await buyer?.close();
      await seller?.close();
      await kami?.stop();
    });

    const flowName = (f) => `${f}-${device}`;
    /** A test whose failure screenshots both browsers' tabs. */
    const step = (name, flow, fn) =>
      it(name, () =>
        failureShots(seller.context, flowName(flow), () =>
          failureShots(buyer.context, `${flowName(flow)}-buyer`, () => fn(flowName(flow))),
        ),
      );

    /** The seller's view of an order: the order page with its status badge and facts. */
    const openOrder = async (orderNo) => {
      await consoleGoto(page, kami, `/admin/orders/${orderNo}`);
      return {
        status: await text(page.locator(tid('order-status'))),
        amount: await text(page.locator(tid('fact-amount'))),
      };
    };
    const statusLabel = (s) => msg(lang, `console.orders.status.${s}`);

    // -----------------------------------------------------------------------------------------
    step('keys: a streamed import of thousands shows its progress and counts duplicates', 'keys', async (flow) => {
      const slug = 'demo-gift-card';
      await consoleGoto(page, kami, '/admin/products');
      await clickAndLoad(page, page.locator(`a${tid(`keys-${slug}`)}`));
      assert.equal(new URL(page.url()).pathname, `/admin/products/${slug}/cards`);
      const before = await text(page.locator(tid('card-counts')));
      assert.equal(before, msg(lang, 'console.cards.counts', { available: 3, reserved: 0, sold: 0 }));

      // First a few pasted keys (the textarea path), then a file of thousands that repeats
      // them and repeats some of its own lines: both kinds of duplicate are counted.
      const prefix = `E2E-${device.toUpperCase()}`;
      const pasted = Array.from({ length: 40 }, (_, i) => `${prefix}-PASTED-${String(i).padStart(4, '0')}`);
      const form = page.locator(`form${tid('import-form')}`);
      await form.locator('textarea[name="keys"]').fill(pasted.join('\n'));
      await clickAndLoad(page, form.locator(`button${tid('import-submit')}`));
      const first = new URL(page.url()).searchParams;
      assert.equal(first.get('imported'), '40', 'the pasted keys were imported');
      assert.equal(first.get('duplicates'), '0');
      assert.equal(
        await text(page.locator(tid('import-result'))),
        msg(lang, 'console.cards.result', { imported: 40, duplicates: 0, rejected: 0 }),
      );

      // Back to the page as the seller comes to it (the address no longer carries a result).
      await consoleGoto(page, kami, `/admin/products/${slug}/cards`);
      assert.equal(await page.locator(tid('import-result')).count(), 0);
      const fresh = Array.from(
        { length: 4000 },
        (_, i) => `${prefix}-FILE-${String(i).padStart(5, '0')}-${(i * 2654435761) % 4294967296}`,
      );
      const repeatedInFile = fresh.slice(0, 150);
      const lines = [...fresh, ...pasted, ...repeatedInFile];
      const file = Buffer.from(`${lines.join('\r\n')}\r\n`, 'utf8');
      // A slow uplink (about 1.5 s for this file) so the bar has steps to show, as it would
      // for a big file on a real connection.
      const cdp = await seller.context.newCDPSession(page);
      await cdp.send('Network.enable');
      await cdp.send('Network.emulateNetworkConditions', {
        offline: false,
        latency: 0,
        downloadThroughput: -1,
        uploadThroughput: Math.ceil(file.length / 1.5),
      });
      // Every value the progress bar takes, reported from the page as it changes.
      const progress = [];
      await page.exposeFunction('__kamiImportProgress', (v, hidden) => progress.push({ v, hidden }));
      await page.evaluate(() => {
        const bar = document.querySelector('[data-import-progress]');
        let last = null;
        const look = () => {
          const now = `${bar.value}/${bar.hidden}`;
          if (now !== last) {
            last = now;
            window.__kamiImportProgress(bar.value, bar.hidden);
          }
        };
        look();
        setInterval(look, 5);
      });
      await form.locator('input[type="file"][name="file"]').setInputFiles({
        name: 'keys.txt',
        mimeType: 'text/plain',
        buffer: file,
      });
      await form.locator('textarea[name="keys"]').fill('');
      const started = Date.now();
      const clicked = form.locator(`button${tid('import-submit')}`).click();
      // The bar shows up and moves while the file goes up.
      await waitUntil(() => progress.some((p) => !p.hidden && p.v > 0 && p.v < 100), 'a partial progress value', 20_000);
      await shot(page, flow, 'import-progress');
      await Promise.all([page.waitForURL(/\?imported=/, { timeout: 60_000 }), clicked]);
      await page.waitForLoadState('load');
      const tookMs = Date.now() - started;
      await cdp.send('Network.emulateNetworkConditions', {
        offline: false,
        latency: 0,
        downloadThroughput: -1,
        uploadThroughput: -1,
      });
      await cdp.detach();

      const shown = progress.filter((p) => !p.hidden).map((p) => p.v);
      assert.ok(shown.length >= 3, `the bar took several values: ${JSON.stringify(shown)}`);
      assert.deepEqual([...shown].sort((a, b) => a - b), shown, `the bar only advances: ${shown}`);
      assert.equal(shown.at(-1), 100, 'the bar ends full');
      console.log(`${flow}: ${lines.length} lines (${file.length} bytes) imported in ${tookMs} ms; bar: ${shown.join(' ')}`);

      const result = new URL(page.url()).searchParams;
      const duplicates = pasted.length + repeatedInFile.length;
      assert.equal(result.get('imported'), String(fresh.length), 'every new key imported');
      assert.equal(result.get('duplicates'), String(duplicates), 'repeats counted as duplicates');
      assert.equal(result.get('rejected'), '0');
      assert.equal(
        await text(page.locator(tid('import-result'))),
        msg(lang, 'console.cards.result', { imported: fresh.length, duplicates, rejected: 0 }),
      );
      // What the store holds, not what the page was told: the counts line is read from it.
      const available = 3 + pasted.length + fresh.length;
      assert.equal(
        await text(page.locator(tid('card-counts'))),
        msg(lang, 'console.cards.counts', { available, reserved: 0, sold: 0 }),
      );
      await assertNoOverflow(page, 'the keys page');
      await shot(page, flow, 'imported');
      watch.assertClean('the keys page');

      // The export holds each key once.
      const [download] = await Promise.all([
        page.waitForEvent('download'),
        page.locator(`a${tid('cards-export')}`).click(),
      ]);
      assert.match(download.suggestedFilename(), /\.csv$/);
      const csv = await streamText(await download.createReadStream());
      const rows = csv.split(/\r?\n/).filter(Boolean);
      const cells = new Map();
      for (const r of rows) {
        for (const raw of r.split(',')) {
          const c = raw.replace(/^"|"$/g, '');
          cells.set(c, (cells.get(c) || 0) + 1);
        }
      }
      for (const k of [...pasted, ...fresh]) {
        const n = cells.get(k) || 0;
        if (n !== 1) assert.fail(`the CSV export has ${k} ${n} times`);
      }
      assert.equal(rows.length - 1, available, 'one row per available key, after the header');
    });

    // -----------------------------------------------------------------------------------------
    step('price: a new price set in the console is what the next buyer pays', 'price', async (flow) => {
      const slug = 'demo-game-key';
      const newPrice = device === 'desktop' ? '13.45' : '14.56';
      await consoleGoto(page, kami, `/admin/products/${slug}`);
      const form = page.locator(`form${tid('product-form')}`);
      assert.equal(await form.locator('input[name="price"]').inputValue(), '12.30', 'the demo price');
      await form.locator('input[name="price"]').fill(newPrice);
      await clickAndLoad(page, form.locator(`button${tid('product-save')}`));
      assert.equal(await text(page.locator(tid('product-saved'))), msg(lang, 'console.products.saved'));
      assert.equal(await form.locator('input[name="price"]').inputValue(), newPrice, 'the form shows it');
      await assertNoOverflow(page, 'the product page');
      await shot(page, flow, 'saved');
      await consoleGoto(page, kami, '/admin/products');
      assert.match(await text(page.locator(tid(`product-${slug}`))), new RegExp(`${newPrice} CNY`));
      watch.assertClean('the product pages');

      const shop = await firstPage(buyer.context);
      const order = await orderFromProductPage(shop, kami, flow, {
        slug,
        email: `price-${device}@example.com`,
        expectUnit: `¥${newPrice}`,
        expectTotal: `¥${newPrice}`,
      });
      assert.equal(order.amount, `¥${newPrice}`, 'the checkout page asks for the new price');
      await payInSandbox(buyer.context, shop, flow, { expectAmount: `${newPrice} CNY` });
      await waitForBuyerStatus(shop, 'delivered');
      assert.equal(await shop.locator(tid('key')).count(), 1, 'the key is delivered');
      await shot(shop, flow, 'delivered');

      const api = await adminOrder(kami, order.orderNo);
      assert.equal(api.amount, Math.round(Number(newPrice) * 100), 'the order was charged the new price');
      const seen = await openOrder(order.orderNo);
      assert.equal(seen.amount, `¥${newPrice}`);
      assert.equal(seen.status, statusLabel('delivered'));
    });

    // -----------------------------------------------------------------------------------------
    step("manual order: the buyer's answers reach the seller, the fulfilment reaches the buyer", 'manual', async (flow) => {
      const slug = 'demo-recharge';
      await consoleGoto(page, kami, `/admin/products/${slug}`);
      const form = page.locator(`form${tid('product-form')}`);
      await form
        .locator('textarea[name="fields"]')
        .fill('account | 游戏账号 | required | ^[0-9]{5,12}$\nserver | Server / 区服 | optional');
      await clickAndLoad(page, form.locator(`button${tid('product-save')}`));
      assert.equal(await text(page.locator(tid('product-saved'))), msg(lang, 'console.products.saved'));

      const shop = await firstPage(buyer.context);
      const account = device === 'desktop' ? '123456789' : '987654321';
      const server = `Asia-${device}`;
      await shop.goto(`${kami.base}/p/${slug}`);
      // The pattern is the browser's to enforce too: a bad account stops the form.
      await shop.locator(tid('field-account')).fill('12ab');
      assert.equal(
        await shop.locator(tid('field-account')).evaluate((e) => e.validity.patternMismatch),
        true,
        'the account field checks its pattern',
      );
      const order = await orderFromProductPage(shop, kami, flow, {
        slug,
        email: `manual-${device}@example.com`,
        fields: { account, server },
      });
      assert.equal(order.amount, '¥20.00');
      await payInSandbox(buyer.context, shop, flow, { expectAmount: '20.00 CNY' });
      await waitForBuyerStatus(shop, 'awaiting_fulfilment');
      assert.equal(await shop.locator(tid('key')).count(), 0, 'nothing delivered yet');
      await shot(shop, flow, 'awaiting');

      // The seller finds it among the orders needing action.
      await consoleGoto(page, kami, '/admin/orders');
      await clickAndLoad(page, page.locator(`a${tid('quick-awaiting')}`));
      await clickAndLoad(page, page.locator(`a${tid(`order-${order.orderNo}`)}`));
      assert.equal(await text(page.locator(tid('order-status'))), statusLabel('awaiting_fulfilment'));
      const answers = await page.locator(`${tid('fields')} dt, ${tid('fields')} dd`).allInnerTexts();
      assert.deepEqual(
        answers.map((s) => s.trim()),
        ['account', account, 'server', server],
        "the buyer's answers are on the order page",
      );
      await assertNoOverflow(page, 'the order page');
      await shot(page, flow, 'seller-order');

      const content = `Recharged 648 diamonds to ${account} (${server}); receipt R-${device}-42`;
      const fulfil = page.locator(`form${tid('action-fulfil')}`);
      await fulfil.locator('textarea[name="content"]').fill(content);
      await clickAndLoad(page, fulfil.locator('button[type="submit"]'));
      assert.equal(watch.dialogs.at(-1)?.message, msg(lang, 'console.order.confirm.fulfil'), 'asked first');
      assert.match(await text(page.locator(tid('flash'))), new RegExp(msg(lang, 'console.order.ok')));
      assert.equal(await text(page.locator(tid('order-status'))), statusLabel('fulfilled'));
      assert.equal((await page.locator(tid('fulfilment')).innerText()).trim(), content);
      await shot(page, flow, 'seller-fulfilled');
      watch.assertClean('the order pages');

      // The buyer's page (opened again, as from the mail or a bookmark) shows what was sent.
      await shop.goto(order.checkoutUrl);
      await waitForBuyerStatus(shop, 'fulfilled');
      await shot(shop, flow, 'buyer-fulfilled');
      const body = await text(shop.locator('body'));
      assert.ok(body.includes(content), `the buyer's order page shows the seller's content: ${body}`);
    });

    // -----------------------------------------------------------------------------------------
    step('check payment: a payment whose notification was dropped is found by the seller', 'check-payment', async (flow) => {
      const slug = 'demo-tutorial'; // one shared link for every buyer
      const shop = await firstPage(buyer.context);
      const order = await orderFromProductPage(shop, kami, flow, {
        slug,
        email: `check-${device}@example.com`,
      });
      assert.equal(order.amount, '¥1.00');
      // kami asks the channel on its own ~5 s after the order, then 10 s later. Pay right
      // after that first look, so the seller's click, not the checker, finds the payment.
      await kami.waitForLine(
        new RegExp(`${order.orderNo}.*query at the channel|query at the channel.*${order.orderNo}`),
        `the first payment check of ${order.orderNo}`,
      );
      await payInSandbox(buyer.context, shop, flow, { notify: 'drop', expectAmount: '1.00 CNY' });
      // No notification comes: the order stays pending.
      await new Promise((r) => setTimeout(r, 1000));
      assert.equal(await shop.locator(tid('order-status')).getAttribute('data-status'), 'pending');
      assert.equal((await adminOrder(kami, order.orderNo)).status, 'pending', 'still pending at kami');

      const seen = await openOrder(order.orderNo);
      assert.equal(seen.status, statusLabel('pending'));
      await shot(page, flow, 'pending');
      const check = page.locator(`form${tid('action-check_payment')}`);
      await clickAndLoad(page, check.locator('button[type="submit"]'));
      assert.equal(
        watch.dialogs.at(-1)?.message,
        msg(lang, 'console.order.confirm.check_payment'),
        'asked first',
      );
      const flash = await text(page.locator(tid('flash')));
      assert.match(flash, /: paid \(delivered\)/, `the channel said paid and it was applied: ${flash}`);
      assert.equal(await text(page.locator(tid('order-status'))), statusLabel('delivered'));
      await shot(page, flow, 'found');
      watch.assertClean('the order page');

      // The buyer's open checkout page turns delivered by itself and shows the link.
      await waitForBuyerStatus(shop, 'delivered');
      assert.deepEqual(
        (await shop.locator(tid('key')).allInnerTexts()).map((k) => k.trim()),
        ['https://example.com/demo-tutorial (demo link)'],
      );
      await shot(shop, flow, 'delivered');
    });

    // -----------------------------------------------------------------------------------------
    step('coupon: made in the console, applied on the product page, charged exactly', 'coupon', async (flow) => {
      const slug = 'demo-gift-card'; // ¥50.00
      // A percentage on the desktop, a fixed amount on the phone.
      const c =
        device === 'desktop'
          ? { code: 'E2E-TEN', kind: 'percent', value: '10', total: '¥45.00', off: '¥5.00', minor: 4500 }
          : { code: 'E2E-FIX', kind: 'fixed', value: '7.50', total: '¥42.50', off: '¥7.50', minor: 4250 };
      await consoleGoto(page, kami, '/admin/coupons');
      const form = page.locator(`form${tid('coupon-form')}`);
      await form.locator(tid('coupon-code')).fill(c.code);
      await form.locator(tid('coupon-kind')).selectOption(c.kind);
      await form.locator(tid('coupon-value')).fill(c.value);
      if (c.kind === 'fixed') await form.locator('input[name="currency"]').fill('CNY');
      await form.locator('input[name="products"]').fill(slug);
      assert.equal(await form.locator('input[name="enabled"]').isChecked(), true, 'new coupons are on');
      await clickAndLoad(page, form.locator(`button${tid('coupon-create')}`));
      assert.equal(await page.locator(tid('coupon-error')).count(), 0, 'the coupon was accepted');
      const row = page.locator(tid(`coupon-${c.code}`));
      await row.waitFor();
      assert.equal(await text(page.locator(tid(`coupon-used-${c.code}`))), '0');
      await assertNoOverflow(page, 'the coupons page');
      await shot(page, flow, 'created');
      watch.assertClean('the coupons page');

      const shop = await firstPage(buyer.context);
      const order = await orderFromProductPage(shop, kami, flow, {
        slug,
        email: `coupon-${device}@example.com`,
        coupon: c.code.toLowerCase(), // typed carelessly
      });
      assert.equal(order.amount, c.total, 'the checkout total has the discount');
      assert.equal(order.discount, `${c.code} −${c.off}`, 'the checkout page names the coupon');
      await payInSandbox(buyer.context, shop, flow, { expectAmount: `${c.total.slice(1)} CNY` });
      await waitForBuyerStatus(shop, 'delivered');
      assert.equal(await shop.locator(tid('key')).count(), 1);
      await shot(shop, flow, 'delivered');

      const api = await adminOrder(kami, order.orderNo);
      assert.equal(api.amount, c.minor, 'charged exactly the discounted amount');
      const seen = await openOrder(order.orderNo);
      assert.equal(seen.amount, c.total);
      await consoleGoto(page, kami, '/admin/coupons');
      assert.equal(await text(page.locator(tid(`coupon-used-${c.code}`))), '1', 'used once');
    });
  });
}
